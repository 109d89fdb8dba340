"""A single, self-contained HTML report of a K-means run.

:func:`write_report` turns the results dictionary (the content of ``results.json``) and the PNG
figures into one ``report.html``: figures are embedded as base64 ``data:`` URIs and the CSS is
inline, so the file can be mailed or archived alone and opens offline. It has no script and no
external reference. Every string taken from the results is HTML-escaped, since dataset names and
paths come from user folders.
"""

import html
import math
import numbers
from datetime import datetime
from pathlib import Path

from .atomic import atomic_write
from .display import png_data_uri
from .errors import KMIError

__all__ = ["FIGURE_NAMES", "write_report"]

#: Known figure names, in the order the report shows them; unknown names follow.
FIGURE_NAMES = ("samples", "inertia", "scores", "centroids", "confusion", "label_budget", "members")

_CAPTIONS = {
    "samples": "Sample training images with their labels.",
    "inertia": "Inertia (sum of squared distances to the nearest centroid) against K.",
    "scores": "Homogeneity and accuracy against K.",
    "centroids": "Cluster centroids, titled with the class inferred for each cluster.",
    "confusion": "Confusion matrix on the test set: true class in rows, predicted in columns.",
    "label_budget": "Test accuracy against the number of labelled images used to name clusters.",
    "members": "Each centroid (left) followed by its nearest member images.",
}

_HEADINGS = {
    "k": "K",
    "inertia": "Inertia",
    "homogeneity": "Homogeneity",
    "completeness": "Completeness",
    "v_measure": "V-measure",
    "accuracy": "Accuracy",
    "test_accuracy": "Test accuracy",
    "hungarian_accuracy": "Hungarian accuracy",
    "test_hungarian_accuracy": "Test Hungarian accuracy",
    "fit_seconds": "Fit time (s)",
    "labels": "Labels used",
    "features": "Features",
    "seed": "Seed",
    "nmi": "NMI",
    "ari": "ARI",
    "ami": "AMI",
}

