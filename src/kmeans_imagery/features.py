"""Feature pipelines: fitted-on-train transforms applied to image rows before K-means.

Every transform follows the scikit-learn transformer API (``fit``, ``transform``,
``fit_transform``). Its input is a float32 array of shape (n_samples, n_features) whose rows are
flattened images scaled to [0, 1] (or the output of the previous step); its output is float32.

A pipeline is written as a *spec*, a short string:

- ``+`` chains steps: ``"deskew+hog"`` deskews the images, then takes HOG descriptors of them;
- ``|`` puts pipelines side by side and concatenates their outputs: ``"deskew+l2|deskew+hog"``;
- parentheses group: ``"deskew+(l2|hog)"`` is the same as the line above, deskewing once;
- ``name:value`` sets a step's main parameter: ``"hog:4"`` (4x4-pixel cells), ``"pca:50"``,
  ``"umap:10"``; ``"pca:50:whiten"`` whitens.

A spec that is only a preset name (see :data:`FEATURE_PRESETS`) expands to that preset: ``"umap"``
alone means ``"deskew+pca:50+umap:10"``, while the ``umap`` inside ``"pca:50+umap"`` is the single
step. Steps that need images (``deskew``, ``hog``) must come before any step that leaves pixel space
(``hog``, ``pca``, ``umap``, a concatenation).

A fitted pipeline is stored without pickle: :meth:`FeaturePipeline.get_state` returns a JSON-able
dict and a dict of numpy arrays, and :meth:`FeaturePipeline.from_state` rebuilds it.
"""

import importlib.util
import re

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .errors import KMIError

__all__ = [
    "FEATURE_PRESETS",
    "HOG",
    "PCA",
    "UMAP",
    "Concat",
    "Deskew",
    "FeaturePipeline",
    "Identity",
    "L2Normalize",
    "make_features",
]

#: Named pipelines: name -> (spec, one-line help). A spec that is only one of these names means
#: the best measured pipeline ending in that step. Figures: MNIST, fit on the 60k training
#: images, scored on the 10k test images (benchmarks/bench_features.py).
FEATURE_PRESETS = {
    "raw": ("raw", "the pixels themselves, as in the tutorial (K=256: 0.92)"),
    "l2": ("deskew+l2", "shear-corrected, centred, L2-normalised pixels (K=256: 0.962)"),
    "hog": (
        "deskew+hog:4",
        "HOG descriptors, 4x4-pixel cells, of deskewed images: most accurate, slow (K=256: 0.979)",
    ),
    "pixhog": (
        "deskew+(l2|hog:7)+pca:100",
        "deskewed L2-normalised pixels beside their 7x7-cell HOG, PCA to 100: fast "
        "(K=256: 0.971-0.975)",
    ),
    "umap": (
        "deskew+pca:50+umap:10",
        "deskew, PCA-50, UMAP to 10 dims: best for K = number of classes (K=10: 0.979, "
        "K=256: 0.970-0.976); needs umap-learn",
    ),
}

