"""A 2-D map of the collection: every image placed by its features, thumbnails on a grid.

``method="pca"`` places images on the top two principal axes of a sample's feature rows (a
linear projection: cheap for any number of images, but digits that differ in shape overlap).
``method="umap"`` runs the project's ``pca:50+umap:2`` feature pipeline fitted on a sample
(umap-learn, the ``umap`` extra): UMAP separates groups far better, and images outside the
sample are placed among their nearest sample images as the ``umap`` feature step does.
"""

import numpy as np

from ..errors import KMIError

__all__ = ["MAP_METHODS", "fit_map", "grid_picks", "plot_map"]

MAP_METHODS = ("pca", "umap")
#: Sample rows the UMAP map is fitted on (its cost grows faster than linearly).
_UMAP_SAMPLE = 5000


def fit_map(rows, method="pca", *, random_state=None):
    """A fitted 2-D projection of feature rows (``transform(rows) -> (n, 2)``).

    Parameters
    ----------
    rows : ndarray of shape (n, d), float32
        A sample of the collection's feature rows.
    method : {"pca", "umap"}
    random_state : int or None

    Returns
    -------
    FeaturePipeline
        Fitted; its ``transform`` maps rows of width d to (n, 2) float32, or to (n, 1) when
        there is one row or one feature (a collection of one image has one point to place).
    """
    from ..features import make_features

    if method not in MAP_METHODS:
        raise KMIError(f"map_method must be one of {', '.join(MAP_METHODS)}, got {method!r}")
    if method == "pca":
        spec = f"pca:{min(2, *rows.shape)}"
    else:
        spec = f"pca:{min(50, *rows.shape)}+umap:2"
        if len(rows) > _UMAP_SAMPLE:
            pick = np.random.default_rng(random_state).choice(len(rows), _UMAP_SAMPLE, replace=False)
            rows = rows[np.sort(pick)]
    # Feature rows carry no image shape; the map steps (pca, umap) need none.
    return make_features(spec, (rows.shape[1], 1), random_state).fit(rows)


def grid_picks(xy, n_side=9):
    """One image per cell of an ``n_side`` x ``n_side`` grid over the map: the nearest to the
    cell's centre among those inside it.

    Parameters
    ----------
    xy : ndarray of shape (n, 2)
    n_side : int

    Returns
    -------
    indices : ndarray of int64
        Sorted image indices (at most ``n_side ** 2``).
    """
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    step = np.maximum((hi - lo) / n_side, np.finfo(np.float32).eps)
    cell = np.minimum(((xy - lo) / step).astype(np.int64), n_side - 1)
    cell_id = cell[:, 0] * n_side + cell[:, 1]
    centre_dist = np.linalg.norm((xy - lo) / step - (cell + 0.5), axis=1)
    order = np.lexsort((centre_dist, cell_id))
    first = np.r_[True, cell_id[order][1:] != cell_id[order][:-1]]
    return np.sort(order[first])


def plot_map(xy, clusters, thumb_xy, thumbs, *, method="pca", max_points=20000, ax=None):
    """Draw every image as a dot coloured by cluster, with thumbnails placed on top.

    Parameters
    ----------
    xy : ndarray of shape (n, 2)
    clusters : ndarray of int, shape (n,)
    thumb_xy : ndarray of shape (m, 2)
        Where the thumbnails go.
    thumbs : ndarray of uint8, shape (m, H, W[, 3])
    method : str
        Axis naming ("pca" or "umap").
    max_points : int
        Dots drawn at most (an even sample of the images beyond that).
    ax : matplotlib Axes or None

    Returns
    -------
    ax : matplotlib Axes
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(9, 9)).add_subplot()
    shown = slice(None, None, max(1, len(xy) // max_points))
    ax.scatter(xy[shown, 0], xy[shown, 1], c=clusters[shown], cmap="tab20", s=3, alpha=0.5,
               linewidths=0)
    # In float64, with a floor relative to the coordinates: every image in one spot (a
    # collection of one picture) still gives axes of some width around it.
    xy, thumb_xy = np.asarray(xy, np.float64), np.asarray(thumb_xy, np.float64)
    floor = 1e-6 * max(1.0, float(np.abs(xy).max()))
    span = np.maximum(xy.max(axis=0) - xy.min(axis=0), floor)
    lo, hi = xy.min(axis=0) - span / 25, xy.max(axis=0) + span / 25
    # All thumbnails pasted into one transparent canvas drawn by a single imshow: one image
    # artist to composite instead of one per thumbnail.
    side, cell = 600, 24  # about the axes' own size in pixels at dpi 90: no costly downsampling
    # uint8 RGBA: matplotlib composites it without first normalising a float copy.
    canvas = np.zeros((side, side, 4), np.uint8)
    rgb = thumbs[..., None].repeat(3, axis=-1) if thumbs.ndim == 3 else thumbs
    rows = (np.arange(cell) * thumbs.shape[1] // cell)[:, None]
    cols = (np.arange(cell) * thumbs.shape[2] // cell)[None, :]
    for (x, y), image in zip(thumb_xy, rgb, strict=True):
        left = int((x - lo[0]) / (hi[0] - lo[0]) * side) - cell // 2
        top = int((hi[1] - y) / (hi[1] - lo[1]) * side) - cell // 2
        left, top = min(max(left, 0), side - cell), min(max(top, 0), side - cell)
        canvas[top:top + cell, left:left + cell, :3] = image[rows, cols]
        canvas[top:top + cell, left:left + cell, 3] = 255
    ax.imshow(canvas, extent=(lo[0], hi[0], lo[1], hi[1]), zorder=3, interpolation="nearest")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("auto")
    name = "UMAP" if method == "umap" else "principal axis"
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_title(f"map of {len(xy):,} images ({method.upper()}), coloured by cluster")
    return ax
