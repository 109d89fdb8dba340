"""K-means on a ``dask.array``: :class:`DaskKMeans`, the in-memory engine's strategy on Dask.

The fit is :class:`~kmeans_imagery.engine.kmeans.KMeans`'s, with its passes cut where the data
lives (the same seeds draw the same rows, so with the same ``init`` the centres are the same to
float tolerance):

1. **Start on a sample.** The rows k-means++ seeds from (``max(4096, 16 * n_clusters)``) are
   gathered to the driver; for few clusters several seedings converge on a gathered sample and
   the best goes on (the in-memory engine's small-K search).
2. **Principal subspace, for wide rows.** The top principal axes are estimated on the driver
   from the same 2048 rows as in memory; the workers project their chunks onto them once and
   keep the projections (``n_samples * 64`` values, 1/12 of MNIST's float32 rows). Lloyd passes
   then run there: each sends ``K x 64`` centres out and brings per-chunk partial sums back.
3. **Lift.** The clusters of the last subspace pass become full-space means, in one pass that
   only adds each chunk's rows by label.
4. **Exact full-space passes.** With ``tol=0``, Lloyd passes to a fixed point; then one exact
   pass gives the inertia of the final centres.

On narrow rows steps 2 and 3 are skipped: Lloyd passes run in full space from the seeds.
Every pass is :func:`._passes.lloyd_passes` over per-chunk :func:`._passes.block_stats` (the
project's fused kernel on the workers) merged in a fixed fan-in tree, so the result does not
depend on the number of workers, and stops by the engine's stopping rule (``tol`` as in
:class:`~kmeans_imagery.engine.kmeans.KMeans`). Integer images (uint8, (n, H, W[, C])) become
float32 rows scaled by 1/255 on the workers, so a cluster holds one byte per pixel.

A worker dying mid-fit is survived by dask: the lost chunks are recomputed from their source
(a Zarr store, say) and the lost tasks rerun. If the cluster cannot finish a pass (too many
workers lost, or no answer within ``timeout`` seconds), :class:`~kmeans_imagery.errors.KMIError`
is raised and nothing is returned, so no partial model can be written.

Why not dask-ml's ``KMeans``: it seeds with k-means|| (several full passes over the data before
the first Lloyd step), computes in float64, runs every Lloyd iteration in full space, and builds
each from generic dask array operations; ``benchmarks/bench_dask.py`` compares the two.
"""

from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..errors import KMIError
from ._init import kmeans_plusplus
from ._kernels import Centers, Workers, assign, blas_threads, row_sq_norms
from ._lloyd import dense_lloyd
from ._passes import abs_tol, block_stats, label_stats, lloyd_passes, merge_stats, tree_reduce, update_centers
from ._prepared import _PCA_SEED, PCA_ROWS
from ._reduced import MIN_EXPLAINED, N_COMPONENTS, principal_axes, subspace_components
from .kmeans import (
    _BASE_CONSTRAINTS,
    _REL_TOL,
    _SEARCH_ITER,
    _SEARCH_MIN_ROWS,
    _SEARCH_ROWS_PER_CLUSTER,
    _BaseKMeans,
    _far_offset,
    _init_rows,
    _n_starts,
    _offset_if_far,
    _use_subspace,
    _warn_if_fewer_clusters,
)

__all__ = ["DaskKMeans", "connect", "predict_dask"]


