"""Zarr image stores: the chunked format a cluster reads in parallel (``kmi convert`` writes it).

A store holds ``images`` (uint8, (n, H, W[, 3]), chunks of images, zstd-compressed), ``labels``
(int64, or int32 codes into the ``classes`` attribute for string labels) when the source has
labels, ``paths`` (strings: each image's file, absolute) when it was read from image files, and
attributes ``format``, ``format_version``, ``name``, ``image_shape``, ``n_images``,
``label_names`` and ``classes``. Reads decompress whole chunks and keep none of them.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import KMIError
from ..progress import open_progress
from ._source import DEFAULT_CHUNK, ImageSource, check_batch_size, dask_modules

__all__ = ["ZarrSource", "convert_to_zarr", "is_zarr_store"]

_FORMAT = "kmeans-imagery-images"
_FORMAT_VERSION = 1


class ZarrSource(ImageSource):
    """A Zarr store written by :func:`convert_to_zarr`: ``images``, ``labels`` and metadata.

    ``to_dask`` reads straight from the store on each worker.

    Parameters
    ----------
    path : path-like
        The store (a folder, conventionally ending in ``.zarr``).
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Raises
    ------
    KMIError
        When zarr is not installed (the ``scale`` extra), or ``path`` is not a store that
        :func:`convert_to_zarr` wrote (or was written by a newer version).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets import ZarrSource, convert_to_zarr, open_source
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = convert_to_zarr(open_source("digits"), Path(folder) / "digits.zarr", chunk_size=500)
    ...     store = ZarrSource(Path(folder) / "digits.zarr")
    ...     print(store.name, store.n_images, store.chunk_size, store.labels[:5])
    ...     print([len(batch.images) for batch in store.iter_batches()])
    digits-train 1437 500 [3 9 1 3 1]
    [500, 500, 437]
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
        if attrs.get("format") != _FORMAT:
            raise KMIError(f"{path} is not an image store written by kmi convert "
                           f"(no {_FORMAT!r} metadata)")
        if attrs.get("format_version", 0) > _FORMAT_VERSION:
            raise KMIError(f"{path} was written by a newer kmeans-imagery; upgrade to read it")
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (
                images.ndim == 4 and images.shape[3] != 3):
            raise KMIError(f"{path}: images must be uint8 (n, H, W[, 3]), got {images.dtype} "
                           f"{images.shape}")
        for extra in ("paths", "labels"):
            stored = group[extra].shape if extra in group else images.shape[:1]
            if stored != images.shape[:1]:
                held = f"{stored[0]:,} entries" if len(stored) == 1 else f"shape {stored}"
                raise KMIError(f"{path} is damaged: its {extra} array has {held} for "
                               f"{images.shape[0]:,} images")
        self._images = images
        self._group = group
        self._stored_paths = group["paths"] if "paths" in group else None
        self._classes = attrs.get("classes")
        self.name = attrs.get("name") or self.path.stem
        self.origin = str(self.path)
        self.label_names = None if attrs.get("label_names") is None else tuple(attrs["label_names"])
        self.n_images = images.shape[0]
        self.image_shape = self._shape_after(images.shape[1:])
        #: Images per stored chunk: reads aligned on it decompress each chunk once.
        self.chunk_size = images.chunks[0]

    @property
    def paths(self):
        """The file each image was read from, when the store was converted from image files."""
        if self._stored_paths is None:
            return None
        if not hasattr(self, "_paths_cache"):
            self._paths_cache = [Path(path) for path in self._stored_paths[:]]
        return self._paths_cache

    def _read_batch(self, start, stop):
        batch = super()._read_batch(start, stop)
        if self._stored_paths is None:
            return batch
        return batch._replace(paths=[Path(path) for path in self._stored_paths[start:stop]])

    def _read(self, start, stop):
        try:
            return self._images[start:stop]
        except Exception as exc:  # noqa: BLE001 - each codec raises its own types
            raise KMIError(f"cannot read images {start:,}-{stop:,} of {self.path}: the store is "
                           f"damaged ({' '.join(str(exc).split()) or type(exc).__name__}); "
                           f"convert it again") from None

    def _decode_labels(self, codes):
        if self._classes is None:
            return codes.astype(np.int64)
        if len(codes) and (codes.min() < 0 or codes.max() >= len(self._classes)):
            raise KMIError(f"{self.path} is damaged: its labels hold codes outside its "
                           f"{len(self._classes)} classes; convert it again")
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
        da, _ = dask_modules()
        step = self.chunk_size
        size = step if chunk_size is None else max(step, round(chunk_size / step) * step)
        array = da.from_zarr(str(self.path), component="images",
                             chunks=(size, *self._images.shape[1:]))
        if self._color is None and self._size is None:
            return array
        # Colour to gray drops the channel axis, gray to colour adds one: dask must be told.
        ndim = 1 + len(self.image_shape)
        axes = ({"drop_axis": list(range(ndim, array.ndim))} if ndim < array.ndim
                else {"new_axis": list(range(array.ndim, ndim))} if ndim > array.ndim else {})
        return array.map_blocks(self._conform, dtype=np.uint8,
                                chunks=(array.chunks[0], *((s,) for s in self.image_shape)),
                                **axes)

    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("_labels_cache") is not None:  # reloaded where unpickled; None stays none
            state.pop("_labels_cache")
        state.pop("_paths_cache", None)
        return state


