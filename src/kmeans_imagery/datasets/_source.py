"""The one source interface every input format implements.

A source knows its size, image shape and labels up front and yields uint8 images batch by batch,
so the same code fits, predicts or converts a 1,797-image array and a 10,000,000-image store.
Each format's module (``idx``, ``folders``, ``arrays``, ``zarr``, ``named``) implements it once;
:func:`~kmeans_imagery.datasets.open_source` picks the reader and
:func:`~kmeans_imagery.datasets.load_dataset` reads a source whole.

Memory of a pass over a source is one batch (plus the labels, one small integer per image, and
for folders the list of file paths), whatever the number of images: readers use plain reads, not
memory maps, so no file pages stay mapped into the process after their batch.
"""

import copy
import shlex
import warnings
from typing import NamedTuple

import numpy as np

from ..errors import KMIError
from ..progress import open_progress
from .convert import auto_size, check_color, check_labels, conform_images, parse_size, to_uint8_images

#: Images per batch when a caller does not say (6.4 MB of 28x28 images).
DEFAULT_CHUNK = 8192


class Batch(NamedTuple):
    """Consecutive images of a source.

    Attributes
    ----------
    start : int
        Index of the first image in the source.
    images : ndarray of uint8, shape (b, H, W) or (b, H, W, 3)
    labels : ndarray of shape (b,) or None
        Labels of these images, None when the source has none.
    paths : list of Path, length b, or None
        The file of each image, for sources read from image files; None otherwise. With
        ``skip_bad``, unreadable files are absent, so a batch can hold fewer images than the
        range it covers.

    Examples
    --------
    >>> from kmeans_imagery.datasets import open_source
    >>> batch = open_source("digits").read_batch(10, 14)
    >>> batch.start, batch.images.shape, batch.labels, batch.paths
    (10, (4, 8, 8), array([3, 5, 1, 1]), None)
    """

    start: int
    images: np.ndarray
    labels: np.ndarray | None
    paths: list | None = None


