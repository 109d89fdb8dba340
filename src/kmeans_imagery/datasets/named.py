"""The named datasets: ``mnist`` and ``fashion-mnist`` (IDX files found or downloaded) and
``digits`` (scikit-learn's bundled 8x8 digits, split 80/20 with a fixed seed; works offline).

``mnist`` and ``fashion-mnist`` are looked for in ``data_dir`` (the folder itself or its
sub-folder named after the dataset), then in ``$KMI_DATA_DIR`` (the same way), then in the cache
folder (:func:`~.registry.cache_dir`), else downloaded into the cache and checked against the
published MD5 sums (:mod:`.registry`, a pooch registry).
"""

from pathlib import Path

import numpy as np

from ..errors import KMIError
from ._source import ArraySource
from .idx import IDX_FILES, IDX_ROLES, find_idx_files, open_idx_folder
from .registry import REMOTE_DATASETS, DownloadError, cache_dir, data_env_dir, download

__all__ = ["DATASET_NAMES", "is_dataset_name", "open_named"]

#: The datasets known by name.
DATASET_NAMES = ("mnist", "fashion-mnist", "digits")
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SEED = 0


def is_dataset_name(name_or_path):
    """Whether ``name_or_path`` names a dataset (names win over same-named folders).

    Parameters
    ----------
    name_or_path : str or path-like
        What a user passed as the data.

    Returns
    -------
    bool
        True for a str in :data:`DATASET_NAMES`, in any case; a path object is never a name.

    Examples
    --------
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets.named import is_dataset_name
    >>> is_dataset_name("MNIST"), is_dataset_name("./mnist"), is_dataset_name(Path("digits"))
    (True, False, False)
    """
    return isinstance(name_or_path, str) and name_or_path.lower() in DATASET_NAMES


def open_named(name, split, *, data_dir=None, color=None, size=None):
    """One split of a named dataset as a source.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "digits"}
        The dataset, in any case.
    split : {"train", "test"}
        Which split.
    data_dir : path-like or None
        Folder to look in first for the IDX files.
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Returns
    -------
    ImageSource
        An :class:`~kmeans_imagery.datasets.ArraySource` for ``digits``, an
        :class:`~kmeans_imagery.datasets.IdxSource` for the others.

    Raises
    ------
    KMIError
        When the IDX files are found nowhere and cannot be downloaded, saying where it looked.

    Examples
    --------
    >>> from kmeans_imagery.datasets.named import open_named
    >>> train = open_named("digits", "train")
    >>> test = open_named("digits", "test", size=16)
    >>> train.display_name, train.n_images, test.n_images, test.image_shape, train.origin
    ('digits-train', 1437, 360, (16, 16), 'bundled')
    """
    name = name.lower()
    if name == "digits":
        images, labels = _digits_split(split)
        return ArraySource(images, labels, name="digits", split=split, origin="bundled",
                           color=color, size=size)
    folder, origin = _locate_idx(name, data_dir)
    return open_idx_folder(folder, split, name=name, origin=origin,
                           label_names=REMOTE_DATASETS[name].label_names, color=color, size=size)


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
        for folder in _idx_folders(base, name):
            files = find_idx_files(folder)
            present = [role for role, path in files.items() if path is not None]
            if len(present) == len(IDX_ROLES):
                return folder, str(folder)
            if present:
                missing = [f for r, f in zip(IDX_ROLES, IDX_FILES, strict=True) if not files[r]]
                raise KMIError(f"{folder} holds part of {name} but lacks {', '.join(missing)}")
        looked.append(f"{label} {base} (and {', '.join(map(str, _idx_folders(base, name)[1:]))})")
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
            f"data_dir=FOLDER (or set KMI_DATA_DIR), or use the digits dataset, which is bundled "
            f"and works offline"
        ) from None


#: The folder torchvision downloads each dataset into, below its ``root``: ``ROOT/MNIST/raw``.
_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _idx_folders(base, name):
    """Where a named dataset's IDX files may lie below ``base``: in it, in ``base/NAME``, or as
    torchvision leaves them (``base`` its root, or its dataset folder)."""
    torchvision = [base / _TORCHVISION_FOLDERS[name] / "raw"] if name in _TORCHVISION_FOLDERS else []
    return [base, base / name, *torchvision, base / "raw"]


def _digits_split(split):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 gray levels -> 0..255 so that every dataset is uint8 images.
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=_DIGITS_TEST_FRACTION,
        random_state=_DIGITS_SEED,
        stratify=digits.target,
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)
