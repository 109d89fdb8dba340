"""Figures for a K-means run: sample images, the K sweep, centroids, confusion, label budget.

Every ``plot_*`` function draws into ``ax`` (a new figure is created when ``ax`` is None) and
returns the axes, so callers can compose or restyle them. Image grids are drawn as one montage
image in a single axes with one text per cell, which keeps that single-axes API for every figure.
The montage itself is built by :func:`image_montage`, a pure NumPy helper.

Matplotlib is imported inside the functions: importing :mod:`kmeans_imagery` must stay cheap and
must work where matplotlib cannot pick a backend. Figures made here are plain
:class:`matplotlib.figure.Figure` objects, not pyplot figures, so they need no display and are
freed once :func:`save_png` has written them.
"""

import math
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import KMIError, is_whole_number

__all__ = [
    "grid_shape",
    "image_montage",
    "plot_centroids",
    "plot_cluster_members",
    "plot_confusion",
    "plot_inertia",
    "plot_label_budget",
    "plot_samples",
    "plot_scores",
    "save_png",
]

# Montage background (padding and missing cells): white, like the figure face.
_BACKGROUND = 1.0
# Height of the text band above each cell, as a fraction of the image height.
_TITLE_BAND = 0.3


def grid_shape(n):
    """Rows and columns of a near-square grid holding ``n`` cells.

    Parameters
    ----------
    n : int
        Number of cells, at least 1.

    Returns
    -------
    n_rows, n_cols : int
        ``n_cols = ceil(sqrt(n))`` and just enough rows.

    Raises
    ------
    KMIError
        When ``n`` is less than 1.

    Examples
    --------
    >>> from kmeans_imagery.plots import grid_shape
    >>> grid_shape(36), grid_shape(10)
    ((6, 6), (3, 4))
    """
    if n < 1:
        raise KMIError(f"a grid needs at least one cell, got {n}")
    n_cols = math.ceil(math.sqrt(n))
    return math.ceil(n / n_cols), n_cols


