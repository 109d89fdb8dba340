"""Load images (and labels) saved as numpy ``.npy`` or ``.npz`` files, never with pickle.

A ``.npy`` file holds images only. A ``.npz`` file holds named arrays; the images are found under
the first of these keys that exists, and the labels and test split beside them:

==================  ===============  ==============  =============
train images        train labels     test images     test labels
==================  ===============  ==============  =============
train_images        train_labels     test_images     test_labels
x_train             y_train          x_test          y_test
images              labels
X / x               y
any (only array)
==================  ===============  ==============  =============

Labels under another name of the second column (or ``Y``, ``label``, ``target``, ``targets``)
go with the images when the row's own name is absent.

:func:`open_array_file` is the one reader: a ``.npy`` file of uint8 images becomes an
:class:`NpySource` read by plain positioned reads (a 784 MB file is never resident whole); other
files are loaded whole, since other pixel types need the whole array to choose their scale.

Pixel values: uint8 is kept; other integers must lie in 0..255; floats must be finite and lie in
[0, 1] (then scaled by 255: an array whose values all lie in [0, 1] is read as [0, 1] intensities)
or in [0, 255]; NaN and inf are errors. See :func:`~.convert.to_uint8_images`.
"""

import zipfile
from pathlib import Path

import numpy as np

from ..errors import KMIError
from ._source import ArraySource, ImageSource, read_stored_images
from .convert import check_labels, to_uint8_images

__all__ = ["NpySource", "open_array_file"]

_NPZ_KEYS = (
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("x_train", "y_train", "x_test", "y_test"),
    ("X_train", "y_train", "X_test", "y_test"),
    ("images", "labels", "test_images", "test_labels"),
    ("X", "y", "X_test", "y_test"),
    ("x", "y", "x_test", "y_test"),
)
# Where else training labels are found when the images' own labels key is absent.
_LABEL_KEYS = ("train_labels", "y_train", "labels", "y", "Y", "label", "target", "targets")


def _load_array_file(path):
    """Load and validate a ``.npy`` or ``.npz`` dataset file.

    Parameters
    ----------
    path : Path
        A file ending in ``.npy`` or ``.npz``.

    Returns
    -------
    train_images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    train_labels : ndarray of shape (n,) or None
    test_images : ndarray of uint8, shape (m, H, W) or (m, H, W, 3), or None
    test_labels : ndarray of shape (m,) or None

    Raises
    ------
    KMIError
        For a corrupt file, an object (pickled) array, unknown keys, bad shapes or values, or
        labels of the wrong length.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return to_uint8_images(loaded, str(path)), None, None, None
        with loaded:
            return _from_npz(loaded, path)
    except KMIError:
        raise
    except ValueError as exc:
        # numpy takes any file without its .npy header for a pickle.
        if "allow_pickle" in str(exc) and _numpy_container(path):
            raise KMIError(
                f"{path} holds an object array, which would need pickle to load; save plain "
                f"numeric (or string) arrays instead"
            ) from None
        raise KMIError(f"{path} is not a valid numpy .npy or .npz file") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise KMIError(f"cannot read {path}: {exc}") from None


def _numpy_container(path):
    """Whether a file starts as a .npy file or a zip archive (.npz) does."""
    with open(path, "rb") as handle:
        start = handle.read(6)
    return start == b"\x93NUMPY" or start[:4] == b"PK\x03\x04"


def _from_npz(npz, path):
    keys = set(npz.files)
    found = [names for names in _NPZ_KEYS if names[0] in keys]
    if found:
        images_key, labels_key, test_key, test_labels_key = found[0]
    elif len(npz.files) == 1:
        images_key, labels_key, test_key, test_labels_key = npz.files[0], None, None, None
    else:
        raise KMIError(
            f"{path} has arrays {sorted(keys)}; expected images under one of "
            f"{', '.join(k[0] for k in _NPZ_KEYS)} (labels beside them)"
        )
    if labels_key not in keys:
        # Labels saved under another convention's name (images with y) would be dropped silently.
        others = [key for key in _LABEL_KEYS if key in keys]
        if len(others) > 1:
            raise KMIError(f"{path} has labels under several keys ({', '.join(others)}); keep one")
        labels_key = others[0] if others else None
    train = _split(npz, path, images_key, labels_key)
    test = _split(npz, path, test_key, test_labels_key) if test_key in keys else (None, None)
    if test_labels_key in keys and test_key not in keys:
        raise KMIError(f"{path} has {test_labels_key} but no {test_key}")
    if test[0] is not None and test[0].shape[1:] != train[0].shape[1:]:
        raise KMIError(
            f"{path}: {test_key} images have shape {test[0].shape[1:]} but {images_key} "
            f"images have {train[0].shape[1:]}"
        )
    return (*train, *test)


def _split(npz, path, images_key, labels_key):
    images = to_uint8_images(npz[images_key], f"{path} [{images_key}]")
    labels = None
    if labels_key in npz.files:
        labels = check_labels(npz[labels_key], len(images), f"{path} [{labels_key}]")
    return images, labels


def open_array_file(path, split=None, *, color=None, size=None):
    """Open a ``.npy`` or ``.npz`` file as a source.

    Parameters
    ----------
    path : path-like
        A file ending in ``.npy`` or ``.npz``.
    split : {"train", "test"} or None
        Which split of a ``.npz`` file that holds two; None means "train".
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Returns
    -------
    NpySource or ArraySource
        An :class:`NpySource` for a ``.npy`` file of uint8 images (read batch by batch), else an
        :class:`~kmeans_imagery.datasets.ArraySource` holding the validated uint8 images.

    Raises
    ------
    KMIError
        For a corrupt file, an object (pickled) array, unknown keys, bad shapes or values,
        labels of the wrong length, or a test split the file lacks.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.arrays import open_array_file
    >>> images = np.zeros((6, 4, 4), dtype=np.float32)  # floats in [0, 1] are scaled by 255
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "scans.npz"
    ...     np.savez(path, x_train=images, y_train=np.arange(6) % 2, x_test=images[:2],
    ...              y_test=np.array([0, 1]))
    ...     train = open_array_file(path)
    ...     test = open_array_file(path, "test")
    >>> train.n_images, train.image_shape, train.labels.tolist(), test.n_images
    (6, (4, 4), [0, 1, 0, 1, 0, 1], 2)
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if split == "test":  # a .npy file holds one array: never a test split
            raise KMIError(f"{path} has no test split")
        header = _npy_header(path)
        if header is not None:
            return NpySource(path, *header, color=color, size=size)
    train_images, train_labels, test_images, test_labels = _load_array_file(path)
    two = test_images is not None
    if split == "test":
        if not two:
            raise KMIError(f"{path} has no test split")
        train_images, train_labels = test_images, test_labels
    return ArraySource(train_images, train_labels, name=path.name,
                       split=(split or "train") if two else None, origin=str(path),
                       color=color, size=size)


