"""Chunked, threaded numpy + BLAS kernels behind the project's K-means estimators.

Every kernel walks the rows in fixed blocks (:data:`CHUNK` rows, more for narrow rows: see
:func:`block_rows`), runs the blocks on a small thread pool (BLAS is held to one thread per
worker, so the two levels of threading do not fight) and reduces the per-block results in block
order. The block boundaries and the reduction order never depend on the number of threads, so
the results are bit-identical whatever the thread count.

Distances use ``||x||^2 - 2 x.c + ||c||^2`` with precomputed row norms: the ``-2 x.c`` block
comes straight out of one GEMM against ``-2 C^T`` (a transposed view) and the
centroid norms are added in place, so no ``(n_samples, n_clusters)`` matrix is ever built: a
worker holds one ``(rows, n_clusters)`` block and, where rows are gathered, one
``(rows, n_features)`` copy of them, with ``rows * max(n_features, n_clusters)`` at most about
:data:`BLOCK_ELEMENTS` (or ``CHUNK`` rows).

Sparse rows (a CSR matrix or array) take the same passes and stay sparse: the ``-2 x.c`` block is
a sparse-times-dense product against a contiguous ``-2 C^T`` (``nnz * n_clusters`` work), per-cluster
sums are one sparse product over all the rows of a pass, and a row is densified only one at a time.

Every kernel that sums over rows takes optional per-row weights (``sample_weight``): weighted sums,
weighted counts, weighted inertia. Without them the unweighted code runs, untouched.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

__all__ = ["BLOCK_ELEMENTS", "CHUNK", "Workers", "block_rows", "dense_rows", "row_sq_norms"]

#: Rows per block: a (2048, 256) float32 distance block is 2 MiB, a gathered (2048, 784) float32
#: block 6.1 MiB, so two workers stay well inside the memory bound stated by the estimators.
CHUNK = 2048

#: Elements per block for narrow rows (4 MiB of float32): on a few dozen features a 2048-row block
#: costs more in Python and numpy call overhead than in arithmetic.
BLOCK_ELEMENTS = 1 << 20

#: Rows per slice of the exact-inertia differences, which need two (rows, n_features) temporaries.
_DIFF_ROWS = 256

_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def blas_threads():
    """Number of threads the BLAS library may use right now (respects ``threadpool_limits``)."""
    infos = [info["num_threads"] for info in _blas_controller().info() if info["user_api"] == "blas"]
    return max(1, min(infos)) if infos else 1


def block_rows(n_features, n_clusters):
    """Rows per block of a pass over ``n_features``-wide rows against ``n_clusters`` centroids.

    About :data:`BLOCK_ELEMENTS` per block and at least :data:`CHUNK` rows: on narrow rows a
    pass over a sample is one block, run without the thread pool, whose hand-offs would cost
    more than the pass. Depends on the shapes only, never on the thread count, so results stay
    bit-identical.
    """
    return max(CHUNK, BLOCK_ELEMENTS // max(n_features, n_clusters, 1))


def row_sq_norms(X):
    """Squared Euclidean norm of each row, in the dtype of ``X``.

    Parameters
    ----------
    X : ndarray or CSR sparse matrix of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    if sp.issparse(X):
        return _sparse_row_sums(X, X.data * X.data)
    return np.einsum("ij,ij->i", X, X)


