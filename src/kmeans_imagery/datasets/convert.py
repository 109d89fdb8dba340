"""Bring image arrays to the project's form: uint8, (n, H, W) gray or (n, H, W, 3) rgb, one size."""

import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..errors import KMIError

__all__ = ["AUTO_SIDE", "RESAMPLE", "auto_size", "check_color", "check_labels", "conform_images",
           "n_workers", "parse_size", "resize_images", "to_uint8_images"]

_COLORS = ("gray", "rgb")
#: The resampling filter of every resize (Pillow's Lanczos).
RESAMPLE = Image.Resampling.LANCZOS
#: ``size="auto"``: the longest side images keep (larger ones are scaled down, aspect kept).
#: Pixel features need no more to group photos by colour and layout; 64 x 64 rows keep a
#: collection of thousands in memory.
AUTO_SIDE = 64
_RESIZE_CHUNK = 2048  # images per Pillow call: large enough to amortise it, small for threads


def check_color(color):
    """Return ``color`` if it is "gray" or "rgb", else raise KMIError.

    Parameters
    ----------
    color : str
        The colour mode asked for.

    Returns
    -------
    str
        ``color``, unchanged.

    Raises
    ------
    KMIError
        For any other value.

    Examples
    --------
    >>> from kmeans_imagery.datasets.convert import check_color
    >>> check_color("rgb")
    'rgb'
    >>> check_color("RGB")
    Traceback (most recent call last):
    ...
    kmeans_imagery.errors.KMIError: color must be 'gray' or 'rgb', got 'RGB'
    """
    if color not in _COLORS:
        raise KMIError(f"color must be 'gray' or 'rgb', got {color!r}")
    return color


def parse_size(size):
    """Parse a target image size.

    Parameters
    ----------
    size : None, "auto", str "HxW", int or (H, W)
        An int means a square size; "auto" is resolved by the source from its images' size
        (:func:`auto_size`).

    Returns
    -------
    size : tuple (H, W) of positive ints, "auto" or None
        None when ``size`` is None.

    Raises
    ------
    KMIError
        For anything else, or a size below 1.

    Examples
    --------
    >>> from kmeans_imagery.datasets import parse_size
    >>> parse_size("28x32"), parse_size("32"), parse_size(64), parse_size((8, 8)), parse_size(None)
    ((28, 32), (32, 32), (64, 64), (8, 8), None)
    """
    if size is None or (isinstance(size, str) and size.strip().lower() == "auto"):
        return None if size is None else "auto"
    if isinstance(size, bool | np.bool_):  # an int to Python, never meant as 1x1
        raise KMIError(f"size={size!r} is neither HxW nor (H, W)")
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", size)
        if not match:
            raise KMIError(f"size={size!r} is neither HxW, N (e.g. 28x28, or 32 for 32x32) nor auto")
        parsed = (int(match[1]), int(match[2] or match[1]))
    elif isinstance(size, int | np.integer):
        parsed = (int(size), int(size))
    else:
        try:
            parsed = tuple(int(v) for v in size)
        except (TypeError, ValueError):
            raise KMIError(f"size={size!r} is neither HxW nor (H, W)") from None
    if len(parsed) != 2 or min(parsed) < 1:
        raise KMIError(f"size={size!r} is not two positive numbers H and W")
    return parsed


