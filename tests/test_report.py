"""Tests for kmeans_imagery.report: a self-contained, escaped, atomically written report.html."""

import base64
import io
import os
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery import KMIError
from kmeans_imagery.report import FIGURE_NAMES, write_report

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>&\"quoted\""


class _PageParser(HTMLParser):
    """Collects the tags, <img> attributes, <figure> ids and <body> attributes of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.images, self.figure_ids, self.body = [], [], [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "figure":
            self.figure_ids.append(attrs.get("id"))
        elif tag == "body":
            self.body = attrs


def _parse(text):
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    return parser


def _png(path, color):
    Image.new("RGB", (12, 8), color).save(path, format="PNG")
    return path


@pytest.fixture
def figures(tmp_path):
    """Every known figure plus one unknown name, as small PNG files (in a scrambled order)."""
    folder = tmp_path / "figures"
    folder.mkdir()
    names = ["members", "extra_view", *reversed(FIGURE_NAMES[:-1])]
    return {name: _png(folder / f"{name}.png", (20 * i, 100, 200)) for i, name in enumerate(names)}


@pytest.fixture
def results():
    ks = [10, 36, 256]
    return {
        "dataset": "mnist",
        "source": "/data/mnist",
        "n_train": 60000,
        "n_test": 10000,
        "image_shape": [28, 28],
        "n_classes": 10,
        "algorithm": "minibatch",
        "engine": "kmi",
        "seed": 0,
        "transductive": False,
        "features": "raw",
        "versions": {"python": "3.11.7", "numpy": "2.1.0", "kmeans-imagery": "0.1.0"},
        "first_predictions": {"predicted": [7, 2, 1, 0], "true": [7, 2, 1, 6]},
        "sweep": [
            {"k": k, "inertia": 1234567.8 / (i + 1), "homogeneity": 0.5 + i / 10,
             "completeness": None, "v_measure": 0.55, "accuracy": 0.6, "test_accuracy": 0.59,
             "fit_seconds": 0.304, "hungarian_accuracy": 0.5512 if k == 10 else None}
            for i, k in enumerate(ks)
        ],
        "test": {"k": 256, "accuracy": 0.9012, "metrics": {"homogeneity": 0.8, "nmi": 0.71},
                 "confusion_matrix": [[5, 1], [2, 7]], "class_names": ["0", "1"]},
        "label_budget": [{"labels": 10, "test_accuracy": 0.5}, {"labels": 1000,
                                                                 "test_accuracy": 0.85}],
        "init_stability": [{"seed": s, "inertia": 2000.0 + s, "test_hungarian_accuracy": 0.6}
                           for s in range(3)],
    }


def test_every_figure_is_an_embedded_png(tmp_path, results, figures):
    path = write_report(results, figures, tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    page = _parse(path.read_text(encoding="utf-8"))
    assert len(page.images) == len(figures)
    for attrs in page.images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        data = base64.b64decode(attrs["src"][len(prefix) :], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
        assert attrs["alt"]
    # The confusion matrix sits in the test section; the others follow in the report order,
    # then unknown names.
    expected = ["confusion", "samples", "inertia", "scores", "centroids", "label_budget",
                "members", "extra_view"]
    assert page.figure_ids == [f"fig-{name}" for name in expected]


def test_self_contained(tmp_path, results, figures):
    text = write_report(results, figures, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    tags = set(_parse(text).tags)
    assert not tags & {"script", "link", "iframe", "object", "embed"}
    assert "<style>" in text


def test_sections_and_number_formatting(tmp_path, results, figures):
    text = write_report(results, figures, tmp_path / "report.html").read_text(encoding="utf-8")
    for heading in ("K sweep", "Test set (K = 256)", "Label budget", "Initialisation stability",
                    "Figures", "Versions", "First predictions"):
        assert f"<h2>{heading}" in text
    assert "<td>1,234,568</td>" in text  # inertia with thousands separators
    assert "<td>0.551</td>" in text  # scores to 3 decimals
    assert "<td>\u2014</td>" in text  # null as an em dash
    assert "<td>0.30</td>" in text  # seconds
    assert "<dd>60,000</dd>" in text and "<dd>28 \u00d7 28</dd>" in text
    assert "<strong>0.901</strong>" in text
    assert '<td class="miss">0</td>' in text  # a wrong first prediction is highlighted
    assert "Transductive" not in text


def test_transductive_note_and_confusion_table_without_figure(tmp_path, results):
    results["transductive"] = True
    text = write_report(results, {}, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Transductive run" in text
    assert "<img" not in text
    assert "<th>true \\ predicted</th>" in text  # confusion matrix rendered as a table instead


def test_minimal_results(tmp_path):
    text = write_report({}, {}, tmp_path / "report.html", title="Empty").read_text("utf-8")
    assert "<title>Empty</title>" in text and "<h2>" not in text


@pytest.mark.parametrize("class_names, shown", [
    (["a"], ["a", "1"]), (["a", None], ["a", "1"]), (None, ["0", "1"]), (["a", "b", "c"], ["a", "b"]),
])
def test_confusion_table_with_missing_class_names(tmp_path, class_names, shown):
    # Names short of the matrix (or null) used to crash: the unnamed classes show their index.
    results = {"test": {"confusion_matrix": [[1, 2], [3, 4]], "class_names": class_names}}
    text = write_report(results, {}, tmp_path / "report.html").read_text("utf-8")
    head = "".join(f"<th>{name}</th>" for name in shown)
    assert f"<th>true \\ predicted</th>{head}</tr>" in text
    assert f"<tr><th>{shown[0]}</th><td>1</td><td>2</td></tr>" in text
    assert f"<tr><th>{shown[1]}</th><td>3</td><td>4</td></tr>" in text


def test_first_predictions_with_null_lists(tmp_path):
    results = {"first_predictions": {"predicted": [1, 2], "true": None}}
    text = write_report(results, {}, tmp_path / "report.html").read_text("utf-8")
    assert "<td>1</td><td>2</td>" in text
    results = {"first_predictions": {"predicted": None, "true": [1]}}
    assert "<td>1</td>" in write_report(results, {}, tmp_path / "r.html").read_text("utf-8")


def test_hostile_strings_are_escaped(tmp_path, results, figures):
    results["dataset"] = HOSTILE
    results["source"] = HOSTILE
    results["versions"][HOSTILE] = HOSTILE
    results["test"]["class_names"] = [HOSTILE, "1"]
    results["sweep"][0]["note"] = HOSTILE
    figures = {HOSTILE: figures["samples"]}
    text = write_report(results, figures, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    page = _parse(text)
    assert "script" not in page.tags
    assert len(page.images) == 1  # the hostile <img> became text


def test_default_title_escapes_dataset(tmp_path):
    text = write_report({"dataset": "a<b"}, {}, tmp_path / "r.html").read_text("utf-8")
    assert "<title>K-means on a&lt;b</title>" in text


def test_bad_figures_raise_and_keep_previous_report(tmp_path, results, figures):
    path = tmp_path / "report.html"
    path.write_text("previous")
    with pytest.raises(KMIError, match="cannot read figure 'samples'"):
        write_report(results, {"samples": tmp_path / "missing.png"}, path)
    not_png = tmp_path / "fake.png"
    not_png.write_bytes(b"GIF89a")
    with pytest.raises(KMIError, match="not a PNG"):
        write_report(results, {"inertia": not_png}, path)
    assert path.read_text() == "previous"


def test_atomic_write(tmp_path, results, figures, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    path = out / "report.html"
    write_report(results, figures, path)
    write_report(results, figures, path)  # replaces an existing report
    assert [p.name for p in out.iterdir()] == ["report.html"]
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        write_report(results, figures, path)
    assert [p.name for p in out.iterdir()] == ["report.html"]
    assert path.read_bytes() == before


# Appended to a copy of the report: records, once the page has loaded, how many images it has
# and how many failed to decode, in attributes of <body> that --dump-dom prints.
_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.body.dataset.imageCount = String(images.length);
  document.body.dataset.brokenImages = String(broken.length);
});
</script>"""


@pytest.mark.browser
def test_report_renders_in_chromium(tmp_path, results, load_in_chromium):
    from kmeans_imagery import plots

    results["dataset"] = HOSTILE  # an unescaped <img src=x> would show up as a broken image
    rng = np.random.default_rng(0)
    figures = {
        "samples": plots.save_png(plots.plot_samples(rng.random((9, 8, 8)), np.arange(9)),
                                  tmp_path / "samples.png", dpi=50),
        "inertia": plots.save_png(plots.plot_inertia([10, 36, 256], [3e6, 2e6, 1e6]),
                                  tmp_path / "inertia.png", dpi=50),
        "confusion": plots.save_png(plots.plot_confusion(np.eye(2, dtype=int) * 5, ["0", "1"]),
                                    tmp_path / "confusion.png", dpi=50),
    }
    report = write_report(results, figures, tmp_path / "report.html")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text("utf-8").replace("</body>", _PROBE + "\n</body>"), "utf-8")
    done = load_in_chromium(probe)
    body = _parse(done.dom).body
    assert body.get("data-image-count") == str(len(figures)), done.dom[:500]
    assert body.get("data-broken-images") == "0"
    assert done.console == []