class ImageSource:
    """What every source offers; subclasses set the attributes and implement ``_read_batch``
    (or, front-to-back sources, ``iter_batches`` with ``random_access = False``).

    Parameters
    ----------
    color : {"gray", "rgb"} or None
        Convert every image to this colour mode; None keeps the stored one.
    size : None, "auto", "HxW", int or (H, W)
        Resize every image to this size; None keeps the stored size (which must then agree);
        "auto" takes the images' size (a folder's median height and width), scaled down to at
        most :data:`~kmeans_imagery.datasets.convert.AUTO_SIDE` pixels on its longer side.

    Attributes
    ----------
    name : str
        Dataset or file name.
    split : {"train", "test"} or None
        The split of a dataset that has two; None for a single collection.
    n_images : int
        Images in the source (with ``skip_bad``, unreadable files included until read).
    image_shape : tuple
        (H, W) for gray, (H, W, 3) for rgb.
    label_names : tuple of str or None
        Display names of integer labels 0..C-1.
    paths : list of Path or None
        The file of each image, for image folders; None for sources without files per image.
    origin : str
        Where the data came from: a path, "downloaded" or "bundled".
    skipped : dict of str to int
        Files passed over (image folders): "hidden", "non_image", "unlabelled", and "bad" once
        unreadable files have been met with ``skip_bad``.
    random_access : bool
        Whether :meth:`read` can fetch any range cheaply (False for gzip streams).
    skips_bad : bool
        Whether unreadable files are skipped, so that a batch can hold fewer images than asked
        (image folders with ``skip_bad``).

    See Also
    --------
    kmeans_imagery.datasets.open_source : Opens any input as a source.

    Examples
    --------
    Every input, whatever its format, is read the same way:

    >>> import numpy as np
    >>> from kmeans_imagery.datasets import open_source
    >>> source = open_source("digits", split="test", color="rgb")
    >>> source
    ArraySource('digits-test', n_images=360, image_shape=(8, 8, 3))
    >>> sums = sum(batch.images.sum(axis=0, dtype=np.int64) for batch in source.iter_batches(100))
    >>> (sums / source.n_images).shape  # the mean image, one batch in memory at a time
    (8, 8, 3)
    >>> source.read(0, 5).shape, source.take([3, 200]).labels
    ((5, 8, 8, 3), array([7, 3]))
    """

    random_access = True
    skips_bad = False
    label_names = None
    paths = None
    split = None
    origin = ""

    def __init__(self, color=None, size=None):
        self._color = None if color is None else check_color(color)
        self._size = parse_size(size)
        self._size_asked = self._size is not None
        self.skipped = {}

    @property
    def resizes(self):
        """Whether images are read at a size asked for (given, or "auto", even where it keeps
        theirs): a model fitted on them reads new images at its size too."""
        return self._size_asked

    @property
    def display_name(self):
        """``name``, with the split when the dataset has two (``mnist-test``)."""
        return self.name if self.split is None else f"{self.name}-{self.split}"

    def _shape_after(self, stored_shape):
        """Image shape once ``color`` and ``size`` are applied to images of ``stored_shape``
        (which settles ``size="auto"``: every source calls this once it knows its shape)."""
        shape = tuple(stored_shape)
        if self._size == "auto":
            # Stored images share one size: "auto" can only scale them all down.
            scaled = auto_size(shape)
            self._size = scaled if scaled != shape[:2] else None
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

    def without_labels(self):
        """The same source, images in the same order, without labels.

        Returns
        -------
        ImageSource

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery.datasets import ArraySource
        >>> source = ArraySource(np.zeros((3, 2, 2), np.uint8), np.array([1, 1, 1]))
        >>> source.without_labels().labels is None, source.labels.tolist()
        (True, [1, 1, 1])
        """
        unlabelled = copy.copy(self)
        unlabelled._labels_cache = None
        return unlabelled

    def _labels_slice(self, start, stop):
        labels = self.labels
        return None if labels is None else labels[start:stop]

    def positions(self, batch):
        """Index in the source of each image of a batch from :meth:`iter_batches`.

        Returns
        -------
        ndarray of int64, shape (len(batch.images),)
        """
        return batch.start + np.arange(len(batch.images), dtype=np.int64)

    def _convert_command(self):
        """The ``kmi convert`` command that writes this source as a Zarr store: of the path it
        was opened from (a named dataset's folder, wherever it was found)."""
        split = " --split test" if self.split == "test" else ""
        return f"kmi convert {_quoted(self.origin or self.name)} DEST.zarr{split}"

    def image_names(self, positions):
        """A name for each image at ``positions`` of a source without files per image.

        ``ORIGIN#i``, or ``ORIGIN#SPLIT:i`` for a split (the origin, else the name): what
        ``kmi predict`` and ``kmi explore`` write for such images.

        Returns
        -------
        list of str
        """
        prefix = f"{self.origin or self.name}#{self.split + ':' if self.split else ''}"
        return [f"{prefix}{i}" for i in positions]

    def _read_batch(self, start, stop):
        """Batch of images ``start`` to ``stop``, already clipped to the source."""
        return Batch(start, self._conform(self._read(start, stop)),
                     self._labels_slice(start, stop))

    def read_batch(self, start, stop):
        """Images ``start`` to ``stop`` (exclusive) with their labels and paths.

        Returns
        -------
        Batch
        """
        if not self.random_access:
            raise KMIError(
                f"{self.display_name} can only be read front to back; convert it with "
                f"`{self._convert_command()}` for random access"
            )
        start, stop = max(0, int(start)), min(self.n_images, int(stop))
        return self._read_batch(start, stop)

    def read(self, start, stop):
        """Images ``start`` to ``stop`` (exclusive), as a uint8 array.

        Returns
        -------
        images : ndarray of uint8, shape (stop - start, H, W[, 3])
            Fewer images when unreadable files are skipped.
        """
        return self.read_batch(start, stop).images

    def iter_batches(self, batch_size, *, start=0, stop=None):
        """Yield consecutive batches of images (with labels and paths), in order.

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
        batch_size = check_batch_size(batch_size)
        stop = self.n_images if stop is None else min(stop, self.n_images)
        for s in range(start, stop, batch_size):
            yield self._read_batch(s, min(s + batch_size, stop))

    def read_all(self, *, batch_size=DEFAULT_CHUNK, progress=None):
        """The whole source in memory, read batch by batch into one array.

        Parameters
        ----------
        batch_size : int
        progress : callable or None
            ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

        Returns
        -------
        Batch
            ``start`` 0 and every image (unreadable files skipped with ``skip_bad``).
        """
        images = np.empty((self.n_images, *self.image_shape), dtype=np.uint8)
        labels, paths, kept = [], [], 0
        with open_progress(progress, self.n_images, f"reading {self.display_name}") as bar:
            for batch in self.iter_batches(batch_size):
                images[kept:kept + len(batch.images)] = batch.images
                kept += len(batch.images)
                labels.append(batch.labels)
                paths.append(batch.paths)
                bar.advance(min(batch_size, self.n_images - batch.start))
        if kept < len(images):
            images = images[:kept].copy()
        has_labels = bool(labels) and labels[0] is not None
        return Batch(0, images, np.concatenate(labels) if has_labels else None,
                     [p for part in paths for p in part] if paths and paths[0] is not None
                     else None)

    def take(self, indices, *, batch_size=DEFAULT_CHUNK):
        """Images at the given indices (a random sample, say), reading only what is needed.

        Parameters
        ----------
        indices : array-like of int, shape (m,)
            In ``[0, n_images)``, in any order, repeats allowed.
        batch_size : int
            Images read at once by sources that stream.

        Returns
        -------
        Batch
            ``start`` -1; the images, labels and paths at ``indices``, in their order
            (unreadable files skipped with ``skip_bad``).

        Raises
        ------
        KMIError
            For indices that are not integers in ``[0, n_images)``.
        """
        indices = np.asarray(indices)
        if indices.size == 0:
            indices = indices.astype(np.int64)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise KMIError(f"indices must be a 1-d sequence of integers, got {indices.dtype} "
                           f"shape {indices.shape}")
        indices = indices.astype(np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_images):
            raise KMIError(f"indices must lie in [0, {self.n_images}) for "
                           f"{self.display_name}, got {indices.min()}..{indices.max()}")
        batch_size = check_batch_size(batch_size)
        if self.random_access:
            return self._take(indices, batch_size)
        # One pass front to back reads the images in sorted order; then put them in the asked one.
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        parts = []
        for batch in self.iter_batches(batch_size):
            e = batch.start + len(batch.images)
            rows = ordered[(ordered >= batch.start) & (ordered < e)] - batch.start
            if len(rows):
                parts.append(_rows_of(batch, rows))
            if not len(ordered) or e > ordered[-1]:
                break
        return _rows_of(_concat(parts, self.image_shape), np.argsort(order))

    def _take(self, indices, batch_size):
        """:meth:`take` for random access: each block holding wanted images is read once."""
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        blocks = ordered // batch_size
        parts = []
        for block in np.unique(blocks):
            wanted = ordered[blocks == block]
            batch = self.read_batch(int(wanted[0]), int(wanted[-1]) + 1)
            parts.append(_rows_of(batch, wanted - batch.start))
        return _rows_of(_concat(parts, self.image_shape), np.argsort(order))

    def to_dask(self, chunk_size=DEFAULT_CHUNK):
        """The images as a lazy ``dask.array`` of shape (n_images, H, W[, 3]), uint8.

        Each chunk is read by the worker that needs it; the graph holds no image data.
        """
        da, delayed = dask_modules()
        if not self.random_access:
            raise KMIError(
                f"{self.display_name} is a gzip stream and cannot be read in parallel; convert "
                f"it with `{self._convert_command()}` first"
            )
        chunk_size = check_batch_size(chunk_size)
        read = delayed(_read_range, pure=True)
        parts = [
            da.from_delayed(read(self, s, min(s + chunk_size, self.n_images)),
                            shape=(min(chunk_size, self.n_images - s), *self.image_shape),
                            dtype=np.uint8)
            for s in range(0, self.n_images, chunk_size)
        ]
        return da.concatenate(parts, axis=0)

    def __repr__(self):
        return f"{type(self).__name__}({self.display_name!r}, n_images={self.n_images}, " \
               f"image_shape={self.image_shape})"


def _rows_of(batch, rows):
    """The rows ``rows`` of a batch, as a Batch with ``start`` -1."""
    return Batch(-1, batch.images[rows], None if batch.labels is None else batch.labels[rows],
                 None if batch.paths is None else [batch.paths[i] for i in rows])


def _concat(parts, image_shape):
    if not parts:
        return Batch(-1, np.empty((0, *image_shape), np.uint8), None, None)
    return Batch(
        -1, np.concatenate([p.images for p in parts]),
        None if parts[0].labels is None else np.concatenate([p.labels for p in parts]),
        None if parts[0].paths is None else [path for p in parts for path in p.paths],
    )


class ArraySource(ImageSource):
    """Images already in memory (a bundled dataset, an ``.npz`` file, or any uint8 array).

    Parameters
    ----------
    images : array-like of shape (n, H, W), (n, H, W, 1) or (n, H, W, 3)
        The images: uint8 arrays are kept, not copied; others are converted as array files are
        (bool to 0/255, other integers in 0..255, floats in [0, 1] scaled by 255 or in [0, 255];
        see :func:`~kmeans_imagery.datasets.convert.to_uint8_images`).
    labels : array-like of shape (n,) or None
        Their labels: integers or strings, one per image.
    name : str
        The source's name.
    label_names : sequence of str or None
        Display names of integer labels 0..C-1.
    split : {"train", "test"} or None
        The split, for a dataset that has two.
    origin : str
        Where the images came from.
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Raises
    ------
    KMIError
        For images of another shape or out of range, or labels of another length or kind.

    Examples
    --------
    Any uint8 array can go wherever a source is expected (fitting, predicting, converting):

    >>> import numpy as np
    >>> from kmeans_imagery.datasets import ArraySource
    >>> images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    >>> source = ArraySource(images, np.arange(50) % 5, name="tiles", color="gray", size=16)
    >>> source.image_shape, source.read(0, 10).shape, source.labels[:6]
    ((16, 16), (10, 16, 16), array([0, 1, 2, 3, 4, 0]))
    """

    def __init__(self, images, labels=None, *, name="array", label_names=None, split=None,
                 origin="", color=None, size=None):
        super().__init__(color, size)
        # A plain cast would make floats in [0, 1] black images; labels of another length would
        # misalign.
        images = to_uint8_images(np.asarray(images), f"{name} images")
        if labels is not None:
            labels = check_labels(np.asarray(labels), len(images), f"{name} labels")
        self._images = images
        self._labels_cache = labels
        self.name = name
        self.split = split
        self.origin = origin
        self.n_images = len(images)
        self.image_shape = self._shape_after(images.shape[1:])
        self.label_names = None if label_names is None else tuple(label_names)

    def _read(self, start, stop):
        return self._images[start:stop]

    def to_dask(self, chunk_size=DEFAULT_CHUNK):
        """The images as a ``dask.array`` (the data travels inside the graph)."""
        da, _ = dask_modules()
        images = self._conform(self._images)
        return da.from_array(images, chunks=(check_batch_size(chunk_size), *self.image_shape))


class ChainedSource(ImageSource):
    """Sources read one after another as one: both splits of a dataset (``split="all"``).

    Parameters
    ----------
    parts : sequence of ImageSource
        Opened with the same colour and size, without files per image; their images must agree
        in shape. The first gives the name, origin and label names; labels are kept when every
        part has them.

    Examples
    --------
    >>> from kmeans_imagery.datasets import open_source
    >>> digits = open_source("digits", split="all")
    >>> digits.display_name, digits.n_images, digits.labels.shape
    ('digits', 1797, (1797,))
    >>> digits.image_names([0, 1437])
    ['bundled#train:0', 'bundled#test:0']
    """

    def __init__(self, parts):
        super().__init__()
        self.parts = list(parts)
        first = self.parts[0]
        if len({part.image_shape for part in self.parts}) > 1:
            shapes = ", ".join(f"{part.display_name} {'x'.join(map(str, part.image_shape))}"
                               for part in self.parts)
            raise KMIError(f"images of {first.origin or first.name} differ in shape ({shapes}); "
                           f"give size=HxW")
        self.name, self.origin, self.label_names = first.name, first.origin, first.label_names
        self.image_shape = first.image_shape
        self.random_access = all(part.random_access for part in self.parts)
        self._offsets = np.cumsum([0] + [part.n_images for part in self.parts])
        self.n_images = int(self._offsets[-1])

    @property
    def resizes(self):
        return self.parts[0].resizes

    def _pieces(self, start, stop):
        """``(part, its offset, local start, local stop)`` for each part overlapping the range."""
        for part, offset in zip(self.parts, self._offsets, strict=False):
            lo, hi = max(start - offset, 0), min(stop - offset, part.n_images)
            if lo < hi:
                yield part, int(offset), int(lo), int(hi)

    def _load_labels(self):
        labels = [part.labels for part in self.parts]
        missing = [part.split or part.display_name
                   for part, part_labels in zip(self.parts, labels, strict=True)
                   if part_labels is None]
        if missing and len(missing) < len(self.parts):
            warnings.warn(f"the {' and '.join(missing)} split of {self.origin or self.name} has "
                          f"no labels, so it is read whole without labels", stacklevel=2)
        return None if missing else np.concatenate(labels)

    def _read_batch(self, start, stop):
        images = [part.read_batch(lo, hi).images for part, _, lo, hi in self._pieces(start, stop)]
        images = np.concatenate(images) if images else np.empty((0, *self.image_shape), np.uint8)
        return Batch(start, images, self._labels_slice(start, stop))

    def iter_batches(self, batch_size, *, start=0, stop=None):
        """As :meth:`ImageSource.iter_batches`; a source read front to back also ends a batch
        at the end of each part."""
        if self.random_access:
            yield from super().iter_batches(batch_size, start=start, stop=stop)
            return
        stop = self.n_images if stop is None else min(stop, self.n_images)
        for part, offset, lo, hi in self._pieces(start, stop):
            for batch in part.iter_batches(batch_size, start=lo, stop=hi):
                yield batch._replace(start=batch.start + offset,
                                     labels=None if self.labels is None else batch.labels)

    def _convert_command(self):
        return f"kmi convert {_quoted(self.origin or self.name)} DEST.zarr --split all"

    def image_names(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        owner = np.searchsorted(self._offsets, positions, side="right") - 1
        names = np.empty(len(positions), dtype=object)
        for i, (part, offset) in enumerate(zip(self.parts, self._offsets, strict=False)):
            mine = owner == i
            names[mine] = part.image_names(positions[mine] - offset)
        return names.tolist()


def read_stored_images(path, offset, stored_shape, start, stop):
    """Images ``start`` to ``stop`` of uint8 images stored uncompressed at ``offset`` in a file.

    A plain positioned read, not a memory map: only this batch's pages are ever resident.
    """
    image_bytes = int(np.prod(stored_shape[1:]))
    with open(path, "rb") as raw:
        raw.seek(offset + start * image_bytes)
        images = np.fromfile(raw, np.uint8, (stop - start) * image_bytes)
    if len(images) != (stop - start) * image_bytes:
        raise KMIError(f"{path} is truncated: it ends inside image {start + len(images) // image_bytes}")
    return images.reshape(stop - start, *stored_shape[1:])


def _read_range(source, start, stop):
    return source.read(start, stop)


def check_batch_size(batch_size):
    """Return ``batch_size`` as an int, or raise KMIError naming the parameter."""
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise KMIError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def dask_modules():
    """``(dask.array, dask.delayed)``, or a KMIError saying which extra to install."""
    try:
        import dask.array as da
        from dask import delayed
    except ImportError:
        raise KMIError(
            "dask is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    return da, delayed


def _quoted(path):
    """A path as a shell command line needs it."""
    return shlex.quote(str(path))
