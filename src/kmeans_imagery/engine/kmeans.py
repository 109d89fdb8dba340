"""The project's own K-means estimators: scikit-learn compatible, numpy + BLAS, float32 kept.

:class:`KMeans` runs exact (over-relaxed) Lloyd iterations; :class:`MiniBatchKMeans` runs
scikit-learn's mini-batch updates, then a few Lloyd iterations over all rows. Both seed with
greedy k-means++ and finish with one exact pass over all rows, so ``labels_ == predict(X)`` and
``inertia_`` is exact for the final centroids.

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

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import KMIError
from . import _backends
from ._init import kmeans_plusplus
from ._kernels import Centers, Workers, assign, blas_threads, cluster_means, row_sq_norms
from ._lloyd import dense_lloyd, lloyd
from ._prepared import prepared
from ._reduced import N_COMPONENTS, subspace_components

__all__ = ["KMeans", "MiniBatchKMeans"]

_INITS = ("k-means++", "random")


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


class _BaseKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Validation, seeding, and the methods shared by both estimators."""

    def __init__(self, n_clusters, *, init, n_init, max_iter, tol, random_state):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # -- validation -------------------------------------------------------------------------

    def _check_params(self):
        if not isinstance(self.n_clusters, Integral) or self.n_clusters < 1:
            raise KMIError(f"n_clusters must be an integer >= 1, got {self.n_clusters!r}.")
        if not isinstance(self.max_iter, Integral) or self.max_iter < 1:
            raise KMIError(f"max_iter must be an integer >= 1, got {self.max_iter!r}.")
        if not isinstance(self.tol, Real) or self.tol < 0:
            raise KMIError(f"tol must be a number >= 0, got {self.tol!r}.")
        if not (self.n_init == "auto" or (isinstance(self.n_init, Integral) and self.n_init >= 1)):
            raise KMIError(f"n_init must be 'auto' or an integer >= 1, got {self.n_init!r}.")
        if isinstance(self.init, str) and self.init not in _INITS:
            raise KMIError(f"init must be one of {_INITS}, an array or a callable, got {self.init!r}.")

    def _check_fit_data(self, X):
        self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
        if X.shape[0] < self.n_clusters:
            raise KMIError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        self._init_array = None
        if not isinstance(self.init, str) and not callable(self.init):
            centers = np.asarray(self.init, dtype=X.dtype)
            self._check_center_shape(X, centers)
            self._init_array = centers
        return X

    def _check_center_shape(self, X, centers):
        if centers.shape != (self.n_clusters, X.shape[1]):
            raise KMIError(
                f"init has shape {centers.shape}, expected (n_clusters, n_features) = "
                f"({self.n_clusters}, {X.shape[1]})."
            )

    #: Runs that ``n_init="auto"`` means for ``init="random"`` (scikit-learn's choice).
    _auto_random_inits = 10

    def _n_init(self):
        if self._init_array is not None:
            return 1
        if self.n_init == "auto":
            return self._auto_random_inits if self.init == "random" else 1
        return self.n_init

    def _check_test_data(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        return X.astype(self.cluster_centers_.dtype, copy=False)

    # -- seeding ----------------------------------------------------------------------------

    def _seed(self, workers, X, x_sq, rng, n_rows, rows=None, space=None):
        """Initial centroids from ``init``; k-means++ and 'random' draw from ``n_rows`` rows.

        k-means++ seeds from ``X[rows]`` when ``rows`` is given. With a :class:`._prepared.Subspace`, the
        centroids are its coordinates: k-means++ runs on the projected rows, the other inits are
        projected.
        """
        if space is not None and self._init_array is None and self.init == "k-means++":
            return self._seed(workers, space.Z, space.z_sq, rng, n_rows, rows)
        if space is not None:
            return self._seed(workers, X, x_sq, rng, n_rows, rows) @ space.axes
        if self._init_array is not None:
            return self._init_array.copy()
        if callable(self.init):
            seed = int(rng.integers(np.iinfo(np.int32).max))
            centers = np.asarray(self.init(X, self.n_clusters, seed), dtype=X.dtype)
            self._check_center_shape(X, centers)
            return np.ascontiguousarray(centers)
        n = X.shape[0]
        if self.init == "random":
            return X[np.sort(rng.choice(n, self.n_clusters, replace=False))].copy()
        if rows is None and n_rows < n:
            rows = np.sort(rng.choice(n, n_rows, replace=False))
        if rows is not None:
            return kmeans_plusplus(X[rows], x_sq[rows], self.n_clusters, rng)
        return kmeans_plusplus(X, x_sq, self.n_clusters, rng)

    def _abs_tol(self, X, x_sq):
        """``tol`` times the mean per-feature variance, as in scikit-learn."""
        if self.tol == 0:
            return 0.0
        mean = X.mean(axis=0, dtype=np.float64)
        mean_var = (x_sq.mean(dtype=np.float64) - mean @ mean) / X.shape[1]
        return float(self.tol * max(mean_var, 0.0))

    # -- results ----------------------------------------------------------------------------

    def _finish(self, workers, X, x_sq, centers):
        """Labels and exact inertia of all rows for ``centers``."""
        res = assign(workers, X, x_sq, Centers(centers), inertia=True)
        return res["labels"], res["inertia"]

    def predict(self, X):
        """Index of the nearest centroid of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a dask array

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32; a lazy dask array for dask input
        """
        if _is_dask(X):
            check_is_fitted(self)
            return _backends.get("dask").predict(X, self.cluster_centers_)
        X = self._check_test_data(X)
        with Workers(blas_threads()) as workers:
            return assign(workers, X, row_sq_norms(X), Centers(self.cluster_centers_))["labels"]

    def fit_predict(self, X, y=None):
        """Fit, then return ``labels_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X).labels_

    def transform(self, X):
        """Euclidean distance of each row to each centroid.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        X = self._check_test_data(X)
        centers = Centers(self.cluster_centers_)
        x_sq = row_sq_norms(X)
        with Workers(blas_threads()) as workers:

            def work(s, e):
                G = centers.partial_sq_dist(X[s:e])
                G += x_sq[s:e, None]
                return np.sqrt(np.maximum(G, 0, out=G), out=G)

            return np.concatenate(workers.map(work, X.shape[0]))

    def fit_transform(self, X, y=None):
        """Fit, then return ``transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        return self.fit(X).transform(X)

    def score(self, X, y=None):
        """Opposite of the inertia of ``X`` for the fitted centroids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        score : float
        """
        X = self._check_test_data(X)
        with Workers(blas_threads()) as workers:
            return -self._finish(workers, X, row_sq_norms(X), self.cluster_centers_)[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _is_dask(X):
    """Whether X is a dask collection, without importing dask when it was never loaded."""
    import sys

    return "dask" in sys.modules and sys.modules["dask"].is_dask_collection(X)


class KMeans(_BaseKMeans):
    """K-means clustering by over-relaxed Lloyd iterations, numpy + BLAS.

    Same parameters and attributes as :class:`sklearn.cluster.KMeans` where they mean the same.
    Each iteration moves the centroids 1.8 times the way to the means of their clusters (the
    inertia still falls at every iteration; see :func:`._lloyd.lloyd`). k-means++ seeds from
    ``max(4096, 16 * n_clusters)`` random rows when there are more.

    On wide rows (at least 256 features, and 4 times that many rows) the iterations run on the
    rows projected on their top principal axes (32 below 64 clusters, else 64), as long as those
    carry 80 % of the variance: ``80 // n_clusters`` seedings (at least 1, at most 8) first
    converge on ``max(4096, 256 * n_clusters)`` projected rows, where that is at most half of
    them, and the one of least inertia goes on; iterations over all projected rows stop once one
    gains under 0.005 % of the inertia (or at ``tol``, or ``max_iter``); the clusters become
    full-space means. With ``tol=0``, exact
    full-space Lloyd then runs to convergence. Elsewhere, all iterations are full-space, with
    Hamerly's bounds skipping the rows that cannot change cluster. Results depend only on
    ``random_state``, not on the number of threads.

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
        Greedy k-means++, K distinct random rows, ``init(X, n_clusters, seed)``, or the
        starting centroids.
    n_init : 'auto' or int, default='auto'
        Independent runs; the one with the lowest inertia is kept. 'auto' is 10 for 'random'
        and 1 otherwise; an array ``init`` runs once.
    max_iter : int, default=300
        Most Lloyd iterations on all rows.
    tol : float, default=1e-4
        Stop when the squared distances from the centroids to the means of their clusters,
        summed, are at most ``tol`` times the mean per-feature variance of ``X`` (scikit-learn's
        test on the Lloyd step). Lloyd also stops when no label changes.
    random_state : int, RandomState instance or None, default=None
        Seed of the sampling and of k-means++.
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
        Sum of squared distances of the rows to their nearest centroid, exact for
        ``cluster_centers_`` (accumulated in float64).
    n_iter_ : int
        Iterations over all rows in the best run (subspace ones where the subspace is used,
        plus any full-space ones).
    n_features_in_ : int
        Number of features seen in ``fit``.
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        random_state=None,
        engine=None,
    ):
        super().__init__(
            n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
        )
        self.engine = engine

    def fit(self, X, y=None):
        """Compute the clustering.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Training rows; float32 stays float32, anything else becomes float64.
        y : Ignored

        Returns
        -------
        self : KMeans
        """
        if self.engine not in (None, "numpy", "dask"):
            raise KMIError(f"engine must be None, 'numpy' or 'dask', got {self.engine!r}")
        if self.engine == "dask" or _is_dask(X):
            return self._fit_dask(X)
        X = self._check_fit_data(X)
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=self._n_init())
        n, k = X.shape[0], self.n_clusters
        best = None
        data = prepared(X)
        with Workers(blas_threads()) as workers:
            x_sq = data.x_sq()
            tol = self._abs_tol(X, x_sq)
            space = None
            if _use_subspace(n, X.shape[1], k):
                space = data.subspace(workers, subspace_components(k))
            for seed in seeds:
                rng = np.random.default_rng(seed)
                if space is not None:
                    centers, n_iter = self._subspace_fit(workers, X, x_sq, space, rng, tol)
                else:
                    centers = self._seed(workers, X, x_sq, rng, min(n, _init_rows(k)))
                    centers, n_iter = lloyd(workers, X, x_sq, centers, max_iter=self.max_iter, tol=tol)
                labels, inertia = self._finish(workers, X, x_sq, centers)
                if best is None or inertia < best[2]:
                    best = (centers, labels, inertia, n_iter)
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = best
        return self

    def _fit_dask(self, X):
        """Fit on Dask by :class:`~kmeans_imagery.engine.dask.DaskKMeans`, the same strategy."""
        model = _backends.get("dask").estimator(
            self.n_clusters, init=self.init, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
            random_state=self.random_state,
        ).fit(X)
        self.cluster_centers_, self.labels_ = model.cluster_centers_, model.labels_
        self.inertia_, self.n_iter_, self.n_features_in_ = model.inertia_, model.n_iter_, model.n_features_in_
        return self

    def _subspace_fit(self, workers, X, x_sq, space, rng, tol):
        """Seed and converge in the principal subspace, then lift the clusters to full space.

        k-means++ seeds from ``max(4096, 16 * n_clusters)`` projected rows. With few clusters,
        several seedings run to convergence on a sample of the projected rows and the lowest
        inertia wins; the winner (or the only seeding) then runs on all projected rows. The
        clusters found become full-space means, which the caller labels and scores exactly;
        with ``tol == 0`` full-space Lloyd first converges from them.

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
            return self._seed(workers, X, x_sq, rng, len(rows), rows=rows, space=space)

        n_search = max(_SEARCH_MIN_ROWS, _SEARCH_ROWS_PER_CLUSTER * k)
        n_starts = 1 if self._init_array is not None else _n_starts(k)
        if 2 * n_search <= n:
            sample = np.sort(rng.choice(n, n_search, replace=False))
            Zs, zs_sq = Z[sample], z_sq[sample]
            best = None
            for _ in range(n_starts):
                found = dense_lloyd(workers, Zs, zs_sq, seed(), max_iter=_SEARCH_ITER, tol=tol)
                if best is None or found[2] < best[2]:
                    best = found
            reduced = best[0]
        else:
            reduced = seed()
        reduced, labels, _, n_iter = dense_lloyd(
            workers, Z, z_sq, reduced, max_iter=self.max_iter, tol=tol, rel_tol=_REL_TOL if tol else 0.0
        )
        # A cluster left without rows keeps its centroid mapped back to full space.
        centers = cluster_means(workers, X, labels, reduced @ axes.T)
        if tol == 0:
            centers, more = lloyd(workers, X, x_sq, centers, max_iter=self.max_iter, tol=0)
            n_iter += more
        return centers, n_iter


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch K-means (Sculley 2010, with scikit-learn's per-centroid learning rates).

    Same parameters and attributes as :class:`sklearn.cluster.MiniBatchKMeans` where they mean
    the same. Each step draws ``batch_size`` rows with replacement, assigns them, and moves each
    centroid towards the mean of its rows with weight ``count_in_batch / count_so_far``;
    centroids that got fewer than ``reassignment_ratio`` times the largest count are moved onto
    random rows of the batch. ``fit`` stops after ``max_iter`` passes over the data, when the
    sum of squared centroid moves of a step is at most ``tol`` (scaled as in :class:`KMeans`),
    or when the smoothed batch inertia has not improved for ``max_no_improvement`` steps. It then
    runs 1 to 10 Lloyd iterations over all rows (fewer for more clusters; they stop once one
    gains under 0.01 % of inertia), takes the means of the last partition as centroids, and
    assigns all rows once more for ``labels_`` and the exact ``inertia_``.

    On wide rows (see :class:`KMeans`) seeding, steps and those iterations run on the rows
    projected on their top principal axes; the last partition's full-space means are the
    centroids. :meth:`partial_fit` always works in full space.

    Memory beyond ``X``: O(n_samples) for norms and labels, the projected rows
    (``n_samples * 64`` values), one batch of gathered rows, the seeding sample (``init_size``
    rows) and per thread one block of about 2**20 values plus its distances to the centroids.
    For MNIST (60,000 x 784 float32) and K = 256 that is under 60 MiB.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {'k-means++', 'random'}, callable or array of shape (n_clusters, n_features), \
default='k-means++'
    max_iter : int, default=100
        Most passes over the data.
    batch_size : int, default=1024
        Rows per step.
    tol : float, default=0.0
        See above; 0 disables this test.
    max_no_improvement : int or None, default=10
        Steps without improvement of the smoothed batch inertia before stopping; None disables.
    init_size : int or None, default=None
        Rows that seeding and the choice among ``n_init`` seedings use; None means
        ``max(3 * batch_size, 3 * n_clusters)``.
    n_init : 'auto' or int, default='auto'
        Seedings tried; the one with the lowest inertia on a validation sample is kept.
    reassignment_ratio : float, default=0.01
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
        Equal to ``predict(X)`` after ``fit``; after ``partial_fit``, the labels of that batch.
    inertia_ : float
        Exact inertia of the rows of the last ``fit`` (or ``partial_fit`` batch).
    n_iter_ : int
        Passes over the data started by ``fit``.
    n_steps_ : int
        Mini-batch steps.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        random_state=None,
    ):
        super().__init__(
            n_clusters,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
        )
        self.batch_size = batch_size
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.reassignment_ratio = reassignment_ratio

    _auto_random_inits = 3

    def _check_params(self):
        super()._check_params()
        if not isinstance(self.batch_size, Integral) or self.batch_size < 1:
            raise KMIError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        if self.max_no_improvement is not None and (
            not isinstance(self.max_no_improvement, Integral) or self.max_no_improvement < 0
        ):
            raise KMIError(
                f"max_no_improvement must be None or an integer >= 0, got {self.max_no_improvement!r}."
            )
        if self.init_size is not None and (not isinstance(self.init_size, Integral) or self.init_size < 1):
            raise KMIError(f"init_size must be None or an integer >= 1, got {self.init_size!r}.")
        if not isinstance(self.reassignment_ratio, Real) or self.reassignment_ratio < 0:
            raise KMIError(f"reassignment_ratio must be a number >= 0, got {self.reassignment_ratio!r}.")

    def _init_size(self, n):
        size = self.init_size
        if size is None:
            size = max(3 * self.batch_size, 3 * self.n_clusters)
        return min(max(size, self.n_clusters), n)

    def _seed_best(self, workers, X, x_sq, rng, space=None):
        """Seed ``n_init`` times from ``init_size`` rows; keep the lowest validation inertia.

        With a :class:`._prepared.Subspace`, seeds and scores in its coordinates.
        """
        n = X.shape[0]
        n_init = self._n_init()
        size = self._init_size(n)
        if n_init == 1:
            return self._seed(workers, X, x_sq, rng, size, space=space)
        valid = np.sort(rng.integers(0, n, size))
        Y, y_sq = (X, x_sq) if space is None else (space.Z, space.z_sq)
        Yv, yv_sq = Y[valid], y_sq[valid]
        best, best_inertia = None, np.inf
        for _ in range(n_init):
            centers = self._seed(workers, X, x_sq, rng, size, space=space)
            inertia = assign(workers, Yv, yv_sq, Centers(centers))["d1"].sum(dtype=np.float64)
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

    def _step(self, workers, Xb, xb_sq, centers):
        """One mini-batch update of ``centers`` (in place) from the rows ``Xb``.

        Returns
        -------
        labels : ndarray of shape (len(Xb),)
        batch_inertia : float
        shift : float
            Sum of squared centroid moves.
        """
        res = assign(workers, Xb, xb_sq, Centers(centers), sums=True)
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
        return res["labels"], float(res["d1"].sum(dtype=np.float64)), shift

    def _reassign(self, Xb, centers):
        """Move centroids with very low counts onto random rows of the batch (as scikit-learn)."""
        low = self._counts < self.reassignment_ratio * self._counts.max()
        if low.sum() > 0.5 * Xb.shape[0]:
            low[np.argsort(self._counts, kind="stable")[int(0.5 * Xb.shape[0]) :]] = False
        n_low = int(low.sum())
        if n_low:
            centers[low] = Xb[self._rng.choice(Xb.shape[0], n_low, replace=False)]
            self._counts[low] = self._counts[~low].min()

    def fit(self, X, y=None):
        """Compute the clustering by mini-batch steps, then label all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; float32 stays float32, anything else becomes float64.
        y : Ignored

        Returns
        -------
        self : MiniBatchKMeans
        """
        X = self._check_fit_data(X)
        self._start(X)
        n = X.shape[0]
        batch = min(self.batch_size, n)
        data = prepared(X)
        with Workers(blas_threads()) as workers:
            x_sq = data.x_sq()
            tol = self._abs_tol(X, x_sq)
            space = None
            if _use_subspace(n, X.shape[1], self.n_clusters):
                space = data.subspace(workers, subspace_components(self.n_clusters))
            Y, y_sq = (X, x_sq) if space is None else (space.Z, space.z_sq)
            centers = self._seed_best(workers, X, x_sq, self._rng, space)
            centers = self._run_steps(workers, Y, y_sq, centers, tol)
            # A few Lloyd iterations over all rows (cheap in the subspace) remove the noise the
            # last batches left in the centroids; the full-space means of the last partition
            # are the final centroids.
            polish = _polish_iter(self.n_clusters)
            centers, labels, _, _ = dense_lloyd(
                workers, Y, y_sq, centers, max_iter=polish, tol=tol, rel_tol=_POLISH_REL_TOL
            )
            if space is not None:  # the full-space means of the last partition
                centers = cluster_means(workers, X, labels, centers @ space.axes.T)
            self.labels_, self.inertia_ = self._finish(workers, X, x_sq, centers)
        self.cluster_centers_ = centers
        self.n_iter_ = int(np.ceil(self.n_steps_ * batch / n))
        return self

    def _run_steps(self, workers, X, x_sq, centers, tol):
        """Mini-batch steps from ``centers`` until one of the stopping rules of ``fit`` holds.

        Returns
        -------
        centers : ndarray of shape (n_clusters, n_features)
        """
        n = X.shape[0]
        batch = min(self.batch_size, n)
        n_steps = (self.max_iter * n) // batch
        alpha = min(batch * 2.0 / (n + 1), 1.0)
        ewa = ewa_min = None
        no_improvement = 0
        for i in range(n_steps):
            rows = self._rng.integers(0, n, batch)
            _, inertia, shift = self._step(workers, X[rows], x_sq[rows], centers)
            if i == 0:
                continue
            inertia /= batch
            ewa = inertia if ewa is None else ewa * (1 - alpha) + inertia * alpha
            if tol > 0 and shift <= tol:
                break
            if ewa_min is None or ewa < ewa_min:
                ewa_min, no_improvement = ewa, 0
            else:
                no_improvement += 1
            if self.max_no_improvement is not None and no_improvement >= self.max_no_improvement:
                break
        return centers

    def partial_fit(self, X, y=None):
        """One mini-batch step on the rows ``X`` (seeding from them on the first call).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One batch of rows.
        y : Ignored

        Returns
        -------
        self : MiniBatchKMeans
        """
        first = not hasattr(self, "cluster_centers_")
        X = self._check_fit_data(X) if first else self._check_test_data(X)
        with Workers(blas_threads()) as workers:
            x_sq = row_sq_norms(X)
            if first:
                self._start(X)
                self.cluster_centers_ = self._seed_best(workers, X, x_sq, self._rng)
            centers = self.cluster_centers_
            self._step(workers, X, x_sq, centers)
            self.labels_, self.inertia_ = self._finish(workers, X, x_sq, centers)
        self.n_iter_ = 0
        return self
