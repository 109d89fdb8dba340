"""Rich displays in Jupyter: a result object shows its key table and small figures inline.

Result classes build their ``_repr_html_`` with :func:`result_html`. Figures are drawn at
thumbnail size and embedded as PNG ``data:`` URIs, so a notebook stays light (a few tens of KiB
per result) and renders offline; the full-size files are in the result's output folder.
"""

import base64
import html
import io
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["THUMBNAIL_WIDTH", "figure_html", "html_table", "image_html", "png_data_uri", "result_html",
           "result_repr"]

# Inline figures are previews: 320 px wide keeps a notebook light and still readable.
THUMBNAIL_WIDTH = 320
_FIGURE_DPI = 60
_FIGURE_COLOURS = 64
_MONTAGE_COLOURS = 16
_FIGURE_BYTES = 32 * 1024


def png_data_uri(data):
    """Embed PNG bytes as a ``data:`` URI, the one encoder of every self-contained page.

    Parameters
    ----------
    data : bytes
        A PNG file's content.

    Returns
    -------
    str

    Examples
    --------
    >>> png_data_uri(b"\\x89PNG")
    'data:image/png;base64,iVBORw=='
    """
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _cell(value):
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    if value is None:
        return "—"
    return str(value)


def html_table(rows, columns=None):
    """An HTML table of a mapping (one row per key) or of records.

    Parameters
    ----------
    rows : mapping or sequence of mappings or sequence of sequences
        A mapping gives a two-column table of names and values; records give one row each.
    columns : sequence of str, optional
        Column headers and, for mappings in ``rows``, the keys to show; default the first
        record's keys.

    Returns
    -------
    str
        Escaped HTML; floats with 4 significant digits, integers with thousands separators.

    Examples
    --------
    >>> html_table({"K": 10, "accuracy": 0.81234})
    '<table><tbody><tr><th>K</th><td>10</td></tr><tr><th>accuracy</th><td>0.8123</td></tr></tbody></table>'
    >>> print(html_table([{"K": 10, "inertia": 2.5e6}]))  # doctest: +NORMALIZE_WHITESPACE
    <table><thead><tr><th>K</th><th>inertia</th></tr></thead><tbody><tr><td>10</td><td>2.5e+06</td></tr></tbody></table>
    """
    esc = html.escape
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th>{esc(str(key))}</th><td>{esc(_cell(value))}</td></tr>"
                       for key, value in rows.items())
        return f"<table><tbody>{body}</tbody></table>"
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows and isinstance(rows[0], Mapping) else []
    records = [[row.get(name) for name in columns] if isinstance(row, Mapping) else list(row) for row in rows]
    head = "".join(f"<th>{esc(str(name))}</th>" for name in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(value))}</td>" for value in record) + "</tr>"
                   for record in records)
    opening = f"<table><thead><tr>{head}</tr></thead>" if head else "<table>"
    return f"{opening}<tbody>{body}</tbody></table>"


def figure_html(figure, *, alt, width=THUMBNAIL_WIDTH):
    """Render a matplotlib figure (or the figure of an axes) as an inline ``<img>`` and close it.

    Parameters
    ----------
    figure : matplotlib.figure.Figure or matplotlib.axes.Axes
    alt : str
        Alternative text of the image.
    width : int, default=THUMBNAIL_WIDTH
        Displayed width in pixels; the PNG itself is no wider, so a large figure (the centroids
        of K=1000, say) stays a thumbnail.

    Returns
    -------
    str

    Examples
    --------
    >>> from kmeans_imagery.plots import plot_inertia
    >>> figure_html(plot_inertia([10, 20], [5.0, 3.0]), alt="inertia")[:36]
    '<img alt="inertia" style="width:320p'
    """
    from PIL import Image

    from .plots import save_png

    buffer = save_png(figure, io.BytesIO(), dpi=_FIGURE_DPI)
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        picture = rendered.convert("RGB")
    if picture.width > width:
        # Averaging (BOX) keeps a shrunk montage smooth, which also compresses best.
        picture = picture.resize((width, max(1, round(picture.height * width / picture.width))),
                                 Image.Resampling.BOX)
    # A plot has few colours: a palette PNG is about a quarter of the size and looks the same.
    # A montage of hundreds of images does not compress; fewer grey levels keep it a thumbnail.
    for colours in (_FIGURE_COLOURS, _MONTAGE_COLOURS):
        buffer = io.BytesIO()
        picture.quantize(colours, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG",
                                                                        optimize=True)
        if buffer.tell() <= _FIGURE_BYTES:
            break
    return (f'<img alt="{html.escape(alt)}" style="width:{int(width)}px;max-width:100%" '
            f'src="{png_data_uri(buffer.getvalue())}">')


def image_html(image, *, alt, width=THUMBNAIL_WIDTH):
    """An image array, or a PNG file of an output folder, shrunk to ``width`` as an inline ``<img>``.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, 3), or path-like
        Floats in [0, 1] or uint8; or the path of an image file.
    alt : str
    width : int, default=THUMBNAIL_WIDTH
        Displayed width; the PNG itself is no wider, so a large map stays small, and a small image
        is shown enlarged with sharp pixels.

    Returns
    -------
    str

    Examples
    --------
    >>> import numpy as np
    >>> image_html(np.zeros((4, 4)), alt="blank")[:30]
    '<img alt="blank" style="width:'
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        pixels = image if image.dtype == np.uint8 else np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        picture = Image.fromarray(np.ascontiguousarray(pixels))
    else:
        with Image.open(image) as opened:
            picture = opened.convert("RGBA" if "A" in opened.getbands() or opened.mode == "P" else "RGB")
    if picture.width > width:
        picture = picture.resize((width, max(1, round(picture.height * width / picture.width))),
                                 Image.Resampling.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    style = f"width:{int(width)}px;max-width:100%;image-rendering:pixelated"
    return (f'<img alt="{html.escape(alt)}" style="{style}" src="{png_data_uri(buffer.getvalue())}">')


def result_html(title, table, images=(), note=None):
    """The ``_repr_html_`` of a result: a title, its key table, then its figures side by side.

    Parameters
    ----------
    title : str
    table : str
        HTML of the key table (see :func:`html_table`).
    images : sequence of str
        ``<img>`` elements (see :func:`figure_html` and :func:`image_html`).
    note : str, optional
        One line under the title (where the full outputs are, say).

    Returns
    -------
    str

    Examples
    --------
    >>> page = result_html("Sweep", html_table({"K": 10}), note="results/")
    >>> "<table>" in page and "Sweep" in page
    True
    """
    note_html = f'<div style="color:#666">{html.escape(note)}</div>' if note else ""
    figures = "".join(f'<div style="flex:0 0 auto">{img}</div>' for img in images)
    return (f'<div class="kmi-result"><strong>{html.escape(title)}</strong>{note_html}'
            f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">'
            f"<div>{table}</div>{figures}</div></div>")


def result_repr(name, fields):
    """A one-line ``__repr__`` naming a result's key figures.

    Parameters
    ----------
    name : str
        Class name.
    fields : mapping
        Field names and values; floats are shown with 4 significant digits.

    Returns
    -------
    str

    Examples
    --------
    >>> result_repr("Evaluation", {"n_images": 1797, "accuracy": 0.912345})
    'Evaluation(n_images=1797, accuracy=0.9123)'
    """
    def short(value):
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral | bool | np.bool_):
            return f"{float(value):.4g}"
        return repr(value) if isinstance(value, str) else str(value)

    return f"{name}(" + ", ".join(f"{key}={short(value)}" for key, value in fields.items()) + ")"