def _as_unit_images(images, name="images"):
    """Images as float64 in [0, 1]: uint8 is divided by 255, floats are clipped, NaN kept.

    Accepts (..., H, W), (..., H, W, 1) and (..., H, W, 3); a single channel axis is dropped.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        out = images / 255.0
    elif np.issubdtype(images.dtype, np.floating) or images.dtype == bool:
        out = np.clip(images.astype(np.float64), 0.0, 1.0)  # np.clip keeps NaN
    else:
        raise KMIError(f"{name} must be uint8 or float images, got dtype {images.dtype}")
    if out.ndim >= 3 and out.shape[-1] == 1:
        out = out[..., 0]
    return out


def _split_shape(images, lead_dims, name):
    """Check ``images`` has ``lead_dims`` leading axes then (H, W) or (H, W, 3)."""
    ndim = images.ndim - lead_dims
    if ndim not in (2, 3) or (ndim == 3 and images.shape[-1] != 3):
        raise KMIError(
            f"{name} must have shape {'(n, ' if lead_dims == 1 else '(k, m, '}H, W) or "
            f"(..., H, W, 3), got {images.shape}"
        )
    return images.shape[lead_dims : lead_dims + 2]


def image_montage(images, n_cols, *, gap=1, title_gap=0):
    """Tile images into one array, row by row, for drawing with a single ``imshow``.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, H, W, 3)
        uint8 images (divided by 255) or float images (clipped to [0, 1]). NaN pixels, for
        example a whole missing image, stay NaN and are drawn as background.
    n_cols : int
        Cells per row; the number of rows is ``ceil(n / n_cols)``.
    gap : int, default=1
        Background pixels between cells and around the border.
    title_gap : int, default=0
        Extra background pixels above every row, where cell titles go.

    Returns
    -------
    montage : ndarray of shape (n_rows * (H + gap + title_gap) + gap, n_cols * (W + gap) + gap)
        Float64 montage, with a trailing axis of 3 for RGB input. Cell ``i`` (row ``i //
        n_cols``, column ``i % n_cols``) starts at ``(row * (H + gap + title_gap) + gap +
        title_gap, col * (W + gap) + gap)``; padding and unused cells are 1.0 (white).

    Raises
    ------
    KMIError
        When there are no images, or they are not gray or RGB images of uint8 or floats.

    Examples
    --------
    Five black 2 x 3 images on three columns: two rows, on a white background.

    >>> import numpy as np
    >>> from kmeans_imagery.plots import image_montage
    >>> montage = image_montage(np.zeros((5, 2, 3), dtype=np.uint8), n_cols=3)
    >>> montage.shape
    (7, 13)
    >>> float(montage[0, 0]), float(montage[1, 1])  # padding, then the first image's first pixel
    (1.0, 0.0)
    """
    images = _as_unit_images(images)
    height, width = _split_shape(images, 1, "images")
    n = images.shape[0]
    if n == 0:
        raise KMIError("no images to draw")
    n_rows = math.ceil(n / n_cols)
    row_step, col_step = height + gap + title_gap, width + gap
    montage = np.full(
        (n_rows * row_step + gap, n_cols * col_step + gap) + images.shape[3:], _BACKGROUND
    )
    for i, image in enumerate(images):
        top, left = _cell_origin(i, n_cols, height, width, gap, title_gap)
        montage[top : top + height, left : left + width] = image
    return montage


def _cell_origin(i, n_cols, height, width, gap, title_gap):
    """Top-left pixel of cell ``i`` in an :func:`image_montage` array."""
    row, col = divmod(i, n_cols)
    return row * (height + gap + title_gap) + gap + title_gap, col * (width + gap) + gap


def _new_axes(figsize, *, montage=False):
    """Axes on a new plain Figure (no pyplot: nothing global to close, no display needed)."""
    from matplotlib.figure import Figure

    if montage:
        fig = Figure(figsize=figsize)
        # The montage fills the figure, so the text sizes computed from the axes are exact.
        return fig.add_axes((0.0, 0.0, 1.0, 1.0))
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _montage_figsize(shape, n_cols):
    """Figure size (inches) that shows a montage with cells of a readable size."""
    cell_inches = min(1.1, max(0.5, 9.0 / n_cols))
    width = cell_inches * n_cols
    return width, width * shape[0] / shape[1]


def _draw_montage(ax, montage, titles, *, n_cols, image_hw, gap, title_gap, title_cells=1):
    """Show ``montage`` in ``ax`` and write ``titles[i]`` centred above cell ``i``.

    ``title_cells`` is how many cells wide a title may grow (left-aligned when more than one),
    used by the members figure whose row title spans the row.
    """
    height, width = image_hw
    # NaN (missing images) shows as background: white, like the padding.
    shown = np.where(np.isnan(montage), _BACKGROUND, montage)
    if shown.ndim == 2:
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(shown, interpolation="nearest")
    ax.set_axis_off()
    texts = [title for title in titles if title]
    if not texts:
        return ax
    # Size the text from the axes' size on the page: points per montage pixel, then fit the
    # text band height and the longest title's width (about 0.6 em per character).
    fig = ax.figure
    box = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    points_per_pixel = 72.0 * min(box.width * fig_w / montage.shape[1],
                                  box.height * fig_h / montage.shape[0])
    longest = max(len(text) for text in texts)
    fontsize = min(
        10.0,
        0.75 * title_gap * points_per_pixel,
        (title_cells * (width + gap) - gap) * points_per_pixel / (0.6 * longest),
    )
    fontsize = max(fontsize, 3.0)
    for i, title in enumerate(titles):
        if not title:
            continue
        top, left = _cell_origin(i, n_cols, height, width, gap, title_gap)
        if title_cells > 1:
            x, ha = left - 0.5, "left"
        else:
            x, ha = left + width / 2 - 0.5, "center"
        ax.text(x, top - 1.0, title, ha=ha, va="bottom", fontsize=fontsize, clip_on=True)
    return ax


def _nothing_to_draw(ax, message):
    """Empty input draws a note instead of failing: a filter that kept nothing is not an error."""
    if ax is None:
        ax = _new_axes((2.0, 1.0), montage=True)
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    return ax


def _cell_gap(width):
    """Padding between montage cells, in pixels: about 5% of the image width."""
    return max(1, round(0.05 * width))


def _title_gap(height):
    """Height of the text band above each montage row, in pixels."""
    return max(2, round(_TITLE_BAND * height))


def _montage_plot(images, titles, n_cols, ax, *, title_cells=1):
    """Build the montage of ``images`` and draw it with ``titles``; returns the axes."""
    images = _as_unit_images(images)
    image_hw = _split_shape(images, 1, "images")
    if len(images) == 0:
        return _nothing_to_draw(ax, "no images")
    gap = _cell_gap(image_hw[1])
    title_gap = _title_gap(image_hw[0]) if any(titles) else 0
    montage = image_montage(images, n_cols, gap=gap, title_gap=title_gap)
    if ax is None:
        ax = _new_axes(_montage_figsize(montage.shape, n_cols), montage=True)
    return _draw_montage(
        ax, montage, titles, n_cols=n_cols, image_hw=image_hw, gap=gap, title_gap=title_gap,
        title_cells=title_cells,
    )


def _label_text(label, label_names):
    """Display text of one class label: "?" if unknown, else its name in ``label_names`` when it
    is an integer that has one, else the label itself (a string label is its own name)."""
    integer = is_whole_number(label)
    if label is None or (integer and label < 0):
        return "?"
    if integer and label_names is not None and label < len(label_names):
        return str(label_names[label])
    return str(label)


def plot_samples(images, labels=None, *, n=9, label_names=None, ax=None):
    """Draw the first ``n`` images in a near-square grid, titled with their labels.

    Parameters
    ----------
    images : ndarray of shape (n_images, H, W) or (n_images, H, W, 3)
        uint8 or float images in [0, 1].
    labels : array-like of shape (n_images,), optional
        Integer labels, whose titles read "Number 5" (or the label's name in ``label_names``),
        or class names such as "cat", shown as they are.
    n : int, default=9
        How many images to show (fewer if fewer are given); 9 gives a 3x3 grid.
    label_names : sequence of str, optional
        Class names indexed by label, e.g. Fashion-MNIST's "T-shirt/top"; a label without a name
        is shown as itself.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The images as one montage, with one text per title; without images, a "no images" note.

    Examples
    --------
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.plots import plot_samples
    >>> digits = load_dataset("digits")
    >>> ax = plot_samples(digits.train_images, digits.train_labels)
    >>> type(ax).__name__, [text.get_text() for text in ax.texts][:3]
    ('Axes', ['Number 3', 'Number 9', 'Number 1'])
    >>> names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    >>> ax = plot_samples(digits.train_images, digits.train_labels, n=4, label_names=names)
    >>> [text.get_text() for text in ax.texts]
    ['three', 'nine', 'one', 'three']
    """
    images = np.asarray(images)[:n]
    if labels is None:
        titles = [""] * len(images)
    else:
        labels = np.asarray(labels)[: len(images)]
        # The tutorial's "Number 5" for digits; named classes are shown by their name.
        titles = [
            f"Number {label}" if label_names is None and labels.dtype.kind in "iu"
            else _label_text(label, label_names)
            for label in labels.tolist()
        ]
    return _montage_plot(images, titles, grid_shape(max(1, len(images)))[1], ax)


def plot_centroids(centers, image_shape, cluster_labels=None, *, label_names=None, ax=None):
    """Draw the cluster centres as images in a near-square grid, titled with their labels.

    Parameters
    ----------
    centers : ndarray of shape (k, prod(image_shape))
        Cluster centres as float rows in [0, 1] (values outside are clipped).
    image_shape : tuple of int
        (H, W) or (H, W, 3).
    cluster_labels : array-like of shape (k,), optional
        Class inferred for each cluster; negative values (no labelled member) show as "?".
    label_names : sequence of str, optional
        Class names indexed by label.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The centres as one montage, with one text per label.

    Raises
    ------
    KMIError
        If the centres are not images of ``image_shape`` (e.g. features other than raw pixels).

    Examples
    --------
    A model's centroids, titled with the digit each cluster was named after (two are 1s):

    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.plots import plot_centroids
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(10, algorithm="full", random_state=0)
    >>> model = model.fit(digits.train_images, digits.train_labels)
    >>> ax = plot_centroids(model.cluster_images_, model.image_shape_, model.cluster_labels_)
    >>> [text.get_text() for text in ax.texts]
    ['4', '6', '8', '0', '7', '5', '1', '3', '1', '2']
    """
    centers = np.asarray(centers, dtype=np.float64)
    image_shape = tuple(int(size) for size in image_shape)
    if centers.ndim != 2 or centers.shape[1] != math.prod(image_shape):
        raise KMIError(
            f"centroids of shape {centers.shape} are not images of shape {image_shape}: "
            "centroid images need raw pixel features"
        )
    images = centers.reshape((len(centers),) + image_shape)
    if cluster_labels is None:
        titles = [""] * len(images)
    else:
        titles = [_label_text(label, label_names) for label in np.asarray(cluster_labels).tolist()]
    return _montage_plot(images, titles, grid_shape(max(1, len(images)))[1], ax)


def plot_cluster_members(center_images, member_images, cluster_labels=None, *, cluster_ids=None,
                         ax=None):
    """Draw one row per cluster: its centroid, then its nearest member images.

    The figure grows with ``k``: pass a handful of clusters (about 10), not all 256.

    Parameters
    ----------
    center_images : ndarray of shape (k, H, W) or (k, H, W, 3)
        Centroid of each cluster, as an image.
    member_images : ndarray of shape (k, m, H, W) or (k, m, H, W, 3)
        The ``m`` members nearest to each centroid; clusters with fewer members fill the rest
        with NaN, drawn blank.
    cluster_labels : sequence, optional
        Label (or label name) inferred for each cluster, shown in the row title.
    cluster_ids : sequence of int, optional
        Cluster number shown in each row title (default: the row index), for a subset of clusters.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The rows as one montage, with one title per row.

    Raises
    ------
    KMIError
        When ``member_images`` does not hold ``m`` images of the centres' shape per centre.

    Examples
    --------
    Three clusters of the digits, each beside its five nearest members:

    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.labeling import nearest_members
    >>> from kmeans_imagery.outputs import centroid_images, member_images
    >>> from kmeans_imagery.plots import plot_cluster_members
    >>> source = open_source("digits")
    >>> digits = source.read_all()
    >>> model = ClusterClassifier(10, algorithm="full", random_state=0).fit(digits.images, digits.labels)
    >>> members = nearest_members(model, source, per_cluster=5)
    >>> shown = [0, 1, 2]
    >>> ax = plot_cluster_members(centroid_images(model)[shown], member_images(members, shown),
    ...                           model.cluster_labels_[shown], cluster_ids=shown)
    >>> [text.get_text() for text in ax.texts]
    ['cluster 0: 4', 'cluster 1: 6', 'cluster 2: 8']
    """
    centers = _as_unit_images(center_images, "center_images")
    members = _as_unit_images(member_images, "member_images")
    _split_shape(centers, 1, "center_images")
    if members.ndim != centers.ndim + 1 or members.shape[2:] != centers.shape[1:] or (
        len(members) != len(centers)
    ):
        raise KMIError(
            f"member_images of shape {members.shape} do not match center_images of shape "
            f"{centers.shape}: expected (k, m) + the centre image shape"
        )
    n_cols = 1 + members.shape[1]
    cells = np.concatenate([centers[:, None], members], axis=1)
    cells = cells.reshape((-1,) + cells.shape[2:])
    titles = []
    for i in range(len(centers)):
        title = f"cluster {i if cluster_ids is None else cluster_ids[i]}"
        if cluster_labels is not None:
            title += f": {_label_text(cluster_labels[i], None)}"
        titles += [title] + [""] * (n_cols - 1)
    ax = _montage_plot(cells, titles, n_cols, ax, title_cells=n_cols)
    # A rule between each centroid and its members, beside the images only (not the titles).
    height, width = centers.shape[1:3]
    tops = np.array([_cell_origin(i * n_cols, n_cols, height, width, _cell_gap(width),
                                  _title_gap(height))[0] for i in range(len(centers))])
    x = width + 1.5 * _cell_gap(width) - 0.5
    ax.vlines(np.full(len(tops), x), tops - 0.5, tops + height - 0.5, color="0.5", linewidth=1.0)
    return ax


def _k_axis(ax, ks):
    """Log-scale the K axis when K spans a factor of 8 or more; tick the values tried."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ks = np.unique(np.asarray(ks, dtype=np.float64))
    ax.set_xlabel("number of clusters K")
    if not len(ks):  # nothing swept yet: an empty plot with its labels
        return
    if ks.min() > 0 and ks.max() / ks.min() >= 8:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    if len(ks) <= 12:  # beyond that, ticks at every K would overlap: keep the default ones
        ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_major_formatter(ScalarFormatter())


def _floats(values):
    """Values as float64, with None (JSON null) as NaN so the line skips them."""
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def plot_inertia(ks, inertia, ax=None):
    """Draw K-means inertia (sum of squared distances to the nearest centre) against K.

    Parameters
    ----------
    ks : array-like of shape (n_k,)
    inertia : array-like of shape (n_k,)
        None or NaN entries are left out of the line.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        With a logarithmic K axis when K spans a factor of 8 or more.

    Examples
    --------
    >>> from kmeans_imagery.plots import plot_inertia
    >>> ax = plot_inertia([10, 16, 36, 64, 144, 256], [3644, 3300, 2436, 1950, 1420, 1050])
    >>> ax.get_title(), ax.get_xscale()
    ('Inertia against K', 'log')
    """
    from matplotlib.ticker import FuncFormatter

    if ax is None:
        ax = _new_axes((6.0, 4.0))
    ax.plot(ks, _floats(inertia), marker="o", label="inertia")
    _k_axis(ax, ks)
    ax.set_ylabel("inertia")
    # Thousands separators for MNIST-sized inertia; small values (tiny data) keep their digits.
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}")
    )
    ax.set_title("Inertia against K")
    ax.grid(True, alpha=0.3)
    return ax


