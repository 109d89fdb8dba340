"""K-means on a ``dask.array``, on a ``dask.distributed`` cluster or dask's local scheduler.

The fit is the in-memory engine's, cut where the data lives:

1. **Start on a sample.** A seeded random sample of rows is gathered to the driver; the
   project's :class:`~kmeans_imagery.engine.kmeans.KMeans` (k-means++ seeding, then Lloyd)
   runs on it in memory. Many of the Lloyd iterations thus run before any full pass, on a
   sample small enough to be seconds of work.
2. **Exact Lloyd passes over the chunks.** Each pass sends the centroids (K x d floats) to the
   workers; each worker runs the project's fused assignment kernel on each of its chunks and
   returns only that chunk's partial sums: per-cluster sums (K x d, float64), counts (K,),
   exact inertia, and its farthest rows (to re-seed empty clusters). Those are added up in a
   fixed tree, the new centroids computed on the driver. Data never moves after it is loaded;
   per pass, the network carries O(K x d) per chunk.

Integer images (uint8, (n, H, W[, 3])) are scaled to float32 rows on the workers, so a
cluster holds one byte per pixel. The reduction order is fixed, so results do not depend on
the number of workers.

A worker dying mid-fit is survived by dask: the lost chunks are recomputed from their source
(a Zarr store, say) and the lost tasks rerun. If the cluster cannot finish a pass (too many
workers lost, or no answer within ``timeout`` seconds), :class:`~kmeans_imagery.errors.KMIError`
is raised and nothing is returned, so no partial model can be written.

Why not dask-ml's ``KMeans``: it seeds with k-means|| (several full passes over the data
before the first Lloyd step), computes in float64 (twice the memory and traffic of float32
images, four times uint8), and builds each Lloyd iteration from generic dask array operations
(a distance argmin per block, then separate reductions), whereas here one fused kernel per chunk
returns the sums directly. ``benchmarks/bench_scale.py`` compares the two on the same cluster.
"""

from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

from ..errors import KMIError
from ._init import kmeans_plusplus
from ._kernels import Centers, Workers, assign, row_sq_norms

__all__ = [
    "chunk_stats",
    "connect",
    "fit_dask",
    "merge_stats",
    "predict_dask",
    "update_centers",
]

def _seed_rows(n_clusters):
    """Rows drawn to the driver for k-means++ (as many as the in-memory engine seeds from)."""
    return max(4096, 16 * n_clusters)


def _warm_rows(n_clusters):
    """Rows of the sample that Lloyd converges on in memory before the first full pass."""
    return max(16384, 64 * n_clusters)


#: Farthest rows each chunk reports, the candidates for re-seeding empty clusters.
_N_FAR = 8
#: Partial results added per reduction task.
_FAN_IN = 8


def fit_dask(X, n_clusters, *, init="k-means++", max_iter=300, tol=1e-4, random_state=None,
             client=None, timeout=600.0, retries=2):
    """Fit K-means on a dask array by exact Lloyd passes over its chunks.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or integer images of shape
        (n_samples, H, W) or (n_samples, H, W, C)
        Float rows are used as they are (float32 stays float32); integer images become float32
        rows scaled by 1/255, on the workers. Chunked along the first axis.
    n_clusters : int
    init : {"k-means++", "random"} or ndarray of shape (n_clusters, n_features)
        "k-means++": greedy k-means++ on a random sample, then Lloyd on a larger sample in
        memory; "random": distinct random rows; an array: these starting centroids, with no
        sample step, so the result equals the in-memory engine's ``KMeans(init=array)``.
    max_iter : int
        Most Lloyd passes over all rows.
    tol : float
        Stop when the sum of squared centroid moves of a pass is at most ``tol`` times the mean
        per-feature variance of ``X`` (as the in-memory engine), or when a pass lowers the
        inertia by less than ``tol`` times the inertia: a full pass is the costly unit here,
        and Lloyd's long tail gains less than that per pass. 0 runs to a fixed point.
    random_state : int, RandomState or None
        Seed of the sample and of k-means++.
    client : distributed.Client or None
        The cluster to run on; None uses the current default client if there is one, else
        dask's local threaded scheduler.
    timeout : float or None
        Seconds one pass may take before the fit is abandoned with a KMIError; None waits
        for ever. Only enforced on a distributed client.
    retries : int
        Times a task that raised is retried (a worker lost is handled by dask itself).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        float32 (float64 for float64 rows).
    inertia : float
        Exact sum of squared distances of all rows to their nearest centroid in ``centers``.
    n_iter : int
        Lloyd passes over all rows (each an update of the centroids).

    Raises
    ------
    KMIError
        For bad parameters or data, and when the cluster fails to finish a pass.
    """
    X = _check_rows(X)
    n, n_features = X.shape[0], _n_features(X)
    _check_params(n_clusters, max_iter, tol, n, timeout)
    runner = _Runner(client, timeout, retries)
    dtype = _row_dtype(X.dtype)
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    if isinstance(init, str):
        if init not in ("k-means++", "random"):
            raise KMIError(f"init must be 'k-means++', 'random' or an array, got {init!r}.")
        centers = None
    else:
        centers = np.array(init, dtype=dtype)
        if centers.shape != (n_clusters, n_features):
            raise KMIError(f"init has shape {centers.shape}, expected (n_clusters, n_features) = "
                           f"({n_clusters}, {n_features})")
    # Loaded once (a Zarr store is read by the workers), then every pass reuses worker memory.
    X = runner.persist(X)
    if centers is None:
        centers = _start(runner, X, n_clusters, init, rng, max_iter, tol, dtype)
    return _lloyd(runner, X, centers, max_iter=max_iter, tol=tol)


