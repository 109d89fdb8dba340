"""Load image files: a folder with one sub-folder per class, a flat folder, or a list of files.

Files are decoded with Pillow (PNG, JPEG, BMP, GIF's first frame, TIFF, WebP) on a thread pool
that uses every core: Pillow releases the GIL while it decodes and resizes. Small files (a few
KiB on average) are decoded in the calling thread: their time is mostly Python holding the GIL,
which threads would only contend for. Hidden files and folders (name starting with ".") and
files with other extensions are skipped and counted.
"""

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from ..errors import KMIError
from ..progress import open_progress
from ._source import Batch, ImageSource, _concat
from .convert import RESAMPLE, auto_size, check_color, n_workers, parse_size

__all__ = ["IMAGE_SUFFIXES", "FolderSource", "ImageBatch", "iter_image_files", "load_images",
           "skipped_summary"]

#: File extensions read as images (compared in lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_SKIP_KEYS = ("hidden", "non_image", "bad", "unlabelled")
#: What a folder with class sub-folders does with the images beside them (:class:`FolderSource`).
LOOSE_IMAGES = ("skip", "read")
#: Most files one thread decodes per task (one task per file cost more than the decoding of a
#: small file).
_DECODE_RUN = 64
#: Mean file size from which files are decoded on threads. MNIST's 28 x 28 PNGs (about 300
#: bytes) decode in 0.09 ms each, mostly Python holding the GIL: 0.87 s for 10,000 in one
#: thread, 0.9-1.5 s on two threads of a busy 2-core machine; 640 x 480 JPEGs (66 KB) took
#: 2.0 s per 600 in one thread, 1.2 s on two.
_THREADED_BYTES = 16 * 1024


class ImageBatch(NamedTuple):
    """Images decoded by :func:`load_images`.

    Attributes
    ----------
    images : ndarray of uint8, shape (k, H, W) or (k, H, W, 3)
    paths : list of Path, length k
        The file of each image, in order (bad files skipped are absent).
    skipped : dict of str to int
        ``{"bad": number of unreadable files skipped}``.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.datasets import ImageBatch
    >>> batch = ImageBatch(np.zeros((1, 2, 2), np.uint8), ["a.png"], {"bad": 0})
    >>> batch.images.shape, batch.paths, batch.skipped
    ((1, 2, 2), ['a.png'], {'bad': 0})
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets import iter_image_files
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.webp"):
    ...         (Path(folder) / name).parent.mkdir(exist_ok=True)
    ...         (Path(folder) / name).touch()
    ...     skipped = {}
    ...     print([p.name for p in iter_image_files(folder, skipped)], skipped)
    ['a.jpg', 'b.PNG', 'c.webp'] {'hidden': 1, 'non_image': 1}
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


def skipped_summary(skipped):
    """The files a source passed over, in words ("" when none).

    Parameters
    ----------
    skipped : dict of str to int
        Counts by reason, as in a source's ``skipped``.

    Returns
    -------
    str

    Examples
    --------
    >>> from kmeans_imagery.datasets.folders import skipped_summary
    >>> skipped_summary({"hidden": 0, "non_image": 2, "bad": 1, "unlabelled": 0})
    '2 non-image, 1 bad'
    """
    return ", ".join(f"{count:,} {reason.replace('_', '-')}"
                     for reason, count in skipped.items() if count)


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
    size : None, "auto", "HxW", int or (H, W)
        Resize every image to this size (Lanczos). None: every image must have the size of the
        first readable one. "auto": the first readable one's size, scaled down to at most
        :data:`~kmeans_imagery.datasets.convert.AUTO_SIDE` on its longer side.
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets import load_images
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     files = [Path(folder) / name for name in ("red.png", "broken.png")]
    ...     Image.new("RGB", (32, 24), (255, 0, 0)).save(files[0])
    ...     _ = files[1].write_bytes(b"not a PNG")
    ...     batch = load_images(files, size="12x16", skip_bad=True)
    >>> batch.images.shape, int(batch.images[0, 0, 0]), [p.name for p in batch.paths], batch.skipped
    ((1, 12, 16), 76, ['red.png'], {'bad': 1})
    """
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    if not paths:
        raise KMIError("no image files to load")
    batch = _decode_all(paths, check_color(color), parse_size(size), skip_bad, progress)
    if batch.images is None:
        raise KMIError(f"none of the {len(paths)} image files could be read ({len(paths)} bad, skipped)")
    return batch