def plot_scores(ks, homogeneity, accuracy, test_accuracy=None, ax=None):
    """Draw homogeneity and accuracy (and test accuracy when given) against K.

    Parameters
    ----------
    ks : array-like of shape (n_k,)
    homogeneity, accuracy : array-like of shape (n_k,)
        Scores in [0, 1] on the fitted set; None or NaN entries are left out.
    test_accuracy : array-like of shape (n_k,), optional
        Accuracy on held-out images.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        One line per score, labelled for the legend.

    Examples
    --------
    The sweep's two figures side by side, each drawn into axes of one figure:

    >>> from matplotlib.figure import Figure
    >>> from kmeans_imagery.plots import plot_inertia, plot_scores
    >>> ks = [10, 16, 36, 64]
    >>> left, right = Figure(figsize=(10, 4)).subplots(1, 2)
    >>> plot_inertia(ks, [3644, 3300, 2436, 1950], ax=left) is left
    True
    >>> ax = plot_scores(ks, [0.72, 0.80, 0.90, 0.93], [0.74, 0.85, 0.92, 0.95],
    ...                  test_accuracy=[0.71, 0.80, 0.89, 0.90], ax=right)
    >>> ax.get_title(), [line.get_label() for line in ax.get_lines()]
    ('Cluster quality against K', ['homogeneity', 'accuracy', 'test accuracy'])
    """
    if ax is None:
        ax = _new_axes((6.0, 4.0))
    ax.plot(ks, _floats(homogeneity), marker="o", label="homogeneity")
    ax.plot(ks, _floats(accuracy), marker="s", label="accuracy")
    if test_accuracy is not None:
        ax.plot(ks, _floats(test_accuracy), marker="^", linestyle="--", label="test accuracy")
    _k_axis(ax, ks)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("score")
    ax.set_title("Cluster quality against K")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return ax


