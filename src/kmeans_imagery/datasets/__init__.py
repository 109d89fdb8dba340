"""Everything that turns an input into batches of uint8 images (with labels and file paths).

:func:`open_source` is the one place that dispatches on the kind of input. It accepts

- ``"mnist"`` and ``"fashion-mnist"`` (IDX files found or downloaded, :mod:`.named`) and
  ``"digits"`` (bundled with scikit-learn; works offline);
- a Zarr store written by :func:`convert_to_zarr` (:mod:`.zarr`);
- a folder of IDX files, or one IDX images file (:mod:`.idx`);
- a folder of images, one sub-folder per class or flat and unlabelled (:mod:`.folders`);
- a ``.npy`` or ``.npz`` file (:mod:`.arrays`),

and returns a source (:class:`ImageSource`): its size, image shape and labels up front, images
batch by batch. :func:`load_dataset` is a source read whole, with its test split. Every dataset
comes back as uint8 images, (n, H, W) gray or (n, H, W, 3) rgb. Any problem with the user's files
raises :class:`~kmeans_imagery.errors.KMIError` naming the file.

The optional ``progress`` argument shows progress while loading: a callable
``progress(total, description)`` returning a context manager whose value has an
``advance(n=1)`` method, for instance a thin wrapper around :class:`rich.progress.Progress`.
"""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import KMIError
from ._source import DEFAULT_CHUNK, ArraySource, Batch, ChainedSource, ImageSource
from .arrays import NpySource, open_array_file
from .convert import parse_size
from .folders import IMAGE_SUFFIXES, FolderSource, ImageBatch, iter_image_files, load_images
from .idx import IdxSource, find_idx_files, open_idx, open_idx_folder, read_idx, write_idx
from .named import DATASET_NAMES, is_dataset_name, open_named
from .registry import cache_dir
from .zarr import ZarrSource, convert_to_zarr, is_zarr_store

__all__ = [
    "DATASET_NAMES",
    "DEFAULT_CHUNK",
    "IMAGE_SUFFIXES",
    "ArraySource",
    "Batch",
    "ChainedSource",
    "Dataset",
    "FolderSource",
    "IdxSource",
    "ImageBatch",
    "ImageSource",
    "NpySource",
    "ZarrSource",
    "cache_dir",
    "convert_to_zarr",
    "find_idx_files",
    "is_zarr_store",
    "iter_image_files",
    "load_dataset",
    "load_images",
    "open_source",
    "parse_size",
    "read_idx",
    "with_test_split",
    "write_idx",
]

_SPLITS = ("train", "test", "all")


def open_source(path_or_name, *, split="train", data_dir=None, color=None, size=None,
                skip_bad=False, loose_images="skip", exclude=()):
    """Open a dataset name or path as a source, without reading its images.

    Parameters
    ----------
    path_or_name : str or path-like
        "mnist", "fashion-mnist" or "digits" (names win over same-named folders in the current
        folder; write ``./mnist`` for those); a Zarr store from :func:`convert_to_zarr`; an IDX
        folder or one IDX images file; an image folder; or a ``.npy`` / ``.npz`` file.
    split : {"train", "test", "all"}
        Which split of a dataset that has two (named datasets, IDX folders with test files,
        ``.npz`` files with test arrays); "all" reads both, train then test, as one
        :class:`ChainedSource` (a single collection, whichever is asked, is itself).
    data_dir : path-like or None
        Folder to look in first for the IDX files of "mnist" and "fashion-mnist" (the files
        themselves or a sub-folder named after the dataset).
    color : {"gray", "rgb"} or None
        Convert every image to this colour mode; None keeps the stored one (image folders: gray).
    size : None, "auto", "HxW", int or (H, W)
        Resize every image to this size. None keeps the sizes, which must then agree; "auto"
        takes the images' size (a folder's median height and width), scaled down to at most 64
        pixels on its longer side
        (:func:`~kmeans_imagery.datasets.convert.auto_size`), for collections of mixed sizes.
    skip_bad : bool
        Skip unreadable image files (counted in ``skipped["bad"]``) instead of raising.
    loose_images : {"skip", "read"}
        Image folders with class sub-folders: skip the images beside them (torchvision's rule;
        counted as "unlabelled"), or read every image below the folder, without labels.
    exclude : sequence of path-like
        Image folders: folders below it not to read (an output folder written inside it).

    Returns
    -------
    ImageSource
        A :class:`ZarrSource`, :class:`IdxSource`, :class:`NpySource`, :class:`FolderSource` or
        :class:`ArraySource`; a :class:`ChainedSource` of two of them for ``split="all"``.

    Raises
    ------
    KMIError
        For a missing path, an unknown format, a split the data lacks, or unreadable files.

    See Also
    --------
    load_dataset : A source read whole, with its test split.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets import open_source
    >>> digits = open_source("digits", split="test")
    >>> digits.display_name, digits.n_images, digits.image_shape
    ('digits-test', 360, (8, 8))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for i in range(3):
    ...         Image.new("RGB", (40, 30), (80 * i, 0, 0)).save(Path(folder) / f"photo-{i}.jpg")
    ...     photos = open_source(folder, color="rgb", size="24x32")
    ...     print(type(photos).__name__, photos.n_images, photos.image_shape, photos.labels)
    FolderSource 3 (24, 32, 3) None
    """
    if split not in _SPLITS:
        raise KMIError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not isinstance(path_or_name, str | os.PathLike):
        raise KMIError(f"data must be a path or a dataset name, got {type(path_or_name).__name__}"
                       f" (save an array with numpy.save and give the .npy file)")
    if split == "all":
        options = {"data_dir": data_dir, "color": color, "size": size, "skip_bad": skip_bad,
                   "loose_images": loose_images, "exclude": exclude}
        train = open_source(path_or_name, **options)
        if train.split is None:
            return train
        return ChainedSource([train, open_source(path_or_name, split="test", **options)])
    source = _open_split(path_or_name, split, data_dir, color, size, skip_bad, loose_images,
                         exclude)
    if source.n_images == 0:  # an IDX file or a store may say so in its header
        raise KMIError(f"{source.origin or source.display_name} holds no images")
    return source