class DaskKMeans(_BaseKMeans):
    """K-means on a dask array, by the in-memory engine's strategy with passes on the workers.

    Same parameters, attributes and results as :class:`~kmeans_imagery.engine.kmeans.KMeans`
    (see the module docstring for how the work is cut); ``KMeans().fit(dask_array)`` runs this.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters K.
    init : {'k-means++', 'random'}, callable or array of shape (n_clusters, n_features), \
default='k-means++'
        As for ``KMeans``; a callable ``init(sample, n_clusters, random_state=RandomState)``
        gets the gathered seeding sample (``max(4096, 16 * n_clusters)`` rows), not all rows.
    n_init : 'auto' or int, default='auto'
        Independent runs, the one of lowest inertia kept; each costs passes over all rows.
    max_iter : int, default=300
        Most Lloyd passes over all rows (subspace ones, and full-space ones with ``tol=0``).
    tol : float, default=1e-4
        The engine's stopping rule, as ``tol`` of ``KMeans``.
    verbose : int, default=0
        As in ``KMeans`` (accepted for the shared interface; passes run on the workers).
    random_state : int, RandomState instance or None, default=None
        Seed of the sampling and of k-means++ (the same rows as ``KMeans`` draws).
    client : distributed.Client or None, default=None
        The cluster to run on; None uses the current default client if there is one, else
        dask's local threaded scheduler.
    timeout : float or None, default=600.0
        Seconds one pass may take before the fit is abandoned with a KMIError; None waits for
        ever. Only enforced on a distributed client.
    retries : int, default=2
        Times a task that raised is retried (a worker lost is handled by dask itself).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        float32 (float64 for float64 rows).
    labels_ : dask.array.Array of shape (n_samples,), int32
        Lazy: the nearest centre of each training row, computed when asked for.
    inertia_ : float
        Exact sum of (weighted) squared distances of all rows to their nearest centre.
    n_iter_ : int
        Passes over all rows in the best run (subspace ones, plus any full-space ones).
    n_features_in_ : int
        Number of features seen in ``fit``.

    See Also
    --------
    kmeans_imagery.engine.kmeans.KMeans : The same fit in memory; it runs this on a dask array.
    connect : A client for a scheduler address, or a local cluster.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from distributed import Client
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery import DaskKMeans, KMeans
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> rows = da.from_array(X, chunks=500)  # 4 chunks, each a task on the workers
    >>> with Client(processes=False, n_workers=1, dashboard_address=":0") as client:
    ...     model = DaskKMeans(n_clusters=10, random_state=0, client=client).fit(rows)
    ...     labels = model.labels_.compute()
    >>> model.cluster_centers_.shape, labels.shape, f"{model.inertia_:.0f}"
    ((10, 64), (1797,), '4779')
    >>> in_memory = KMeans(n_clusters=10, random_state=0).fit(X)  # the same seed, the same fit
    >>> bool(np.allclose(model.cluster_centers_, in_memory.cluster_centers_, atol=1e-5))
    True
    """

    #: Starts of ``n_init='auto'`` with a 'random' or callable init, as ``KMeans``.
    _auto_random_inits = 10

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4,
                 verbose=0, random_state=None, client=None, timeout=600.0, retries=2):
        super().__init__(n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
                         verbose=verbose, random_state=random_state)
        self.client = client
        self.timeout = timeout
        self.retries = retries

    _parameter_constraints = {
        **_BASE_CONSTRAINTS,
        "client": "no_validation",  # checked by _Runner, with its own message
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "retries": [Interval(Integral, 0, None, closed="left")],
    }

    def fit(self, X, y=None, sample_weight=None):
        """Compute the clustering with passes over the chunks of ``X``.

        Parameters
        ----------
        X : dask array of shape (n_samples, n_features), or integer images of shape
            (n_samples, H, W[, C]); or an array-like of rows, made a dask array
            Float rows are used as they are (float32 stays float32, other floats and integer
            rows become float64, as in ``KMeans``); integer images become float32 rows scaled
            by 1/255, on the workers. Rows far from the origin for their spread are fitted less
            their mean, as in ``KMeans`` (one more pass, and a centred copy on the workers).
        y : Ignored
        sample_weight : float, array-like or dask array of shape (n_samples,), or None
            Weight of each row in the passes over all rows (means, inertia); the start on a
            sample ignores them. None weighs every row 1; a number weighs every row alike.

        Returns
        -------
        self : DaskKMeans
        """
        self._check_params()
        data = _Data(_as_dask(X), sample_weight, _Runner(self.client, self.timeout, self.retries))
        n, d, k = data.n, data.n_features, self.n_clusters
        if n < k:
            raise KMIError(f"n_samples={n} should be >= n_clusters={k}.")
        self._init_array = None
        if not isinstance(self.init, str) and not callable(self.init):
            self._init_array = self._checked_centers(
                check_array(self.init, dtype=data.dtype, copy=True, order="C"), d)
        self._resolve_n_init()
        moments = data.moments()
        # Rows far from the origin for their spread are fitted less their mean, as in memory
        # (see kmeans._FAR_ROUNDING): the norm expansion of distances would blur their clusters.
        offset = _moments_offset(moments, n, data.dtype)
        if offset is not None:
            data.centre(offset)
            moments = data.moments()  # the spread that scales tol, without the cancellation
            if self._init_array is not None:
                self._init_array -= offset
        tol = abs_tol(self.tol, moments["sq_norms"], moments["row_sums"], n)
        space = data.subspace(subspace_components(k)) if _use_subspace(n, d, k) else None
        best = None
        for seed in check_random_state(self.random_state).randint(np.iinfo(np.int32).max,
                                                                   size=self._n_init):
            rng = np.random.default_rng(seed)
            if space is not None:
                centers, stats, n_iter = self._subspace_fit(data, space, rng, tol)
            else:
                centers = self._seed_rows(data, rng, min(n, _init_rows(k)))
                centers, stats, assigned, n_iter = lloyd_passes(data.full_pass, centers,
                                                                max_iter=self.max_iter, tol=tol)
                stats = stats if np.array_equal(centers, assigned) else None
            if stats is None:  # the last pass was not over the final centres: one exact pass
                stats = data.full_pass(centers)
            if best is None or stats["inertia"] < best[1]:
                best = (centers, stats["inertia"], n_iter, stats["counts"])
        centers, inertia, self.n_iter_, counts = best
        if not np.isfinite(centers).all():
            raise KMIError("the fit produced non-finite centroids; check the data for NaN or inf")
        # The labels of the rows the fit assigned (centred where the fit centred them).
        self.labels_ = predict_dask(data.X, centers)
        self.cluster_centers_ = centers if offset is None else centers + offset
        self.inertia_ = data.scale * float(inertia)
        self.n_features_in_ = d
        self._n_features_out = k
        _warn_if_fewer_clusters(int(np.count_nonzero(counts)), k)
        return self

    def _checked_centers(self, centers, n_features):
        """``centers`` (an array init, or what a callable init returned), with KMeans' checks."""
        if centers.shape[0] != self.n_clusters:
            raise KMIError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"clusters {self.n_clusters}."
            )
        if centers.shape[1] != n_features:
            raise KMIError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"features of the data {n_features}."
            )
        return centers

    def _seed_rows(self, data, rng, n_rows, rows=None):
        """Full-space starting centres, drawing rows as ``KMeans._seed`` draws them: k-means++
        and a callable seed from ``rows`` when given, else from ``n_rows`` rows drawn."""
        n, k = data.n, self.n_clusters
        if self._init_array is not None:
            return self._init_array.copy()
        if self.init == "random":
            return data.rows(np.sort(rng.choice(n, k, replace=False)))
        if rows is None:
            rows = np.sort(rng.choice(n, n_rows, replace=False)) if n_rows < n else np.arange(n)
        sample = data.rows(rows)
        if callable(self.init):
            # scikit-learn's signature, as KMeans calls it: the rows and a RandomState.
            state = np.random.RandomState(int(rng.integers(np.iinfo(np.int32).max)))
            centers = check_array(self.init(sample, k, random_state=state), dtype=data.dtype,
                                  copy=True, order="C")
            return self._checked_centers(centers, data.n_features)
        return kmeans_plusplus(sample, row_sq_norms(sample), k, rng)

    def _subspace_fit(self, data, space, rng, tol):
        """``KMeans._subspace_fit`` with the passes on the workers; same draws, same order.

        Returns
        -------
        centers : ndarray of shape (n_clusters, n_features)
        stats : dict or None
            The exact full-space pass over ``centers``, when one was run.
        n_iter : int
        """
        n, k, axes = data.n, self.n_clusters, space.axes
        rows = np.sort(rng.choice(n, _init_rows(k), replace=False))

        def seed():
            if self._init_array is None and self.init == "k-means++":
                Z = space.rows(rows)
                return kmeans_plusplus(Z, row_sq_norms(Z), k, rng)
            return self._seed_rows(data, rng, len(rows), rows) @ axes

        n_search = max(_SEARCH_MIN_ROWS, _SEARCH_ROWS_PER_CLUSTER * k)
        n_starts = 1 if self._init_array is not None else _n_starts(k)
        if 2 * n_search <= n:
            Zs = space.rows(np.sort(rng.choice(n, n_search, replace=False)))
            zs_sq = row_sq_norms(Zs)
            with Workers(blas_threads()) as workers:
                found = [dense_lloyd(workers, Zs, zs_sq, seed(), max_iter=_SEARCH_ITER, tol=tol)
                         for _ in range(n_starts)]
            reduced = min(found, key=lambda f: f[2])[0]
        else:
            reduced = seed()
        reduced, _, assigned, n_iter = lloyd_passes(space.full_pass, reduced, max_iter=self.max_iter,
                                                    tol=tol, rel_tol=_REL_TOL if tol else 0.0)
        centers = update_centers(reduced @ axes.T, space.lift(assigned))
        stats = None
        if tol == 0:
            centers, stats, assigned, more = lloyd_passes(data.full_pass, centers,
                                                          max_iter=self.max_iter, tol=0)
            n_iter += more
            stats = stats if np.array_equal(centers, assigned) else None
        return centers, stats, n_iter

    # -- prediction --------------------------------------------------------------------------

    def predict(self, X):
        """Index of the nearest centre of each row.

        Parameters
        ----------
        X : dask array or array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : dask.array.Array (lazy) for a dask array, else ndarray; shape (n_samples,), int32
        """
        if _is_dask_array(X):
            check_is_fitted(self)
            return predict_dask(X, self.cluster_centers_)
        return super().predict(X)

    def transform(self, X):
        """Euclidean distance of each row to each centre.

        Parameters
        ----------
        X : dask array or array-like of shape (n_samples, n_features)

        Returns
        -------
        distances : dask.array.Array (lazy) for a dask array, else ndarray; shape (n_samples, n_clusters)
        """
        if not _is_dask_array(X):
            return super().transform(X)
        check_is_fitted(self)
        X, centers = _check_rows(X), self.cluster_centers_
        _check_width(X, centers)
        offset, centers = _near_origin(centers)
        return X.map_blocks(_chunk_distances, centers, offset, dtype=centers.dtype,
                            chunks=(X.chunks[0], (len(centers),)),
                            drop_axis=list(range(2, X.ndim)) or None)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of ``X`` for the fitted centres, in one pass.

        Parameters
        ----------
        X : dask array or array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,) or None

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        if not _is_dask_array(X):
            return super().score(X, sample_weight=sample_weight)
        data = _Data(_as_dask(X), sample_weight, _Runner(self.client, self.timeout, self.retries))
        _check_width(data.X, self.cluster_centers_)
        offset, centers = _near_origin(self.cluster_centers_.astype(data.dtype))
        if offset is not None:
            data.centre(offset)
        stats = data.full_pass(centers)
        _check_finite(stats["sq_norms"])
        return -data.scale * float(stats["inertia"])


