"""Load image files: a folder with one sub-folder per class, a flat folder, or a list of files.

Files are decoded with Pillow (PNG, JPEG, BMP, GIF's first frame, TIFF, WebP, AVIF, PNM, TGA,
ICO) on a thread pool that uses every core: Pillow releases the GIL while it decodes and
resizes. Small files (a few KiB on average) are decoded in the calling thread: their time is
mostly Python holding the GIL, which threads would only contend for. Hidden files and folders
(name starting with ".") and files with other extensions are skipped and counted; a symbolic
link to a folder already in the listing is not followed, so no folder is read twice.
"""

import copy
import os
import statistics
import warnings
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

#: File extensions read as images (compared in lower case). ".avif" is listed whether or not
#: Pillow was built with AVIF: a build without it then names each such file as unreadable
#: rather than counting it among non-image files, and a folder lists the same files everywhere.
IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif",
    ".pgm", ".ppm", ".pbm", ".pnm", ".tga", ".ico",
})
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
#: Files whose headers set ``size="auto"``, spread evenly over the list.
_AUTO_SAMPLE = 100
#: A 16- or 32-bit integer image whose values all lie below this reads at most 15 of 255 once
#: scaled from 0..65535: nearly black, worth a warning.
_FAINT = 4096


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
            root = path.resolve()
            yield from _walk(path, root, counts, root, set())
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


def _walk(folder, real, counts, root, seen):
    """Yield the image files below ``folder`` in name order.

    ``real`` is the real path of ``folder``, ``root`` that of the folder being listed, and
    ``seen`` the real paths of the folders walked so far in this listing (updated).
    """
    seen.add(real)
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
            target = _sub_folder(entry, real, root, seen)
            if target is not None:
                yield from _walk(path, target, counts, root, seen)
        elif _keep(path, counts):
            yield path


def _sub_folder(entry, parent, root, seen):
    """The real path of the folder ``entry`` in the folder whose real path is ``parent``, or
    None when walking it would read a folder of this listing again."""
    if not entry.is_symlink():
        target = parent / entry.name  # no link on the way: its real path without a system call
        return None if target in seen else target
    target = Path(entry.path).resolve()
    # A link into the listed folder reaches images listed where they are; one to a folder that
    # holds the listed folder or the link itself would loop. Links elsewhere (datasets linked
    # in) are followed, each real folder once.
    if (target in seen or target.is_relative_to(root) or root.is_relative_to(target)
            or parent.is_relative_to(target)):
        return None
    return target


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
        first readable one. "auto": the median height and width of up to 100 files spread over
        ``paths`` (read from their headers), scaled down to at most
        :data:`~kmeans_imagery.datasets.convert.AUTO_SIDE` on the longer side.
    color : {"gray", "rgb"}
        Convert to 8-bit gray (luma) or to 8-bit RGB; alpha is dropped. 16- and 32-bit integer
        images are scaled from 0..65535 (a warning says when some read nearly black); float
        images whose values all lie in 0..1 are scaled from 0..1, others clipped to 0..255.
        Images are read upright by their EXIF orientation (JPEG, TIFF, WebP, PNG, AVIF).
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

    Warns
    -----
    UserWarning
        Once, when 16- or 32-bit integer images read nearly black.

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
    batch, faint = _decode_all(paths, check_color(color), parse_size(size), skip_bad, progress)
    if faint.count:
        _warn_faint(faint, f"the {len(paths):,} decoded")
    if batch.images is None:
        raise KMIError(f"{_none_read(len(paths))} ({len(paths):,} bad, skipped)")
    return batch


class _Faint(NamedTuple):
    """16- or 32-bit integer images of a decoding pass that read nearly black."""

    count: int
    largest: int  # their largest value


def _warn_faint(faint, among):
    """Warn that ``faint.count`` images ``among`` those decoded (e.g. "the 10 decoded") read
    nearly black."""
    one = faint.count == 1
    warnings.warn(
        f"{_plural(faint.count, 'image')} of {among} {'is' if one else 'are'} nearly black: "
        f"{'its' if one else 'their'} 16- or 32-bit values, at most {faint.largest:,}, are "
        f"scaled from 0..65535 to 0..255; convert {'it' if one else 'them'} to 8-bit first, "
        f"stretched to {'its' if one else 'their'} own range", UserWarning, stacklevel=3)


