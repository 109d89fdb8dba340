"""Read and write IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in C order, big-endian. Every malformed file raises
:class:`~kmeans_imagery.errors.KMIError` naming the file, never a numpy or gzip exception.

:func:`open_idx` is the one reader of IDX images: uint8 images become an :class:`IdxSource`
(uncompressed files read by plain positioned reads, gzip files streamed front to back); other
value types are read whole and converted (:func:`~.convert.to_uint8_images`).
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError
from ..progress import open_progress
from ._source import ArraySource, Batch, ImageSource, check_batch_size, read_stored_images
from .convert import check_labels, to_uint8_images

__all__ = ["IDX_FILES", "IDX_ROLES", "IdxSource", "find_idx_files", "open_idx", "open_idx_folder",
           "read_idx", "write_idx"]

# IDX type code -> big-endian numpy dtype, as in the format's description by LeCun et al.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1, so a gzip stream declaring more values than
# this bound allows is truncated; checking it first avoids allocating memory for a bogus header.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 22


def read_idx(path):
    """Read an IDX file, raw or gzip-compressed (detected by content, not by name).

    Parameters
    ----------
    path : str or path-like
        The IDX file.

    Returns
    -------
    array : ndarray of shape (d0, d1, ...)
        The values in native byte order: uint8 for MNIST images (n, 28, 28) and labels (n,).

    Raises
    ------
    KMIError
        If the file is missing, has a wrong magic number or type code, is truncated, is longer than
        its header declares, or is not a valid gzip stream.

    See Also
    --------
    write_idx : The inverse.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import read_idx, write_idx
    >>> labels = np.array([5, 0, 4], dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_idx(Path(folder) / "train-labels-idx1-ubyte.gz", labels)
    ...     read_idx(Path(folder) / "train-labels-idx1-ubyte.gz")
    array([5, 0, 4], dtype=uint8)
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            file_size = os.fstat(raw.fileno()).st_size
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_stream(stream, path, file_size * _MAX_DEFLATE_RATIO + 1024)
            return _read_stream(raw, path, file_size)
    except FileNotFoundError:
        raise KMIError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise KMIError(f"{path} is a folder, not an IDX file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise KMIError(f"IDX file {path} is a truncated or corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise KMIError(f"cannot read IDX file {path}: {exc}") from None


def _read_stream(stream, path, max_size):
    """Parse the header and read the values into one preallocated array (no second copy)."""
    magic = _read_exactly(stream, 4, path, "magic number")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or magic[3] == 0:
        raise KMIError(
            f"{path} is not an IDX file: magic number {magic.hex()} is not 0000<type><ndim> with a "
            f"known type ({', '.join(f'{c:02x}' for c in _IDX_DTYPES)}) and ndim >= 1"
        )
    dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
    dims = _read_exactly(stream, 4 * ndim, path, "dimensions")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if 4 + 4 * ndim + n_bytes > max_size:
        raise KMIError(
            f"IDX file {path} is truncated: its header declares shape {shape} ({n_bytes} bytes of "
            f"data) but the file is too small to hold them"
        )
    try:
        values = np.empty(shape, dtype=dtype.newbyteorder("="))
    except MemoryError:
        raise KMIError(f"IDX file {path} declares shape {shape}, too large for memory") from None
    buffer = memoryview(values).cast("B") if values.size else memoryview(b"")
    filled = 0
    while filled < n_bytes:
        got = stream.readinto(buffer[filled : filled + _CHUNK])
        if not got:
            raise KMIError(
                f"IDX file {path} is truncated: shape {shape} needs {n_bytes} bytes of data, "
                f"found {filled}"
            )
        filled += got
    if stream.read(1):
        raise KMIError(f"IDX file {path} is longer than its header (shape {shape}) declares")
    if dtype.itemsize > 1 and values.dtype.byteorder != dtype.byteorder:
        values.byteswap(inplace=True)  # the bytes were big-endian; make them native in place
    return values


def _read_exactly(stream, n, path, what):
    data = stream.read(n)
    if len(data) != n:
        raise KMIError(f"IDX file {path} is truncated: it ends inside the {what}")
    return data


def write_idx(path, array):
    """Write an array as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    The file is written atomically (a temporary file in the same folder, then renamed), and gzip
    output carries no timestamp, so the same array always gives the same bytes.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    array : array-like of shape (d0, d1, ...)
        At least one dimension. uint8, int8, int16, int32, float32 and float64 are written as
        such; bool is written as uint8; other integer types as the smallest IDX integer type that
        holds their values; float16 as float32.

    Raises
    ------
    KMIError
        If the array has no dimension, a dimension too large for IDX, or a type IDX cannot hold.

    See Also
    --------
    read_idx : The inverse.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import read_idx, write_idx
    >>> images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "train-images-idx3-ubyte"
    ...     write_idx(path, images)
    ...     print(path.stat().st_size, path.read_bytes()[:4].hex())  # 16-byte header + pixels
    ...     print(bool((read_idx(path) == images).all()))
    7856 00000803
    True
    """
    path = Path(path)
    array = _idx_compatible(np.asarray(array), path)
    header = bytes([0, 0, _CODE_OF_KIND[(array.dtype.kind, array.dtype.itemsize)], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    big_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    data = big_endian.reshape(-1).view(np.uint8)
    try:
        with atomic_write(path) as out:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as stream:
                    stream.write(header)
                    stream.write(data)
            else:
                out.write(header)
                out.write(data)
    except OSError as exc:
        raise KMIError(f"cannot write {path}: {exc.strerror or exc}") from None


def _idx_compatible(array, path):
    """Return ``array`` with a dtype IDX can store, or raise."""
    if array.ndim == 0 or array.ndim > 255:
        raise KMIError(f"cannot write {path}: IDX needs 1 to 255 dimensions, got {array.ndim}")
    if max(array.shape) > np.iinfo(np.uint32).max:
        raise KMIError(f"cannot write {path}: dimension too large for IDX {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8)
    if kind == "f" and array.dtype.itemsize == 2:
        return array.astype(np.float32)
    if (kind, array.dtype.itemsize) in _CODE_OF_KIND:
        return array
    if kind in "iu":
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint8, np.int8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return array.astype(dtype)
        raise KMIError(f"cannot write {path}: integer values {lo}..{hi} do not fit IDX's int32")
    raise KMIError(f"cannot write {path}: IDX cannot hold {array.dtype} values")


# -- the four files of a dataset, and images as a source ----------------------------------------

#: File names of a dataset's four IDX files, as MNIST publishes them.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
#: The role of each of :data:`IDX_FILES`, as :func:`find_idx_files` names them.
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def _idx_spellings(fname):
    # The canonical gzip names, their uncompressed form, and the dotted form some mirrors use.
    base = fname.removesuffix(".gz")
    dotted = base.replace("-idx", ".idx")
    return (fname, base, dotted + ".gz", dotted)


def find_idx_files(folder):
    """Find the four IDX files of a dataset in a folder.

    Parameters
    ----------
    folder : path-like
        The folder to look in.

    Returns
    -------
    files : dict
        Maps "train_images", "train_labels", "test_images", "test_labels" to a Path, or None when
        that file is absent. Gzip and uncompressed files, with ``-idx`` or ``.idx`` spellings,
        are accepted.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets import find_idx_files
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     (Path(folder) / "train-images.idx3-ubyte").touch()
    ...     (Path(folder) / "train-labels-idx1-ubyte.gz").touch()
    ...     files = find_idx_files(folder)
    >>> {role: path and path.name for role, path in files.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'train_images': 'train-images.idx3-ubyte', 'train_labels': 'train-labels-idx1-ubyte.gz',
     'test_images': None, 'test_labels': None}
    """
    files = {}
    for role, fname in zip(IDX_ROLES, IDX_FILES, strict=True):
        found = (Path(folder) / spelling for spelling in _idx_spellings(fname))
        files[role] = next((p for p in found if p.is_file()), None)
    return files


def open_idx_folder(folder, split, *, name, origin, label_names=None, color=None, size=None):
    """One split of a folder of IDX files as a source.

    Parameters
    ----------
    folder : path-like
        A folder holding the files of :data:`IDX_FILES` (any spelling :func:`find_idx_files`
        accepts).
    split : {"train", "test"}
        Which pair of files to open.
    name, origin, label_names, color, size
        As in :func:`open_idx`.

    Returns
    -------
    IdxSource or ArraySource
        As :func:`open_idx` gives; its ``split`` is None when the folder has no test files.

    Raises
    ------
    KMIError
        When the split's images file is missing (or only its labels file is present).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import write_idx
    >>> from kmeans_imagery.datasets.idx import IDX_FILES, open_idx_folder
    >>> arrays = [np.zeros((6, 4, 4), np.uint8), np.arange(6) % 3, np.zeros((2, 4, 4), np.uint8),
    ...           np.array([2, 1])]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for fname, array in zip(IDX_FILES, arrays):
    ...         write_idx(Path(folder) / fname, array)
    ...     test = open_idx_folder(folder, "test", name="tiny", origin=folder)
    ...     print(test.display_name, test.n_images, test.labels)
    tiny-test 2 [2 1]
    """
    files = find_idx_files(folder)
    images, labels = files[f"{split}_images"], files[f"{split}_labels"]
    if images is None:
        if labels is not None:
            raise KMIError(f"{folder} has {labels.name} but no {split} images file")
        raise KMIError(f"{folder} has no {split} images file")
    # A folder without test files holds a single collection: no split to name.
    two = files["test_images"] is not None
    return open_idx(images, labels, name=name, split=split if two else None, origin=origin,
                    label_names=label_names, color=color, size=size)


def open_idx(images_path, labels_path=None, *, name=None, split=None, origin=None,
             label_names=None, color=None, size=None):
    """Open an IDX images file (and its labels file) as a source.

    Parameters
    ----------
    images_path : path-like
        An IDX file of images, shape (n, H, W) or (n, H, W, 3), raw or gzip-compressed.
    labels_path : path-like or None
        Its IDX labels file, shape (n,).
    name, split, origin, label_names
        The source's attributes (see :class:`~kmeans_imagery.datasets.ImageSource`).
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Returns
    -------
    IdxSource or ArraySource
        An :class:`IdxSource` for uint8 images; other value types are read whole and converted.

    Raises
    ------
    KMIError
        For an unreadable or malformed file, or labels that do not match the images.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import open_idx, write_idx
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     images, labels = Path(folder) / "images-idx3-ubyte", Path(folder) / "labels-idx1-ubyte"
    ...     write_idx(images, np.zeros((5, 28, 28), np.uint8))
    ...     write_idx(labels, np.array([3, 1, 4, 1, 5], np.uint8))
    ...     source = open_idx(images, labels)
    ...     print(type(source).__name__, source.n_images, source.image_shape, source.labels)
    IdxSource 5 (28, 28) [3 1 4 1 5]
    """
    images_path = Path(images_path)
    attrs = {"name": name or images_path.name, "split": split,
             "origin": origin if origin is not None else str(images_path), "color": color,
             "size": size}
    try:
        with open(images_path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
    except OSError as exc:
        raise KMIError(f"cannot read IDX file {images_path}: {exc.strerror or exc}") from None
    with (gzip.open(images_path, "rb") if compressed else open(images_path, "rb")) as stream:
        try:
            magic = stream.read(4)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise KMIError(f"IDX file {images_path} is a truncated or corrupt gzip stream "
                           f"({exc})") from None
    if len(magic) == 4 and magic[:2] == b"\0\0" and magic[2] == 0x08 and magic[3] in (3, 4):
        return IdxSource(images_path, labels_path, compressed=compressed,
                         label_names=label_names, **attrs)
    images = to_uint8_images(read_idx(images_path), str(images_path))
    labels = None if labels_path is None else _read_idx_labels(labels_path, images_path,
                                                              len(images))
    return ArraySource(images, labels, label_names=label_names, **attrs)


class IdxSource(ImageSource):
    """uint8 images in an IDX file: plain positioned reads, or a gzip stream read front to back.

    Plain reads (not a memory map) keep a pass over a large file from holding its pages in the
    process: only the batch being read is resident.

    Built by :func:`open_idx` for IDX files of uint8 images.

    Parameters
    ----------
    path : path-like
        The IDX images file.
    labels_path : path-like or None
        IDX labels file, read when the labels are first needed.
    compressed : bool
        Whether ``path`` is gzip-compressed (then only front-to-back reading).
    name, split, origin, label_names, color, size
        As in :func:`open_idx`.

    Raises
    ------
    KMIError
        For a malformed header, or an uncompressed file whose size disagrees with it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import IdxSource, write_idx
    >>> images = np.arange(4 * 9, dtype=np.uint8).reshape(4, 3, 3)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_idx(Path(folder) / "images-idx3-ubyte.gz", images)
    ...     source = IdxSource(Path(folder) / "images-idx3-ubyte.gz", compressed=True, name="tiny")
    ...     print(source.random_access, [b.images.shape for b in source.iter_batches(3)])
    False [(3, 3, 3), (1, 3, 3)]
    """

    def __init__(self, path, labels_path=None, *, compressed, name, split=None, origin="",
                 label_names=None, color=None, size=None):
        super().__init__(color, size)
        self.path = Path(path)
        self._labels_path = labels_path
        self.name, self.split, self.origin = name, split, origin
        self.label_names = None if label_names is None else tuple(label_names)
        self.random_access = not compressed
        with self._open() as stream:
            self._stored_shape, self._offset = _uint8_header(stream, self.path)
        self.n_images = self._stored_shape[0]
        self.image_shape = self._shape_after(self._stored_shape[1:])
        self._image_bytes = int(np.prod(self._stored_shape[1:]))
        if not compressed:
            expected = self._offset + self.n_images * self._image_bytes
            actual = os.path.getsize(self.path)
            if actual != expected:
                raise KMIError(f"IDX file {self.path} has {actual} bytes but its header (shape "
                               f"{self._stored_shape}) declares {expected}")

    def _open(self):
        opener = open if self.random_access else gzip.open
        try:
            return opener(self.path, "rb")
        except OSError as exc:
            raise KMIError(f"cannot read IDX file {self.path}: {exc}") from None

    def _load_labels(self):
        if self._labels_path is None:
            return None
        return _read_idx_labels(self._labels_path, self.path, self.n_images)

    def _read(self, start, stop):
        return read_stored_images(self.path, self._offset, self._stored_shape, start, stop)

    def iter_batches(self, batch_size, *, start=0, stop=None):
        """Yield consecutive batches; a gzip file is decompressed once, front to back."""
        if self.random_access:
            yield from super().iter_batches(batch_size, start=start, stop=stop)
            return
        batch_size = check_batch_size(batch_size)
        stop = self.n_images if stop is None else min(stop, self.n_images)
        try:
            with self._open() as stream:
                _skip(stream, self._offset + start * self._image_bytes)
                for s in range(start, stop, batch_size):
                    e = min(s + batch_size, stop)
                    data = stream.read((e - s) * self._image_bytes)
                    if len(data) != (e - s) * self._image_bytes:
                        raise KMIError(f"IDX file {self.path} is truncated: it ends inside image "
                                       f"{s + len(data) // self._image_bytes}")
                    images = np.frombuffer(data, np.uint8).reshape(e - s, *self._stored_shape[1:])
                    yield Batch(s, self._conform(images), self._labels_slice(s, e))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise KMIError(f"IDX file {self.path} is a truncated or corrupt gzip stream "
                           f"({exc})") from None

    def read_all(self, *, batch_size=None, progress=None):
        """The whole file, read and checked by :func:`read_idx` (one read, trailing bytes too)."""
        with open_progress(progress, self.n_images, f"reading {self.display_name}") as bar:
            images = read_idx(self.path)
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images.reshape(images.shape[:3])
            batch = Batch(0, self._conform(images), self.labels)
            bar.advance(self.n_images)
        return batch


def _skip(stream, n_bytes):
    while n_bytes > 0:
        got = len(stream.read(min(n_bytes, _CHUNK)))
        if not got:
            return
        n_bytes -= got


def _uint8_header(stream, path):
    """Parse the header of an IDX file of uint8 images; return (shape, header bytes)."""
    magic = stream.read(4)
    dims = stream.read(4 * magic[3])
    if len(dims) != 4 * magic[3]:
        raise KMIError(f"IDX file {path} is truncated: it ends inside the dimensions")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    if len(shape) == 4 and shape[3] not in (1, 3):
        raise KMIError(f"{path}: images must be (n, H, W) or (n, H, W, 3), got {shape}")
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]  # one channel: the same bytes as gray (n, H, W)
    if len(shape) >= 3 and 0 in shape[1:3]:
        raise KMIError(f"{path}: images must be at least 1x1 pixels, got shape {shape}")
    return shape, 4 + 4 * magic[3]


def _read_idx_labels(labels_path, images_path, n_images):
    """Read and check an IDX labels file against its images file; int64 labels (n_images,)."""
    raw = read_idx(labels_path)
    if raw.ndim != 1:
        raise KMIError(f"{labels_path} is not a labels file: shape {raw.shape}, expected (n,)")
    if len(raw) != n_images:
        raise KMIError(f"{labels_path} has {len(raw)} labels but {images_path} has {n_images} "
                       f"images")
    return check_labels(raw, n_images, str(labels_path)).astype(np.int64)