def _zarr():
    try:
        import zarr
    except ImportError:
        raise KMIError(
            "zarr is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    return zarr


def is_zarr_store(path):
    """Whether a folder is a Zarr store (by name or by its metadata file).

    Parameters
    ----------
    path : Path
        A folder.

    Returns
    -------
    bool
        True when its name ends in ``.zarr`` or it holds ``zarr.json`` (Zarr 3) or ``.zgroup``
        (Zarr 2).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets import is_zarr_store
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     (Path(folder) / "zarr.json").touch()
    ...     print(is_zarr_store(Path(folder)), is_zarr_store(Path("scans.zarr")))
    True True
    """
    return path.suffix.lower() == ".zarr" or (path / "zarr.json").is_file() or (
        path / ".zgroup"
    ).is_file()


def convert_to_zarr(source, dest, *, chunk_size=DEFAULT_CHUNK, force=False, progress=None):
    """Write a source as a chunked Zarr image store, atomically.

    The store holds ``images`` (uint8, shape (n, H, W[, 3]), chunks of ``chunk_size`` images,
    zstd-compressed), ``labels`` (int64, or int32 codes into the ``classes`` attribute for
    string labels) when the source has labels, ``paths`` (each image's file, absolute) when it
    has files, and attributes ``format``, ``format_version``, ``name``, ``image_shape``,
    ``n_images``, ``label_names`` and ``classes``. Files skipped as unreadable (``skip_bad``)
    leave no image behind. It is built in a
    temporary folder beside ``dest`` and renamed into place, so an interrupted conversion never
    leaves a partial store under ``dest``.

    Parameters
    ----------
    source : ImageSource
        From :func:`~kmeans_imagery.datasets.open_source`.
    dest : path-like
        The store to create (conventionally ending in ``.zarr``).
    chunk_size : int
        Images per chunk.
    force : bool
        Replace an existing store at ``dest`` (an empty folder is replaced without it; any other
        file or folder never is).
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    ZarrSource
        The new store, opened.

    Raises
    ------
    KMIError
        When zarr is not installed, ``dest`` exists without ``force`` or is not a store, or
        ``source`` is not a source.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import ArraySource, convert_to_zarr
    >>> images = np.zeros((10, 8, 8), np.uint8)
    >>> source = ArraySource(images, np.array(["cat", "dog"] * 5), name="pets")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = convert_to_zarr(source, Path(folder) / "pets.zarr", chunk_size=4)
    ...     print(store.n_images, store.image_shape, store.chunk_size, store.labels[:3])
    10 (8, 8) 4 ['cat' 'dog' 'cat']
    """
    zarr = _zarr()
    chunk_size = check_batch_size(chunk_size)
    if not isinstance(source, ImageSource):
        raise KMIError(f"source must be an open source (see open_source), got {source!r}")
    dest = Path(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        if not force:
            raise KMIError(f"{dest} already exists; use force=True to replace it")
        # force deletes what it replaces: never the source's images or another folder of files.
        if not ((dest / "zarr.json").is_file() or (dest / ".zgroup").is_file()):
            raise KMIError(f"{dest} is not a Zarr store: force=True replaces only a store, never "
                           f"another file or folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        group = zarr.open_group(str(tmp), mode="w")
        images = group.create_array("images", shape=(source.n_images, *source.image_shape),
                                    chunks=(chunk_size, *source.image_shape), dtype="uint8")
        labels_array, paths_array, classes = None, None, None
        kept = 0  # images written: unreadable files skipped with skip_bad leave no gap
        with open_progress(progress, source.n_images, f"converting {source.display_name}") as bar:
            for batch in source.iter_batches(chunk_size):
                e = kept + len(batch.images)
                images[kept:e] = batch.images
                if batch.labels is not None:
                    if labels_array is None:
                        classes = _string_classes(source)
                        labels_array = group.create_array(
                            "labels", shape=(source.n_images,), chunks=(chunk_size,),
                            dtype="int64" if classes is None else "int32")
                    labels_array[kept:e] = (
                        batch.labels if classes is None else np.searchsorted(classes, batch.labels)
                    )
                if batch.paths is not None:
                    if paths_array is None:
                        paths_array = group.create_array("paths", shape=(source.n_images,),
                                                         chunks=(chunk_size,), dtype=str)
                    paths_array[kept:e] = [os.path.abspath(path) for path in batch.paths]
                kept = e
                bar.advance(len(batch.images))
        for array in (images, labels_array, paths_array):
            if array is not None and kept < array.shape[0]:
                array.resize((kept, *array.shape[1:]))
        group.attrs.update({
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "name": source.display_name,
            "image_shape": list(source.image_shape),
            "n_images": kept,
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

