"""Chunked image sources: read a collection in batches without loading all of it.

:func:`open_source` turns a dataset name or a path into a source object that knows its size,
image shape and labels up front and yields uint8 images batch by batch:

- a Zarr store written by :func:`convert_to_zarr` (``images``, ``labels``, metadata): random
  access by chunk, and :meth:`ZarrSource.to_dask` for a cluster to read in parallel;
- uncompressed IDX files and ``.npy`` files of uint8 images: memory-mapped, random access
  (``.npy`` files of other types are loaded whole, to be scaled as one array);
- gzip-compressed IDX files: decompressed as a stream, front to back;
- image folders (one sub-folder per class, or flat): files listed once, decoded per batch;
- dataset names ("mnist", "fashion-mnist", "digits") and ``.npz`` files, which are small or
  cannot be memory-mapped: loaded whole by :func:`~kmeans_imagery.datasets.load_dataset`.

Memory of a pass over a source is one batch (plus the labels, one small integer per image),
whatever the number of images.
"""

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .datasets import find_idx_files, iter_image_files, load_dataset, load_images, parse_size
from .datasets.convert import check_color, check_labels, conform_images
from .datasets.folders import open_progress
from .datasets.idx import IDX_DTYPES
from .errors import KMIError

__all__ = [
    "ArraySource",
    "ImageSource",
    "Batch",
    "FolderSource",
    "GzipIdxSource",
    "MemmapSource",
    "ZarrSource",
    "convert_to_zarr",
    "open_source",
]

ZARR_FORMAT = "kmeans-imagery-images"
ZARR_FORMAT_VERSION = 1
#: Images per Zarr chunk written by :func:`convert_to_zarr` (6.4 MB of 28x28 images).
DEFAULT_CHUNK = 8192
_SPLITS = ("train", "test")


class Batch(NamedTuple):
    """Consecutive images of a source.

    Attributes
    ----------
    start : int
        Index of the first image in the source.
    images : ndarray of uint8, shape (b, H, W) or (b, H, W, 3)
    labels : ndarray of shape (b,) or None
        Labels of these images, None when the source has none.
    """

    start: int
    images: np.ndarray
    labels: np.ndarray | None