def _sparse_row_sums(X, values, dtype=None):
    """Per-row sums of ``values``, one per stored entry of the CSR ``X``, in ``dtype`` (that of ``X``)."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    sums = np.bincount(rows, weights=values, minlength=X.shape[0])
    return sums.astype(X.dtype if dtype is None else dtype, copy=False)


def dense_rows(X, idx):
    """The rows ``X[idx]`` as a dense array (few rows: a sparse ``X`` is densified row by row)."""
    rows = X[idx]
    return rows.toarray() if sp.issparse(rows) else rows


class Workers:
    """Maps a function over row blocks on a thread pool and returns the results in block order.

    Use as a context manager. A call with several blocks runs them on ``n_threads`` Python
    threads (numpy and BLAS release the GIL) with BLAS held to one thread meanwhile; a call with
    a single block runs it in the calling thread with BLAS's own threads.

    Parameters
    ----------
    n_threads : int
        Number of worker threads; 1 runs every block in the calling thread.
    """

    def __init__(self, n_threads):
        self.n_threads = int(n_threads)
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def map(self, fn, n_rows, chunk=CHUNK):
        """Call ``fn(start, stop)`` for consecutive blocks of ``range(n_rows)``, in order.

        Returns
        -------
        list
            The results, in block order.
        """
        bounds = [(s, min(s + chunk, n_rows)) for s in range(0, n_rows, chunk)]
        if self.n_threads == 1 or len(bounds) == 1:
            return [fn(s, e) for s, e in bounds]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.n_threads)
        with _blas_controller().limit(limits=1, user_api="blas"):
            return list(self._pool.map(lambda b: fn(*b), bounds))


def _block(X, rows, s, e):
    return X[s:e] if rows is None else X[rows[s:e]]


def _sum_by_label(Xb, labels, n_clusters, weights=None):
    """Per-cluster (weighted) sums of the rows of a block: a one-hot (K, m) CSC matrix times the block.

    Returns a dense array for dense rows, a sparse matrix for sparse rows.
    """
    m = len(labels)
    data = np.ones(m, dtype=Xb.dtype) if weights is None else weights.astype(Xb.dtype, copy=False)
    onehot = sp.csc_matrix((data, labels, np.arange(m + 1)), shape=(n_clusters, m))
    return onehot @ Xb


def _dense_sum_by_label(Xb, labels, n_clusters, weights=None):
    """:func:`_sum_by_label` as a dense float64 array, for sparse rows too."""
    sums = _sum_by_label(Xb, labels, n_clusters, weights)
    return sums.toarray().astype(np.float64, copy=False) if sp.issparse(sums) else sums


def _counts(labels, n_clusters, weights):
    """Rows (int64) or total weight (float64) of each cluster."""
    if weights is None:
        return np.bincount(labels, minlength=n_clusters).astype(np.int64)
    return np.bincount(labels, weights=weights, minlength=n_clusters)


class Centers:
    """Centroids prepared for distance blocks: ``-2 C`` and ``||c||^2``.

    Parameters
    ----------
    centers : ndarray of shape (n_clusters, n_features)
    """

    def __init__(self, centers):
        self.centers = centers
        self.neg2 = -2.0 * centers
        self.sq_norms = row_sq_norms(centers)
        self._neg2_t = None

    def partial_sq_dist(self, Xb):
        """``||c||^2 - 2 x.c`` for a block: the squared distance less ``||x||^2``."""
        if sp.issparse(Xb):
            # scipy's sparse-times-dense product wants a C-contiguous right-hand side.
            if self._neg2_t is None:
                self._neg2_t = np.ascontiguousarray(self.neg2.T)
            G = np.asarray(Xb @ self._neg2_t)
        else:
            # A transposed view, not a contiguous copy: OpenBLAS is much faster on skinny products
            # this way round.
            G = Xb @ self.neg2.T
        G += self.sq_norms
        return G


def assign(
    workers, X, x_sq, centers, *, rows=None, second=False, sums=False, inertia=False, sample_weight=None
):
    """Nearest centroid of each row (of ``X`` or of ``X[rows]``), in one chunked pass.

    Parameters
    ----------
    workers : Workers
    X : ndarray or CSR sparse matrix of shape (n_samples, n_features)
    x_sq : ndarray of shape (n_samples,)
        ``row_sq_norms(X)``.
    centers : Centers
    rows : ndarray of int or None
        Only these rows (gathered block by block), in this order.
    second : bool
        Also return the squared distance to the second nearest centroid (``inf`` when K == 1).
    sums : bool
        Also return per-cluster float64 sums of the rows and their counts.
    inertia : bool
        Also return the exact inertia: ``||x - c||^2`` computed from the difference (no
        cancellation; sparse rows use the norm expansion in float64), row sums in the input
        dtype, total accumulated in float64.
    sample_weight : ndarray of shape (n_samples,) or None
        Per-row weights, aligned with ``X`` (gathered with ``rows``): ``sums`` become weighted
        sums, ``counts`` the total weight of each cluster (float64) and ``inertia`` the weighted
        inertia. ``labels`` and ``d1``/``d2`` do not depend on them.

    Returns
    -------
    dict
        ``labels`` (int32), ``d1`` (squared distance to the nearest centroid, float, >= 0) and,
        as asked, ``d2``, ``sums`` (K, n_features) float64, ``counts`` (K,) int64 (float64 with
        weights), ``inertia``.
    """
    n_clusters, n_features = centers.centers.shape
    n_rows = X.shape[0] if rows is None else len(rows)
    sparse = sp.issparse(X)
    weights = sample_weight if sample_weight is None or rows is None else sample_weight[rows]

    def work(s, e):
        Xb = _block(X, rows, s, e)
        xb_sq = x_sq[s:e] if rows is None else x_sq[rows[s:e]]
        wb = None if weights is None else weights[s:e]
        G = centers.partial_sq_dist(Xb)
        lab = G.argmin(axis=1).astype(np.int32)
        r = np.arange(e - s)
        out = {"labels": lab, "d1": np.maximum(G[r, lab] + xb_sq, 0)}
        if second:
            G[r, lab] = np.inf
            out["d2"] = np.maximum(G.min(axis=1) + xb_sq, 0)
        if sums and not sparse:
            out["sums"] = _sum_by_label(Xb, lab, n_clusters, wb)
        if inertia:
            out["inertia"] = _exact_inertia(Xb, xb_sq, centers, lab, wb)
        return out

    parts = workers.map(work, n_rows, chunk=block_rows(n_features, n_clusters))
    res = {"labels": np.concatenate([p["labels"] for p in parts])}
    res["d1"] = np.concatenate([p["d1"] for p in parts])
    if second:
        res["d2"] = np.concatenate([p["d2"] for p in parts])
    if sums:
        if sparse:  # one sparse product over all the rows beats K x n_features dense blocks
            Xr = X if rows is None else X[rows]
            res["sums"] = _dense_sum_by_label(Xr, res["labels"], n_clusters, weights)
        else:
            total = np.zeros((n_clusters, n_features), dtype=np.float64)
            for p in parts:
                total += p["sums"]
            res["sums"] = total
        res["counts"] = _counts(res["labels"], n_clusters, weights)
    if inertia:
        res["inertia"] = float(sum(p["inertia"] for p in parts))
    return res


def _exact_inertia(Xb, xb_sq, centers, labels, weights=None):
    """``sum w ||x - c||^2`` over a block, totalled in float64.

    Dense rows: from the differences themselves. Sparse rows: from the norm expansion in float64
    (a difference would densify the rows).
    """
    if sp.issparse(Xb):
        dots = _sparse_dot_assigned(Xb, centers.centers, labels, np.float64)
        d = np.maximum(xb_sq.astype(np.float64) - 2 * dots + centers.sq_norms.astype(np.float64)[labels], 0)
        return float(d.sum() if weights is None else d @ weights.astype(np.float64))
    C = centers.centers
    total = 0.0
    diff = np.empty((min(_DIFF_ROWS, len(Xb)), Xb.shape[1]), dtype=Xb.dtype)
    for i in range(0, len(Xb), _DIFF_ROWS):
        d = diff[: min(_DIFF_ROWS, len(Xb) - i)]
        np.take(C, labels[i : i + len(d)], axis=0, out=d)
        np.subtract(Xb[i : i + len(d)], d, out=d)
        row = np.einsum("ij,ij->i", d, d)
        if weights is None:
            total += row.sum(dtype=np.float64)
        else:
            total += row @ weights[i : i + len(d)].astype(np.float64)
    return total


def _sparse_dot_assigned(Xb, C, labels, dtype=None):
    """``x . C[label]`` for each row of the CSR block ``Xb``, touching only its stored entries."""
    owner = np.repeat(labels, np.diff(Xb.indptr))
    values = Xb.data.astype(np.float64) * C[owner, Xb.indices] if dtype == np.float64 else (
        Xb.data * C[owner, Xb.indices]
    )
    return _sparse_row_sums(Xb, values, dtype)


def sq_dist_to_assigned(workers, X, x_sq, centers, labels, rows=None):
    """Squared distance of each row (of ``X`` or ``X[rows]``) to its own centroid ``labels[i]``.

    ``labels`` is aligned with the rows visited (``len(rows)`` long when ``rows`` is given).
    Uses the norm expansion, clipped at zero.

    Returns
    -------
    ndarray of shape (n_rows,)
    """
    n_rows = X.shape[0] if rows is None else len(rows)
    C = centers.centers
    sparse = sp.issparse(X)

    def work(s, e):
        Xb = _block(X, rows, s, e)
        xb_sq = x_sq[s:e] if rows is None else x_sq[rows[s:e]]
        lab = labels[s:e]
        dot = _sparse_dot_assigned(Xb, C, lab) if sparse else np.einsum("ij,ij->i", Xb, C[lab])
        return np.maximum(xb_sq + centers.sq_norms[lab] - 2 * dot, 0)

    return np.concatenate(workers.map(work, n_rows))


def cluster_means(workers, X, labels, centers, sample_weight=None):
    """(Weighted) means of the rows of each cluster; a cluster without weight keeps its row of ``centers``.

    Returns
    -------
    ndarray of shape (n_clusters, n_features), in the dtype of ``X``
    """
    n_clusters = centers.shape[0]
    if sp.issparse(X):
        sums = _dense_sum_by_label(X, labels, n_clusters, sample_weight)
    else:

        def work(s, e):
            w = None if sample_weight is None else sample_weight[s:e]
            return _sum_by_label(X[s:e], labels[s:e], n_clusters, w)

        sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
        for p in workers.map(work, X.shape[0]):
            sums += p
    counts = _counts(labels, n_clusters, sample_weight)
    means = centers.astype(X.dtype, copy=True)
    filled = counts > 0
    means[filled] = sums[filled] / counts[filled, None]
    return means


def project(workers, X, components):
    """``X @ components`` block by block, as a C-contiguous array in the dtype of ``X``.

    Returns
    -------
    ndarray of shape (n_samples, n_components)
    """
    return np.concatenate(workers.map(lambda s, e: X[s:e] @ components, X.shape[0]))


def label_delta_sums(X, rows, old, new, n_clusters, sample_weight=None):
    """Change of the per-cluster (weighted) sums when ``X[rows]`` move from clusters ``old`` to ``new``.

    ``sample_weight``, when given, is aligned with ``X``.

    Returns
    -------
    ndarray of shape (n_clusters, n_features), float64
    """
    m = len(rows)
    # Sparse rows: one product over all of them (their gather is small); dense: in blocks.
    chunk = max(m, 1) if sp.issparse(X) else CHUNK
    total = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        k = e - s
        w = np.ones(k, X.dtype) if sample_weight is None else sample_weight[rows[s:e]].astype(X.dtype)
        data = np.concatenate([w, -w])
        idx = np.concatenate([new[s:e], old[s:e]])
        cols = np.concatenate([np.arange(k), np.arange(k)])
        delta = sp.csc_matrix((data, (idx, cols)), shape=(n_clusters, k))
        part = delta @ X[rows[s:e]]
        total += part.toarray() if sp.issparse(part) else part
    return total