def predict_dask(X, centers):
    """Nearest centre of each row, lazily: a dask array computed chunk by chunk.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or integer images
        As in :meth:`DaskKMeans.fit`.
    centers : ndarray of shape (n_clusters, n_features)
        The centroids.

    Returns
    -------
    labels : dask.array.Array of shape (n_samples,), int32
        One chunk per chunk of ``X``.

    Examples
    --------
    Classify the images of a large array with centroids fitted on a sample, on dask's default
    scheduler (or a cluster's):

    >>> import numpy as np
    >>> import dask.array as da
    >>> from kmeans_imagery import KMeans
    >>> from kmeans_imagery.engine.dask import predict_dask
    >>> pixels = np.random.default_rng(0).integers(0, 256, (10_000, 8, 8), dtype=np.uint8)
    >>> images = da.from_array(pixels, chunks=2_500)  # e.g. da.from_zarr on a large store
    >>> sample = images[:1000].compute().reshape(1000, 64) / np.float32(255)
    >>> centers = KMeans(5, random_state=0).fit(sample).cluster_centers_
    >>> labels = predict_dask(images, centers)
    >>> labels.shape, labels.chunks, labels.dtype
    ((10000,), ((2500, 2500, 2500, 2500),), dtype('int32'))
    >>> bool((labels[:1000].compute() == KMeans(5, random_state=0).fit(sample).labels_).all())
    True
    """
    X = _check_rows(X)
    centers = np.asarray(centers, dtype=_row_dtype(X.dtype))
    _check_width(X, centers)
    offset, centers = _near_origin(centers)
    return X.map_blocks(_chunk_labels, centers, offset, dtype=np.int32,
                        drop_axis=list(range(1, X.ndim)))


