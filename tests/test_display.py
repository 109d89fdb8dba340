"""Rich displays: key tables, inline thumbnails, one-line reprs."""

import base64
import io

import numpy as np
from PIL import Image

from kmeans_imagery import display


def _inline_png(img_tag):
    data = img_tag.split('src="data:image/png;base64,')[1].split('"')[0]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_table_escapes_and_formats():
    table = display.html_table({"<b>": 1234567, "score": 0.123456, "flag": True, "none": None})
    assert "&lt;b&gt;" in table and "<b>" not in table
    assert "1,234,567" in table and "0.1235" in table and "True" in table and "—" in table


def test_table_of_records_takes_columns():
    table = display.html_table([{"K": 10, "acc": 0.5, "extra": 1}], columns=["K", "acc"])
    assert "<th>K</th><th>acc</th>" in table and "extra" not in table


def test_large_images_are_shrunk_to_thumbnails(tmp_path):
    big = np.random.default_rng(0).integers(0, 255, (1000, 2000, 3), dtype=np.uint8)
    tag = display.image_html(big, alt="scene", width=200)
    assert _inline_png(tag).size == (200, 100)
    path = tmp_path / "map.png"
    Image.fromarray(big).save(path)
    assert _inline_png(display.image_html(path, alt="map", width=100)).size == (100, 50)


def test_figure_html_closes_pyplot_figures():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    tag = display.figure_html(ax, alt="line")
    assert _inline_png(tag).width > 0 and not plt.get_fignums()
    assert _inline_png(tag).mode == "P"  # a palette image: a quarter of the bytes of RGBA


def test_result_html_holds_table_and_images():
    page = display.result_html("Run", display.html_table({"K": 3}),
                               [display.image_html(np.zeros((4, 4)), alt="x")], note="out/")
    assert "<table>" in page and page.count("<img") == 1 and "out/" in page


def test_large_figures_are_shrunk_to_thumbnails():
    # the centroids of K = 1437 digits are drawn 1146 px wide: inline, only a preview of it
    from kmeans_imagery.plots import plot_centroids

    centers = np.random.default_rng(0).random((1437, 64))
    tag = display.figure_html(plot_centroids(centers, (8, 8), np.arange(1437) % 10), alt="centroids")
    assert _inline_png(tag).width == display.THUMBNAIL_WIDTH
    assert len(tag) < 100 * 1024
