"""The explore page: one self-contained ``index.html`` that opens quickly at any collection size.

Every gallery's thumbnails are one PNG *sprite* (a strip of small images) embedded once as a
``data:`` URI in a CSS rule; each thumbnail is an empty ``<span>`` showing its part of the strip,
with the file's path and figures as its tooltip. Galleries sit in closed ``<details>`` sections,
whose content the browser neither lays out nor decodes until opened. The page holds a bounded
number of thumbnails (a few dozen per cluster, the top outliers, the first duplicate groups)
whatever the number of images, so 100,000 images cost no more to open than 1,000. No script, no
external reference; every string from the data (paths, labels) is HTML-escaped.
"""


import io

import numpy as np

from ..atomic import atomic_write
from ..datasets.convert import resize_images
from ..display import png_data_uri
from ..report import _CSS, _esc, _png_data_uri

__all__ = ["Gallery", "write_index"]

#: Largest thumbnail side in pixels; bigger images are shrunk to it.
THUMB_SIDE = 64

_PAGE_CSS = _CSS + """
details { margin: 0.5rem 0; border: 1px solid #e4e7ec; border-radius: 4px; padding: 0.3rem 0.6rem; }
summary { cursor: pointer; font-weight: 600; }
.row { margin: 0.35rem 0; }
.row b { display: inline-block; min-width: 7rem; font-weight: 500; color: #475467;
         vertical-align: top; }
.t { display: inline-block; margin: 1px; background-repeat: no-repeat; image-rendering: pixelated;
     outline: 1px solid #e4e7ec; }
"""


class Gallery:
    """A titled section of thumbnails in rows.

    Parameters
    ----------
    key : str
        Short identifier (letters, digits, '-'), unique in the page.
    title : str
    rows : list of (str, ndarray, list of str)
        Each row: a caption, its images (uint8, (m, H, W[, 3])) and one tooltip per image.
    note : str
        A line under the title (plain text).
    open : bool
        Whether the section starts open.
    """

    def __init__(self, key, title, rows, *, note="", open=False):
        self.key, self.title, self.rows, self.note, self.open = key, title, rows, note, open


def _thumbnails(images):
    """Images no larger than THUMB_SIDE, and the zoom (1 or 2) they are shown at."""
    height, width = images.shape[1:3]
    side = max(height, width)
    if side > THUMB_SIDE:
        size = (max(1, round(height * THUMB_SIDE / side)), max(1, round(width * THUMB_SIDE / side)))
        images = resize_images(np.ascontiguousarray(images), size)
    return images, 2 if side <= THUMB_SIDE // 2 else 1


def _sprite(images):
    """One PNG strip of the images side by side, as a data URI."""
    from PIL import Image

    n, height, width = images.shape[:3]
    strip = images.transpose(1, 0, 2, *range(3, images.ndim)).reshape(height, n * width,
                                                                        *images.shape[3:])
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(strip)).save(buffer, format="PNG", optimize=False)
    return png_data_uri(buffer.getvalue())


def _gallery_html(gallery, styles):
    rows = [(caption, images, tips) for caption, images, tips in gallery.rows if len(images)]
    if not rows:
        body = "<p>none</p>"
    else:
        images, zoom = _thumbnails(np.concatenate([images for _, images, _ in rows]))
        height, width = images.shape[1:3]
        total = len(images)
        styles.append(f"#g-{gallery.key} .t {{ background-image: url({_sprite(images)}); "
                      f"background-size: {total * width * zoom}px {height * zoom}px; "
                      f"width: {width * zoom}px; height: {height * zoom}px; }}")
        parts, i = [], 0
        for caption, row_images, tips in rows:
            cells = []
            for tip in tips[:len(row_images)]:
                cells.append(f'<span class="t" style="background-position:-{i * width * zoom}px 0" '
                             f'title="{_esc(tip)}"></span>')
                i += 1
            parts.append(f'<div class="row"><b>{_esc(caption)}</b>{"".join(cells)}</div>')
        body = "\n".join(parts)
    note = f"<p>{_esc(gallery.note)}</p>" if gallery.note else ""
    return (f'<details id="g-{gallery.key}"{" open" if gallery.open else ""}>'
            f"<summary>{_esc(gallery.title)}</summary>{note}{body}</details>")


def write_index(path, *, title, facts, figures, sections):
    """Write the explore page, atomically.

    Parameters
    ----------
    path : path-like
    title : str
    facts : dict of str to str
        Shown as a definition list at the top (plain text).
    figures : list of (str, path-like)
        Caption and PNG file of each overview figure, embedded.
    sections : list of (str, list of Gallery)
        Headed groups of galleries.

    Returns
    -------
    Path
    """
    styles = []
    facts_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts.items())
    figures_html = "".join(
        f'<figure><img src="{_png_data_uri(caption, png)}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>" for caption, png in figures)
    sections_html = "".join(
        f"<h2>{_esc(heading)}</h2>" + "\n".join(_gallery_html(g, styles) for g in galleries)
        for heading, galleries in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_PAGE_CSS}\n" + "\n".join(styles) +
            f'</style></head><body><h1>{_esc(title)}</h1><dl class="meta">{facts_html}</dl>'
            f"<h2>Overview</h2>{figures_html}{sections_html}</body></html>\n")
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path