@contextmanager
def connect(address, *, n_workers=None, timeout=30.0):
    """A ``dask.distributed`` client for ``kmi fit --dask ADDRESS``, closed on exit.

    Parameters
    ----------
    address : str
        "local" starts a ``LocalCluster`` of worker processes on this machine (closed on exit);
        anything else is a scheduler address such as ``tcp://scheduler:8786``.
    n_workers : int or None
        Workers of a local cluster; None lets dask choose (one per core group).
    timeout : float
        Seconds to wait for the scheduler.

    Yields
    ------
    distributed.Client
        Not set as dask's default client: pass it on (``DaskKMeans(client=...)``).

    Raises
    ------
    KMIError
        When ``distributed`` is not installed (the ``scale`` extra) or the scheduler cannot be
        reached within ``timeout``.

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> from kmeans_imagery.engine.dask import connect
    >>> with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster:
    ...     with connect(cluster.scheduler_address) as client:
    ...         print(len(client.scheduler_info()["workers"]))
    2
    """
    try:
        from distributed import Client, LocalCluster
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        raise KMIError(
            "dask.distributed is not installed; install kmeans-imagery[scale] (dask, distributed, "
            "zarr)"
        ) from None
    if address == "local":
        with LocalCluster(n_workers=n_workers, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster, set_as_default=False) as client:
                yield client
        return
    try:
        # A malformed address fails here at once: Client would fail too, then hang a minute in
        # its own cleanup.
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as exc:
        raise KMIError(f"{address!r} is not a dask scheduler address ({exc}); give 'local' or "
                       f"one such as tcp://scheduler:8786") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise KMIError(f"cannot reach the dask scheduler at {address} within {timeout:g} s "
                       f"({exc}); start it with `dask scheduler` and workers with "
                       f"`dask worker {address}`") from None
    with client:
        yield client