class ImageSource:
    """What every source offers; subclasses set the attributes and implement ``_read`` (or,
    front-to-back sources, ``iter_batches`` with ``random_access = False``).

    Attributes
    ----------
    name : str
        Dataset or file name.
    n_images : int
    image_shape : tuple
        (H, W) for gray, (H, W, 3) for rgb.
    label_names : tuple of str or None
        Display names of integer labels 0..C-1.
    random_access : bool
        Whether :meth:`read` can fetch any range cheaply (False for gzip streams).
    """

    random_access = True
    label_names = None
    #: The file of each image, in order, for sources read from files (None otherwise).
    paths = None

    def __init__(self, color=None, size=None):
        self._color = None if color is None else check_color(color)
        self._size = parse_size(size)

    def _shape_after(self, stored_shape):
        """Image shape once ``color`` and ``size`` are applied to images of ``stored_shape``."""
        shape = tuple(stored_shape)
        if self._size is not None:
            shape = (*self._size, *shape[2:])
        if self._color == "gray":
            shape = shape[:2]
        elif self._color == "rgb":
            shape = (*shape[:2], 3)
        return shape

    def _conform(self, images):
        if self._color is None and self._size is None:
            return images
        return conform_images(images, self._color or ("rgb" if images.ndim == 4 else "gray"),
                              self._size)

    @property
    def labels(self):
        """All labels, shape (n_images,), loaded on first use; None when the source has none."""
        if not hasattr(self, "_labels_cache"):
            self._labels_cache = self._load_labels()
        return self._labels_cache

    def _load_labels(self):
        return None

    def _labels_slice(self, start, stop):
        labels = self.labels
        return None if labels is None else labels[start:stop]

    def read(self, start, stop):
        """Images ``start`` to ``stop`` (exclusive), as a uint8 array.

        Returns
        -------
        images : ndarray of uint8, shape (stop - start, H, W[, 3])
        """
        if not self.random_access:
            raise KMIError(
                f"{self.name} can only be read front to back; convert it with "
                f"`kmi convert {self.name} DEST.zarr` for random access"
            )
        start, stop = max(0, int(start)), min(self.n_images, int(stop))
        return self._conform(self._read(start, stop))

    def iter_batches(self, batch_size, *, start=0, stop=None):
        """Yield consecutive batches of images (and labels), in order.

        Parameters
        ----------
        batch_size : int
            Images per batch; the last batch may be shorter.
        start, stop : int
            Range of images to visit; ``stop=None`` means to the end.

        Yields
        ------
        Batch
        """
        batch_size = _check_batch_size(batch_size)
        stop = self.n_images if stop is None else min(stop, self.n_images)
        for s in range(start, stop, batch_size):
            e = min(s + batch_size, stop)
            yield Batch(s, self.read(s, e), self._labels_slice(s, e))

    def take(self, indices, *, batch_size=DEFAULT_CHUNK):
        """Images at the given sorted indices (a random sample, say), reading only what is needed.

        Parameters
        ----------
        indices : ndarray of int, shape (m,)
            Sorted, in ``[0, n_images)``.
        batch_size : int
            Images read at once by sources that stream.

        Returns
        -------
        images : ndarray of uint8, shape (m, H, W[, 3])
        """
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.image_shape), dtype=np.uint8)
        if self.random_access:
            # Group the wanted rows by block so that each block is read once.
            blocks = indices // batch_size
            for block in np.unique(blocks):
                pick = np.flatnonzero(blocks == block)
                s = int(block) * batch_size
                out[pick] = self.read(s, s + batch_size)[indices[pick] - s]
            return out
        filled = 0
        for batch in self.iter_batches(batch_size):
            e = batch.start + len(batch.images)
            hi = np.searchsorted(indices, e)
            out[filled:hi] = batch.images[indices[filled:hi] - batch.start]
            filled = hi
            if filled == len(indices):
                break
        return out

    def to_dask(self, chunk_size=DEFAULT_CHUNK):
        """The images as a lazy ``dask.array`` of shape (n_images, H, W[, 3]), uint8.

        Each chunk is read by the worker that needs it; the graph holds no image data.
        """
        da, delayed = _dask()
        if not self.random_access:
            raise KMIError(
                f"{self.name} is a gzip stream and cannot be read in parallel; convert it with "
                f"`kmi convert {self.name} DEST.zarr` first"
            )
        chunk_size = _check_batch_size(chunk_size)
        read = delayed(_read_range, pure=True)
        parts = [
            da.from_delayed(read(self, s, min(s + chunk_size, self.n_images)),
                            shape=(min(chunk_size, self.n_images - s), *self.image_shape),
                            dtype=np.uint8)
            for s in range(0, self.n_images, chunk_size)
        ]
        return da.concatenate(parts, axis=0)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, n_images={self.n_images}, " \
               f"image_shape={self.image_shape})"