def predict_dask(X, centers):
    """Nearest centroid of each row, lazily: a dask array computed chunk by chunk.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or integer images
        As in :func:`fit_dask`.
    centers : ndarray of shape (n_clusters, n_features)

    Returns
    -------
    labels : dask.array.Array of shape (n_samples,), int32
    """
    from dask import delayed

    X = _check_rows(X)
    centers = np.asarray(centers, dtype=_row_dtype(X.dtype))
    if centers.ndim != 2 or centers.shape[1] != _n_features(X):
        raise KMIError(f"centers have shape {centers.shape}, expected (n_clusters, "
                       f"{_n_features(X)})")
    return X.map_blocks(_chunk_labels, delayed(centers, pure=True), dtype=np.int32,
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
    """
    try:
        from distributed import Client, LocalCluster
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
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise KMIError(f"cannot reach the dask scheduler at {address} within {timeout:g} s "
                       f"({exc}); start it with `dask scheduler` and workers with "
                       f"`dask worker {address}`") from None
    with client:
        yield client


# -- validation -------------------------------------------------------------------------------


def _check_rows(X):
    try:
        import dask.array as da
    except ImportError:
        raise KMIError(
            "dask is not installed; install kmeans-imagery[scale] (dask, distributed, zarr)"
        ) from None
    if not isinstance(X, da.Array):
        raise KMIError(f"the dask engine needs a dask array, got {type(X).__name__}")
    kind = X.dtype.kind
    if X.ndim == 2 and kind == "f":
        pass
    elif X.ndim in (3, 4) and kind in "iu":
        pass
    else:
        raise KMIError(f"expected float rows (n, d) or integer images (n, H, W[, C]), got "
                       f"{X.dtype} of shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise KMIError("the dask array has unknown chunk sizes; call compute_chunk_sizes() first")
    # Chunks along the first axis only: each task then holds whole rows.
    return X.rechunk({axis: -1 for axis in range(1, X.ndim)})


def _n_features(X):
    return int(np.prod(X.shape[1:]))


def _row_dtype(dtype):
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _check_params(n_clusters, max_iter, tol, n, timeout):
    if not isinstance(n_clusters, Integral) or n_clusters < 1:
        raise KMIError(f"n_clusters must be an integer >= 1, got {n_clusters!r}.")
    if n < n_clusters:
        raise KMIError(f"n_samples={n} should be >= n_clusters={n_clusters}.")
    if not isinstance(max_iter, Integral) or max_iter < 1:
        raise KMIError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    if not isinstance(tol, Real) or tol < 0:
        raise KMIError(f"tol must be a number >= 0, got {tol!r}.")
    if timeout is not None and (not isinstance(timeout, Real) or timeout <= 0):
        raise KMIError(f"timeout must be None or a number of seconds > 0, got {timeout!r}.")


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
        self.client, self.timeout, self.retries = client, timeout, retries

    def persist(self, X):
        if self.client is None:
            return X.persist(scheduler="threads")
        return self.client.persist(X, retries=self.retries)

    def compute(self, obj, what):
        if self.client is None:
            import dask

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


# -- the fit ----------------------------------------------------------------------------------


def _start(runner, X, n_clusters, init, rng, max_iter, tol, dtype):
    """Starting centroids from a random sample of rows, gathered to the driver."""
    from .kmeans import KMeans

    n = X.shape[0]
    if init == "random":
        rows = np.sort(rng.choice(n, n_clusters, replace=False))
        return _as_rows(runner.compute(X[rows], "reading the initial rows")).astype(dtype)
    warm = n > 2 * _warm_rows(n_clusters)
    size = _warm_rows(n_clusters) if warm else min(n, _seed_rows(n_clusters))
    rows = np.sort(rng.choice(n, size, replace=False))
    sample = _as_rows(runner.compute(X[rows], "reading the sample")).astype(dtype, copy=False)
    if not warm:
        return kmeans_plusplus(sample, row_sq_norms(sample), n_clusters, rng)
    seed = int(rng.integers(np.iinfo(np.int32).max))
    return KMeans(n_clusters, n_init=1, max_iter=max_iter, tol=tol,
                  random_state=seed).fit(sample).cluster_centers_


def _lloyd(runner, X, centers, *, max_iter, tol):
    """Exact Lloyd passes; returns the final centroids, their exact inertia, passes run."""
    from dask import delayed

    blocks = X.to_delayed().ravel().tolist()
    n, n_features = X.shape[0], centers.shape[1]

    def full_pass(centers, what):
        c = delayed(centers, pure=True)
        parts = [delayed(_chunk_stats, pure=False)(block, c) for block in blocks]
        while len(parts) > 1:
            parts = [delayed(merge_stats, pure=False)(*parts[i:i + _FAN_IN])
                     for i in range(0, len(parts), _FAN_IN)]
        return runner.compute(parts[0], what)

    stats = full_pass(centers, "the first pass")
    mean = stats["sums"].sum(axis=0) / n
    mean_var = (stats["sq_norms"] / n - mean @ mean) / n_features
    abs_tol = tol * max(mean_var, 0.0)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        new = update_centers(centers, stats)
        shift = float(((new - centers).astype(np.float64) ** 2).sum())
        before = stats["inertia"]
        centers = new
        stats = full_pass(centers, f"pass {n_iter + 1}")
        if shift <= abs_tol or before - stats["inertia"] < tol * stats["inertia"]:
            break
    if not np.isfinite(centers).all():
        raise KMIError("the fit produced non-finite centroids; check the data for NaN or inf")
    return centers, float(stats["inertia"]), n_iter


def update_centers(centers, stats):
    """New centroids from a pass's sums; empty clusters are re-seeded on the farthest rows."""
    sums, counts = stats["sums"].copy(), stats["counts"].copy()
    empty = np.flatnonzero(counts == 0)
    far = [i for i in np.argsort(-stats["far_d"], kind="stable") if stats["far_d"][i] > 0]
    for j, i in zip(empty, far, strict=False):
        row, old = stats["far_rows"][i], stats["far_labels"][i]
        sums[old] -= row
        counts[old] -= 1
        sums[j] = row
        counts[j] = 1
    new = centers.copy()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return new


# -- per-chunk tasks (run on the workers) ----------------------------------------------------------


def _as_rows(block):
    """A chunk as C-contiguous float rows: integer images scaled by 1/255 to float32."""
    if block.dtype.kind in "iu":
        return np.multiply(block.reshape(len(block), -1), np.float32(1 / 255), dtype=np.float32)
    return np.ascontiguousarray(block.reshape(len(block), -1))


def _chunk_stats(block, centers):
    """Lloyd partial sums of one chunk, on one worker thread."""
    with Workers(1) as workers:
        return chunk_stats(workers, _as_rows(block).astype(centers.dtype, copy=False), centers)


def chunk_stats(workers, rows, centers, *, labels=False):
    """Partial sums of a block of rows for one Lloyd pass, to be added with :func:`merge_stats`.

    Parameters
    ----------
    workers : Workers
    rows : ndarray of shape (m, n_features)
    centers : ndarray of shape (n_clusters, n_features)
    labels : bool
        Also return the nearest centroid of each row.

    Returns
    -------
    dict
        ``sums`` (n_clusters, n_features) float64, ``counts`` (n_clusters,) int64, ``inertia``
        (exact, float), ``sq_norms`` (sum of squared row norms), the block's farthest rows
        ``far_rows`` (at most 8), their squared distances ``far_d`` and labels ``far_labels``,
        and with ``labels`` the ``labels`` (m,) int32.
    """
    x_sq = row_sq_norms(rows)
    res = assign(workers, rows, x_sq, Centers(centers), sums=True, inertia=True)
    far = np.argsort(-res["d1"], kind="stable")[:_N_FAR]
    out = {
        "sums": res["sums"],
        "counts": res["counts"],
        "inertia": res["inertia"],
        "sq_norms": float(x_sq.sum(dtype=np.float64)),
        "far_d": res["d1"][far].astype(np.float64),
        "far_rows": rows[far].copy(),
        "far_labels": res["labels"][far],
    }
    if labels:
        out["labels"] = res["labels"]
    return out


def merge_stats(*parts):
    """Add up partial results (in the given order) and keep the overall farthest rows."""
    out = {key: parts[0][key].copy() if isinstance(parts[0][key], np.ndarray) else parts[0][key]
           for key in ("sums", "counts", "inertia", "sq_norms")}
    for part in parts[1:]:
        out["sums"] += part["sums"]
        out["counts"] += part["counts"]
        out["inertia"] += part["inertia"]
        out["sq_norms"] += part["sq_norms"]
    far_d = np.concatenate([p["far_d"] for p in parts])
    keep = np.argsort(-far_d, kind="stable")[:_N_FAR]
    out["far_d"] = far_d[keep]
    out["far_rows"] = np.concatenate([p["far_rows"] for p in parts])[keep]
    out["far_labels"] = np.concatenate([p["far_labels"] for p in parts])[keep]
    return out


def _chunk_labels(block, centers):
    rows = _as_rows(block).astype(centers.dtype, copy=False)
    with Workers(1) as workers:
        return assign(workers, rows, row_sq_norms(rows), Centers(centers))["labels"]