def _decode_all(paths, color, size, skip_bad, progress):
    """:func:`load_images` on checked arguments; ``images`` is None when no file could be read.

    Returns the batch and a :class:`_Faint` of its images, for the caller to warn once.
    """
    if size == "auto":
        size = _auto_size(paths)
    images = None
    kept = []
    bad = 0
    faint = _Faint(0, 0)
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
            for path, (image, error, largest) in zip(paths, decoded, strict=True):
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
                if largest:
                    faint = _Faint(faint.count + 1, max(faint.largest, largest))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if images is None:
        return ImageBatch(None, [], {"bad": bad}), faint
    if len(kept) < len(images):
        images = images[: len(kept)].copy()
    return ImageBatch(images, kept, {"bad": bad}), faint


def _auto_size(paths):
    """``size="auto"`` for these files (None when no header reads).

    The median height and width of the headers of up to ``_AUTO_SAMPLE`` files spread evenly
    over ``paths``, so that one odd file (a banner sorted first) does not set the size of all.
    """
    picks = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), _AUTO_SAMPLE)).astype(int))
    sizes = [hw for hw in (_upright_hw(paths[i]) for i in picks) if hw is not None]
    if not sizes:  # every sampled file unreadable: the first readable one decides, if any
        sizes = [next((hw for hw in map(_upright_hw, paths) if hw is not None), None)]
        if sizes[0] is None:
            return None
    heights, widths = zip(*sizes, strict=True)
    return auto_size((statistics.median_low(heights), statistics.median_low(widths)))


def _upright_hw(path):
    """(height, width) of an image file read upright, from its header; None if unreadable."""
    try:
        with open(path, "rb") as file, Image.open(file) as image:
            if image.format == "TIFF":
                # Pillow turns a TIFF upright as it decodes it; whether its size says so before
                # then depends on its version, its tags do not.
                width, height = image.tag_v2.get(256, 0), image.tag_v2.get(257, 0)
                orientation = image.tag_v2.get(0x0112, 1)
            else:
                (width, height), orientation = image.size, _orientation(image, decoded=False)
    except Exception:  # noqa: BLE001 - the decoding pass reports or skips this file
        return None
    if not width or not height:
        return None
    return (width, height) if orientation in _TURNED else (height, width)


#: Formats whose EXIF orientation (of photos from cameras and phones) we apply: Pillow applies
#: a TIFF's itself as it decodes it.
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "PNG", "AVIF"})


#: EXIF orientations whose upright image swaps the stored width and height.
_TURNED = frozenset({5, 6, 7, 8})


def _orientation(image, *, decoded=True):
    """The EXIF orientation to apply to an opened image (1: none).

    Pillow decodes a whole PNG to look for an eXIf chunk after its pixels: with
    ``decoded=False`` only one before them, in the header, counts.
    """
    if image.format not in _EXIF_FORMATS or (
            not decoded and image.format == "PNG" and "exif" not in image.info):
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


def _plural(count, noun):
    """``count`` and ``noun``, plural unless there is one: "1 image", "2 images"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _none_read(count, where=""):
    """Says that none of ``count`` image files (``where``, e.g. " in photos") could be read."""
    if count == 1:
        return f"the image file{where} could not be read"
    return f"none of the {count:,} image files{where} could be read"


def _decode(path, color, size):
    """Decode one file.

    Returns (array, None, faint) or (None, reason, 0), so the caller decides to skip; ``faint``
    is the largest value of a 16- or 32-bit integer image that reads nearly black, else 0.
    """
    try:
        # From an open file, not a name: Pillow 13 maps an uncompressed TIFF from its name into
        # its upright size, which scrambles a turned one (EXIF orientation 5 to 8).
        with open(path, "rb") as file, Image.open(file) as image:
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
            image, faint = _convert(image, color)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), RESAMPLE)
            return np.asarray(image), None, faint
    except Exception as exc:  # noqa: BLE001 - Pillow reports corrupt data with many exception types
        return None, " ".join(str(exc).split()) or type(exc).__name__, 0


def _convert(image, color):
    """Convert a Pillow image (first frame) to mode "L" or "RGB".

    Returns the image and, for a 16- or 32-bit integer image whose values all lie below
    ``_FAINT`` but not all at 0, its largest value (else 0).
    """
    faint = 0
    if image.mode.startswith("I"):
        # 16- and 32-bit integer pixels: keep the 8 high bits of 16 (Pillow would clip). Pillow
        # also holds 16-bit PGM data as 32-bit, so both scale from 0..65535.
        values = np.asarray(image)
        largest = int(values.max())
        faint = largest if 0 < largest < _FAINT else 0
        image = Image.fromarray(np.clip(values >> 8, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image), nan=0.0)
        if values.min() >= 0 and values.max() <= 1:  # the common 0..1 convention of floats
            values = values * 255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    mode = "L" if color == "gray" else "RGB"
    # Converting to its own mode would only copy the pixels.
    return (image if image.mode == mode else image.convert(mode)), faint


def _list_image_folder(folder, loose_images="skip", exclude=()):
    """List a folder of images without decoding them: one sub-folder per class, or flat.

    A folder whose sub-folders hold images is a class-per-sub-folder folder (like torchvision's
    ImageFolder): each sub-folder's name is the label of the images anywhere below it, and
    images directly in the folder are skipped as "unlabelled" (``loose_images="skip"``) or,
    with ``loose_images="read"``, make it one unlabelled collection of every image below it.
    Otherwise the folder's own images are listed without labels. No real folder is read twice:
    a symbolic link to a folder inside ``folder``, or to one holding it, is not followed.

    Parameters
    ----------
    folder : Path
    loose_images : {"skip", "read"}
    exclude : sequence of path-like
        Folders not to read, nor count (an output folder written inside ``folder``).

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
    root = Path(folder).resolve()
    # Real paths of the folders walked, shared by the classes; excluded ones count as walked.
    seen = {root, *(Path(f).resolve() for f in exclude)}
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            real = _sub_folder(entry, root, root, seen)
            files = [] if real is None else list(_walk(Path(entry.path), real, skipped, root, seen))
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
        f"{_plural(skipped['non_image'], 'other file')} and "
        f"{_plural(skipped['hidden'], 'hidden file')} skipped"
    )