def auto_size(shape, max_side=AUTO_SIDE):
    """The size ``size="auto"`` gives images of size ``shape`` (a folder's median size).

    Parameters
    ----------
    shape : tuple
        (H, W, ...) of the images.
    max_side : int
        Longest side kept; a larger image is scaled down to it, its aspect ratio kept.

    Returns
    -------
    tuple (H, W)

    Examples
    --------
    >>> from kmeans_imagery.datasets.convert import auto_size
    >>> auto_size((28, 28)), auto_size((3000, 4000, 3)), auto_size((1000, 10))
    ((28, 28), (48, 64), (64, 1))
    """
    height, width = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def conform_images(images, color="gray", size=None):
    """Convert a uint8 image array to the requested colour mode and size.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    color : {"gray", "rgb"}
        "gray" turns rgb into luma (ITU-R 601-2, as Pillow's "L" mode); "rgb" repeats a gray
        channel three times.
    size : tuple (H, W) or None
        Resize every image to this size (Lanczos); None keeps the size.

    Returns
    -------
    images : ndarray of uint8, shape (n, H', W') or (n, H', W', 3)
        ``images`` itself when nothing changes.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.convert import conform_images
    >>> rgb = np.full((2, 4, 4, 3), (255, 0, 0), dtype=np.uint8)  # two red images
    >>> gray = conform_images(rgb, "gray", size=(2, 2))
    >>> gray.shape, int(gray[0, 0, 0])
    ((2, 2, 2), 76)
    >>> conform_images(gray, "rgb").shape
    (2, 2, 2, 3)
    """
    is_rgb = images.ndim == 4
    if color == "gray" and is_rgb:
        # Pillow's own fixed-point ITU-R 601-2 luma, so arrays and image files agree exactly.
        luma = images @ np.array([19595, 38470, 7471], dtype=np.uint32)
        images = ((luma + 0x8000) >> 16).astype(np.uint8)
    elif color == "rgb" and not is_rgb:
        images = np.repeat(images[..., None], 3, axis=-1)
    if size is not None and tuple(images.shape[1:3]) != tuple(size):
        images = resize_images(images, size)
    return images


def resize_images(images, size):
    """Resize every image with Lanczos filtering, as Pillow's ``Image.resize`` does one by one.

    Pillow filters the rows, then the columns. Filtering the rows of a stack of images is the same
    as filtering each image's rows, so each pass runs once per chunk of images (one Pillow call,
    GIL released) instead of once per image; chunks run on a thread pool. The result is
    identical to resizing each image on its own.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
        The images.
    size : tuple (h, w)
        The new size.

    Returns
    -------
    resized : ndarray of uint8, shape (n, h, w) or (n, h, w, 3)
        The resized images.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets.convert import RESAMPLE, resize_images
    >>> images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    >>> small = resize_images(images, (14, 7))
    >>> small.shape
    (3, 14, 7)
    >>> one = np.asarray(Image.fromarray(images[1]).resize((7, 14), RESAMPLE))
    >>> bool((small[1] == one).all())
    True
    """
    out = np.empty((len(images), *size, *images.shape[3:]), dtype=np.uint8)

    def work(start):
        out[start : start + _RESIZE_CHUNK] = _resize_stack(images[start : start + _RESIZE_CHUNK], size)

    with ThreadPoolExecutor(max_workers=n_workers()) as pool:
        list(pool.map(work, range(0, len(images), _RESIZE_CHUNK)))
    return out


def _resize_stack(images, size):
    height, width = size
    n, rows, cols = images.shape[:3]
    channels = images.shape[3:]
    if cols != width:  # row pass: the images stacked vertically, one tall Pillow image
        tall = Image.fromarray(np.ascontiguousarray(images).reshape(n * rows, cols, *channels))
        images = np.asarray(tall.resize((width, n * rows), RESAMPLE)).reshape(n, rows, width, *channels)
    if rows != height:  # column pass: the same on the transposed images
        turned = np.ascontiguousarray(images.swapaxes(1, 2)).reshape(n * width, rows, *channels)
        done = np.asarray(Image.fromarray(turned).resize((height, n * width), RESAMPLE))
        images = done.reshape(n, width, height, *channels).swapaxes(1, 2)
    return images


