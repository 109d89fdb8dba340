"""Turn a dataset name or a path into arrays of images and labels.

:func:`load_dataset` accepts

- ``"mnist"`` and ``"fashion-mnist"``: four IDX gzip files, looked for in ``data_dir`` (the folder
  itself or its sub-folder named after the dataset), then in ``$KMI_DATA_DIR`` (the same way),
  then in the cache folder (:func:`cache_dir`), else downloaded into the cache and checked against
  the published MD5 sums;
- ``"digits"``: scikit-learn's bundled 8x8 digits, split 80/20 with a fixed seed; works offline;
- a path: a folder of IDX files, a folder of images (one sub-folder per class, or flat and
  unlabelled), or a ``.npy`` / ``.npz`` file.

Every dataset comes back as uint8 images, (n, H, W) gray or (n, H, W, 3) rgb. Any problem with the
user's files raises :class:`~kmeans_imagery.errors.KMIError` naming the file.

The optional ``progress`` argument shows progress while loading: a callable
``progress(total, description)`` returning a context manager whose value has an
``advance(n=1)`` method, for instance a thin wrapper around :class:`rich.progress.Progress`.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import KMIError
from .arrays import load_array_file
from .convert import check_color, check_labels, conform_images, parse_size, to_uint8_images
from .folders import (
    IMAGE_SUFFIXES,
    ImageBatch,
    iter_image_files,
    load_image_folder,
    load_images,
    open_progress,
)
from .idx import read_idx, write_idx
from .registry import (
    IDX_FILES,
    REMOTE_DATASETS,
    DownloadError,
    cache_dir,
    data_env_dir,
    download,
)

__all__ = [
    "DATASET_NAMES",
    "IMAGE_SUFFIXES",
    "Dataset",
    "ImageBatch",
    "cache_dir",
    "iter_image_files",
    "load_dataset",
    "load_images",
    "parse_size",
    "read_idx",
    "with_test_split",
    "write_idx",
]

DATASET_NAMES = ("mnist", "fashion-mnist", "digits")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0

# Accepted spellings of the four IDX files: the canonical gzip names, their uncompressed form, and
# the dotted form some mirrors use (train-images.idx3-ubyte).
_IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def _idx_spellings(fname):
    base = fname.removesuffix(".gz")
    dotted = base.replace("-idx", ".idx")
    return (fname, base, dotted + ".gz", dotted)


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one dataset.

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
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray | None
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    label_names: tuple[str, ...] | None = None
    source: str = ""
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def image_shape(self):
        """Shape of one image: (H, W) for gray, (H, W, 3) for rgb."""
        return tuple(self.train_images.shape[1:])


def load_dataset(
    name_or_path, data_dir=None, *, color="gray", size=None, skip_bad=False, progress=None
):
    """Load a dataset by name or from a path.

    Parameters
    ----------
    name_or_path : str or path-like
        "mnist", "fashion-mnist" or "digits" (names win over same-named folders in the current
        folder; write ``./mnist`` for those), or the path of an IDX folder, an image folder, or a
        ``.npy`` / ``.npz`` file.
    data_dir : str, path-like or None
        Folder to look in first for the IDX files of "mnist" and "fashion-mnist" (the files
        themselves or a sub-folder named after the dataset).
    color : {"gray", "rgb"}
        "gray" converts colour images to luma; "rgb" keeps colour (gray images get three equal
        channels).
    size : None, "HxW", int or (H, W)
        Resize every image to this size. None keeps the sizes, which must then agree.
    skip_bad : bool
        Skip unreadable image files (counted in ``Dataset.skipped["bad"]``) instead of raising.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    dataset : Dataset

    Raises
    ------
    KMIError
        For an unknown name, a missing path, unreadable or inconsistent files, or when the named
        dataset's files are nowhere to be found and cannot be downloaded.
    """
    color = check_color(color)
    size = parse_size(size)
    if isinstance(name_or_path, str) and name_or_path.lower() in DATASET_NAMES:
        name = name_or_path.lower()
        if name == "digits":
            dataset = _load_digits()
        else:
            folder, source = _locate_idx(name, data_dir)
            label_names = REMOTE_DATASETS[name].label_names
            dataset = _load_idx_folder(folder, name, source, progress, label_names)
    else:
        dataset = _load_path(Path(name_or_path), color, size, skip_bad, progress)
    return _conform(dataset, color, size)


def _conform(dataset, color, size):
    """Apply color and size to every split (a no-op for data already in that form)."""
    train = conform_images(dataset.train_images, color, size)
    test = None if dataset.test_images is None else conform_images(dataset.test_images, color, size)
    return replace(dataset, train_images=train, test_images=test)


def _load_path(path, color, size, skip_bad, progress):
    if not path.exists():
        raise KMIError(
            f"{path} does not exist (expected {', '.join(DATASET_NAMES)}, a folder, or a "
            f".npy/.npz file)"
        )
    name = path.resolve().name
    if path.is_dir():
        files = find_idx_files(path)
        if files["train_images"] is not None:
            return _load_idx_folder(path, name, str(path), progress)
        images, labels, skipped = load_image_folder(
            path, color=color, size=size, skip_bad=skip_bad, progress=progress
        )
        return Dataset(name, images, labels, None, None, source=str(path), skipped=skipped)
    if path.suffix.lower() in (".npy", ".npz"):
        train_images, train_labels, test_images, test_labels = load_array_file(path)
        return Dataset(name, train_images, train_labels, test_images, test_labels, source=str(path))
    raise KMIError(
        f"{path} is not a dataset: expected a folder (IDX files or images) or a .npy/.npz file"
    )


def find_idx_files(folder):
    """Find the four IDX files of a dataset in a folder.

    Parameters
    ----------
    folder : Path

    Returns
    -------
    files : dict
        Maps "train_images", "train_labels", "test_images", "test_labels" to a Path, or None when
        that file is absent. Gzip and uncompressed files, with ``-idx`` or ``.idx`` spellings,
        are accepted.
    """
    files = {}
    for role, fname in zip(_IDX_ROLES, IDX_FILES, strict=True):
        found = (folder / spelling for spelling in _idx_spellings(fname))
        files[role] = next((p for p in found if p.is_file()), None)
    return files


def _locate_idx(name, data_dir):
    """Find the folder holding a named IDX dataset, downloading it as the last resort.

    Returns
    -------
    folder : Path
    source : str
        The folder's path, or "downloaded".
    """
    looked = []
    for label, base in (("--data-dir", data_dir), ("KMI_DATA_DIR", data_env_dir())):
        if base is None:
            looked.append(f"{label} (not set)")
            continue
        base = Path(base)
        if not base.is_dir():
            raise KMIError(f"{label} {base} is not a folder")
        for folder in (base, base / name):
            files = find_idx_files(folder)
            present = [role for role, path in files.items() if path is not None]
            if len(present) == len(_IDX_ROLES):
                return folder, str(folder)
            if present:
                missing = [f for r, f in zip(_IDX_ROLES, IDX_FILES, strict=True) if not files[r]]
                raise KMIError(f"{folder} holds part of {name} but lacks {', '.join(missing)}")
        looked.append(f"{label} {base} (and {base / name})")
    cached = cache_dir() / name
    if all((cached / fname).is_file() for fname in IDX_FILES):
        return cached, str(cached)
    looked.append(f"the cache {cached}")
    try:
        return download(name), "downloaded"
    except DownloadError as exc:
        raise KMIError(
            f"cannot get {name}: {', '.join(IDX_FILES)} are not in {', '.join(looked)}, and "
            f"downloading them failed ({exc}); put them in a folder and pass "
            f"--data-dir FOLDER (or set KMI_DATA_DIR), or use --dataset digits, which works offline"
        ) from None


def _load_idx_folder(folder, name, source, progress, label_names=None):
    files = find_idx_files(folder)
    splits = {}
    n_files = sum(path is not None for path in files.values())
    with open_progress(progress, n_files, f"reading {name}") as bar:
        for split in ("train", "test"):
            images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
            if images_path is None:
                if labels_path is not None:
                    raise KMIError(f"{folder} has {labels_path.name} but no {split} images file")
                splits[split] = (None, None)
                continue
            images = to_uint8_images(read_idx(images_path), str(images_path))
            bar.advance(1)
            labels = None
            if labels_path is not None:
                raw = read_idx(labels_path)
                if raw.ndim != 1:
                    raise KMIError(
                        f"{labels_path} is not a labels file: shape {raw.shape}, expected (n,)"
                    )
                if len(raw) != len(images):
                    raise KMIError(
                        f"{labels_path} has {len(raw)} labels but {images_path} has "
                        f"{len(images)} images"
                    )
                labels = check_labels(raw, len(images), str(labels_path)).astype(np.int64)
                bar.advance(1)
            splits[split] = (images, labels)
    train, test = splits["train"], splits["test"]
    if test[0] is not None and test[0].shape[1:] != train[0].shape[1:]:
        raise KMIError(
            f"{files['test_images']} holds images of shape {test[0].shape[1:]} but "
            f"{files['train_images']} holds {train[0].shape[1:]}"
        )
    return Dataset(name, *train, *test, label_names=label_names, source=source)


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
    """
    from sklearn.model_selection import train_test_split

    if dataset.test_images is not None:
        return dataset
    if dataset.train_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels to hold out a test split by")
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            dataset.train_images, dataset.train_labels, test_size=fraction, random_state=seed,
            stratify=dataset.train_labels,
        )
    except ValueError as error:
        raise KMIError(f"cannot hold out a test split from {dataset.name!r}: {error}") from None
    return replace(
        dataset, train_images=x_train, train_labels=y_train, test_images=x_test,
        test_labels=y_test, source=f"{dataset.source} ({fraction:.0%} held out as test)",
    )


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 gray levels -> 0..255 so that every dataset is uint8 images.
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SEED,
        stratify=digits.target,
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, source="bundled")