_STATE_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_shape(image_shape):
    """Validate an image shape (H, W) or (H, W, C) and return it as a tuple of ints."""
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise KMIError(f"image_shape must be (H, W) or (H, W, C), got {image_shape!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise KMIError(f"image_shape must be (H, W) or (H, W, C), got {image_shape!r}")
    return shape


def _check_rows(X, n_features=None, what="rows"):
    """Return X as a C-contiguous float32 2-D array, checking its width when given."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise KMIError(f"expected a 2-D array of {what}, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise KMIError(f"expected {what} of {n_features} values each, got {X.shape[1]}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise KMIError(f"{what} contain NaN or infinite values")
    return X


def _n_pixels(image_shape):
    return int(np.prod(image_shape))


def _describe_shape(image_shape):
    return "x".join(str(s) for s in image_shape)


class _Step(TransformerMixin, BaseEstimator):
    """Base of the pipeline steps: validation, fit-then-transform, and state for the model file.

    Subclasses implement ``_fit(X)`` (set fitted attributes), ``_transform(X)`` and, where they
    hold fitted arrays, ``_ARRAYS``: the names of the fitted attributes to store.
    """

    #: fitted array attributes written by get_state
    _ARRAYS = ()

    def _expected_width(self):
        return None

    def fit(self, X, y=None):
        """Fit on training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : ignored

        Returns
        -------
        self
        """
        X = _check_rows(X, self._expected_width())
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """Transform rows with the fitted step.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features_out), float32
        """
        check_is_fitted(self, "n_features_in_")
        return self._transform(_check_rows(X, self.n_features_in_))

    def _fit(self, X):
        """Stateless steps learn nothing beyond the input width."""

    def _state(self):
        params = self.get_params()
        if "image_shape" in params:
            params["image_shape"] = list(params["image_shape"])
        if "random_state" in params and not isinstance(params["random_state"], (int, type(None))):
            # a fitted step no longer needs its seed; only plain ints are JSON-able
            params["random_state"] = None
        meta = {"params": params, "n_features_in": int(self.n_features_in_)}
        return meta, {name: getattr(self, name) for name in self._ARRAYS}

    @classmethod
    def _from_state(cls, meta, arrays):
        params = dict(meta["params"])
        if "image_shape" in params:
            params["image_shape"] = tuple(params["image_shape"])
        step = cls(**params)
        step.n_features_in_ = int(meta["n_features_in"])
        expected = step._array_shapes()
        for name in cls._ARRAYS:
            array = arrays[name]
            want = expected[name]
            fits = array.ndim == len(want) and all(
                w is None or w == a for w, a in zip(want, array.shape, strict=True)
            )
            if not fits:
                raise KMIError(
                    f"feature pipeline state: {name} has shape {array.shape}, expected {want}"
                )
            setattr(step, name, array.astype(np.float32, copy=False))
        return step

    def _array_shapes(self):
        """Expected shape of each stored array (None: any length), for checking loaded state."""
        return {}


# --------------------------------------------------------------------------------------------
# Steps


class Identity(_Step):
    """The rows unchanged ("raw"), as float32."""

    def _transform(self, X):
        return X


class L2Normalize(_Step):
    """Scale each row to unit Euclidean length, so K-means compares shapes, not ink amounts.

    All-zero rows stay zero.
    """

    def _transform(self, X):
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


class Deskew(_Step):
    """Shear-correct and centre each image using its intensity moments.

    For an image with intensity-weighted centroid (cy, cx), row variance ``mu_yy`` and covariance
    ``mu_xy``, the slant is ``alpha = mu_xy / mu_yy``; output pixel (r, c) is sampled (bilinear,
    zero outside) at input ``(r + cy - r0, c + alpha * (r - r0) + cx - c0)`` where (r0, c0) is the
    image centre. This straightens slanted strokes and moves the centroid to the centre. For
    multi-channel images the moments come from the channel mean and every channel is moved alike.
    Blank images are returned unchanged.

    Parameters
    ----------
    image_shape : tuple of int
        (H, W) or (H, W, C) of the images whose flattened rows are passed in.
    """

    def __init__(self, image_shape):
        self.image_shape = image_shape

    def _expected_width(self):
        return _n_pixels(_check_shape(self.image_shape))

    def _transform(self, X):
        shape = _check_shape(self.image_shape)
        out = np.empty_like(X)
        # chunks bound the float64 coordinate arrays to a few tens of MB
        for start in range(0, len(X), 4096):
            chunk = X[start : start + 4096].reshape((-1, *shape))
            out[start : start + 4096] = _deskew(chunk).reshape(len(chunk), -1)
        return out


def _deskew(images):
    """Deskew a stack of images of shape (n, H, W) or (n, H, W, C); see :class:`Deskew`."""
    n, height, width = images.shape[:3]
    gray = images if images.ndim == 3 else images.mean(axis=3)
    gray = gray.astype(np.float64)
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)
    total = gray.sum(axis=(1, 2))
    blank = total <= 0
    total[blank] = 1.0
    row_mass = gray.sum(axis=2)  # (n, H)
    col_mass = gray.sum(axis=1)  # (n, W)
    cy = row_mass @ rows / total
    cx = col_mass @ cols / total
    dy = rows[None, :] - cy[:, None]
    dx = cols[None, :] - cx[:, None]
    mu_yy = np.einsum("nh,nh->n", row_mass, dy**2) / total
    mu_xy = np.einsum("nhw,nh,nw->n", gray, dy, dx) / total
    alpha = np.divide(mu_xy, mu_yy, out=np.zeros(n), where=mu_yy > 1e-12)
    r0, c0 = (height - 1) / 2.0, (width - 1) / 2.0
    # rows move by a constant per image, columns by a shear that varies with the row
    src_r = (rows[None, :] + (cy - r0)[:, None])[:, :, None]
    shift = (alpha[:, None] * (rows[None, :] - r0) + (cx - c0)[:, None]).astype(np.float32)
    src_c = cols.astype(np.float32)[None, None, :] + shift[:, :, None]
    out = _bilinear(images, src_r, src_c)
    out[blank] = images[blank]
    return out


def _bilinear(images, src_r, src_c):
    """Sample images (n, H, W[, C]) bilinearly, zero outside.

    Row coordinates ``src_r`` have shape (n, H, 1), column coordinates ``src_c`` (n, H, W).
    """
    n, height, width = images.shape[:3]
    # a 2-pixel zero border lets every clipped corner index land on real or zero pixels
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2)] + [(0, 0)] * (images.ndim - 3))
    flat = padded.reshape(n * (height + 4) * (width + 4), -1)
    r_lo = np.floor(src_r)
    c_lo = np.floor(src_c)
    wr = (src_r - r_lo).astype(np.float32)
    wc = src_c - c_lo
    r_lo = np.clip(r_lo, -2, height).astype(np.intp) + 2
    c_lo = np.clip(c_lo, -2, width).astype(np.intp) + 2
    base = (np.arange(n) * (height + 4) * (width + 4))[:, None, None] + r_lo * (width + 4) + c_lo
    if images.ndim == 4:
        wr, wc = wr[..., None], wc[..., None]
    shape = images.shape

    def at(offset):
        return np.take(flat, base + offset, axis=0).reshape(shape)

    top = at(0) * (1 - wc) + at(1) * wc
    bottom = at(width + 4) * (1 - wc) + at(width + 5) * wc
    return (top * (1 - wr) + bottom * wr).astype(images.dtype)


class HOG(_Step):
    """Histograms of oriented gradients, the descriptor of :func:`skimage.feature.hog`.

    Computes, for a whole batch at once, what ``skimage.feature.hog(image, orientations,
    pixels_per_cell=(cell_size, cell_size), cells_per_block=(block_size, block_size),
    block_norm="L2-Hys")`` computes for one image (``channel_axis=-1`` for colour images): central
    differences, one unsmoothed orientation histogram per cell (unsigned, 0-180 degrees, hard
    binning, divided by the cell area), then L2-Hys normalisation of every overlapping block.
    The tests check the output equals scikit-image's; the batch form avoids its per-image Python
    loop, which costs ~0.7 ms per 28x28 image at 4x4 cells.

    Parameters
    ----------
    image_shape : tuple of int
        (H, W) or (H, W, C) of the images whose flattened rows are passed in.
    cell_size : int, default=7
        Side of a square cell, in pixels. Pixels past the last whole cell are ignored.
    orientations : int, default=9
        Number of orientation bins.
    block_size : int, default=3
        Side of a square block, in cells; reduced to the number of cells when the image holds
        fewer, so small images still get a descriptor.
    """

    def __init__(self, image_shape, cell_size=7, orientations=9, block_size=3):
        self.image_shape = image_shape
        self.cell_size = cell_size
        self.orientations = orientations
        self.block_size = block_size

    def _expected_width(self):
        return _n_pixels(_check_shape(self.image_shape))

    def _fit(self, X):
        shape = _check_shape(self.image_shape)
        for name in ("cell_size", "orientations", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise KMIError(f"hog {name} must be a positive integer, got {value!r}")
        if self.cell_size > min(shape[:2]):
            raise KMIError(
                f"hog cells of {self.cell_size} pixels do not fit {_describe_shape(shape)} images; "
                f"use at most hog:{min(shape[:2])}"
            )

    def _geometry(self):
        shape = _check_shape(self.image_shape)
        cells = (shape[0] // self.cell_size, shape[1] // self.cell_size)
        block = min(self.block_size, *cells)
        return shape, cells, block

    def _transform(self, X):
        shape, cells, block = self._geometry()
        n_blocks = (cells[0] - block + 1) * (cells[1] - block + 1)
        out = np.empty((len(X), n_blocks * block * block * self.orientations), dtype=np.float32)
        for start in range(0, len(X), 2048):
            chunk = X[start : start + 2048].reshape((-1, *shape))
            out[start : start + 2048] = self._hog(chunk, cells, block)
        return out

    def _hog(self, images, cells, block):
        g_row = np.zeros_like(images)
        g_col = np.zeros_like(images)
        g_row[:, 1:-1] = images[:, 2:] - images[:, :-2]
        g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
        if images.ndim == 4:
            # per pixel, the channel with the strongest gradient, as scikit-image does
            strongest = np.hypot(g_row, g_col).argmax(axis=3)[..., None]
            g_row = np.take_along_axis(g_row, strongest, axis=3)[..., 0]
            g_col = np.take_along_axis(g_col, strongest, axis=3)[..., 0]
        g_row = g_row.astype(np.float64)
        g_col = g_col.astype(np.float64)
        magnitude = np.hypot(g_col, g_row)
        orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
        n, c, n_bins = len(images), self.cell_size, self.orientations
        height, width = cells[0] * c, cells[1] * c
        bins = np.floor(orientation[:, :height, :width] / (180.0 / n_bins)).astype(np.intp)
        # one histogram slot per (image, cell row, cell column, bin), filled by one bincount
        cell_r = np.arange(height) // c
        cell_c = np.arange(width) // c
        slot = (
            (np.arange(n)[:, None, None] * cells[0] + cell_r[None, :, None]) * cells[1]
            + cell_c[None, None, :]
        ) * n_bins + bins
        # an angle that rounds to 180 after the modulo falls in no bin, as in scikit-image
        counted = bins < n_bins
        hist = np.bincount(
            slot[counted],
            weights=magnitude[:, :height, :width][counted],
            minlength=n * cells[0] * cells[1] * n_bins,
        ).reshape(n, cells[0], cells[1], n_bins)
        hist /= c * c
        windows = np.lib.stride_tricks.sliding_window_view(hist, (block, block), axis=(1, 2))
        # (n, blocks_r, blocks_c, orientations, block, block) -> scikit-image's cell order
        blocks = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, -1, block * block * n_bins)
        eps = 1e-5
        blocks = blocks / np.sqrt((blocks**2).sum(axis=2, keepdims=True) + eps**2)
        blocks = np.minimum(blocks, 0.2)
        blocks = blocks / np.sqrt((blocks**2).sum(axis=2, keepdims=True) + eps**2)
        return blocks.reshape(n, -1)


class PCA(_Step):
    """Principal component projection, fitted on the training rows.

    Parameters
    ----------
    n_components : int, default=50
        Number of components kept; at most min(n_samples, n_features).
    whiten : bool, default=False
        Divide each component by its standard deviation (on MNIST this hurts K-means).
    random_state : int or None
        Seed for scikit-learn's solver, where it is randomised.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features_in_,), float32
    components_ : ndarray of shape (n_components, n_features_in_), float32
    scale_ : ndarray of shape (n_components,), float32
        What each projected coordinate is divided by: the components' standard deviations when
        whitening, else ones.
    """

    _ARRAYS = ("mean_", "components_", "scale_")

    def __init__(self, n_components=50, whiten=False, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state

    def _fit(self, X):
        from sklearn.decomposition import PCA as SkPCA

        k = self.n_components
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= min(X.shape):
            raise KMIError(
                f"pca needs 1 <= n_components <= {min(X.shape)} for {X.shape[0]} rows of "
                f"{X.shape[1]} values, got {k!r}"
            )
        pca = SkPCA(n_components=int(k), random_state=self.random_state).fit(X)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        std = np.sqrt(pca.explained_variance_)
        self.scale_ = (np.where(std > 0, std, 1.0) if self.whiten else np.ones(k)).astype(
            np.float32
        )

    def _array_shapes(self):
        k, d = self.n_components, self.n_features_in_
        return {"mean_": (d,), "components_": (k, d), "scale_": (k,)}

    def _transform(self, X):
        return ((X - self.mean_) @ self.components_.T) / self.scale_


class UMAP(_Step):
    """UMAP embedding (umap-learn), with a stored, pickle-free out-of-sample rule.

    ``fit`` (and ``fit_transform``, which returns the training embedding itself) runs
    ``umap.UMAP(n_components, n_neighbors, min_dist, random_state)``. umap-learn's fitted object
    cannot be stored without pickle, so the step keeps the training rows it saw (``train_X_``,
    in the space before UMAP, e.g. after PCA-50) and their embedding (``embedding_``), and
    ``transform`` embeds a new row the way umap-learn's own ``transform`` initialises it, without
    its refinement epochs:

    1. find its ``n_neighbors`` nearest training rows (exact Euclidean search);
    2. weight neighbour j by ``exp(-d_j / sigma)``, with sigma chosen per row so the weights sum
       to ``log2(n_neighbors)`` (UMAP's fuzzy membership with ``rho = 0``);
    3. return the weighted mean of the neighbours' embeddings.

    A fitted step is therefore as large as its training rows; deterministic for a seed, since
    umap-learn runs single-threaded when given a ``random_state``. ``transform`` of the training
    rows themselves is this smoothed rule, not their embedding: use ``fit_transform``'s output
    (or ``embedding_``) for them.

    Parameters
    ----------
    n_components : int, default=10
    n_neighbors : int, default=15
    min_dist : float, default=0.0
        0 packs clusters tightly, which suits K-means.
    random_state : int or None

    Attributes
    ----------
    train_X_ : ndarray of shape (n_train, n_features_in_), float32
    embedding_ : ndarray of shape (n_train, n_components), float32
    umap_ : umap.UMAP
        The fitted umap-learn object; only present on a step fitted in this process (not on one
        rebuilt by ``from_state``), for comparing with umap-learn's own ``transform``.
    """

    _ARRAYS = ("train_X_", "embedding_")

    def __init__(self, n_components=10, n_neighbors=15, min_dist=0.0, random_state=None):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state

    def fit_transform(self, X, y=None):
        """Fit UMAP and return the training rows' embedding.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        embedding : ndarray of shape (n_samples, n_components), float32
        """
        self.fit(X)
        return self.embedding_

    def _fit(self, X):
        umap = _import_umap()
        for name in ("n_components", "n_neighbors"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise KMIError(f"umap {name} must be a positive integer, got {value!r}")
        if self.n_neighbors >= len(X):
            raise KMIError(
                f"umap needs more training rows than n_neighbors={self.n_neighbors}, got {len(X)}"
            )
        self.umap_ = umap.UMAP(
            n_components=int(self.n_components),
            n_neighbors=int(self.n_neighbors),
            min_dist=float(self.min_dist),
            random_state=self.random_state,
            # umap-learn is only reproducible single-threaded; saying so up front avoids its warning
            n_jobs=1 if self.random_state is not None else -1,
        )
        self.embedding_ = self.umap_.fit_transform(X).astype(np.float32)
        self.train_X_ = X

    def _array_shapes(self):
        return {"train_X_": (None, self.n_features_in_), "embedding_": (None, self.n_components)}

    def _transform(self, X):
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=int(self.n_neighbors), algorithm="brute")
        dist, index = search.fit(self.train_X_).kneighbors(X)
        weights = _membership(dist)
        return np.einsum("nk,nkd->nd", weights, self.embedding_[index]).astype(np.float32)


def _membership(dist, n_iter=64):
    """Row-normalised UMAP membership weights exp(-d / sigma), sum before normalising log2(k).

    Parameters
    ----------
    dist : ndarray of shape (n, k)
        Distances to the k nearest training rows, ascending.

    Returns
    -------
    weights : ndarray of shape (n, k), rows summing to 1
    """
    dist = dist.astype(np.float64)
    target = np.log2(dist.shape[1])
    # bisection on log(sigma): the weight sum grows from (#zero distances) to k with sigma
    scale = np.maximum(dist.mean(axis=1, keepdims=True), 1e-12)
    lo = np.full((len(dist), 1), np.log(1e-3))
    hi = np.full((len(dist), 1), np.log(1e3))
    for _ in range(n_iter):
        mid = (lo + hi) / 2
        total = np.exp(-dist / (scale * np.exp(mid))).sum(axis=1, keepdims=True)
        too_big = total > target
        hi = np.where(too_big, mid, hi)
        lo = np.where(too_big, lo, mid)
    weights = np.exp(-dist / (scale * np.exp((lo + hi) / 2)))
    return weights / weights.sum(axis=1, keepdims=True)


def _umap_missing():
    return KMIError("the umap feature step needs umap-learn: pip install 'kmeans-imagery[umap]'")


def _import_umap():
    try:
        import umap
    except ImportError:
        raise _umap_missing() from None
    return umap


# --------------------------------------------------------------------------------------------
# Composition


class Concat(TransformerMixin, BaseEstimator):
    """Run several pipelines on the same rows and put their outputs side by side.

    Parameters
    ----------
    branches : list of FeaturePipeline
    """

    def __init__(self, branches):
        self.branches = branches

    def fit(self, X, y=None):
        """Fit every branch on X. Returns self."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit every branch on X and return their concatenated training outputs."""
        X = _check_rows(X)
        out = np.hstack([branch.fit_transform(X) for branch in self.branches])
        self.n_features_in_ = X.shape[1]
        return out

    def transform(self, X):
        """Concatenate every fitted branch's transform of X (float32)."""
        check_is_fitted(self, "n_features_in_")
        X = _check_rows(X, self.n_features_in_)
        return np.hstack([branch.transform(X) for branch in self.branches])


_STEPS = {
    "raw": Identity,
    "deskew": Deskew,
    "l2": L2Normalize,
    "hog": HOG,
    "pca": PCA,
    "umap": UMAP,
}
_NEEDS_SHAPE = ("deskew", "hog", "onnx")
_KEEPS_IMAGES = ("raw", "deskew", "l2")


class FeaturePipeline(TransformerMixin, BaseEstimator):
    """A chain of feature steps, fitted on training rows and applied to any later rows.

    Build one with :func:`make_features`.

    Parameters
    ----------
    steps : list of transformers
        Steps from this module (or :class:`Concat` nodes), applied in order.
    spec : str or None
        The canonical spec the pipeline was built from, kept for reports and the model file.

    Attributes
    ----------
    n_features_in_ : int
    n_features_out_ : int
    """

    def __init__(self, steps, spec=None):
        self.steps = steps
        self.spec = spec

    def fit(self, X, y=None):
        """Fit every step on the training rows, each on the previous step's output.

        Returns self.
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit the pipeline and return the training rows' features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features_out_), float32
        """
        Xt = _check_rows(X)
        self.n_features_in_ = Xt.shape[1]
        for step in self.steps:
            Xt = step.fit_transform(Xt)
        self.n_features_out_ = Xt.shape[1]
        return Xt

    def transform(self, X):
        """Apply the fitted steps to new rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features_out_), float32
        """
        check_is_fitted(self, "n_features_in_")
        Xt = _check_rows(X, self.n_features_in_)
        for step in self.steps:
            Xt = step.transform(Xt)
        return Xt

    def get_state(self):
        """The fitted pipeline as plain data, for the model file (no pickle).

        Returns
        -------
        meta : dict
            JSON-able: the format version, spec, widths and every step's name and parameters.
        arrays : dict of str to ndarray
            Fitted arrays, keyed ``"<step path>.<attribute>"`` (e.g. ``"2.components_"``,
            ``"1.0.1.train_X_"`` inside a concatenation).
        """
        check_is_fitted(self, "n_features_in_")
        arrays = {}
        meta = {
            "format": _STATE_FORMAT,
            "spec": self.spec,
            "n_features_in": int(self.n_features_in_),
            "n_features_out": int(self.n_features_out_),
            "steps": _steps_state(self.steps, "", arrays),
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta, arrays):
        """Rebuild a fitted pipeline from :meth:`get_state`'s output.

        Parameters
        ----------
        meta : dict
        arrays : mapping of str to ndarray

        Returns
        -------
        FeaturePipeline
            Fitted; its ``transform`` equals the original's.

        Raises
        ------
        KMIError
            If the state is not one this version wrote (unknown format or step, missing array).
        """
        try:
            if meta.get("format") != _STATE_FORMAT:
                raise KMIError(
                    f"feature pipeline state has format {meta.get('format')!r}; this version "
                    f"reads format {_STATE_FORMAT}"
                )
            pipeline = cls(_steps_from_state(meta["steps"], "", arrays), spec=meta.get("spec"))
            pipeline.n_features_in_ = int(meta["n_features_in"])
            pipeline.n_features_out_ = int(meta["n_features_out"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise KMIError(f"feature pipeline state is incomplete or corrupt ({exc!r})") from None
        return pipeline


def _steps_state(steps, prefix, arrays):
    out = []
    for i, step in enumerate(steps):
        path = f"{prefix}{i}"
        if isinstance(step, Concat):
            branches = [
                _steps_state(branch.steps, f"{path}.{b}.", arrays)
                for b, branch in enumerate(step.branches)
            ]
            out.append(
                {"name": "concat", "n_features_in": int(step.n_features_in_), "branches": branches}
            )
            continue
        name = next(key for key, cls in _STEPS.items() if type(step) is cls)
        meta, step_arrays = step._state()
        arrays.update({f"{path}.{key}": np.asarray(value) for key, value in step_arrays.items()})
        out.append({"name": name, **meta})
    return out


def _steps_from_state(metas, prefix, arrays):
    steps = []
    for i, meta in enumerate(metas):
        path = f"{prefix}{i}"
        name = meta["name"]
        if name == "concat":
            node = Concat(
                [
                    FeaturePipeline(_steps_from_state(branch, f"{path}.{b}.", arrays))
                    for b, branch in enumerate(meta["branches"])
                ]
            )
            for branch in node.branches:
                branch.n_features_in_ = int(meta["n_features_in"])
            node.n_features_in_ = int(meta["n_features_in"])
            steps.append(node)
            continue
        if name not in _STEPS:
            raise KMIError(f"feature pipeline state has an unknown step {name!r}")
        cls = _STEPS[name]
        step_arrays = {key: np.asarray(arrays[f"{path}.{key}"]) for key in cls._ARRAYS}
        steps.append(cls._from_state(meta, step_arrays))
    return steps


# --------------------------------------------------------------------------------------------
# Spec parsing

# Paths (for onnx:PATH) may hold / ~ and -; + | ( ) stay operators.
_TOKEN = re.compile(r"\s*(?:([A-Za-z0-9_:./~\-]+)|([+|()]))")


def _valid_names():
    return (
        f"steps {', '.join(_STEPS)} (joined with '+', side by side with '|'); "
        f"presets {', '.join(FEATURE_PRESETS)}"
    )


def _tokenize(spec):
    tokens, pos = [], 0
    spec = spec.strip()
    while pos < len(spec):
        match = _TOKEN.match(spec, pos)
        if match is None:
            raise KMIError(f"bad feature spec {spec!r} at {spec[pos:]!r}; valid: {_valid_names()}")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over ``alt := seq ('|' seq)*``, ``seq := term ('+' term)*``,
    ``term := step | '(' alt ')'``. Nodes: ``("step", name, args)``, ``("seq", [...])``,
    ``("alt", [...])``."""

    def __init__(self, spec):
        self.spec = spec
        self.tokens = _tokenize(spec)
        self.pos = 0

    def error(self, what):
        return KMIError(f"bad feature spec {self.spec!r}: {what}; valid: {_valid_names()}")

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self):
        if not self.tokens:
            raise self.error("it is empty")
        node = self.alt()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def alt(self):
        items = [self.seq()]
        while self.peek() == "|":
            self.pos += 1
            items.append(self.seq())
        return items[0] if len(items) == 1 else ("alt", items)

    def seq(self):
        items = [self.term()]
        while self.peek() == "+":
            self.pos += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else ("seq", items)

    def term(self):
        token = self.peek()
        if token is None or token in "+|)":
            raise self.error("a step is missing" if token is None else f"unexpected {token!r}")
        self.pos += 1
        if token == "(":
            node = self.alt()
            if self.peek() != ")":
                raise self.error("a ')' is missing")
            self.pos += 1
            return node
        name, *args = token.split(":")
        if name not in _STEPS:
            raise self.error(f"unknown step {name!r}")
        return ("step", name, args)


def _int_arg(name, value):
    try:
        number = int(value)
    except ValueError:
        raise KMIError(f"'{name}:{value}': expected a whole number after '{name}:'") from None
    if number < 1:
        raise KMIError(f"'{name}:{value}': the number must be at least 1")
    return number


def _build_step(name, args, image_shape, random_state):
    """A step from its spec name and ':' arguments."""
    if name == "onnx":
        return _STEPS["onnx"].from_spec(":".join(args), image_shape)
    flags = {arg for arg in args if not arg.isdigit()}
    numbers = [_int_arg(name, arg) for arg in args if arg.isdigit()]
    allowed_flags = {"pca": {"whiten"}}.get(name, set())
    if flags - allowed_flags or len(numbers) > (0 if name in ("raw", "deskew", "l2") else 1):
        extra = sorted(flags - allowed_flags) or args
        raise KMIError(f"'{':'.join([name, *args])}': {name} does not take {':'.join(extra)!r}")
    if name == "hog":
        return HOG(image_shape, **({"cell_size": numbers[0]} if numbers else {}))
    if name == "pca":
        n = {"n_components": numbers[0]} if numbers else {}
        return PCA(**n, whiten="whiten" in flags, random_state=random_state)
    if name == "umap" and importlib.util.find_spec("umap") is None:
        # find_spec, not import: importing umap-learn takes seconds (numba), and fit imports it
        raise _umap_missing()
    if name == "umap":
        n = {"n_components": numbers[0]} if numbers else {}
        return UMAP(**n, random_state=random_state)
    if name == "deskew":
        return Deskew(image_shape)
    return _STEPS[name]()


def _build(node, image_shape, random_state, is_image):
    """Turn a parse node into a list of steps; returns (steps, output is still an image)."""
    if node[0] == "step":
        _, name, args = node
        if name in _NEEDS_SHAPE and not is_image:
            raise KMIError(f"'{name}' needs image rows; put it before any step that leaves pixels")
        return [_build_step(name, args, image_shape, random_state)], is_image and (
            name in _KEEPS_IMAGES
        )
    if node[0] == "seq":
        steps = []
        for item in node[1]:
            more, is_image = _build(item, image_shape, random_state, is_image)
            steps += more
        return steps, is_image
    branches = [
        FeaturePipeline(_build(item, image_shape, random_state, is_image)[0]) for item in node[1]
    ]
    return [Concat(branches)], False


def _canonical(node, top=True):
    if node[0] == "step":
        return ":".join([node[1], *node[2]])
    if node[0] == "seq":
        return "+".join(_canonical(item, False) for item in node[1])
    text = "|".join(_canonical(item, False) for item in node[1])
    return text if top else f"({text})"


def make_features(spec, image_shape, random_state=None):
    """Build an unfitted feature pipeline from a spec string.

    Parameters
    ----------
    spec : str
        Steps joined with ``+``, pipelines side by side with ``|``, grouped with parentheses,
        main parameters after ``:`` (see the module docstring), or a name from
        :data:`FEATURE_PRESETS`.
    image_shape : tuple of int
        (H, W) or (H, W, C) of the images whose flattened rows the pipeline will receive.
    random_state : int or None
        Seed for the randomised steps (PCA's solver, UMAP).

    Returns
    -------
    FeaturePipeline
        Unfitted; ``spec`` holds the expanded, canonical spec.

    Raises
    ------
    KMIError
        For a spec that does not parse, names an unknown step, misplaces an image step, or uses
        ``umap`` without umap-learn installed.
    """
    if not isinstance(spec, str):
        raise KMIError(f"feature spec must be a string, got {spec!r}")
    image_shape = _check_shape(image_shape)
    spec = FEATURE_PRESETS.get(spec.strip(), (spec,))[0]
    node = _Parser(spec).parse()
    steps, _ = _build(node, image_shape, random_state, is_image=True)
    return FeaturePipeline(steps, spec=_canonical(node))


# The onnx step lives in its own module (onnxruntime is optional), which builds on _Step above.
from .embed import OnnxEmbedding  # noqa: E402

_STEPS["onnx"] = OnnxEmbedding