_EM_DASH = "\u2014"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #d0d5dd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1.2rem; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
.note { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.6rem 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d5dd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f2f4f7; }
th:first-child, td.text { text-align: left; }
td.miss { background: #fde8e8; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e7ec; }
figcaption { color: #475467; font-size: 0.92rem; }
"""


def write_report(results, figures, path, *, title=None):
    """Write the self-contained HTML report of a run, atomically.

    Parameters
    ----------
    results : mapping
        The run's results, as written to ``results.json``: "dataset", "n_train", "sweep",
        "test", "label_budget", "init_stability", "versions", ... Every section is optional
        and rendered only when present; null values show as an em dash.
    figures : mapping of str to path-like
        Figure name to PNG file. Known names (:data:`FIGURE_NAMES`) are shown in that order,
        the confusion matrix inside the test section; other names follow, in mapping order.
    path : str or os.PathLike
        The HTML file to write; its folder must exist. It is written to a temporary file in
        the same folder, then moved into place.
    title : str, optional
        Page title; by default "K-means on <dataset>".

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    KMIError
        If a figure file is missing or is not a PNG.

    Examples
    --------
    A report of a two-K sweep with its inertia figure, embedded in the page so that the page can
    be mailed alone:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.plots import plot_inertia, save_png
    >>> from kmeans_imagery.report import write_report
    >>> results = {"dataset": "scans", "n_train": 120,
    ...            "sweep": [{"k": 4, "inertia": 812.5, "accuracy": 0.61},
    ...                      {"k": 8, "inertia": 530.25, "accuracy": 0.78}]}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     figure = save_png(plot_inertia([4, 8], [812.5, 530.25]), Path(tmp, "inertia.png"))
    ...     page = write_report(results, {"inertia": figure}, Path(tmp, "report.html")).read_text()
    >>> "<title>K-means on scans</title>" in page, "<td>0.780</td>" in page
    (True, True)
    >>> page.count('<img src="data:image/png;base64,')
    1
    """
    path = Path(path)
    images = {name: _png_data_uri(name, figures[name]) for name in _ordered(figures)}
    dataset = results.get("dataset")
    if title is None:
        title = f"K-means on {dataset}" if dataset is not None else "K-means report"

    body = [f"<h1>{_esc(title)}</h1>", _header(results)]
    if results.get("transductive"):
        body.append(
            '<p class="note"><strong>Transductive run:</strong> the clusters were fitted on the '
            "test set, so its scores are not held-out estimates.</p>"
        )
    if results.get("sweep"):
        body += ["<h2>K sweep</h2>", _table(results["sweep"])]
    if results.get("test"):
        body.append(_test_section(results["test"], images.pop("confusion", None)))
    if results.get("first_predictions"):
        body.append(_first_predictions(results["first_predictions"]))
    if results.get("label_budget"):
        body += ["<h2>Label budget</h2>", _table(results["label_budget"])]
    if results.get("init_stability"):
        body += [
            "<h2>Initialisation stability</h2>",
            "<p>The same K fitted with different seeds.</p>",
            _table(results["init_stability"]),
        ]
    if images:
        body.append("<h2>Figures</h2>")
        body += [_figure(name, uri) for name, uri in images.items()]
    if results.get("versions"):
        body += ["<h2>Versions</h2>", _key_value_table(results["versions"], "Package", "Version")]

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    with atomic_write(path) as handle:
        handle.write(page.encode("utf-8"))
    return path


def _ordered(figures):
    """Figure names: the known ones in report order, then the others in mapping order."""
    known = [name for name in FIGURE_NAMES if name in figures]
    return known + [name for name in figures if name not in FIGURE_NAMES]


def _png_data_uri(name, png_path):
    png_path = Path(png_path)
    try:
        data = png_path.read_bytes()
    except OSError as exc:
        raise KMIError(f"cannot read figure {name!r} from {png_path}: {exc.strerror}") from exc
    if not data.startswith(_PNG_SIGNATURE):
        raise KMIError(f"figure {name!r} at {png_path} is not a PNG file")
    return png_data_uri(data)


def _esc(value):
    return html.escape(str(value), quote=True)


def _format(key, value):
    """One table cell's text, already escaped: numbers formatted by what they measure."""
    if value is None:
        return _EM_DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return _EM_DASH
        if key == "inertia":
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"
        if key.endswith("seconds"):
            return f"{value:,.2f}"
        return f"{value:.3f}"  # scores and accuracies
    return _esc(value)


def _heading(key):
    return _esc(_HEADINGS.get(key, key.replace("_", " ")))


def _table(rows):
    """A table of a list of records; columns are the keys in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_heading(key)}</th>" for key in columns)
    lines = [f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>"]
    for row in rows:
        cells = "".join(f"<td>{_format(key, row.get(key))}</td>" for key in columns)
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _key_value_table(mapping, key_heading, value_heading):
    lines = [f"<table>\n<thead><tr><th>{key_heading}</th><th>{value_heading}</th></tr></thead>"]
    lines.append("<tbody>")
    for key, value in mapping.items():
        lines.append(f'<tr><th>{_heading(key)}</th><td class="text">{_format(key, value)}</td></tr>')
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _header(results):
    shape = results.get("image_shape")
    items = [
        ("Dataset", results.get("dataset")),
        ("Source", results.get("source")),
        ("Training images", results.get("n_train")),
        ("Test images", results.get("n_test")),
        ("Image shape", " \u00d7 ".join(str(size) for size in shape) if shape else None),
        ("Classes", results.get("n_classes")),
        ("Engine", results.get("engine")),
        ("Algorithm", results.get("algorithm")),
        ("Features", results.get("features")),
        ("Seed", results.get("seed")),
        ("Generated", datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
    ]
    lines = ['<dl class="meta">']
    for label, value in items:
        if value is not None:
            lines.append(f"<dt>{label}</dt><dd>{_format(label, value)}</dd>")
    lines.append("</dl>")
    return "\n".join(lines)


def _test_section(test, confusion_uri):
    heading = "Test set"
    if test.get("k") is not None:
        heading += f" (K = {_format('k', test['k'])})"
    parts = [f"<h2>{heading}</h2>"]
    if "accuracy" in test:
        parts.append(f"<p>Accuracy: <strong>{_format('accuracy', test['accuracy'])}</strong></p>")
    if test.get("metrics"):
        parts.append(_key_value_table(test["metrics"], "Metric", "Value"))
    if confusion_uri is not None:
        parts.append(_figure("confusion", confusion_uri))
    elif test.get("confusion_matrix"):
        parts.append(_confusion_table(test["confusion_matrix"], test.get("class_names")))
    return "\n".join(parts)


def _confusion_table(matrix, class_names):
    """The confusion matrix as a table, for reports made without its figure."""
    # A class without a name (a list shorter than the matrix, or a null) is shown by its index.
    names = [str(i) if i >= len(class_names or []) or class_names[i] is None else class_names[i]
             for i in range(len(matrix))]
    head = "".join(f"<th>{_esc(name)}</th>" for name in names)
    lines = [f"<table>\n<thead><tr><th>true \\ predicted</th>{head}</tr></thead>\n<tbody>"]
    for name, row in zip(names, matrix, strict=True):
        cells = "".join(f"<td>{_format('count', count)}</td>" for count in row)
        lines.append(f"<tr><th>{_esc(name)}</th>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _first_predictions(first):
    predicted, true = first.get("predicted") or [], first.get("true") or []
    lines = ["<h2>First predictions (K = number of classes, on the images it was fitted on)</h2>",
             "<table>\n<tbody>"]
    # Wrong predictions are highlighted.
    cells = "".join(
        ('<td class="miss">' if i < len(true) and label != true[i] else "<td>")
        + f"{_format('label', label)}</td>"
        for i, label in enumerate(predicted)
    )
    lines.append(f"<tr><th>Predicted</th>{cells}</tr>")
    cells = "".join(f"<td>{_format('label', label)}</td>" for label in true)
    lines.append(f"<tr><th>True</th>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _figure(name, uri):
    caption = _CAPTIONS.get(name, name.replace("_", " "))
    return (
        f'<figure id="fig-{_esc(name)}"><img src="{uri}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )
