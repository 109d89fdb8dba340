"""Tests for kmeans_imagery.plots: montage arrays, what each figure draws, and save_png."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kmeans_imagery import KMIError, plots


@pytest.fixture
def gray_images(rng):
    """Twelve 6x5 gray uint8 images, distinct so cells can be told apart."""
    return rng.integers(0, 256, size=(12, 6, 5), dtype=np.uint8)


def _axes_type():
    from matplotlib.axes import Axes

    return Axes


def test_importing_package_does_not_import_matplotlib():
    code = "import sys, kmeans_imagery.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("n", "expected"), [(1, (1, 1)), (9, (3, 3)), (10, (3, 4)), (36, (6, 6)), (256, (16, 16)),
                        (37, (6, 7))]
)
def test_grid_shape(n, expected):
    assert plots.grid_shape(n) == expected


def test_montage_shape_and_cell_values(gray_images):
    montage = plots.image_montage(gray_images, 4, gap=2, title_gap=3)
    # 3 rows of (6 + 2 + 3) plus the bottom gap; 4 columns of (5 + 2) plus the right gap.
    assert montage.shape == (3 * 11 + 2, 4 * 7 + 2)
    for i, image in enumerate(gray_images):
        row, col = divmod(i, 4)
        top, left = row * 11 + 2 + 3, col * 7 + 2
        np.testing.assert_allclose(montage[top : top + 6, left : left + 5], image / 255.0)
    # Everything outside the cells is white background.
    mask = np.ones(montage.shape, dtype=bool)
    for i in range(12):
        row, col = divmod(i, 4)
        mask[row * 11 + 5 : row * 11 + 11, col * 7 + 2 : col * 7 + 7] = False
    assert np.all(montage[mask] == 1.0)


def test_montage_rgb_float_clipped_and_missing_cells(rng):
    images = rng.normal(0.5, 1.0, size=(5, 4, 4, 3))
    images[1] = np.nan
    montage = plots.image_montage(images, 3, gap=1)
    assert montage.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    np.testing.assert_allclose(montage[1:5, 1:5], np.clip(images[0], 0, 1))
    assert np.isnan(montage[1:5, 6:10]).all()  # missing image stays NaN, drawn blank
    assert np.all(montage[6:10, 11:15] == 1.0)  # unused sixth cell is background
    assert np.nanmin(montage) >= 0.0 and np.nanmax(montage) <= 1.0


def test_montage_rejects_bad_input():
    with pytest.raises(KMIError, match="dtype"):
        plots.image_montage(np.zeros((2, 3, 3), dtype=np.int64), 2)
    with pytest.raises(KMIError, match="shape"):
        plots.image_montage(np.zeros((2, 3, 3, 4)), 2)
    with pytest.raises(KMIError, match="no images"):
        plots.image_montage(np.zeros((0, 3, 3)), 2)


def test_plot_samples_titles_and_single_image(gray_images):
    ax = plots.plot_samples(gray_images, np.arange(12) % 10)
    assert isinstance(ax, _axes_type())
    assert len(ax.images) == 1
    assert [text.get_text() for text in ax.texts] == [f"Number {i}" for i in range(9)]
    # 3x3 montage of 6x5 images
    assert ax.images[0].get_array().shape == plots.image_montage(
        gray_images[:9], 3, gap=1, title_gap=2
    ).shape


def test_plot_samples_label_names_and_no_labels(gray_images):
    names = ["T-shirt/top", "Trouser", "Pullover"]
    ax = plots.plot_samples(gray_images[:4], [2, 0, 1, 2], n=4, label_names=names)
    assert [text.get_text() for text in ax.texts] == ["Pullover", "T-shirt/top", "Trouser",
                                                      "Pullover"]
    ax = plots.plot_samples(gray_images, n=4)
    assert len(ax.texts) == 0


@pytest.mark.parametrize(("k", "grid"), [(36, (6, 6)), (10, (3, 4)), (256, (16, 16))])
def test_plot_centroids_grid(rng, k, grid):
    centers = rng.normal(0.5, 0.5, size=(k, 7 * 6))  # values outside [0, 1] are clipped
    labels = rng.integers(-1, 10, size=k)
    ax = plots.plot_centroids(centers, (7, 6), labels)
    assert isinstance(ax, _axes_type())
    texts = [text.get_text() for text in ax.texts]
    assert texts == [("?" if label < 0 else str(label)) for label in labels]
    shown = np.asarray(ax.images[0].get_array())
    rows, cols = grid
    gap, title_gap = 1, 2
    assert shown.shape == (rows * (7 + gap + title_gap) + gap, cols * (6 + gap) + gap)
    np.testing.assert_allclose(shown[gap + title_gap : gap + title_gap + 7, 1:7],
                               np.clip(centers[0].reshape(7, 6), 0, 1))


def test_plot_centroids_rgb_names_and_not_images(rng):
    centers = rng.random((4, 3 * 3 * 3))
    ax = plots.plot_centroids(centers, (3, 3, 3), [1, 0, 1, 0], label_names=["cat", "dog"])
    assert [text.get_text() for text in ax.texts] == ["dog", "cat", "dog", "cat"]
    assert ax.images[0].get_array().shape[-1] == 3
    with pytest.raises(ValueError, match="not images"):
        plots.plot_centroids(rng.random((4, 10)), (3, 3))


def test_plot_cluster_members_rows_and_missing(rng):
    k, m = 3, 4
    centers = rng.random((k, 5, 5))
    members = rng.random((k, m, 5, 5))
    members[2, 2:] = np.nan  # a small cluster
    ax = plots.plot_cluster_members(centers, members, ["a", "b", "c"])
    assert [text.get_text() for text in ax.texts] == ["cluster 0: a", "cluster 1: b",
                                                      "cluster 2: c"]
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (k * (5 + 1 + 2) + 1, (1 + m) * (5 + 1) + 1)
    np.testing.assert_allclose(shown[3:8, 1:6], centers[0])
    np.testing.assert_allclose(shown[3:8, 7:12], members[0, 0])
    assert np.all(shown[19:24, 19:24] == 1.0)  # the NaN member is drawn as background
    assert len(ax.collections) == 1  # the centroid/member rule
    with pytest.raises(KMIError, match="do not match"):
        plots.plot_cluster_members(centers, members[:, :, :4])


def test_plot_inertia_and_scores_lines():
    ks = [10, 16, 36, 64, 256]
    ax = plots.plot_inertia(ks, [5e6, 4e6, None, 2e6, 1e6])
    assert isinstance(ax, _axes_type())
    (line,) = ax.get_lines()
    assert np.isnan(line.get_ydata()[2])
    assert ax.get_xscale() == "log"
    ax = plots.plot_scores(ks, [0.5] * 5, [0.6] * 5, [0.55, 0.6, None, 0.7, 0.8])
    assert [line.get_label() for line in ax.get_lines()] == ["homogeneity", "accuracy",
                                                             "test accuracy"]
    ax = plots.plot_scores([2, 3, 4], [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert len(ax.get_lines()) == 2
    assert ax.get_xscale() == "linear"


def test_plot_confusion_counts():
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])
    ax = plots.plot_confusion(matrix, ["zero", "one", "two"])
    assert isinstance(ax, _axes_type())
    assert [text.get_text() for text in ax.texts] == [f"{v}" for v in matrix.ravel()]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["zero", "one", "two"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    with pytest.raises(KMIError, match="class names"):
        plots.plot_confusion(matrix, ["a", "b"])


def test_plot_label_budget():
    ax = plots.plot_label_budget([10, 100, 1000], [0.5, 0.7, 0.8])
    assert ax.get_xscale() == "log"
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.7, 0.8])


def test_draws_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.plot_label_budget([1, 10], [0.1, 0.2], ax=right) is right
    assert plots.plot_samples(np.zeros((2, 4, 4)), ax=left) is left


def test_save_png_atomic_and_valid(tmp_path, gray_images):
    ax = plots.plot_samples(gray_images, np.arange(12))
    path = plots.save_png(ax, tmp_path / "samples.png", dpi=50)
    assert path == tmp_path / "samples.png"
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0 and image.size[1] > 0
    # Saving a Figure (not an Axes) over an existing file replaces it.
    path = plots.save_png(plots.plot_inertia([1, 2], [3.0, 2.0]).figure, path, dpi=50)
    with Image.open(path) as image:
        image.verify()
    assert [p.name for p in tmp_path.iterdir()] == ["samples.png"]


def test_save_png_failure_leaves_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    ax = plots.plot_inertia([1, 2], [3.0, 2.0])

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.save_png(ax, tmp_path / "inertia.png")
    assert list(tmp_path.iterdir()) == []


def test_save_png_closes_pyplot_figures(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plots.plot_label_budget([10, 100], [0.5, 0.6], ax=ax)
    plots.save_png(ax, tmp_path / "budget.png", dpi=50)
    assert not plt.fignum_exists(fig.number)


def _new_ax():
    from matplotlib.figure import Figure

    return Figure().subplots()


EMPTY_INPUTS = {
    "inertia": lambda ax: plots.plot_inertia([], [], ax=ax),
    "scores": lambda ax: plots.plot_scores([], [], [], test_accuracy=[], ax=ax),
    "confusion": lambda ax: plots.plot_confusion(np.zeros((0, 0), int), [], ax=ax),
    "label_budget": lambda ax: plots.plot_label_budget([], [], ax=ax),
    "samples": lambda ax: plots.plot_samples(np.zeros((0, 8, 8), np.uint8), [], ax=ax),
    "centroids": lambda ax: plots.plot_centroids(np.zeros((0, 64)), (8, 8), [], ax=ax),
    "members": lambda ax: plots.plot_cluster_members(np.zeros((0, 8, 8)), np.zeros((0, 3, 8, 8)),
                                                     ax=ax),
}


@pytest.mark.parametrize("given_ax", [False, True], ids=["new", "given"])
@pytest.mark.parametrize("name", list(EMPTY_INPUTS))
def test_empty_input_draws_an_empty_figure(name, given_ax, tmp_path):
    # a filter that kept nothing (no K yet, no image of a class) is not an error
    ax = _new_ax() if given_ax else None
    drawn = EMPTY_INPUTS[name](ax)
    assert isinstance(drawn, _axes_type()) and (drawn is ax or ax is None)
    assert Image.open(plots.save_png(drawn, tmp_path / f"{name}.png")).width > 0


@pytest.mark.parametrize("given_ax", [False, True], ids=["new", "given"])
def test_nan_values_are_left_out(given_ax, tmp_path):
    ax = _new_ax() if given_ax else None
    drawn = plots.plot_scores([10, 20], [np.nan, 0.5], [None, np.nan], test_accuracy=[np.nan] * 2,
                              ax=ax)
    plots.save_png(drawn, tmp_path / "scores.png")
    ax = _new_ax() if given_ax else None
    drawn = plots.plot_confusion([[np.nan, 1.0], [0.0, 2.0]], ["a", "b"], ax=ax)
    # counts read as whole numbers even from a float matrix; a NaN count is left blank
    assert [text.get_text() for text in drawn.texts] == ["", "1", "0", "2"]
    plots.save_png(drawn, tmp_path / "confusion.png")


def test_class_names_are_shown_as_they_are(gray_images):
    ax = plots.plot_samples(gray_images, ["cat", "dog", "owl"], n=3)
    assert [text.get_text() for text in ax.texts] == ["cat", "dog", "owl"]  # not "Number cat"
    assert [text.get_text() for text in plots.plot_samples(gray_images, [4, 2], n=2).texts] == [
        "Number 4", "Number 2"]
    # names given for integer labels do not apply to named classes, nor to labels past them
    ax = plots.plot_samples(gray_images, np.array([0, 5, 1]), n=3, label_names=("zero", "one"))
    assert [text.get_text() for text in ax.texts] == ["zero", "5", "one"]
    ax = plots.plot_centroids(gray_images[:2].reshape(2, -1) / 255, (6, 5), ["cat", "dog"],
                              label_names=("zero",))
    assert [text.get_text() for text in ax.texts] == ["cat", "dog"]
