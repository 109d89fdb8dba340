"""The project's own K-means estimators: drop-ins for scikit-learn's, numpy + BLAS, float32 kept.

:class:`KMeans` runs exact (over-relaxed) Lloyd iterations; :class:`MiniBatchKMeans` runs
scikit-learn's mini-batch updates, then a few Lloyd iterations over all rows. Both seed with
greedy k-means++ and finish with one exact pass over all rows, so ``labels_ == predict(X)`` and
``inertia_`` is exact for the final centroids. Both take scikit-learn's parameters, methods and
attributes with the same meaning, ``sample_weight`` wherever scikit-learn takes it, and sparse
(CSR/CSC) rows, which stay sparse: see :mod:`._kernels`.

Where the speed comes from:

- on wide rows (256 features or more), most of the work runs on the rows projected onto their
  top 32 or 64 principal axes (see :mod:`._reduced`): seeding, iterations and mini-batch steps
  cost a fraction of full-space ones, and the clusters found there, lifted back as full-space
  means of the same rows, come within a few parts in 100,000 of the full-space optimum;
- for few clusters, several seedings run to convergence on a sample of the projected rows and
  only the best goes on: at K = 10 the local optimum matters more than the last iterations;
- iterations stop once they gain under 0.005 % of inertia each, not after hundreds of
  iterations of slow drift;
- one fused, chunked pass per assignment: a GEMM of a block of rows against ``-2 C^T``, the
  centroid norms added in place, argmin, and the per-cluster sums of the block (a one-hot
  sparse product) while the block is in cache; blocks run on a thread pool, BLAS single-threaded;
- on narrow rows, over-relaxed Lloyd steps and Hamerly's bounds, so that late iterations only
  revisit the rows that may change cluster;
- fits inside :func:`._prepared.sharing` (a sweep over K) share the row norms and the
  projection.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..errors import KMIError
from . import _backends
from ._init import draw_weighted, kmeans_plusplus
from ._kernels import Centers, Workers, assign, blas_threads, cluster_means, dense_rows, row_sq_norms
from ._lloyd import dense_lloyd, lloyd
from ._prepared import prepared
from ._reduced import N_COMPONENTS, subspace_components

__all__ = ["KMeans", "MiniBatchKMeans"]

_INITS = ("k-means++", "random")

#: scikit-learn's constraints on the parameters both estimators share (its ``_BaseKMeans``'s).
_BASE_CONSTRAINTS = {
    "n_clusters": [Interval(Integral, 1, None, closed="left")],
    "init": [StrOptions(set(_INITS)), callable, "array-like"],
    "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "random_state": ["random_state"],
}


class _InvalidParameterError(KMIError, InvalidParameterError):
    """A bad estimator parameter: scikit-learn's error (a ValueError and a TypeError, with its
    message), and a KMIError for the CLI."""


def _validate_params(estimator):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``, as scikit-learn does."""
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise _InvalidParameterError(str(exc)) from None


def _init_rows(n_clusters):
    """Rows that k-means++ seeds from when the data has more."""
    return max(4096, 16 * n_clusters)


#: Rows per cluster of the sample on which the subspace search compares its starts, and the
#: least size of that sample; with more rows than twice that, all rows start at once.
_SEARCH_ROWS_PER_CLUSTER = 256
_SEARCH_MIN_ROWS = 4096

#: Most iterations of each start on the search sample (they converge well before, on MNIST).
_SEARCH_ITER = 100

#: Subspace Lloyd on all rows stops once an iteration lowers the inertia by less than this
#: fraction (MNIST, K = 256: the 35th iteration or so; 40 more buy 0.04 %).
_REL_TOL = 5e-5

#: Lloyd iterations over all rows after the mini-batch steps: about as many as 3 passes at 64
#: clusters cost (one costs about as much as K), at least 1 and at most 10; they stop early once
#: one gains less than the relative inertia below. On MNIST they take up to 1.5 % off the
#: inertia of a single Lloyd step, most at small K (3 at K = 16 do not always beat
#: scikit-learn's mini-batch; 1 at K = 256 is 1 % under it).
_POLISH_BUDGET = 3
_POLISH_REL_TOL = 1e-4