def _open_split(path_or_name, split, data_dir, color, size, skip_bad, loose_images, exclude):
    """:func:`open_source` for one split."""
    if is_dataset_name(path_or_name):
        return open_named(path_or_name, split, data_dir=data_dir, color=color, size=size)
    path = Path(path_or_name)
    if not path.exists():
        raise KMIError(f"{path} does not exist (expected {', '.join(DATASET_NAMES)}, a .zarr "
                       f"store, an IDX folder or file, an image folder, or a .npy/.npz file)")
    if path.is_dir() and is_zarr_store(path):
        return _single(ZarrSource(path, color=color, size=size), split)
    if path.is_dir():
        if find_idx_files(path)["train_images"] is not None:
            return open_idx_folder(path, split, name=path.resolve().name, origin=str(path),
                                   color=color, size=size)
        try:
            return _single(FolderSource(path, color=color or "gray", size=size, skip_bad=skip_bad,
                                        loose_images=loose_images, exclude=exclude), split)
        except KMIError as error:
            holder = _idx_folder_below(path)
            if holder is None:
                raise
            raise KMIError(f"{error}; IDX files of a dataset lie in {holder}: pass that folder") \
                from None
    if path.suffix.lower() in (".npy", ".npz"):
        return open_array_file(path, split, color=color, size=size)
    if "idx" in path.name.lower():
        return _single(open_idx(path, color=color, size=size), split)
    raise KMIError(f"{path} is not a dataset: expected a folder (IDX files or images), a .zarr "
                   f"store, an IDX file, or a .npy/.npz file")


def _idx_folder_below(path):
    """A folder up to two levels below ``path`` holding IDX training images (torchvision keeps
    them in ``ROOT/MNIST/raw``), or None."""
    def sub_folders(folder):
        try:
            return sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return []

    for child in sub_folders(path):
        for folder in (child, *sub_folders(child)):
            if find_idx_files(folder)["train_images"] is not None:
                return folder
    return None


def _single(source, split):
    """A source of a single collection, which has no test split."""
    if split != "train":
        raise KMIError(f"{source.origin or source.name} has no {split} split")
    return source


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one dataset, in memory.

    Attributes
    ----------
    name : str
        "mnist", "fashion-mnist", "digits", or the folder or file name.
    train_images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    train_labels : ndarray of shape (n,) or None
        Integers for IDX files, digits and arrays; class names (str) for image folders; None when
        the source has no labels.
    test_images : ndarray of uint8, shape (m, H, W) or (m, H, W, 3), or None
        None when the source has no test split (image folders, most arrays).
    test_labels : ndarray of shape (m,) or None
    label_names : tuple of str or None
        Display names for integer labels 0..C-1 (Fashion-MNIST).
    source : str
        Where the data came from: a folder or file path, "downloaded" or "bundled".
    skipped : dict of str to int
        Files passed over while loading an image folder: "hidden" (files and folders whose name
        starts with "."), "non_image" (other extensions), "bad" (unreadable, with
        ``skip_bad=True``) and "unlabelled" (images beside the class sub-folders). Empty for
        other sources.
    train_paths : list of Path or None
        The file of each training image, for image folders.

    Examples
    --------
    >>> from kmeans_imagery.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> data.name, data.image_shape, data.train_images.shape, data.test_labels.shape, data.source
    ('digits', (8, 8), (1437, 8, 8), (360,), 'bundled')
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray | None
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    label_names: tuple[str, ...] | None = None
    source: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    train_paths: list | None = None

    @property
    def image_shape(self):
        """Shape of one image: (H, W) for gray, (H, W, 3) for rgb."""
        return tuple(self.train_images.shape[1:])