def _npy_header(path):
    """(offset, shape) of a ``.npy`` file of uint8 images in C order, else None (load it whole)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
    except (OSError, ValueError):
        return None  # _load_array_file reports what is wrong with the file
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if dtype != np.uint8 or fortran or not shape or shape[0] == 0 or not (
            len(shape) == 3 or (len(shape) == 4 and shape[-1] == 3)):
        return None
    return offset, shape


class NpySource(ImageSource):
    """uint8 images in a ``.npy`` file, read by plain positioned reads.

    Built by :func:`open_array_file` from the file's header; memory of a pass is one batch,
    whatever the file's size.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file.
    offset : int
        Bytes before the first pixel.
    shape : tuple
        (n, H, W) or (n, H, W, 3).
    color, size
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.arrays import open_array_file
    >>> images = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     np.save(Path(folder) / "images.npy", images)
    ...     source = open_array_file(Path(folder) / "images.npy")
    ...     print(type(source).__name__, source.n_images, source.image_shape)
    ...     for batch in source.iter_batches(2):
    ...         print(batch.start, batch.images.shape)
    NpySource 5 (2, 3)
    0 (2, 2, 3)
    2 (2, 2, 3)
    4 (1, 2, 3)
    """

    def __init__(self, path, offset, shape, *, color=None, size=None):
        super().__init__(color, size)
        self.path = Path(path)
        self.name = self.path.name
        self.origin = str(path)
        self._offset = int(offset)
        self._stored_shape = tuple(shape)
        self.n_images = shape[0]
        self.image_shape = self._shape_after(shape[1:])
        # A file cut short would otherwise open fine and fail in the middle of a pass.
        expected = self._offset + int(np.prod(shape))
        actual = self.path.stat().st_size
        if actual != expected:
            raise KMIError(f"{path} has {actual} bytes but its header (shape {tuple(shape)}) "
                           f"declares {expected}")

    def _read(self, start, stop):
        return read_stored_images(self.path, self._offset, self._stored_shape, start, stop)
