"""Load image files: a folder with one sub-folder per class, a flat folder, or a list of files.

Files are decoded with Pillow (PNG, JPEG, BMP, GIF's first frame, TIFF, WebP) on a thread pool
that uses every core: Pillow releases the GIL while it decodes and resizes. Hidden files and
folders (name starting with ".") and files with other extensions are skipped and counted.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import KMIError
from .convert import RESAMPLE, check_color, n_workers, parse_size

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SKIP_KEYS = ("hidden", "non_image", "bad", "unlabelled")


class ImageBatch(NamedTuple):
    """Images decoded by :func:`load_images`.

    Attributes
    ----------
    images : ndarray of uint8, shape (k, H, W) or (k, H, W, 3)
    paths : list of Path, length k
        The file of each image, in order (bad files skipped are absent).
    skipped : dict of str to int
        ``{"bad": number of unreadable files skipped}``.
    """

    images: np.ndarray
    paths: list
    skipped: dict


def iter_image_files(paths, skipped=None):
    """Yield the image files among files and folders, folders walked recursively in name order.

    Parameters
    ----------
    paths : str, path-like, or iterable of them
        Files and folders. Files given directly are filtered like the files in folders.
    skipped : dict or None
        If given, its "hidden" and "non_image" counts are increased by the number of hidden
        entries (a hidden folder counts once, unopened) and of files with other extensions.

    Yields
    ------
    path : Path
        Each image file (extension in :data:`IMAGE_SUFFIXES`, any case).

    Raises
    ------
    KMIError
        When a path does not exist.
    """
    counts = {"hidden": 0, "non_image": 0} if skipped is None else skipped
    counts.setdefault("hidden", 0)
    counts.setdefault("non_image", 0)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for path in map(Path, paths):
        if path.is_dir():
            yield from _walk(path, counts, {path.resolve()})
        elif path.is_file():
            if _keep(path, counts):
                yield path
        else:
            raise KMIError(f"{path} does not exist")


def _keep(path, counts):
    if path.name.startswith("."):
        counts["hidden"] += 1
        return False
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        counts["non_image"] += 1
        return False
    return True


def _walk(folder, counts, seen):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise KMIError(f"cannot list folder {folder}: {exc.strerror}") from None
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir():
            if entry.name.startswith("."):
                counts["hidden"] += 1
                continue
            real = path.resolve()
            if real not in seen:  # a symbolic link back up the tree would loop for ever
                yield from _walk(path, counts, seen | {real})
        elif _keep(path, counts):
            yield path


def load_images(paths, *, size=None, color="gray", skip_bad=False, progress=None):
    """Decode image files into one array, on a thread pool.

    To stream many files in batches, pass the first batch's image size as ``size`` to the later
    batches so that every batch has the same shape.

    Parameters
    ----------
    paths : sequence of str or path-like
        Image files, e.g. from :func:`iter_image_files`.
    size : None, "HxW", int or (H, W)
        Resize every image to this size (Lanczos). None: every image must have the size of the
        first readable one.
    color : {"gray", "rgb"}
        Convert to 8-bit gray (luma) or to 8-bit RGB; alpha is dropped. 16-bit images keep their
        8 high bits; float images are clipped to 0..255.
    skip_bad : bool
        Skip unreadable files (counted) instead of raising.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    batch : ImageBatch
        ``images`` of shape (k, H, W) (gray) or (k, H, W, 3) (rgb), their ``paths`` and the
        ``skipped`` count.

    Raises
    ------
    KMIError
        For an unreadable file (unless ``skip_bad``), images of different sizes without
        ``size``, or when no file could be read.
    """
    color = check_color(color)
    size = parse_size(size)
    paths = [Path(p) for p in paths]
    if not paths:
        raise KMIError("no image files to load")
    images = None
    kept = []
    bad = 0
    pool = ThreadPoolExecutor(max_workers=n_workers())
    try:
        decoded = pool.map(lambda p: _decode(p, color, size), paths)
        with open_progress(progress, len(paths), "reading images") as bar:
            for path, (image, error) in zip(paths, decoded, strict=True):
                bar.advance(1)
                if error is not None:
                    if not skip_bad:
                        raise KMIError(
                            f"cannot read image {path}: {error} (pass --skip-bad to skip such "
                            f"files)"
                        )
                    bad += 1
                    continue
                if images is None:
                    images = np.empty((len(paths), *image.shape), dtype=np.uint8)
                elif image.shape != images.shape[1:]:
                    first = kept[0]
                    raise KMIError(
                        f"images differ in size: {first} is {_hw(images.shape[1:])} but {path} is "
                        f"{_hw(image.shape)}; pass --size HxW to resize them all"
                    )
                images[len(kept)] = image
                kept.append(path)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if images is None:
        raise KMIError(f"none of the {len(paths)} image files could be read ({bad} bad, skipped)")
    if len(kept) < len(images):
        images = images[: len(kept)].copy()
    return ImageBatch(images, kept, {"bad": bad})


def _hw(shape):
    return f"{shape[0]}x{shape[1]}"


def _decode(path, color, size):
    """Decode one file; return (array, None) or (None, reason) so the caller decides to skip."""
    try:
        with Image.open(path) as image:
            image = _convert(image, color)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), RESAMPLE)
            return np.asarray(image), None
    except Exception as exc:  # noqa: BLE001 - Pillow reports corrupt data with many exception types
        return None, " ".join(str(exc).split()) or type(exc).__name__


def _convert(image, color):
    """Convert a Pillow image (first frame) to mode "L" or "RGB"."""
    if image.mode.startswith("I"):
        # 16- and 32-bit integer pixels: keep the 8 high bits of 16-bit data (Pillow would clip).
        values = np.asarray(image).astype(np.int64) >> 8
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    return image.convert("L" if color == "gray" else "RGB")


def load_image_folder(folder, *, color="gray", size=None, skip_bad=False, progress=None):
    """Load a folder of images: one sub-folder per class, or flat (unlabelled).

    A folder whose sub-folders hold images is a class-per-sub-folder folder (like torchvision's
    ImageFolder): each sub-folder's name is the label of the images anywhere below it, and
    images directly in the folder are skipped as "unlabelled". Otherwise the folder's own
    images are loaded without labels.

    Parameters
    ----------
    folder : Path
    color, size, skip_bad, progress
        As in :func:`load_images`.

    Returns
    -------
    images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    labels : ndarray of str, shape (n,), or None
    skipped : dict of str to int
        Counts of "hidden", "non_image", "bad" and "unlabelled" files.

    Raises
    ------
    KMIError
        For an empty folder, a folder with no image files, and as :func:`load_images`.
    """
    skipped = dict.fromkeys(SKIP_KEYS, 0)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise KMIError(f"cannot list folder {folder}: {exc.strerror}") from None
    if not entries:
        raise KMIError(f"folder {folder} is empty")
    top_files = []
    classes = []
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            files = list(iter_image_files(entry.path, skipped))
            if files:
                classes.append((entry.name, files))
        elif _keep(Path(entry.path), skipped):
            top_files.append(Path(entry.path))
    if classes:
        skipped["unlabelled"] = len(top_files)
        files = [path for _, class_files in classes for path in class_files]
        names = np.array([name for name, class_files in classes for _ in class_files])
    elif top_files:
        files, names = top_files, None
    else:
        raise KMIError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}: "
            f"{skipped['non_image']} other and {skipped['hidden']} hidden files skipped"
        )
    batch = load_images(files, size=size, color=color, skip_bad=skip_bad, progress=progress)
    skipped["bad"] = batch.skipped["bad"]
    if names is not None and batch.skipped["bad"]:
        index = {path: i for i, path in enumerate(files)}
        names = names[[index[path] for path in batch.paths]]
    return batch.images, names, skipped


def open_progress(progress, total, description):
    """Open the caller's progress bar, or a silent stand-in when ``progress`` is None."""
    return nullcontext(_NoBar()) if progress is None else progress(total, description)


class _NoBar:
    def advance(self, n=1):
        """Nothing to show."""