def _decode_all(paths, color, size, skip_bad, progress):
    """:func:`load_images` on checked arguments; ``images`` is None when no file could be read."""
    if size == "auto":
        size = _auto_size_of_first(paths)
    images = None
    kept = []
    bad = 0
    workers = n_workers() if _mean_bytes(paths[:_DECODE_RUN]) >= _THREADED_BYTES else 1
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        if pool is None:
            decoded = (_decode(p, color, size) for p in paths)
        else:
            # Runs short enough that every thread gets several, at most _DECODE_RUN files.
            run = max(1, min(_DECODE_RUN, -(-len(paths) // (4 * workers))))
            runs = pool.map(lambda s: [_decode(p, color, size) for p in paths[s:s + run]],
                            range(0, len(paths), run))
            decoded = (result for results in runs for result in results)
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
                        f"{_hw(image.shape)}; pass size=HxW or size=auto to resize them all"
                    )
                images[len(kept)] = image
                kept.append(path)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if images is None:
        return ImageBatch(None, [], {"bad": bad})
    if len(kept) < len(images):
        images = images[: len(kept)].copy()
    return ImageBatch(images, kept, {"bad": bad})


def _auto_size_of_first(paths):
    """``size="auto"`` for these files: from the first whose header reads (None if none does)."""
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
                if _orientation(image) in _TURNED:
                    width, height = height, width
        except Exception:  # noqa: BLE001, S112 - the decoding pass reports or skips this file
            continue
        return auto_size((height, width))
    return None


#: Formats whose files carry an EXIF orientation (photos from cameras and phones).
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP"})


#: EXIF orientations whose upright image swaps the stored width and height.
_TURNED = frozenset({5, 6, 7, 8})


def _orientation(image):
    """The EXIF orientation of an opened image (1: stored upright)."""
    if image.format not in _EXIF_FORMATS:
        return 1
    return image.getexif().get(0x0112, 1)


def _mean_bytes(paths):
    """Mean size of the files that exist (an unreadable one is reported when decoded)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            continue
    return sum(sizes) / len(sizes) if sizes else 0


def _hw(shape):
    return f"{shape[0]}x{shape[1]}"


def _decode(path, color, size):
    """Decode one file; return (array, None) or (None, reason) so the caller decides to skip."""
    try:
        with Image.open(path) as image:
            orientation = _orientation(image)
            if size is not None:
                # A JPEG then decodes at 1/2, 1/4 or 1/8 scale where that still covers the
                # target size: photos read several times faster. Its colours are decoded as
                # without it (its own mode), converted below.
                stored = (size[0], size[1]) if orientation in _TURNED else (size[1], size[0])
                image.draft(image.mode, stored)
            if orientation != 1:
                # Cameras and phones store a photo's rotation as an EXIF tag: read it upright.
                image = ImageOps.exif_transpose(image)
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
    mode = "L" if color == "gray" else "RGB"
    # Converting to its own mode would only copy the pixels.
    return image if image.mode == mode else image.convert(mode)


def _list_image_folder(folder, loose_images="skip"):
    """List a folder of images without decoding them: one sub-folder per class, or flat.

    A folder whose sub-folders hold images is a class-per-sub-folder folder (like torchvision's
    ImageFolder): each sub-folder's name is the label of the images anywhere below it, and
    images directly in the folder are skipped as "unlabelled" (``loose_images="skip"``) or,
    with ``loose_images="read"``, make it one unlabelled collection of every image below it.
    Otherwise the folder's own images are listed without labels.

    Parameters
    ----------
    folder : Path
    loose_images : {"skip", "read"}

    Returns
    -------
    files : list of Path
    labels : ndarray of str, shape (len(files),), or None
    skipped : dict of str to int
        Counts of "hidden", "non_image", "bad" (0 until files are decoded) and "unlabelled".

    Raises
    ------
    KMIError
        For an empty or unreadable folder, or one with no image files.
    """
    skipped = dict.fromkeys(_SKIP_KEYS, 0)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise KMIError(f"cannot list folder {folder}: {exc.strerror}") from None
    if not entries:
        raise KMIError(f"folder {folder} is empty")
    top_files = []
    classes = []
    in_order = []  # every image, in the order of the listing
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            files = list(iter_image_files(entry.path, skipped))
            if files:
                classes.append((entry.name, files))
                in_order += files
        elif _keep(Path(entry.path), skipped):
            top_files.append(Path(entry.path))
            in_order.append(top_files[-1])
    if classes and top_files and loose_images == "read":
        return in_order, None, skipped
    if classes:
        skipped["unlabelled"] = len(top_files)
        files = [path for _, class_files in classes for path in class_files]
        return files, np.array([name for name, class_files in classes for _ in class_files]), skipped
    if top_files:
        return top_files, None, skipped
    raise KMIError(
        f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}: "
        f"{skipped['non_image']} other and {skipped['hidden']} hidden files skipped"
    )


class FolderSource(ImageSource):
    """A folder of image files, listed once and decoded batch by batch.

    With one sub-folder per class, the sub-folder names are the labels; a flat folder has no
    labels. Every image is converted to ``color`` and, with ``size``, resized; without ``size``
    all images must have the size of the first readable one. ``paths`` lists every file;
    batches carry the paths of their images.

    Parameters
    ----------
    folder : path-like
        The folder: one sub-folder per class, or flat.
    color : {"gray", "rgb"}
        The colour mode every image is converted to.
    size : None, "auto", "HxW", int or (H, W)
        Resize every image to this size; "auto": the first readable image's size, scaled down
        to at most :data:`~kmeans_imagery.datasets.convert.AUTO_SIDE` on its longer side.
    skip_bad : bool
        Skip unreadable files (counted in ``skipped["bad"]`` as they are met) instead of raising.
    files : sequence of path-like or None
        Read these files (and the images in these folders) instead of listing ``folder``.
    loose_images : {"skip", "read"}
        Images directly in a folder that also has class sub-folders: skipped (counted as
        "unlabelled"), or read, with every other image below the folder, as one unlabelled
        collection.

    Raises
    ------
    KMIError
        For an empty or unreadable folder, one without image files, or when no file can be read.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets import FolderSource
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name, level in [("cats/1.png", 40), ("cats/2.png", 60), ("dogs/1.png", 200)]:
    ...         (Path(folder) / name).parent.mkdir(exist_ok=True)
    ...         Image.new("L", (8, 8), level).save(Path(folder) / name)
    ...     source = FolderSource(folder, size=4)
    ...     batch = source.read_batch(0, 3)
    >>> source.n_images, source.image_shape, source.labels.tolist()
    (3, (4, 4), ['cats', 'cats', 'dogs'])
    >>> batch.images[:, 0, 0].tolist(), [p.name for p in batch.paths]
    ([40, 60, 200], ['1.png', '2.png', '1.png'])
    """

    def __init__(self, folder, *, color="gray", size=None, skip_bad=False, files=None,
                 loose_images="skip"):
        super().__init__(color, size)
        if loose_images not in LOOSE_IMAGES:
            raise KMIError(f"loose_images must be one of {', '.join(LOOSE_IMAGES)}, got "
                           f"{loose_images!r}")
        self.path = Path(folder)
        self.name = self.path.resolve().name
        self.origin = str(folder)
        if files is None:
            self.paths, self._labels_cache, self.skipped = _list_image_folder(self.path,
                                                                              loose_images)
        else:
            self.skipped = dict.fromkeys(_SKIP_KEYS, 0)
            self.paths, self._labels_cache = list(iter_image_files(files, self.skipped)), None
            if not self.paths:
                raise KMIError(f"no image files among {', '.join(map(str, files))}")
        self.n_images = len(self.paths)
        self._skip_bad = skip_bad
        self._bad = set()
        first = self._first_readable()
        self.image_shape = tuple(first.shape[1:])
        if self._size == "auto":
            self._size = self.image_shape[:2]

    def positions(self, batch):
        """Index of each image of a batch, found by its path (unreadable files leave gaps)."""
        if len(batch.images) == len(self.paths[batch.start:batch.start + len(batch.images)]) and \
                batch.paths == self.paths[batch.start:batch.start + len(batch.images)]:
            return super().positions(batch)
        if getattr(self, "_position", None) is None:
            self._position = {path: i for i, path in enumerate(self.paths)}
        return np.array([self._position[path] for path in batch.paths], dtype=np.int64)

    @classmethod
    def of_files(cls, files, *, color="gray", size=None, skip_bad=False):
        """Loose image files (no labels) as one source, named after their common folder."""
        files = [Path(f) for f in files]
        folder = Path(os.path.commonpath([f.resolve().parent for f in files]))
        return cls(folder, color=color, size=size, skip_bad=skip_bad, files=files)

    @property
    def skips_bad(self):
        """Whether unreadable files are skipped (so a batch can hold fewer images than asked)."""
        return self._skip_bad

    def subset(self, indices):
        """The same folder restricted to the files at ``indices`` (sorted), e.g. the readable ones.

        Returns
        -------
        FolderSource
        """
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            raise KMIError(f"none of the {self.n_images} image files in {self.path} could be read")
        part = copy.copy(self)
        part.paths = [self.paths[i] for i in indices]
        part.n_images = len(part.paths)
        labels = self.labels
        part._labels_cache = None if labels is None else labels[indices]
        part.skipped = dict(self.skipped)
        part._bad = set()
        part._position = None
        return part

    def _first_readable(self):
        for start in range(0, self.n_images, 64):
            batch = self._load(np.arange(start, min(start + 64, self.n_images)), self._size)
            if len(batch.images):
                return batch.images[:1]
        raise KMIError(f"none of the {self.n_images} image files in {self.path} could be read "
                       f"({len(self._bad)} bad, skipped)")

    def _load(self, indices, size):
        """Decode the files at ``indices`` (a Batch with ``start`` -1), noting unreadable ones."""
        files = [self.paths[i] for i in indices]
        batch = _decode_all(files, check_color(self._color), parse_size(size), self._skip_bad, None)
        if batch.images is None:  # every file unreadable (and skipped): not an error for one batch
            batch = ImageBatch(np.empty((0, 0, 0), np.uint8), [], batch.skipped)
        keep = np.ones(len(files), bool)
        if batch.skipped["bad"]:
            kept = set(batch.paths)
            keep = np.array([path in kept for path in files])
            self._bad.update(np.asarray(indices)[~keep].tolist())
            self.skipped["bad"] = len(self._bad)
        labels = self.labels
        return Batch(-1, batch.images,
                     None if labels is None else labels[np.asarray(indices)[keep]],
                     list(batch.paths))

    def _read_batch(self, start, stop):
        return self._checked(self._load(np.arange(start, stop), self._size))._replace(start=start)

    def _take(self, indices, batch_size):
        """Decode exactly the wanted files, ``batch_size`` at a time."""
        return _concat([self._checked(self._load(indices[s:s + batch_size], self._size))
                        for s in range(0, len(indices), batch_size)], self.image_shape)

    def _checked(self, batch):
        """``batch`` with every image of the first one's size (an empty one shaped to match)."""
        if not len(batch.images):
            return batch._replace(images=np.empty((0, *self.image_shape), np.uint8))
        if batch.images.shape[1:] != self.image_shape:
            raise KMIError(
                f"images in {self.path} differ in size: {self.paths[0]} is "
                f"{'x'.join(map(str, self.image_shape[:2]))} but {batch.paths[0]} is "
                f"{'x'.join(map(str, batch.images.shape[1:3]))}; pass size=HxW or size=auto to "
                f"resize them all"
            )
        return batch