def _polish_iter(n_clusters):
    return max(1, min(10, _POLISH_BUDGET * 64 // n_clusters))

#: Most seedings the subspace search compares.
_MAX_STARTS = 8


def _n_starts(n_clusters):
    """Seedings compared on the search sample: several for few clusters, where they are cheap
    and matter most (MNIST, K = 10: 4 of 10 k-means++ seeds end 0.2 to 0.5 % above the best
    optimum), one from 41 clusters up."""
    return max(1, min(_MAX_STARTS, 80 // n_clusters))


def _use_subspace(n_samples, n_features, n_clusters):
    """Whether KMeans runs its iterations in the principal subspace.

    Only where rows are wide enough for the subspace to save most of a pass, and the data has
    rows enough for the covariance sample to be a small part of it.
    """
    return n_features >= 4 * N_COMPONENTS and n_samples >= 4 * _init_rows(n_clusters)


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Validation, seeding, and the methods shared by both estimators."""

    def __init__(self, n_clusters, *, init, n_init, max_iter, tol, verbose, random_state):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state

    # -- validation -------------------------------------------------------------------------

    def _check_params(self):
        """Check the parameters against ``_parameter_constraints``: scikit-learn's errors."""
        _validate_params(self)

    def _check_fit_data(self, X):
        """Validated training rows (dense, or canonical CSR); sets ``_n_init`` as scikit-learn does."""
        self._check_params()
        X = _canonical(
            validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C")
        )
        if X.shape[0] < self.n_clusters:
            raise KMIError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        self._init_array = None
        if not isinstance(self.init, str) and not callable(self.init):
            centers = check_array(self.init, dtype=X.dtype, copy=True, order="C")
            self._check_center_shape(X, centers)
            self._init_array = centers
        self._resolve_n_init()
        return X

    def _resolve_n_init(self):
        """Set ``_n_init``, the starts to run, as scikit-learn does (``_init_array`` set first)."""
        if self.n_init != "auto":
            self._n_init = self.n_init
        elif isinstance(self.init, str) and self.init == "k-means++" or self._init_array is not None:
            self._n_init = 1
        else:  # 'random' or a callable
            self._n_init = self._auto_random_inits
        if self._init_array is not None and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._n_init = 1

    def _check_center_shape(self, X, centers):
        if centers.shape[0] != self.n_clusters:
            raise KMIError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise KMIError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"features of the data {X.shape[1]}."
            )

    #: Runs that ``n_init="auto"`` means for ``init="random"`` or a callable (scikit-learn's choice).
    _auto_random_inits = 10

    def _check_test_data(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C", reset=False
        )
        return _canonical(X.astype(self.cluster_centers_.dtype, copy=False))

    # -- seeding ----------------------------------------------------------------------------

    def _seed(self, workers, X, x_sq, rng, n_rows, rows=None, space=None, sample_weight=None):
        """Initial centroids from ``init``; k-means++ and 'random' draw from ``n_rows`` rows.

        k-means++ seeds from ``X[rows]`` when ``rows`` is given. With a :class:`._prepared.Subspace`, the
        centroids are its coordinates: k-means++ runs on the projected rows, the other inits are
        projected. With ``sample_weight``, k-means++ and 'random' draw rows in proportion to
        their weights (as scikit-learn); explicit and callable inits ignore them.
        """
        if space is not None and self._init_array is None and self.init == "k-means++":
            return self._seed(workers, space.Z, space.z_sq, rng, n_rows, rows, sample_weight=sample_weight)
        if space is not None:
            return self._seed(workers, X, x_sq, rng, n_rows, rows, sample_weight=sample_weight) @ space.axes
        if self._init_array is not None:
            return self._init_array.copy()
        n = X.shape[0]
        if self.init == "random":
            # Any rows, drawn from all of them: the same draws as DaskKMeans makes from its chunks.
            p = None if sample_weight is None else sample_weight / sample_weight.sum(dtype=np.float64)
            return dense_rows(X, np.sort(rng.choice(n, self.n_clusters, replace=False, p=p)))
        if rows is None and n_rows < n:
            rows = np.sort(rng.choice(n, n_rows, replace=False))
        if rows is not None:
            X, x_sq = X[rows], x_sq[rows]
            sample_weight = None if sample_weight is None else sample_weight[rows]
            n = len(rows)
        if callable(self.init):
            # scikit-learn's signature: the rows and a RandomState.
            state = np.random.RandomState(int(rng.integers(np.iinfo(np.int32).max)))
            centers = check_array(self.init(X, self.n_clusters, random_state=state), dtype=X.dtype, order="C")
            self._check_center_shape(X, centers)
            return centers.copy()
        return kmeans_plusplus(X, x_sq, self.n_clusters, rng, sample_weight=sample_weight)

    def _centred(self, X):
        """``X`` less its mean where its rows sit far from the origin (see :data:`_FAR_ROUNDING`).

        The norm expansion of distances then keeps their clusters; scikit-learn's KMeans always
        centres dense rows, which costs a copy of them. An array ``init`` moves alike.

        Returns
        -------
        X : ndarray or sparse matrix
        data : Prepared
            The preparation of the returned ``X``.
        offset : ndarray of shape (n_features,) or None
            What was subtracted, to add back to the centroids; None when nothing was.
        """
        data = prepared(X)
        offset = None if sp.issparse(X) else _far_offset(X, data.x_sq())
        if offset is None:
            return X, data, None
        if self._init_array is not None:
            self._init_array -= offset
        X = X - offset
        return X, prepared(X), offset

    def _abs_tol(self, X, x_sq):
        """``tol`` times the mean per-feature variance, as in scikit-learn."""
        if self.tol == 0:
            return 0.0
        mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
        mean_var = (x_sq.mean(dtype=np.float64) - mean @ mean) / X.shape[1]
        return float(self.tol * max(mean_var, 0.0))

    # -- results ----------------------------------------------------------------------------

    def _finish(self, workers, X, x_sq, centers, sample_weight=None):
        """Labels and exact (weighted) inertia of all rows for ``centers``."""
        res = assign(workers, X, x_sq, Centers(centers), inertia=True, sample_weight=sample_weight)
        return res["labels"], res["inertia"]

    def predict(self, X):
        """Index of the nearest centroid of each row.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), or a dask array

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32; a lazy dask array for dask input
        """
        if _is_dask(X):
            check_is_fitted(self)
            return _backends.get("dask").predict(X, self.cluster_centers_)
        X, centers = _near_origin(self._check_test_data(X), self.cluster_centers_)
        with Workers(blas_threads()) as workers:
            return assign(workers, X, row_sq_norms(X), Centers(centers))["labels"]

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distance of each row to each centroid.

        Distances come from the norm expansion; those it cannot resolve (a row within rounding
        of a centroid) are recomputed from the difference, so a row equal to a centroid is at
        distance 0 exactly.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        X, centers = _near_origin(self._check_test_data(X), self.cluster_centers_)
        centers = Centers(centers)
        x_sq = row_sq_norms(X)
        with Workers(blas_threads()) as workers:

            def work(s, e):
                G = centers.partial_sq_dist(X[s:e])
                G += x_sq[s:e, None]
                near = np.nonzero(G <= _NEAR * (x_sq[s:e, None] + centers.sq_norms))
                if near[0].size:
                    diff = dense_rows(X, s + near[0]) - centers.centers[near[1]]
                    G[near] = np.einsum("ij,ij->i", diff, diff)
                return np.sqrt(np.maximum(G, 0, out=G), out=G)

            return np.concatenate(workers.map(work, X.shape[0]))

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return ``transform(X)``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of ``X`` for the fitted centroids.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        X, centers = _near_origin(self._check_test_data(X), self.cluster_centers_)
        weights, scale = _check_weights(sample_weight, X, non_negative=False)
        with Workers(blas_threads()) as workers:
            return -scale * self._finish(workers, X, row_sq_norms(X), centers, weights)[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


#: Squared distances at most this fraction of ``||x||^2 + ||c||^2`` are recomputed exactly.
_NEAR = 1e-4


def _canonical(X):
    """``X`` itself, or for a CSR matrix with duplicate or unsorted entries a canonical copy."""
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _check_weights(sample_weight, X, non_negative=True):
    """Validated per-row weights, and the factor the inertia takes.

    scikit-learn's checks and messages (a scalar, or one finite weight per row, not all 0);
    ``non_negative`` also refuses negative weights (fits; ``score`` takes any, as
    scikit-learn's).

    Returns
    -------
    weights : ndarray of shape (n_samples,) or None
        None when every row has the same weight: the clustering is then the unweighted one,
        computed on the unweighted (fastest) path.
    scale : float
        The common weight in that case (the inertia is multiplied by it), else 1.
    """
    if sample_weight is None:
        return None, 1.0
    try:
        w = _check_sample_weight(sample_weight, X, dtype=X.dtype)
    except ValueError as exc:
        raise KMIError(str(exc)) from None
    if non_negative and (w < 0).any():
        raise KMIError("sample_weight must be finite and >= 0.")
    if not w.any():  # older scikit-learn's _check_sample_weight lets all zeros through
        raise KMIError("Sample weights must contain at least one non-zero number.")
    if (w == w[0]).all():
        return None, float(w[0])
    return w, 1.0


#: Rows are fitted centred when the rounding of their squared norms (machine epsilon times the
#: squared norm of their mean) exceeds this fraction of their mean squared distance to the mean:
#: the norm expansion of distances would then blur their clusters (float32 rows around 1000 with
#: unit spread: most labels wrong).
_FAR_ROUNDING = 1e-5


def _far_offset(X, x_sq):
    """The mean of the dense rows ``X`` when they sit too far from the origin for their spread
    (see :data:`_FAR_ROUNDING`), in their dtype; else None."""
    return _offset_if_far(X.mean(axis=0, dtype=np.float64), x_sq.mean(dtype=np.float64), X.dtype)


def _offset_if_far(mean, mean_sq_norm, dtype):
    """``mean`` (float64) in ``dtype`` when rows of that mean and mean squared norm sit too far
    from the origin for their spread (see :data:`_FAR_ROUNDING`); else None."""
    mean_sq = float(mean @ mean)
    if np.finfo(dtype).eps * mean_sq <= _FAR_ROUNDING * (mean_sq_norm - mean_sq):
        return None
    return mean.astype(dtype)


def _near_origin(X, centers):
    """``X`` and ``centers`` less the centres' mean when the centres sit too far from the origin
    for their spread (see :data:`_FAR_ROUNDING`) and ``X`` is dense; else both as they are.

    So that ``predict(X)`` finds the labels ``fit`` found on the centred rows.
    """
    offset = None if sp.issparse(X) else _far_offset(centers, row_sq_norms(centers))
    return (X, centers) if offset is None else (X - offset, centers - offset)


def _partition_inertia(x_sq, labels, centers, sample_weight=None):
    """(Weighted) inertia of the partition ``labels`` about ``centers``, the means of its clusters.

    From the norms alone: the (weighted) sum of ``||x||^2`` less each cluster's weight times
    ``||c||^2``; at least the inertia of the nearest centroids.
    """
    weight = np.bincount(labels, weights=sample_weight, minlength=len(centers))
    total = x_sq.sum(dtype=np.float64) if sample_weight is None else x_sq @ sample_weight.astype(np.float64)
    c = centers.astype(np.float64)
    return max(float(total - weight @ np.einsum("ij,ij->i", c, c)), 0.0)


def _warn_if_fewer_clusters(distinct, n_clusters):
    """scikit-learn's ConvergenceWarning when the fit found fewer distinct clusters than asked
    (duplicate rows), pointing at the caller of ``fit``."""
    if distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
            f"({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _is_dask(X):
    """Whether X is a dask collection, without importing dask when it was never loaded."""
    import sys

    return "dask" in sys.modules and sys.modules["dask"].is_dask_collection(X)


class KMeans(_BaseKMeans):
    """K-means clustering by over-relaxed Lloyd iterations, numpy + BLAS.

    A drop-in for :class:`sklearn.cluster.KMeans`: the same parameters, methods and attributes
    with the same meaning, dense or sparse (CSR/CSC) input, ``sample_weight`` in every method
    that takes it (weighted k-means++, weighted means, weighted inertia). Where the result
    legitimately differs from scikit-learn's:

    - each iteration moves the centroids 1.8 times the way to the means of their clusters (the
      inertia still falls at every iteration; see :func:`._lloyd.lloyd`), so the iterates, their
      number and the local optimum reached can differ from plain Lloyd's; the first two
      iterations are plain Lloyd steps, and so is the last;
    - k-means++ seeds from ``max(4096, 16 * n_clusters)`` random rows when there are more;
    - on wide dense rows (below) the engine's own start and stopping rule apply.

    On wide dense rows (at least 256 features, and 4 times that many rows) the iterations run on
    the rows projected on their top principal axes (32 below 64 clusters, else 64), as long as
    those carry 80 % of the variance: ``80 // n_clusters`` seedings (at least 1, at most 8) first
    converge on ``max(4096, 256 * n_clusters)`` projected rows, where that is at most half of
    them, and the one of least inertia goes on; iterations over all projected rows stop once one
    gains under 0.005 % of the inertia (or at ``tol``, or ``max_iter``); the clusters become
    full-space means. With ``tol=0``, exact full-space Lloyd then runs to convergence (within
    ``max_iter`` iterations in all).
    Elsewhere, and always on sparse rows, all iterations are full-space, with Hamerly's bounds
    skipping the rows that cannot change cluster. Results depend only on ``random_state``, not
    on the number of threads.

    Dense rows far from the origin for their spread (float32 rows around 10,000 that vary by a few
    units) are fitted less their mean, as scikit-learn's are, and ``predict``, ``transform`` and
    ``score`` move them alike; other rows are used as they are, with no copy.

    Sparse rows stay sparse: distances come from one sparse-times-dense product per block against
    ``-2 C^T`` plus precomputed norms (``nnz * n_clusters`` work per pass), cluster sums from one
    sparse product per pass, and only the centroids are dense.

    Memory beyond ``X``: O(n_samples) for norms, labels and bounds; the projected rows
    (``n_samples * 64`` values); the seeding sample; and per thread one block of about 2**20
    values (at most 2048 rows by ``max(n_features, n_clusters)``) plus its distances to the
    centroids. For MNIST (60,000 x 784 float32) and K = 256 that is under 60 MiB.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters K.
    init : {'k-means++', 'random'}, callable or array of shape (n_clusters, n_features), \
default='k-means++'
        Greedy k-means++, K distinct random rows (drawn in proportion to ``sample_weight``),
        ``init(X, n_clusters, random_state=RandomState)`` as scikit-learn calls it, or the
        starting centroids.
    n_init : 'auto' or int, default='auto'
        Independent runs; the one with the lowest inertia is kept. 'auto' is 10 for 'random'
        and a callable, 1 otherwise; an array ``init`` runs once (with a warning when
        ``n_init`` asks for more).
    max_iter : int, default=300
        Most Lloyd iterations on all rows.
    tol : float, default=1e-4
        Stop when the squared distances from the centroids to the means of their clusters,
        summed, are at most ``tol`` times the mean per-feature variance of ``X`` (scikit-learn's
        test on the Lloyd step). Lloyd also stops when no label changes.
    verbose : int, default=0
        Print "Initialization complete", the inertia of each full-space iteration and why the
        iterations stopped, as scikit-learn does (subspace iterations print nothing).
    random_state : int, RandomState instance or None, default=None
        Seed of the sampling and of k-means++.
    copy_x : bool, default=True
        Accepted for compatibility: the engine never centres or otherwise modifies ``X``, so
        ``X`` is left untouched either way.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run the same exact, bounded iterations (Hamerly's single lower bound per row,
        a lighter form of Elkan's ``n_clusters`` bounds) and give identical results;
        "elkan" with one cluster warns as scikit-learn does.
    engine : {None, "numpy", "dask"}, default=None
        Where the passes run: "numpy" in this process, "dask" as per-chunk partial sums on a
        dask scheduler (the default ``distributed`` client when there is one; see
        :class:`kmeans_imagery.engine.dask.DaskKMeans`). None picks "dask" for a dask array
        and "numpy" otherwise.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centroids, in the dtype of ``X`` (float32 or float64).
    labels_ : ndarray of shape (n_samples,)
        Nearest centroid of each training row; equal to ``predict(X)``. A lazy dask array when
        the fit ran on dask.
    inertia_ : float
        Sum of (weighted) squared distances of the rows to their nearest centroid, exact for
        ``cluster_centers_`` (accumulated in float64).
    n_iter_ : int
        Iterations in the best run, counted as scikit-learn counts them (the pass that finds
        no label changed is one). Where the subspace is used: iterations over all rows there,
        plus any full-space ones.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when ``X`` had them.

    See Also
    --------
    MiniBatchKMeans : Faster, slightly higher inertia.
    kmeans_imagery.engine.dask.DaskKMeans : The same on a dask array, on a cluster.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery import KMeans
    >>> X = (load_digits().data / 16).astype(np.float32)  # 1,797 images of 8x8 pixels
    >>> km = KMeans(n_clusters=10, random_state=0).fit(X)
    >>> km.cluster_centers_.shape, km.cluster_centers_.dtype, f"{km.inertia_:.0f}"
    ((10, 64), dtype('float32'), '4779')
    >>> bool((km.labels_ == km.predict(X)).all()), km.transform(X[:3]).shape
    (True, (3, 10))

    Integer weights count as repeated rows; sparse rows stay sparse:

    >>> weights = np.ones(len(X))
    >>> weights[:100] = 3
    >>> KMeans(10, random_state=0).fit(X, sample_weight=weights).n_features_in_
    64
    >>> KMeans(10, random_state=0).fit(sp.csr_matrix(X)).cluster_centers_.shape
    (10, 64)
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        engine=None,
    ):
        super().__init__(
            n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            verbose=verbose,
            random_state=random_state,
        )
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.engine = engine

    _parameter_constraints = {
        **_BASE_CONSTRAINTS,
        "copy_x": ["boolean"],
        "algorithm": [StrOptions({"lloyd", "elkan"})],
        "engine": "no_validation",  # not scikit-learn's: fit checks it, with its own message
    }

    def _check_params(self):
        super()._check_params()
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=4,
            )

    def fit(self, X, y=None, sample_weight=None):
        """Compute the clustering.

        Parameters
        ----------
        X : array-like, sparse matrix or dask array of shape (n_samples, n_features)
            Training rows; float32 stays float32, anything else becomes float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row. Weighted k-means++ and 'random' draws, weighted means and
            inertia; rows of weight 0 are never seeds (the dask engine's start on a sample
            ignores the weights: see :class:`~kmeans_imagery.engine.dask.DaskKMeans`).

        Returns
        -------
        self : KMeans
        """
        if self.engine not in (None, "numpy", "dask"):
            raise KMIError(f"engine must be None, 'numpy' or 'dask', got {self.engine!r}")
        if self.engine == "dask" or _is_dask(X):
            self._check_params()
            return self._fit_dask(X, sample_weight)
        X = self._check_fit_data(X)
        weights, scale = _check_weights(sample_weight, X)
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=self._n_init)
        n, k = X.shape[0], self.n_clusters
        n_rows = n
        if isinstance(self.init, str) and self.init == "k-means++" and not sp.issparse(X):
            n_rows = min(n, _init_rows(k))
        best = None
        X, data, offset = self._centred(X)
        with Workers(blas_threads()) as workers:
            x_sq = data.x_sq()
            tol = self._abs_tol(X, x_sq)
            space = None
            if not sp.issparse(X) and _use_subspace(n, X.shape[1], k):
                space = data.subspace(workers, subspace_components(k))
            for seed in seeds:
                rng = np.random.default_rng(seed)
                if space is not None:
                    centers, n_iter = self._subspace_fit(workers, X, x_sq, space, rng, tol, weights)
                else:
                    centers = self._seed(workers, X, x_sq, rng, n_rows, sample_weight=weights)
                    if self.verbose:
                        print("Initialization complete")
                    centers, n_iter = lloyd(
                        workers, X, x_sq, centers, max_iter=self.max_iter, tol=tol,
                        sample_weight=weights, verbose=bool(self.verbose),
                    )
                labels, inertia = self._finish(workers, X, x_sq, centers, weights)
                if best is None or inertia < best[2]:
                    best = (centers, labels, inertia, n_iter)
        self.cluster_centers_, self.labels_, inertia, self.n_iter_ = best
        if offset is not None:
            self.cluster_centers_ += offset
        self.inertia_ = scale * inertia
        self._n_features_out = k
        _warn_if_fewer_clusters(len(np.unique(self.labels_)), k)
        return self

    def _fit_dask(self, X, sample_weight=None):
        """Fit on Dask by :class:`~kmeans_imagery.engine.dask.DaskKMeans`, the same strategy."""
        model = _backends.get("dask").estimator(
            self.n_clusters, init=self.init, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
            random_state=self.random_state,
        ).fit(X, sample_weight=sample_weight)
        self.cluster_centers_, self.labels_ = model.cluster_centers_, model.labels_
        self.inertia_, self.n_iter_, self.n_features_in_ = model.inertia_, model.n_iter_, model.n_features_in_
        self._n_features_out = self.n_clusters
        return self

    def _subspace_fit(self, workers, X, x_sq, space, rng, tol, sample_weight=None):
        """Seed and converge in the principal subspace, then lift the clusters to full space.

        k-means++ seeds from ``max(4096, 16 * n_clusters)`` projected rows. With few clusters,
        several seedings run to convergence on a sample of the projected rows and the lowest
        inertia wins; the winner (or the only seeding) then runs on all projected rows. The
        clusters found become full-space means, which the caller labels and scores exactly;
        with ``tol == 0`` full-space Lloyd first converges from them, in the iterations left of
        ``max_iter``.

        Returns
        -------
        centers : ndarray of shape (n_clusters, n_features)
        n_iter : int
            Iterations over all rows, subspace and full space.
        """
        n, k = X.shape[0], self.n_clusters
        Z, z_sq, axes = space.Z, space.z_sq, space.axes
        rows = np.sort(rng.choice(n, _init_rows(k), replace=False))

        def seed():
            return self._seed(
                workers, X, x_sq, rng, len(rows), rows=rows, space=space, sample_weight=sample_weight
            )

        n_search = max(_SEARCH_MIN_ROWS, _SEARCH_ROWS_PER_CLUSTER * k)
        n_starts = 1 if self._init_array is not None else _n_starts(k)
        if 2 * n_search <= n:
            sample = np.sort(rng.choice(n, n_search, replace=False))
            Zs, zs_sq = Z[sample], z_sq[sample]
            ws = None if sample_weight is None else sample_weight[sample]
            best = None
            for _ in range(n_starts):
                found = dense_lloyd(
                    workers, Zs, zs_sq, seed(), max_iter=_SEARCH_ITER, tol=tol, sample_weight=ws
                )
                if best is None or found[2] < best[2]:
                    best = found
            reduced = best[0]
        else:
            reduced = seed()
        reduced, labels, _, n_iter = dense_lloyd(
            workers, Z, z_sq, reduced, max_iter=self.max_iter, tol=tol, rel_tol=_REL_TOL if tol else 0.0,
            sample_weight=sample_weight,
        )
        # A cluster left without rows keeps its centroid mapped back to full space.
        centers = cluster_means(workers, X, labels, reduced @ axes.T, sample_weight)
        if tol == 0 and n_iter < self.max_iter:  # n_iter_ stays within max_iter, as scikit-learn's
            centers, more = lloyd(
                workers, X, x_sq, centers, max_iter=self.max_iter - n_iter, tol=0, sample_weight=sample_weight
            )
            n_iter += more
        return centers, n_iter


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch K-means (Sculley 2010, with scikit-learn's per-centroid learning rates).

    A drop-in for :class:`sklearn.cluster.MiniBatchKMeans`: the same parameters, methods and
    attributes with the same meaning, dense or sparse (CSR/CSC) input, ``sample_weight`` in
    ``fit``, ``partial_fit``, ``fit_predict``, ``fit_transform`` and ``score``. Each step draws
    ``batch_size`` rows with replacement (in proportion to ``sample_weight``, as scikit-learn
    does), assigns them, and moves each centroid towards the mean of its rows with weight
    ``weight_in_batch / weight_so_far``; centroids that got less than ``reassignment_ratio``
    times the largest weight are moved onto random rows of the batch. ``fit`` stops after
    ``max_iter`` passes over the data, when the sum of squared centroid moves of a step is at
    most ``tol`` (scaled as in :class:`KMeans`), or when the smoothed batch inertia has not
    improved for ``max_no_improvement`` steps.

    Where the result legitimately differs from scikit-learn's: ``fit`` then runs 1 to 10 Lloyd
    iterations over all rows (fewer for more clusters, at most ``max_iter``; they stop once one
    gains under 0.01 % of inertia), takes the (weighted) means of the last partition as
    centroids, and, with ``compute_labels``, assigns all rows once more for ``labels_`` and the
    exact ``inertia_``. Those iterations take off most of the noise the last batches leave.

    On wide dense rows (see :class:`KMeans`) seeding, steps and those iterations run on the rows
    projected on their top principal axes; the last partition's full-space means are the
    centroids. :meth:`partial_fit` always works in full space. Dense rows far from the origin for
    their spread are fitted less their mean, as in :class:`KMeans` (scikit-learn's mini-batch
    does not centre them).

    Memory beyond ``X``: O(n_samples) for norms and labels, the projected rows
    (``n_samples * 64`` values), one batch of gathered rows, the seeding sample (``init_size``
    rows) and per thread one block of about 2**20 values plus its distances to the centroids.
    For MNIST (60,000 x 784 float32) and K = 256 that is under 60 MiB.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters K.
    init : {'k-means++', 'random'}, callable or array of shape (n_clusters, n_features), \
default='k-means++'
        As in :class:`KMeans`; a callable gets the ``init_size`` seeding rows.
    max_iter : int, default=100
        Most passes over the data.
    batch_size : int, default=1024
        Rows per step.
    verbose : int, default=0
        Print each seeding's inertia, each step's batch inertia, reassignments and why the
        steps stopped, as scikit-learn does.
    compute_labels : bool, default=True
        Compute ``labels_`` and the exact ``inertia_`` over all rows at the end of ``fit`` (over
        the batch in ``partial_fit``).
    random_state : int, RandomState instance or None, default=None
        Seed of the seeding, the batches and the reassignments.
    tol : float, default=0.0
        See above; 0 disables this test.
    max_no_improvement : int or None, default=10
        Steps without improvement of the smoothed batch inertia before stopping; None disables.
    init_size : int or None, default=None
        Rows that seeding and the choice among ``n_init`` seedings use; None means
        ``3 * batch_size``, or ``3 * n_clusters`` when that is less than ``n_clusters``. Less
        than ``n_clusters`` warns and becomes ``3 * n_clusters``; at most ``n_samples``.
    n_init : 'auto' or int, default='auto'
        Seedings tried; the one with the lowest inertia on a validation sample is kept. 'auto'
        is 3 for 'random' and a callable, 1 otherwise.
    reassignment_ratio : float, default=0.01
        Centroids that got less than this fraction of the largest centroid's weight are moved
        onto random rows of the batch.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centroids, in the dtype of ``X``.
    labels_ : ndarray of shape (n_samples,)
        Equal to ``predict(X)`` after ``fit``; after ``partial_fit``, the labels of that batch.
        Only with ``compute_labels``.
    inertia_ : float
        Exact (weighted) inertia of the rows of the last ``fit`` (or ``partial_fit`` batch).
        Without ``compute_labels``, ``fit`` sets that of the last Lloyd pass's partition of all
        rows about its means, the centroids (an upper bound, up to rounding), and ``partial_fit`` none.
    n_iter_ : int
        Passes over the data started by ``fit``.
    n_steps_ : int
        Mini-batch steps.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when ``X`` had them.

    See Also
    --------
    KMeans : Exact Lloyd iterations.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery import MiniBatchKMeans
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> mbk = MiniBatchKMeans(n_clusters=10, batch_size=256, random_state=0).fit(X)
    >>> mbk.cluster_centers_.shape, f"{mbk.inertia_:.0f}"
    ((10, 64), '4576')

    Rows that arrive in pieces are clustered step by step with ``partial_fit``:

    >>> online = MiniBatchKMeans(n_clusters=10, random_state=0)
    >>> for start in range(0, len(X), 300):
    ...     online = online.partial_fit(X[start:start + 300])
    >>> online.n_steps_, online.predict(X[:5]).shape
    (6, (5,))
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
    ):
        super().__init__(
            n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            verbose=verbose,
            random_state=random_state,
        )
        self.batch_size = batch_size
        self.compute_labels = compute_labels
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.reassignment_ratio = reassignment_ratio

    _auto_random_inits = 3

    _parameter_constraints = {
        **_BASE_CONSTRAINTS,
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "compute_labels": ["boolean"],
        "max_no_improvement": [Interval(Integral, 0, None, closed="left"), None],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "reassignment_ratio": [Interval(Real, 0, None, closed="left")],
    }

    def _check_fit_data(self, X):
        """As for KMeans, and sets ``_batch_size`` and ``_init_size`` as scikit-learn does."""
        X = super()._check_fit_data(X)
        n, k = X.shape[0], self.n_clusters
        self._batch_size = min(self.batch_size, n)
        size = self.init_size
        if size is None:
            size = 3 * self._batch_size if 3 * self._batch_size >= k else 3 * k
        elif size < k:
            warnings.warn(
                f"init_size={size} should be larger than n_clusters={k}. Setting it to "
                "min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            size = 3 * k
        self._init_size = min(size, n)
        return X

    def _seed_best(self, workers, X, x_sq, rng, space=None, sample_weight=None):
        """Seed ``_n_init`` times from ``_init_size`` rows; keep the lowest validation inertia.

        With a :class:`._prepared.Subspace`, seeds and scores in its coordinates.
        """
        n = X.shape[0]
        size = self._init_size
        if self._n_init == 1:
            return self._seed(workers, X, x_sq, rng, size, space=space, sample_weight=sample_weight)
        valid = np.sort(rng.integers(0, n, size))
        Y, y_sq = (X, x_sq) if space is None else (space.Z, space.z_sq)
        Yv, yv_sq = Y[valid], y_sq[valid]
        wv = None if sample_weight is None else sample_weight[valid].astype(np.float64)
        best, best_inertia = None, np.inf
        for i in range(self._n_init):
            if self.verbose:
                print(f"Init {i + 1}/{self._n_init} with method {self.init}")
            centers = self._seed(workers, X, x_sq, rng, size, space=space, sample_weight=sample_weight)
            d1 = assign(workers, Yv, yv_sq, Centers(centers))["d1"]
            inertia = d1.sum(dtype=np.float64) if wv is None else d1 @ wv
            if self.verbose:
                print(f"Inertia for init {i + 1}/{self._n_init}: {inertia}")
            if inertia < best_inertia:
                best, best_inertia = centers, inertia
        return best

    def _start(self, X):
        """Fresh state for the mini-batch steps."""
        self._rng = np.random.default_rng(
            check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        )
        self._counts = np.zeros(self.n_clusters, dtype=np.float64)
        self._since_reassign = 0
        self.n_steps_ = 0

    def _step(self, workers, Xb, xb_sq, centers, weights=None):
        """One mini-batch update of ``centers`` (in place) from the rows ``Xb`` (weighted by ``weights``).

        Returns
        -------
        labels : ndarray of shape (len(Xb),)
        batch_inertia : float
        shift : float
            Sum of squared centroid moves.
        """
        res = assign(workers, Xb, xb_sq, Centers(centers), sums=True, sample_weight=weights)
        hit = res["counts"] > 0
        before = centers.copy()
        total = self._counts[hit] + res["counts"][hit]
        centers[hit] = (
            (before[hit] * self._counts[hit, None] + res["sums"][hit]) / total[:, None]
        ).astype(centers.dtype)
        self._counts[hit] = total
        self._since_reassign += Xb.shape[0]
        if self.reassignment_ratio > 0 and (
            not self._counts.all() or self._since_reassign >= 10 * self.n_clusters
        ):
            self._since_reassign = 0
            self._reassign(Xb, centers)
        self.n_steps_ += 1
        shift = float(((centers - before).astype(np.float64) ** 2).sum())
        d1 = res["d1"]
        inertia = d1.sum(dtype=np.float64) if weights is None else d1 @ weights.astype(np.float64)
        return res["labels"], float(inertia), shift

    def _reassign(self, Xb, centers):
        """Move centroids with very low counts onto random rows of the batch (as scikit-learn)."""
        low = self._counts < self.reassignment_ratio * self._counts.max()
        if low.sum() > 0.5 * Xb.shape[0]:
            low[np.argsort(self._counts, kind="stable")[int(0.5 * Xb.shape[0]) :]] = False
        n_low = int(low.sum())
        if n_low:
            if self.verbose:
                print(f"[MiniBatchKMeans] Reassigning {n_low} cluster centers.")
            centers[low] = dense_rows(Xb, self._rng.choice(Xb.shape[0], n_low, replace=False))
            self._counts[low] = self._counts[~low].min()

    def fit(self, X, y=None, sample_weight=None):
        """Compute the clustering by mini-batch steps, then label all rows.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Training rows; float32 stays float32, anything else becomes float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row: seeding and batches draw rows in proportion to it; the final
            Lloyd iterations and the inertia are weighted.

        Returns
        -------
        self : MiniBatchKMeans
        """
        X = self._check_fit_data(X)
        weights, scale = _check_weights(sample_weight, X)
        self._start(X)
        n = X.shape[0]
        X, data, offset = self._centred(X)
        with Workers(blas_threads()) as workers:
            x_sq = data.x_sq()
            tol = self._abs_tol(X, x_sq)
            space = None
            if not sp.issparse(X) and _use_subspace(n, X.shape[1], self.n_clusters):
                space = data.subspace(workers, subspace_components(self.n_clusters))
            Y, y_sq = (X, x_sq) if space is None else (space.Z, space.z_sq)
            centers = self._seed_best(workers, X, x_sq, self._rng, space, weights)
            centers = self._run_steps(workers, Y, y_sq, centers, tol, weights)
            # A few Lloyd iterations over all rows (cheap in the subspace) remove the noise the
            # last batches left in the centroids; the full-space means of the last partition
            # are the final centroids.
            polish = min(_polish_iter(self.n_clusters), self.max_iter)
            centers, labels, _, _ = dense_lloyd(
                workers, Y, y_sq, centers, max_iter=polish, tol=tol, rel_tol=_POLISH_REL_TOL,
                sample_weight=weights,
            )
            if space is not None:  # the full-space means of the last partition
                centers = cluster_means(workers, X, labels, centers @ space.axes.T, weights)
            if self.compute_labels:
                self.labels_, inertia = self._finish(workers, X, x_sq, centers, weights)
            else:  # scikit-learn estimates it from the batches; this costs as little
                inertia = _partition_inertia(x_sq, labels, centers, weights)
            self.inertia_ = scale * inertia
        self.cluster_centers_ = centers if offset is None else centers + offset
        self._n_features_out = self.n_clusters
        self.n_iter_ = int(np.ceil(self.n_steps_ * self._batch_size / n))
        return self

    def _run_steps(self, workers, X, x_sq, centers, tol, sample_weight=None):
        """Mini-batch steps from ``centers`` until one of the stopping rules of ``fit`` holds.

        Batches are drawn in proportion to ``sample_weight`` and then weigh each row alike.

        Returns
        -------
        centers : ndarray of shape (n_clusters, n_features)
        """
        n = X.shape[0]
        batch = self._batch_size
        n_steps = (self.max_iter * n) // batch
        alpha = min(batch * 2.0 / (n + 1), 1.0)
        cumulative = None if sample_weight is None else np.cumsum(sample_weight, dtype=np.float64)
        ewa = ewa_min = None
        no_improvement = 0
        for i in range(n_steps):
            if cumulative is None:
                rows = self._rng.integers(0, n, batch)
            else:
                rows = draw_weighted(cumulative, self._rng.random(batch))
            _, inertia, shift = self._step(workers, X[rows], x_sq[rows], centers)
            inertia /= batch
            if i == 0:
                if self.verbose:
                    print(f"Minibatch step 1/{n_steps}: mean batch inertia: {inertia}")
                continue
            ewa = inertia if ewa is None else ewa * (1 - alpha) + inertia * alpha
            if self.verbose:
                print(f"Minibatch step {i + 1}/{n_steps}: mean batch inertia: {inertia}, ewa inertia: {ewa}")
            if tol > 0 and shift <= tol:
                if self.verbose:
                    print(f"Converged (small centers change) at step {i + 1}/{n_steps}")
                break
            if ewa_min is None or ewa < ewa_min:
                ewa_min, no_improvement = ewa, 0
            else:
                no_improvement += 1
            if self.max_no_improvement is not None and no_improvement >= self.max_no_improvement:
                if self.verbose:
                    print(f"Converged (lack of improvement in inertia) at step {i + 1}/{n_steps}")
                break
        return centers

    def partial_fit(self, X, y=None, sample_weight=None):
        """One mini-batch step on the rows ``X`` (seeding from them on the first call).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            One batch of rows.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row of the batch in the step (and in the seeding, on the first call).

        Returns
        -------
        self : MiniBatchKMeans
        """
        first = not hasattr(self, "cluster_centers_")
        X = self._check_fit_data(X) if first else self._check_test_data(X)
        weights, scale = _check_weights(sample_weight, X)
        if weights is None and scale != 1.0:  # a uniform weight still counts against earlier batches
            weights = np.full(X.shape[0], scale, dtype=X.dtype)
        with Workers(blas_threads()) as workers:
            x_sq = row_sq_norms(X)
            if first:
                self._start(X)
                self.cluster_centers_ = self._seed_best(workers, X, x_sq, self._rng, sample_weight=weights)
            centers = self.cluster_centers_
            self._step(workers, X, x_sq, centers, weights)
            if self.compute_labels:
                self.labels_, self.inertia_ = self._finish(workers, X, x_sq, centers, weights)
        self._n_features_out = self.n_clusters
        return self
