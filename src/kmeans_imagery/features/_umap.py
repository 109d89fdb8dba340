"""UMAP embedding of feature rows (umap-learn), stored without pickle."""

import numpy as np

from ..errors import KMIError
from ._steps import _Step


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
        Dimensions of the embedding.
    n_neighbors : int, default=15
        Neighbours of UMAP's graph, and of the out-of-sample rule.
    min_dist : float, default=0.0
        0 packs clusters tightly, which suits K-means.
    random_state : int or None
        Seed; with one, the embedding is deterministic.

    Attributes
    ----------
    train_X_ : ndarray of shape (n_train, ``n_features_in_``), float32
        The training rows.
    embedding_ : ndarray of shape (n_train, n_components), float32
        Their embedding.
    umap_ : umap.UMAP
        The fitted umap-learn object; only present on a step fitted in this process (not on one
        rebuilt by ``from_state``), for comparing with umap-learn's own ``transform``.

    Examples
    --------
    The ``umap`` preset ends in this step (PCA first, so that the stored training rows are
    small). Fitting it takes seconds even on small data (umap-learn compiles its code with numba
    on first use), so this example only builds the pipeline; ``pipeline.fit(rows)`` fits it.

    >>> from kmeans_imagery.features import UMAP, make_features
    >>> pipeline = make_features("umap", (28, 28), random_state=0)
    >>> pipeline.spec, pipeline.steps[-1]
    ('deskew+pca:50+umap:10', UMAP(random_state=0))
    >>> UMAP(n_components=2, random_state=0).get_params()
    {'min_dist': 0.0, 'n_components': 2, 'n_neighbors': 15, 'random_state': 0}
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
        # umap-learn's spectral start takes n_components + 1 eigenvectors of the rows' graph,
        # which has len(X) (scipy fails with a TypeError otherwise)
        if self.n_components > len(X) - 2:
            raise KMIError(
                f"umap:{self.n_components} needs at least {self.n_components + 2} training rows, "
                f"got {len(X)}; use at most umap:{len(X) - 2}"
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

        if not len(X):  # scikit-learn's search refuses no rows
            return np.zeros((0, self.embedding_.shape[1]), np.float32)
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