def _read_range(source, start, stop):
    return source.read(start, stop)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise KMIError(f"batch size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _dask():
    try:
        import dask.array as da
        from dask import delayed
    except ImportError:
        raise KMIError(
            "dask is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    return da, delayed


class ArraySource(ImageSource):
    """Images already in memory (a named dataset, an ``.npz`` file, or any uint8 array).

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    labels : ndarray of shape (n,) or None
    name : str
    label_names : sequence of str or None
    """

    def __init__(self, images, labels=None, *, name="array", label_names=None):
        super().__init__()
        self._images = images
        self._labels_cache = labels
        self.name = name
        self.n_images = len(images)
        self.image_shape = tuple(images.shape[1:])
        self.label_names = None if label_names is None else tuple(label_names)

    def _read(self, start, stop):
        return self._images[start:stop]

    def to_dask(self, chunk_size=DEFAULT_CHUNK):
        """The images as a ``dask.array`` (the data travels inside the graph)."""
        da, _ = _dask()
        return da.from_array(self._images, chunks=(_check_batch_size(chunk_size),
                                                   *self.image_shape))


class MemmapSource(ImageSource):
    """uint8 images in an uncompressed file (``.npy`` or raw IDX), memory-mapped.

    The map is opened on first read and dropped when the source is pickled (sent to a dask
    worker), so only the path travels.

    Parameters
    ----------
    path : Path
    offset : int
        Bytes before the first pixel.
    shape : tuple
        (n, H, W[, 3]).
    labels_path : Path or None
        IDX labels file, read when the labels are first needed.
    """

    def __init__(self, path, offset, shape, *, labels_path=None, name=None, color=None,
                 size=None):
        super().__init__(color, size)
        self.path = Path(path)
        self._offset = int(offset)
        self._stored_shape = tuple(shape)
        self._labels_path = labels_path
        self.name = name or self.path.name
        self.n_images = shape[0]
        self.image_shape = self._shape_after(shape[1:])
        self._map = None

    def _read(self, start, stop):
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._offset,
                                  shape=self._stored_shape)
        return np.array(self._map[start:stop])

    def _load_labels(self):
        return None if self._labels_path is None else _read_idx_labels(self._labels_path,
                                                                      self.n_images)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_map"] = None
        state.pop("_labels_cache", None)
        return state


class GzipIdxSource(ImageSource):
    """A gzip-compressed IDX images file, decompressed as a stream (front to back only).

    Parameters
    ----------
    path : Path
    labels_path : Path or None
    """

    random_access = False

    def __init__(self, path, *, labels_path=None, name=None, color=None, size=None):
        super().__init__(color, size)
        self.path = Path(path)
        self._labels_path = labels_path
        self.name = name or self.path.name
        with _open_gzip(self.path) as stream:
            shape, _ = _idx_header(stream, self.path)
        self.n_images = shape[0]
        self._stored_shape = shape
        self.image_shape = self._shape_after(shape[1:])

    def _load_labels(self):
        return None if self._labels_path is None else _read_idx_labels(self._labels_path,
                                                                      self.n_images)

    def iter_batches(self, batch_size, *, start=0, stop=None):
        """Yield consecutive batches, decompressing the file once, front to back."""
        batch_size = _check_batch_size(batch_size)
        stop = self.n_images if stop is None else min(stop, self.n_images)
        image_bytes = int(np.prod(self._stored_shape[1:]))
        try:
            with _open_gzip(self.path) as stream:
                _idx_header(stream, self.path)
                if start:
                    _skip(stream, start * image_bytes)
                for s in range(start, stop, batch_size):
                    e = min(s + batch_size, stop)
                    data = stream.read((e - s) * image_bytes)
                    if len(data) != (e - s) * image_bytes:
                        raise KMIError(f"IDX file {self.path} is truncated: it ends inside image "
                                       f"{s + len(data) // image_bytes}")
                    images = np.frombuffer(data, np.uint8).reshape(e - s, *self._stored_shape[1:])
                    yield Batch(s, self._conform(images), self._labels_slice(s, e))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise KMIError(f"IDX file {self.path} is a truncated or corrupt gzip stream "
                           f"({exc})") from None


def _open_gzip(path):
    try:
        return gzip.open(path, "rb")
    except OSError as exc:
        raise KMIError(f"cannot read IDX file {path}: {exc}") from None


def _skip(stream, n_bytes):
    while n_bytes > 0:
        got = len(stream.read(min(n_bytes, 1 << 22)))
        if not got:
            return
        n_bytes -= got


def _idx_header(stream, path):
    """Parse an IDX header of uint8 images; return (shape, header length in bytes)."""
    magic = stream.read(4)
    if len(magic) != 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES or magic[3] == 0:
        raise KMIError(f"{path} is not an IDX file (magic number {magic.hex()})")
    if IDX_DTYPES[magic[2]] != np.dtype(np.uint8) or magic[3] not in (3, 4):
        raise KMIError(
            f"{path} holds {IDX_DTYPES[magic[2]]} values in {magic[3]} dimensions; a streamed "
            f"IDX images file must hold uint8 images (n, H, W) or (n, H, W, 3)"
        )
    dims = stream.read(4 * magic[3])
    if len(dims) != 4 * magic[3]:
        raise KMIError(f"IDX file {path} is truncated: it ends inside the dimensions")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    if len(shape) == 4 and shape[3] not in (1, 3):
        raise KMIError(f"{path}: images must be (n, H, W) or (n, H, W, 3), got {shape}")
    if len(shape) == 4 and shape[3] == 1:
        raise KMIError(f"{path}: single-channel 4-D images (n, H, W, 1) cannot be streamed; "
                       f"load them with kmi fit without --stream")
    return shape, 4 + 4 * magic[3]


def _read_idx_labels(path, n_images):
    from .datasets import read_idx

    raw = read_idx(path)
    if raw.ndim != 1:
        raise KMIError(f"{path} is not a labels file: shape {raw.shape}, expected (n,)")
    return check_labels(raw, n_images, str(path)).astype(np.int64)


class ZarrSource(ImageSource):
    """A Zarr store written by :func:`convert_to_zarr`: ``images``, ``labels`` and metadata.

    Parameters
    ----------
    path : Path
        The store (a folder, conventionally ending in ``.zarr``).
    """

    def __init__(self, path, *, color=None, size=None):
        super().__init__(color, size)
        zarr = _zarr()
        self.path = Path(path)
        try:
            group = zarr.open_group(str(self.path), mode="r")
            attrs = dict(group.attrs)
            images = group["images"]
        except (KeyError, FileNotFoundError, ValueError, TypeError) as exc:
            raise KMIError(f"{path} is not an image store written by kmi convert ({exc})") from None
        if attrs.get("format") != ZARR_FORMAT:
            raise KMIError(f"{path} is not an image store written by kmi convert "
                           f"(no {ZARR_FORMAT!r} metadata)")
        if attrs.get("format_version", 0) > ZARR_FORMAT_VERSION:
            raise KMIError(f"{path} was written by a newer kmeans-imagery; upgrade to read it")
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise KMIError(f"{path}: images must be uint8 (n, H, W[, 3]), got {images.dtype} "
                           f"{images.shape}")
        self._images = images
        self._group = group
        self._classes = attrs.get("classes")
        self.name = attrs.get("name") or self.path.stem
        self.label_names = None if attrs.get("label_names") is None else tuple(attrs["label_names"])
        self.n_images = images.shape[0]
        self.image_shape = self._shape_after(images.shape[1:])
        #: Images per stored chunk: reads aligned on it decompress each chunk once.
        self.chunk_size = images.chunks[0]

    def _read(self, start, stop):
        return self._images[start:stop]

    def _decode_labels(self, codes):
        if self._classes is None:
            return codes.astype(np.int64)
        return np.asarray(self._classes)[codes]

    def _load_labels(self):
        if "labels" not in self._group:
            return None
        return self._decode_labels(self._group["labels"][:])

    def _labels_slice(self, start, stop):
        if hasattr(self, "_labels_cache"):
            return super()._labels_slice(start, stop)
        if "labels" not in self._group:
            return None
        return self._decode_labels(self._group["labels"][start:stop])

    def iter_batches(self, batch_size=None, *, start=0, stop=None):
        """Yield consecutive batches; ``batch_size=None`` means the stored chunk size."""
        return super().iter_batches(batch_size or self.chunk_size, start=start, stop=stop)

    def to_dask(self, chunk_size=None):
        """The images as a lazy ``dask.array`` read straight from the store by each worker.

        Parameters
        ----------
        chunk_size : int or None
            Images per dask chunk, rounded to a multiple of the stored chunk size so that no
            stored chunk is decompressed twice; None means the stored chunk size.
        """
        da, _ = _dask()
        step = self.chunk_size
        size = step if chunk_size is None else max(step, round(chunk_size / step) * step)
        array = da.from_zarr(str(self.path), component="images",
                             chunks=(size, *self._images.shape[1:]))
        if self._color is None and self._size is None:
            return array
        return array.map_blocks(self._conform, dtype=np.uint8,
                                chunks=(array.chunks[0], *((s,) for s in self.image_shape)))

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_labels_cache", None)
        return state


def _zarr():
    try:
        import zarr
    except ImportError:
        raise KMIError(
            "zarr is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    return zarr


class FolderSource(ImageSource):
    """A folder of image files, decoded batch by batch.

    With one sub-folder per class, the sub-folder names are the labels (as in
    :func:`~kmeans_imagery.datasets.load_dataset`); a flat folder has no labels. Every image
    is converted to ``color`` and, with ``size``, resized; without ``size`` all images must
    have the size of the first one.

    Parameters
    ----------
    folder : Path
    color : {"gray", "rgb"}
    size : None, "HxW", int or (H, W)
    """

    def __init__(self, folder, *, color="gray", size=None):
        super().__init__(color, size)
        self.path = Path(folder)
        self.name = self.path.resolve().name
        self.files, self._labels_cache = _list_folder(self.path)
        self.n_images = len(self.files)
        first = load_images(self.files[:1], color=self._color, size=self._size).images
        # Later batches are decoded to this size so that every batch has the same shape.
        self._decode_size = self._size or first.shape[1:3]
        self.image_shape = tuple(first.shape[1:])

    @property
    def paths(self):
        """The image files in order: image ``i`` was read from ``paths[i]``."""
        return self.files

    def _read(self, start, stop):
        return load_images(self.files[start:stop], color=self._color,
                           size=self._decode_size if self._size else None).images

    def read(self, start, stop):
        """Decode files ``start`` to ``stop``; every image must have the first image's size."""
        images = super().read(start, stop)
        if images.shape[1:] != self.image_shape:
            raise KMIError(
                f"images in {self.path} differ in size: {self.files[0]} is "
                f"{'x'.join(map(str, self.image_shape[:2]))} but some of files {start}..{stop} "
                f"are {'x'.join(map(str, images.shape[1:3]))}; pass --size HxW to resize them all"
            )
        return images


def _list_folder(folder):
    """Image files of a folder and their labels (sub-folder names), without decoding them."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise KMIError(f"cannot list folder {folder}: {exc.strerror}") from None
    classes, top = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = list(iter_image_files(entry.path))
            if files:
                classes.append((entry.name, files))
        else:
            top.extend(iter_image_files(entry.path))
    if classes:
        files = [path for _, class_files in classes for path in class_files]
        labels = np.array([name for name, class_files in classes for _ in class_files])
        return files, labels
    if not top:
        raise KMIError(f"no image files in folder {folder}")
    return top, None


def open_source(path_or_name, *, split="train", data_dir=None, color=None, size=None):
    """Open a dataset name or path as a chunked source.

    Parameters
    ----------
    path_or_name : str or path-like
        A Zarr store from :func:`convert_to_zarr`; an IDX folder (uncompressed files are
        memory-mapped, gzip files streamed) or one IDX images file; a ``.npy`` file (uint8
        images memory-mapped, other types loaded); an image folder; or a dataset name
        ("mnist", "fashion-mnist", "digits") or ``.npz`` file, which are loaded into memory.
    split : {"train", "test"}
        Which split of an IDX folder, named dataset or ``.npz`` file.
    data_dir : path-like or None
        Where to look for named datasets first (see :func:`~kmeans_imagery.datasets.load_dataset`).
    color : {"gray", "rgb"} or None
        Convert every batch to this colour mode; None keeps the stored one (folders: gray).
    size : None, "HxW", int or (H, W)
        Resize every image to this size.

    Returns
    -------
    source
        A :class:`ZarrSource`, :class:`MemmapSource`, :class:`GzipIdxSource`,
        :class:`FolderSource` or :class:`ArraySource`.

    Raises
    ------
    KMIError
        For a missing path, an unknown format, or a split the data lacks.
    """
    if split not in _SPLITS:
        raise KMIError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(path_or_name, str) and path_or_name.lower() in ("mnist", "fashion-mnist",
                                                                 "digits"):
        return _loaded(path_or_name, split, data_dir, color, size)
    path = Path(path_or_name)
    if not path.exists():
        raise KMIError(f"{path} does not exist (expected a .zarr store, an IDX folder or file, "
                       f"an image folder, a .npy/.npz file, or a dataset name)")
    if path.is_dir() and is_zarr_store(path):
        return ZarrSource(path, color=color, size=size)
    if path.is_dir():
        files = find_idx_files(path)
        if files["train_images"] is not None:
            images, labels = files[f"{split}_images"], files[f"{split}_labels"]
            if images is None:
                raise KMIError(f"{path} has no {split} images file")
            return _idx_source(images, labels, f"{path.resolve().name}-{split}", color, size)
        if split != "train":
            raise KMIError(f"image folder {path} has no {split} split")
        return FolderSource(path, color=color or "gray", size=size)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy_source(path, color, size)
    if suffix == ".npz":
        return _loaded(path, split, None, color, size)
    if "idx" in path.name.lower():
        return _idx_source(path, None, path.name, color, size)
    raise KMIError(f"{path} is not a supported source: expected a .zarr store, an IDX file or "
                   f"folder, an image folder, or a .npy/.npz file")


def is_zarr_store(path):
    """Whether a folder is a Zarr store (by name or by its metadata file)."""
    return path.suffix.lower() == ".zarr" or (path / "zarr.json").is_file() or (
        path / ".zgroup"
    ).is_file()


def _loaded(name_or_path, split, data_dir, color, size):
    dataset = load_dataset(name_or_path, data_dir, color=color or "gray", size=size)
    if split == "test":
        if dataset.test_images is None:
            raise KMIError(f"dataset {dataset.name!r} has no test split")
        images, labels = dataset.test_images, dataset.test_labels
    else:
        images, labels = dataset.train_images, dataset.train_labels
    return ArraySource(images, labels, name=f"{dataset.name}-{split}" if dataset.test_images
                       is not None else dataset.name, label_names=dataset.label_names)


def _idx_source(images_path, labels_path, name, color, size):
    with open(images_path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    if compressed:
        return GzipIdxSource(images_path, labels_path=labels_path, name=name, color=color,
                             size=size)
    with open(images_path, "rb") as raw:
        shape, offset = _idx_header(raw, images_path)
    expected = offset + int(np.prod(shape))
    if os.path.getsize(images_path) != expected:
        raise KMIError(f"IDX file {images_path} has {os.path.getsize(images_path)} bytes but its "
                       f"header (shape {shape}) declares {expected}")
    return MemmapSource(images_path, offset, shape, labels_path=labels_path, name=name,
                        color=color, size=size)


def _npy_source(path, color, size):
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise KMIError(f"{path} is not a valid .npy file of images ({exc})") from None
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array.reshape(array.shape[:3])
    if array.dtype != np.uint8 or not array.flags.c_contiguous:
        # Other pixel types need the whole array to choose their scale ([0, 1] or [0, 255]).
        return _loaded(path, "train", None, color, size)
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)):
        raise KMIError(f"{path}: images must have shape (n, H, W) or (n, H, W, 3), got "
                       f"{array.shape}")
    return MemmapSource(path, array.offset, array.shape, name=path.name, color=color, size=size)


def convert_to_zarr(src, dest, *, chunk_size=DEFAULT_CHUNK, split="train", data_dir=None,
                    color=None, size=None, force=False, progress=None):
    """Write any supported input as a chunked Zarr image store, atomically.

    The store holds ``images`` (uint8, shape (n, H, W[, 3]), chunks of ``chunk_size`` images,
    zstd-compressed), ``labels`` (int64, or int32 codes into the ``classes`` attribute for
    string labels) when the source has labels, and attributes ``format``, ``format_version``,
    ``name``, ``image_shape``, ``n_images``, ``label_names`` and ``classes``. It is built in a
    temporary folder beside ``dest`` and renamed into place, so an interrupted conversion never
    leaves a partial store under ``dest``.

    Parameters
    ----------
    src : str, path-like or source
        Anything :func:`open_source` accepts, or an open source.
    dest : path-like
        The store to create (conventionally ending in ``.zarr``).
    chunk_size : int
        Images per chunk.
    split, data_dir, color, size
        As in :func:`open_source`.
    force : bool
        Replace an existing ``dest``.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    ZarrSource
        The new store, opened.
    """
    zarr = _zarr()
    chunk_size = _check_batch_size(chunk_size)
    source = src if isinstance(src, ImageSource) else open_source(
        src, split=split, data_dir=data_dir, color=color, size=size)
    dest = Path(dest)
    if dest.exists() and not force:
        raise KMIError(f"{dest} already exists; use --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        group = zarr.open_group(str(tmp), mode="w")
        images = group.create_array("images", shape=(source.n_images, *source.image_shape),
                                    chunks=(chunk_size, *source.image_shape), dtype="uint8")
        labels_array, classes = None, None
        with open_progress(progress, source.n_images, f"converting {source.name}") as bar:
            for batch in source.iter_batches(chunk_size):
                e = batch.start + len(batch.images)
                images[batch.start:e] = batch.images
                if batch.labels is not None:
                    if labels_array is None:
                        classes = _string_classes(source)
                        labels_array = group.create_array(
                            "labels", shape=(source.n_images,), chunks=(chunk_size,),
                            dtype="int64" if classes is None else "int32")
                    labels_array[batch.start:e] = (
                        batch.labels if classes is None else np.searchsorted(classes, batch.labels)
                    )
                bar.advance(len(batch.images))
        group.attrs.update({
            "format": ZARR_FORMAT,
            "format_version": ZARR_FORMAT_VERSION,
            "name": source.name,
            "image_shape": list(source.image_shape),
            "n_images": source.n_images,
            "label_names": None if source.label_names is None else list(source.label_names),
            "classes": None if classes is None else [str(c) for c in classes],
        })
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ZarrSource(dest)


def _string_classes(source):
    """Sorted class names when the source's labels are strings, else None."""
    labels = source.labels
    if labels is None or labels.dtype.kind not in "US":
        return None
    return np.unique(labels)