def load_dataset(name_or_path, data_dir=None, *, color="gray", size=None, skip_bad=False,
                 progress=None):
    """Load a dataset by name or from a path: its source(s) read whole.

    Parameters
    ----------
    name_or_path : str or path-like
        Anything :func:`open_source` accepts.
    data_dir : str, path-like or None
        As in :func:`open_source`.
    color : {"gray", "rgb"}
        "gray" converts colour images to luma; "rgb" keeps colour (gray images get three equal
        channels).
    size, skip_bad
        As in :func:`open_source`.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    dataset : Dataset
        With the test split when the data has one.

    Raises
    ------
    KMIError
        As :func:`open_source`, and for a test split whose images differ in shape.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import load_dataset
    >>> digits = load_dataset("digits")
    >>> digits.train_images.dtype, digits.train_images.shape, digits.test_images.shape
    (dtype('uint8'), (1437, 8, 8), (360, 8, 8))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "scans.npz"
    ...     np.savez(path, images=np.zeros((4, 6, 6)), labels=np.array(["a", "b", "a", "b"]))
    ...     scans = load_dataset(path, size=3)
    >>> scans.name, scans.train_images.shape, scans.train_labels, scans.test_images
    ('scans.npz', (4, 3, 3), array(['a', 'b', 'a', 'b'], dtype='<U1'), None)
    """
    options = {"data_dir": data_dir, "color": color, "size": size, "skip_bad": skip_bad}
    train_source = open_source(name_or_path, **options)
    train = train_source.read_all(progress=progress)
    test = Batch(0, None, None)
    if train_source.split is not None:
        test_source = open_source(name_or_path, split="test", **options)
        test = test_source.read_all(progress=progress)
        if test.images.shape[1:] != train.images.shape[1:]:
            raise KMIError(
                f"{test_source.display_name} holds images of shape {test.images.shape[1:]} but "
                f"{train_source.display_name} holds {train.images.shape[1:]}"
            )
    return Dataset(train_source.name, train.images, train.labels, test.images, test.labels,
                   label_names=train_source.label_names, source=train_source.origin,
                   skipped=dict(train_source.skipped), train_paths=train.paths)


def with_test_split(dataset, fraction=0.2, seed=0):
    """Hold out a stratified test split from a labelled dataset that has none.

    Parameters
    ----------
    dataset : Dataset
        Labelled; returned unchanged when it already has a test split.
    fraction : float, default=0.2
        Share of the images held out.
    seed : int, default=0

    Returns
    -------
    Dataset
        With ``test_images``/``test_labels`` taken from the training images; ``source`` notes
        the split.

    Raises
    ------
    KMIError
        When the dataset has no labels, or too few images per class to split.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import Dataset, with_test_split
    >>> images = np.zeros((10, 4, 4), np.uint8)
    >>> data = Dataset("tiles", images, np.array([0, 1] * 5), None, None, source="tiles/")
    >>> split = with_test_split(data, fraction=0.2, seed=0)
    >>> split.train_images.shape, np.bincount(split.test_labels), split.source
    ((8, 4, 4), array([1, 1]), 'tiles/ (20% held out as test)')
    """
    from sklearn.model_selection import train_test_split

    if dataset.test_images is not None:
        return dataset
    if dataset.train_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels to hold out a test split by")
    index = np.arange(len(dataset.train_images))
    try:
        train_index, test_index = train_test_split(
            index, test_size=fraction, random_state=seed, stratify=dataset.train_labels,
        )
    except ValueError as error:
        raise KMIError(f"cannot hold out a test split from {dataset.name!r}: {error}") from None
    paths = dataset.train_paths
    return replace(
        dataset, train_images=dataset.train_images[train_index],
        train_labels=dataset.train_labels[train_index],
        test_images=dataset.train_images[test_index], test_labels=dataset.train_labels[test_index],
        train_paths=None if paths is None else [paths[i] for i in train_index],
        source=f"{dataset.source} ({fraction:.0%} held out as test)",
    )
