"""The feature steps that work on rows: identity, L2 normalisation, per-feature standardisation,
deskewing, PCA, and the concatenation of branches; the base class every step shares (fit on rows,
state without pickle).
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import KMIError

#: A standard deviation at most this times the feature's mean is float32 rounding, not variation
#: (float32 resolves about 1.2e-7 of a value; the rows' arithmetic rounds more than once).
CONSTANT_RTOL = 1e-5

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
        if not len(X):
            # what a step learns from no rows is NaN (a mean) or undefined (PCA, UMAP)
            raise KMIError("fitting needs at least one row, got 0")
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """Transform rows with the fitted step.

        Parameters
        ----------
        X : array-like of shape (n_samples, ``n_features_in_``)

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
    """The rows unchanged ("raw"), as float32.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.features import Identity
    >>> Identity().fit_transform(np.array([[0.0, 0.5]])).dtype
    dtype('float32')
    """

    def _transform(self, X):
        return X


class L2Normalize(_Step):
    """Scale each row to unit Euclidean length, so K-means compares shapes, not ink amounts.

    All-zero rows stay zero.

    Examples
    --------
    A faint and a bold copy of the same stroke become the same row:

    >>> import numpy as np
    >>> from kmeans_imagery.features import L2Normalize
    >>> rows = np.array([[0.0, 0.3, 0.4], [0.0, 0.6, 0.8], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> L2Normalize().fit_transform(rows)
    array([[0. , 0.6, 0.8],
           [0. , 0.6, 0.8],
           [0. , 0. , 0. ]], dtype=float32)
    """

    def _transform(self, X):
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


class Standardize(_Step):
    """Centre each feature and divide it by its standard deviation on the training rows ("std").

    Per-band standardisation of a raster's pixels: bright, high-variance bands no longer outweigh
    the others. A constant feature carries no information and becomes 0 rather than a division by 0;
    so does one that varies only by float32 rounding (a standard deviation under
    :data:`CONSTANT_RTOL` times its mean), such as the unit-length spectra of a grey picture's equal
    bands, which scaled to unit variance would be pure noise.

    Attributes
    ----------
    mean_ : ndarray of shape (``n_features_in_``,), float32
    scale_ : ndarray of shape (``n_features_in_``,), float32
        1 / standard deviation (0 for a constant feature).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 10.0], [3.0, 10.0]])
    >>> Standardize().fit_transform(X)
    array([[-1.,  0.],
           [ 1.,  0.]], dtype=float32)
    """

    _ARRAYS = ("mean_", "scale_")

    def _fit(self, X):
        std = X.std(axis=0, dtype=np.float64)
        mean = X.mean(axis=0, dtype=np.float64)
        self.mean_ = mean.astype(np.float32)
        varies = std > CONSTANT_RTOL * np.abs(mean)
        self.scale_ = np.divide(1.0, std, out=np.zeros_like(std), where=varies & (std > 0)).astype(np.float32)

    def _array_shapes(self):
        return {"mean_": (self.n_features_in_,), "scale_": (self.n_features_in_,)}

    def _transform(self, X):
        return (X - self.mean_) * self.scale_


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

    Examples
    --------
    A vertical bar off to the left moves to the centre:

    >>> import numpy as np
    >>> from kmeans_imagery.features import Deskew
    >>> image = np.zeros((5, 5), np.float32)
    >>> image[:, 1] = 1.0
    >>> Deskew((5, 5)).fit_transform(image.reshape(1, 25)).reshape(5, 5)[2]
    array([0., 0., 1., 0., 0.], dtype=float32)
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



class PCA(_Step):
    """Principal component projection, fitted on the training rows.

    Parameters
    ----------
    n_components : int, default=50
        Number of components kept; rows with fewer features keep them all (a rotation), so
        that a pipeline such as the ``pixhog`` preset also runs on small images. At most
        n_samples.
    whiten : bool, default=False
        Divide each component by its standard deviation (on MNIST this hurts K-means).
    random_state : int or None
        Seed for scikit-learn's solver, where it is randomised.

    Attributes
    ----------
    mean_ : ndarray of shape (``n_features_in_``,), float32
        The training rows' mean.
    components_ : ndarray of shape (n_components, ``n_features_in_``), float32
        The principal axes, largest variance first.
    scale_ : ndarray of shape (n_components,), float32
        What each projected coordinate is divided by: the components' standard deviations when
        whitening, else ones.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.features import PCA
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> pca = PCA(n_components=20, random_state=0).fit(X)
    >>> pca.transform(X).shape, pca.components_.shape
    ((1797, 20), (20, 64))
    """

    _ARRAYS = ("mean_", "components_", "scale_")

    def __init__(self, n_components=50, whiten=False, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state

    def _fit(self, X):
        from sklearn.decomposition import PCA as SkPCA

        k = self.n_components
        if not isinstance(k, (int, np.integer)) or not 1 <= min(k, X.shape[1]) <= X.shape[0]:
            raise KMIError(
                f"pca needs 1 <= n_components <= {X.shape[0]} (the rows it is fitted on), got {k!r}"
            )
        k = self._n_kept(X.shape[1])
        # Rows without variance (one row, or all alike) make sklearn's explained share 0 / 0;
        # unused here, and such components get no scale (1) below.
        with np.errstate(invalid="ignore"):
            pca = SkPCA(n_components=int(k), random_state=self.random_state).fit(X)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        std = np.sqrt(pca.explained_variance_)
        self.scale_ = (np.where(std > 0, std, 1.0) if self.whiten else np.ones(k)).astype(
            np.float32
        )

    def _n_kept(self, n_features):
        return min(int(self.n_components), n_features)

    def _array_shapes(self):
        k, d = self._n_kept(self.n_features_in_), self.n_features_in_
        return {"mean_": (d,), "components_": (k, d), "scale_": (k,)}

    def _transform(self, X):
        return ((X - self.mean_) @ self.components_.T) / self.scale_



# --------------------------------------------------------------------------------------------
# Composition


class Concat(TransformerMixin, BaseEstimator):
    """Run several pipelines on the same rows and put their outputs side by side.

    Parameters
    ----------
    branches : list of FeaturePipeline
        Each applied to the same input rows.

    Examples
    --------
    What the spec ``"l2|hog"`` builds: the normalised pixels beside their HOG descriptors.

    >>> import numpy as np
    >>> from kmeans_imagery.features import HOG, Concat, FeaturePipeline, L2Normalize
    >>> rows = np.random.default_rng(0).random((10, 64), dtype=np.float32)
    >>> both = Concat([FeaturePipeline([L2Normalize()]), FeaturePipeline([HOG((8, 8), cell_size=4)])])
    >>> both.fit_transform(rows).shape  # 64 pixels + 2x2 cells of 9 orientations
    (10, 100)
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