def n_workers():
    """Threads for decoding and resizing: the cores this process may use (at most 16).

    Returns
    -------
    int
        Between 1 and 16.

    Examples
    --------
    >>> from kmeans_imagery.datasets.convert import n_workers
    >>> 1 <= n_workers() <= 16
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return min(16, len(os.sched_getaffinity(0)))
    return min(16, os.cpu_count() or 1)


def to_uint8_images(array, source):
    """Validate an array of images from a file and convert it to uint8.

    uint8 is kept; bool becomes 0/255; other integers must lie in 0..255; floats must be finite
    and lie in [0, 1] (scaled by 255) or else in [0, 255], then are rounded. Shapes (n, H, W),
    (n, H, W, 1) and (n, H, W, 3) are accepted.

    Parameters
    ----------
    array : ndarray of shape (n, H, W), (n, H, W, 1) or (n, H, W, 3)
        Images as read from a file, of any numeric dtype.
    source : str
        Named in error messages (the file, and the array's key).

    Returns
    -------
    images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
        ``array`` itself when it is already uint8.

    Raises
    ------
    KMIError
        For another shape, no images, values out of range, NaN or inf, or another dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.convert import to_uint8_images
    >>> to_uint8_images(np.array([[[0.0, 0.5, 1.0]]]), "scans.npy").tolist()  # [0, 1]: scaled
    [[[0, 128, 255]]]
    >>> to_uint8_images(np.array([[[-1, 300]]]), "scans.npy")
    Traceback (most recent call last):
    ...
    kmeans_imagery.errors.KMIError: scans.npy: integer pixel values must lie in 0..255, found -1..300
    """
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)):
        raise KMIError(
            f"{source}: images must have shape (n, H, W) or (n, H, W, 3), got {array.shape}"
        )
    if len(array) == 0:
        raise KMIError(f"{source}: holds no images (shape {array.shape})")
    if array.dtype == np.uint8:
        return array
    scale = pixel_scale(array, source)
    if array.dtype.kind in "biu":
        return array.astype(np.uint8) * np.uint8(scale)
    return np.rint(array * scale).astype(np.uint8)


def pixel_scale(array, source):
    """The factor that brings an array's pixel values to 0..255, by the rule of array files.

    uint8 and other integers in 0..255: 1; bool: 255; floats (finite) in [0, 1]: 255, else in
    [0, 255]: 1. Anything else is refused.

    Parameters
    ----------
    array : ndarray
        Pixel values of any numeric dtype.
    source : str
        Named in error messages.

    Returns
    -------
    int
        1 or 255.

    Raises
    ------
    KMIError
        For values out of range, NaN or inf, or another dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.convert import pixel_scale
    >>> pixel_scale(np.array([0.0, 0.5, 1.0]), "X"), pixel_scale(np.array([0.0, 128.0]), "X")
    (255, 1)
    """
    kind = array.dtype.kind
    if kind == "b":
        return 255
    if kind not in "iuf":
        raise KMIError(f"{source}: pixel values of type {array.dtype} are not supported")
    if array.dtype == np.uint8 or array.size == 0:
        return 1
    if kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise KMIError(f"{source}: {bad} pixel values are NaN or infinite")
    lo, hi = array.min().item(), array.max().item()
    if kind in "iu":
        if lo < 0 or hi > 255:
            raise KMIError(f"{source}: integer pixel values must lie in 0..255, found {lo}..{hi}")
        return 1
    if lo < 0 or hi > 255:
        raise KMIError(
            f"{source}: float pixel values must lie in [0, 1] or [0, 255], found {lo}..{hi}"
        )
    return 255 if hi <= 1.0 else 1


def check_labels(labels, n_images, source):
    """Validate labels read from a file: 1-D, one per image, integers or strings.

    Integral floats become int64; bool becomes int64.

    Parameters
    ----------
    labels : ndarray of shape (n_images,)
        Labels as read from a file.
    n_images : int
        How many images they label.
    source : str
        Named in error messages.

    Returns
    -------
    labels : ndarray of shape (n_images,), integer or str dtype
        ``labels`` itself when already integers or str.

    Raises
    ------
    KMIError
        For labels of another shape or length, fractional or non-finite floats, or another dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets.convert import check_labels
    >>> check_labels(np.array([1.0, 0.0, 2.0]), 3, "y_train")
    array([1, 0, 2])
    >>> check_labels(np.array([1, 0]), 3, "y_train")
    Traceback (most recent call last):
    ...
    kmeans_imagery.errors.KMIError: y_train: 2 labels for 3 images
    """
    if labels.ndim != 1:
        raise KMIError(f"{source}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) != n_images:
        raise KMIError(f"{source}: {len(labels)} labels for {n_images} images")
    kind = labels.dtype.kind
    if kind in "iuU":
        return labels
    if kind == "b":
        return labels.astype(np.int64)
    if kind == "S":
        return labels.astype(str)
    if kind == "f":
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise KMIError(f"{source}: float labels must be whole numbers (no NaN or inf)")
        return labels.astype(np.int64)
    raise KMIError(f"{source}: labels of type {labels.dtype} are not supported")