class FolderSource(ImageSource):
    """A folder of image files, listed once and decoded batch by batch.

    With one sub-folder per class, the sub-folder names are the labels; a flat folder has no
    labels. Every image is converted to ``color`` and, with ``size``, resized; without ``size``
    all images must have the size of the first readable one. A warning says, once, when 16- or
    32-bit integer images read nearly black. ``paths`` lists every file;
    batches carry the paths of their images.

    Parameters
    ----------
    folder : path-like
        The folder: one sub-folder per class, or flat.
    color : {"gray", "rgb"}
        The colour mode every image is converted to.
    size : None, "auto", "HxW", int or (H, W)
        Resize every image to this size; "auto": the median height and width of up to 100
        files spread over the folder (read from their headers), scaled down to at most
        :data:`~kmeans_imagery.datasets.convert.AUTO_SIDE` on the longer side.
    skip_bad : bool
        Skip unreadable files (counted in ``skipped["bad"]`` as they are met) instead of raising.
    files : sequence of path-like or None
        Read these files (and the images in these folders) instead of listing ``folder``.
    loose_images : {"skip", "read"}
        Images directly in a folder that also has class sub-folders: skipped (counted as
        "unlabelled"), or read, with every other image below the folder, as one unlabelled
        collection.
    exclude : sequence of path-like
        Folders below ``folder`` not to read, nor count among the skipped files (an output
        folder written inside it).

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
                 loose_images="skip", exclude=()):
        super().__init__(color, size)
        if loose_images not in LOOSE_IMAGES:
            raise KMIError(f"loose_images must be one of {', '.join(LOOSE_IMAGES)}, got "
                           f"{loose_images!r}")
        self.path = Path(folder)
        self.name = self.path.resolve().name
        self.origin = str(folder)
        if files is None:
            self.paths, self._labels_cache, self.skipped = _list_image_folder(
                self.path, loose_images, exclude)
        else:
            self.skipped = dict.fromkeys(_SKIP_KEYS, 0)
            self.paths, self._labels_cache = list(iter_image_files(files, self.skipped)), None
            if not self.paths:
                raise KMIError(f"no image files among {', '.join(map(str, files))}")
        self.n_images = len(self.paths)
        self._skip_bad = skip_bad
        self._bad = set()
        self._n_decoded = 0  # files decoded so far, and whether faint images were warned of
        self._faint_warned = False
        if self._size == "auto":
            # From files spread over the whole folder; None when no header reads, and then no
            # file decodes either.
            self._size = _auto_size(self.paths)
        first = self._first_readable()
        self.image_shape = tuple(first.shape[1:])

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
            raise KMIError(_none_read(self.n_images, f" in {self.path}"))
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
        raise KMIError(f"{_none_read(self.n_images, f' in {self.path}')} "
                       f"({len(self._bad):,} bad, skipped)")

    def _load(self, indices, size):
        """Decode the files at ``indices`` (a Batch with ``start`` -1), noting unreadable ones."""
        files = [self.paths[i] for i in indices]
        batch, faint = _decode_all(files, check_color(self._color), parse_size(size),
                                   self._skip_bad, None)
        self._n_decoded += len(files)
        if faint.count and not self._faint_warned:  # once per source, not once per batch
            self._faint_warned = True
            _warn_faint(faint, f"the first {self._n_decoded:,} decoded from {self.path}")
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