# -- validation -------------------------------------------------------------------------------


def _is_dask_array(X):
    import sys

    return "dask.array" in sys.modules and isinstance(X, sys.modules["dask.array"].Array)


def _import_dask_array():
    try:
        import dask.array as da
    except ImportError:
        raise KMIError(
            "dask is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    return da


def _as_dask(X):
    """A dask array of rows or images; array-likes of rows become one (8192-row chunks)."""
    da = _import_dask_array()
    if not isinstance(X, da.Array):
        X = np.asarray(X)
        X = da.from_array(X, chunks=(min(8192, max(len(X), 1)),) + X.shape[1:])
    return _check_rows(X)


def _check_rows(X):
    da = _import_dask_array()
    if not isinstance(X, da.Array):
        raise KMIError(f"expected a dask array, got {type(X).__name__}")
    kind = X.dtype.kind
    if not ((X.ndim == 2 and kind in "fiub") or (X.ndim in (3, 4) and kind in "iu")):
        raise KMIError(f"expected rows (n, d) or integer images (n, H, W[, C]), got "
                       f"{X.dtype} of shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise KMIError("the dask array has unknown chunk sizes; call compute_chunk_sizes() first")
    if _n_features(X) == 0:
        raise KMIError(f"expected at least 1 feature, got shape {X.shape}")
    if X.ndim == 2 and kind != "f":
        X = X.astype(np.float64)  # integer rows are values, as in KMeans; images are pixels
    # Chunks along the first axis only: each task then holds whole rows.
    return X.rechunk({axis: -1 for axis in range(1, X.ndim)})


def _n_features(X):
    return int(np.prod(X.shape[1:]))


def _check_width(X, centers):
    if centers.ndim != 2 or centers.shape[1] != _n_features(X):
        raise KMIError(f"centers have shape {centers.shape}, expected (n_clusters, "
                       f"{_n_features(X)})")


def _row_dtype(dtype):
    """float32 for float32 rows and integer images, float64 for other rows (as KMeans)."""
    return np.dtype(np.float32) if dtype == np.float32 or dtype.kind in "iu" else np.dtype(np.float64)


def _moments_offset(moments, n_rows, dtype):
    """:func:`.kmeans._far_offset` from the moments of the rows: their mean when they sit too
    far from the origin for their spread, else None."""
    return _offset_if_far(moments["row_sums"] / n_rows, moments["sq_norms"] / n_rows, dtype)


def _near_origin(centers):
    """``(offset, centers - offset)`` when the centres sit too far from the origin for their
    spread (as ``KMeans.predict`` moves rows and centres), else ``(None, centers)``."""
    offset = _far_offset(centers, row_sq_norms(centers))
    return (None, centers) if offset is None else (offset, centers - offset)


def _check_finite(sq_norms):
    if not np.isfinite(sq_norms).all():
        raise KMIError("Input X contains NaN or infinity; K-means needs finite values.")


# -- running graphs -----------------------------------------------------------------------------


class _Runner:
    """Persists and computes on a distributed client (with a timeout), or on local threads."""

    def __init__(self, client, timeout, retries):
        if client is None:
            try:
                from distributed import default_client

                client = default_client()
            except (ImportError, ValueError):  # no distributed, or no client started
                client = None
        elif not (hasattr(client, "persist") and hasattr(client, "compute")):
            raise KMIError(f"client must be a distributed.Client or None, got {client!r}; "
                           f"kmeans_imagery.engine.dask.connect(address) makes one")
        self.client, self.timeout, self.retries = client, timeout, retries

    def persist(self, obj):
        """``obj`` (a dask collection or a list of delayed objects) computed and kept in memory."""
        import dask

        if self.client is None:
            return dask.persist(obj, scheduler="threads")[0]
        return self.client.persist(obj, retries=self.retries)

    def compute(self, obj, what):
        """``obj`` (a dask object, or a tuple of them) computed; a KMIError if the cluster fails."""
        import dask

        obj = dask.delayed(obj) if isinstance(obj, tuple) else obj
        if self.client is None:
            return dask.compute(obj, scheduler="threads")[0]
        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError

        future = self.client.compute(obj, retries=self.retries)
        try:
            return future.result(timeout=self.timeout)
        except BaseException as exc:
            future.cancel()  # free the cluster of a pass nobody will collect
            if isinstance(exc, TimeoutError):
                raise KMIError(
                    f"the dask cluster did not finish {what} within {self.timeout:g} s (workers "
                    f"lost or overloaded); no model was produced"
                ) from None
            if isinstance(exc, KilledWorker):
                raise KMIError(
                    f"dask workers died repeatedly during {what} ({exc}); no model was produced"
                ) from None
            if isinstance(exc, CommClosedError | OSError):
                raise KMIError(
                    f"lost the connection to the dask cluster during {what} ({exc}); no model "
                    f"was produced"
                ) from None
            raise


def _lazy(obj):
    """``obj`` (a function, or a value such as the centres) as a pure dask delayed object."""
    from dask import delayed

    return delayed(obj, pure=True)


def _merged(parts, merge=merge_stats):
    return tree_reduce(parts, lambda *group: _lazy(merge)(*group))


class _Data:
    """The rows of a fit on the workers: passes over them, rows gathered, their subspace."""

    def __init__(self, X, sample_weight, runner):
        self.runner, self.n, self.n_features = runner, X.shape[0], _n_features(X)
        self.dtype = _row_dtype(X.dtype)
        # Loaded once (a Zarr store is read by the workers), then every pass reuses worker memory.
        self.X = runner.persist(X)
        self.blocks = self.X.to_delayed().ravel().tolist()
        self.starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
        self.weights = [None] * len(self.blocks)
        # A number weighs every row alike: the unweighted passes, their inertia times it.
        self.scale = 1.0
        if sample_weight is not None and not _is_dask_array(sample_weight) and np.ndim(sample_weight) == 0:
            self.scale, sample_weight = float(sample_weight), None
        if sample_weight is not None:
            w = sample_weight
            if not _is_dask_array(w):
                w = _import_dask_array().from_array(np.asarray(w, dtype=np.float64), chunks=-1)
            if w.shape != (self.n,):
                raise KMIError(f"sample_weight has shape {w.shape}, expected (n_samples,) = "
                               f"({self.n},)")
            # Held here: the delayed chunks alone do not keep a distributed client's futures.
            self.sample_weight = runner.persist(w.astype(np.float64).rechunk((X.chunks[0],)))
            self.weights = self.sample_weight.to_delayed().ravel().tolist()

    def moments(self):
        """Sum of squared row norms and of the rows; checks the rows and the weights."""
        parts = [_lazy(_chunk_moments)(b, w, self.dtype) for b, w in zip(self.blocks, self.weights,
                                                                                strict=True)]
        out = self.runner.compute(_merged(parts, _merge_moments), "reading the data")
        _check_finite(out["row_sums"])  # float64 sums: NaN and infinity carry, nothing overflows
        weight_sum = self.scale * out["weight_sum"]
        if out["weight_min"] < 0 or self.scale < 0 or not np.isfinite(weight_sum) or weight_sum <= 0:
            raise KMIError("sample_weight must be finite, >= 0, and not all 0")
        return out

    def centre(self, offset):
        """Make the rows the rows less ``offset``, as float rows kept on the workers in their place."""
        X = self.X
        self.X = self.runner.persist(X.map_blocks(
            _chunk_centred, offset, dtype=self.dtype, chunks=(X.chunks[0], (self.n_features,)),
            drop_axis=list(range(2, X.ndim)) or None))
        self.blocks = self.X.to_delayed().ravel().tolist()

    def full_pass(self, centers):
        """Merged :func:`._passes.block_stats` of all rows (exact inertia)."""
        c = _lazy(centers)
        parts = [_lazy(_chunk_stats)(b, c, w, True) for b, w in zip(self.blocks, self.weights, strict=True)]
        return self.runner.compute(_merged(parts), "a full-space pass")

    def rows(self, rows):
        """``X[rows]`` (sorted indices) as float rows on the driver."""
        return _gather(self, self.blocks, rows, self.dtype)

    def subspace(self, n_components):
        """The rows projected on their top principal axes, kept on the workers; None when the
        axes carry under ``MIN_EXPLAINED`` of the variance (as ``_prepared.Prepared.subspace``)."""
        rng = np.random.default_rng(_PCA_SEED)
        rows = np.sort(rng.choice(self.n, min(self.n, PCA_ROWS), replace=False))
        sample = self.rows(rows)
        axes, explained = principal_axes(sample, np.arange(len(sample)), N_COMPONENTS)
        if explained < MIN_EXPLAINED:
            return None
        return _Subspace(self, np.ascontiguousarray(axes[:, :n_components]))


#: Most bytes of projected rows brought to the driver (MNIST: 15 MiB; 500,000 rows at 64 axes):
#: there a subspace pass is a GEMM of milliseconds, where on the workers each of the 30 to 40
#: passes costs a round trip to the scheduler. Larger, they stay on the workers.
_DRIVER_BYTES = 128 << 20


class _Subspace:
    """The rows of a :class:`_Data` projected on ``axes``: on the driver up to
    :data:`_DRIVER_BYTES`, else kept on the workers. Either way, the same passes."""

    def __init__(self, data, axes):
        self.data, self.axes = data, axes
        a = _lazy(axes)
        blocks = [_lazy(_chunk_project)(b, a) for b in data.blocks]
        self.Z = self.blocks = None
        if data.n * axes.shape[1] * axes.itemsize <= _DRIVER_BYTES:
            self.Z, self.weight = data.runner.compute(
                (_lazy(np.concatenate)(blocks), _lazy(_concat_weights)(data.weights)),
                "projecting the rows")
            self.z_sq = row_sq_norms(self.Z)
        else:
            self.blocks = data.runner.persist(blocks)

    def full_pass(self, centers):
        if self.Z is not None:
            with Workers(blas_threads()) as workers:
                return block_stats(workers, self.Z, centers, x_sq=self.z_sq, sample_weight=self.weight,
                                   exact=False)
        data, c = self.data, _lazy(centers)
        parts = [_lazy(_chunk_stats)(z, c, w, False)
                 for z, w in zip(self.blocks, data.weights, strict=True)]
        return data.runner.compute(_merged(parts), "a subspace pass")

    def rows(self, rows):
        if self.Z is not None:
            return self.Z[rows]
        return _gather(self.data, self.blocks, rows, self.axes.dtype)

    def lift(self, assigned):
        """Per-cluster sums of the full-space rows, by their nearest ``assigned`` subspace centre."""
        data = self.data
        if self.Z is not None:
            with Workers(blas_threads()) as workers:
                labels = assign(workers, self.Z, self.z_sq, Centers(assigned))["labels"]
            parts = [_lazy(_chunk_label_stats)(b, labels[s:e], len(assigned), assigned.dtype, w)
                     for b, w, s, e in zip(data.blocks, data.weights, data.starts[:-1], data.starts[1:],
                                           strict=True)]
        else:
            c = _lazy(assigned)
            parts = [_lazy(_chunk_lift)(b, z, c, w)
                     for b, z, w in zip(data.blocks, self.blocks, data.weights, strict=True)]
        return data.runner.compute(_merged(parts), "lifting the clusters to full space")


def _gather(data, blocks, rows, dtype):
    parts = []
    for i, (s, e) in enumerate(zip(data.starts[:-1], data.starts[1:], strict=True)):
        lo, hi = np.searchsorted(rows, [s, e])
        if hi > lo:
            parts.append(_lazy(_take_rows)(blocks[i], rows[lo:hi] - s, dtype))
    return data.runner.compute(_lazy(np.concatenate)(parts), "gathering a sample")


# -- per-chunk tasks (run on the workers) ----------------------------------------------------------


def _as_rows(block, dtype):
    """A chunk as C-contiguous float rows: integer images scaled by 1/255 to float32."""
    if block.dtype.kind in "iu":
        block = np.multiply(block.reshape(len(block), -1), np.float32(1 / 255), dtype=np.float32)
    return np.ascontiguousarray(block.reshape(len(block), -1), dtype=dtype)


def _take_rows(block, idx, dtype):
    return _as_rows(block[idx], dtype)


def _chunk_moments(block, weight, dtype):
    rows = _as_rows(block, dtype)
    w = np.ones(len(rows)) if weight is None else weight
    return {"sq_norms": float(row_sq_norms(rows).sum(dtype=np.float64)),
            "row_sums": rows.sum(axis=0, dtype=np.float64),
            "weight_min": float(w.min(initial=np.inf)), "weight_sum": float(w.sum())}


def _merge_moments(*parts):
    return {"sq_norms": sum(p["sq_norms"] for p in parts),
            "row_sums": sum(p["row_sums"] for p in parts),
            "weight_min": min(p["weight_min"] for p in parts),
            "weight_sum": sum(p["weight_sum"] for p in parts)}


def _chunk_stats(block, centers, weight, exact):
    with Workers(1) as workers:
        return block_stats(workers, _as_rows(block, centers.dtype), centers, sample_weight=weight,
                           exact=exact)


def _chunk_project(block, axes):
    return _as_rows(block, axes.dtype) @ axes


def _chunk_lift(block, zblock, assigned, weight):
    with Workers(1) as workers:
        labels = assign(workers, zblock, row_sq_norms(zblock), Centers(assigned))["labels"]
    return _chunk_label_stats(block, labels, len(assigned), assigned.dtype, weight)


def _chunk_label_stats(block, labels, n_clusters, dtype, weight):
    return label_stats(_as_rows(block, dtype), labels, n_clusters, weight)


def _concat_weights(weights):
    return None if weights[0] is None else np.concatenate(weights)


def _chunk_centred(block, offset):
    return _as_rows(block, offset.dtype) - offset


def _test_rows(block, centers, offset):
    """A chunk of rows to predict, less ``offset`` (the centres' shift), and their squared norms;
    a KMIError for NaN or infinity, as ``KMeans.predict`` refuses them."""
    rows = _as_rows(block, centers.dtype)
    if offset is not None:
        rows = rows - offset
    x_sq = row_sq_norms(rows)
    _check_finite(x_sq)
    return rows, x_sq


def _chunk_labels(block, centers, offset):
    rows, x_sq = _test_rows(block, centers, offset)
    with Workers(1) as workers:
        return assign(workers, rows, x_sq, Centers(centers))["labels"]


def _chunk_distances(block, centers, offset):
    rows, x_sq = _test_rows(block, centers, offset)
    G = Centers(centers).partial_sq_dist(rows)
    G += x_sq[:, None]
    return np.sqrt(np.maximum(G, 0, out=G), out=G)