def plot_confusion(matrix, class_names, ax=None):
    """Draw a confusion matrix with its counts: true class on y, predicted class on x.

    Cells are coloured by the fraction of their row (the recall), so classes of different sizes
    compare fairly; the text is the raw count.

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_classes)
        ``matrix[i, j]`` counts samples of class ``i`` predicted as ``j``.
    class_names : sequence of str of length n_classes
        Names of the classes, in the matrix's order.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        With one text per cell.

    Raises
    ------
    KMIError
        When the matrix is not square with one row per class name.

    Examples
    --------
    >>> from kmeans_imagery.plots import plot_confusion
    >>> ax = plot_confusion([[5, 1], [0, 4]], ["cat", "dog"])
    >>> ax.get_title(), [text.get_text() for text in ax.texts]
    ('Confusion matrix (test set)', ['5', '1', '0', '4'])
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise KMIError(f"confusion matrix of shape {matrix.shape} does not match {n} class names")
    if n == 0:
        return _nothing_to_draw(ax, "no classes")
    if ax is None:
        side = min(12.0, max(4.5, 0.55 * n + 2.0))
        ax = _new_axes((side, side))
    totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fontsize = max(4.0, min(9.0, 90.0 / n))
    for (i, j), count in np.ndenumerate(matrix):
        # Counts are whole numbers, also when the matrix arrives as floats (from JSON, say).
        text = "" if not np.isfinite(count) else f"{count:,.0f}" if count.is_integer() else f"{count:.3g}"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                color="white" if fractions[i, j] > 0.5 else "black")
    names = [str(name) for name in class_names]
    long_names = max(map(len, names)) > 3  # e.g. "Ankle boot": slant them so they do not overlap
    ax.set_xticks(range(n), names, rotation=45 if long_names else 0,
                  ha="right" if long_names else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test set)")
    return ax


def plot_label_budget(labels_used, test_accuracy, ax=None):
    """Draw test accuracy against the number of labelled images used to name the clusters.

    Parameters
    ----------
    labels_used : array-like of shape (n_budgets,)
        Positive counts; the x axis is logarithmic.
    test_accuracy : array-like of shape (n_budgets,)
        Accuracy on held-out images with each budget.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        With a logarithmic x axis.

    Examples
    --------
    Rows of :func:`~kmeans_imagery.experiment.label_budget_curve`, drawn:

    >>> from kmeans_imagery.plots import plot_label_budget
    >>> ax = plot_label_budget([10, 30, 100], [0.71, 0.89, 0.97])
    >>> ax.get_title(), ax.get_xlabel()
    ('Accuracy against label budget', 'labelled images used')
    """
    from matplotlib.ticker import FuncFormatter

    if ax is None:
        ax = _new_axes((6.0, 4.0))
    ax.plot(labels_used, _floats(test_accuracy), marker="o", label="test accuracy")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("labelled images used")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy against label budget")
    ax.grid(True, alpha=0.3)
    return ax


def save_png(ax_or_fig, path, *, dpi=120):
    """Save the figure of ``ax_or_fig`` as a PNG, atomically, and close it.

    The PNG is written to a temporary file in the destination folder and moved into place with
    :func:`os.replace`, so readers never see a half-written image; or into an open binary file
    (an inline thumbnail's buffer, say).

    Parameters
    ----------
    ax_or_fig : matplotlib.axes.Axes or matplotlib.figure.Figure
        What to save: the whole figure of the axes.
    path : str, os.PathLike or binary file
        Destination file; its folder must exist.
    dpi : float, default=120
        Resolution in dots per inch.

    Returns
    -------
    path : pathlib.Path or binary file
        The PNG written (the file object itself when one was given).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.plots import plot_confusion, save_png
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     png = save_png(plot_confusion([[5, 1], [0, 4]], ["cat", "dog"]), Path(tmp, "confusion.png"))
    ...     png.name, png.read_bytes()[:4]
    ('confusion.png', b'\x89PNG')
    """
    # An Axes' .figure may be a subfigure, whose .figure is the root; a Figure is its own .figure.
    fig = ax_or_fig.figure.figure
    # backend="agg" renders without a display whatever backend pyplot chose.
    options = dict(format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05, backend="agg")
    if hasattr(path, "write"):
        fig.savefig(path, **options)
    else:
        path = Path(path)
        with atomic_write(path) as handle:
            fig.savefig(handle, **options)
    # Figures from pyplot stay registered (and in memory) until closed; ours are plain Figures.
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return path
