"""Lloyd passes built from per-block partial sums: one copy for memory, streams and Dask.

A *pass* assigns every row to its nearest centre. Wherever the rows live it is cut into blocks
(the whole array in memory, a batch read from a source, a chunk on a Dask worker):

1. :func:`block_stats` assigns one block and returns its partial sums: per-cluster weights and
   float64 sums, the inertia, the sum of squared row norms and the block's farthest rows;
2. :func:`merge_stats` adds partial sums in the order given, and :func:`tree_reduce` merges a
   list of them in a fixed fan-in tree, so a result never depends on how many threads, batches
   in flight or workers computed the blocks;
3. :func:`update_centers` turns merged sums into the means of the clusters, re-seeding empty
   clusters on the farthest rows (:func:`reseed_empty`, the one re-seeding rule of the engine);
4. :func:`lloyd_passes` is the Lloyd loop over any ``full_pass(centers) -> stats``.

.. _stopping-rule:

**Stopping rule (what ``tol`` means in every mode).** ``tol`` is scikit-learn's: the loop stops
once the centres' move to the means of their clusters, squared and summed over clusters, is at
most ``tol`` times the mean per-feature variance of the training rows (:func:`abs_tol`). It also
stops at a fixed point (a pass leaves every cluster's rows unchanged), after ``max_iter``
passes, and, where the caller asks (``rel_tol``: the estimators' principal-subspace passes), once
a pass lowers the inertia by less than ``rel_tol`` times the inertia. ``tol=0`` therefore runs to
a fixed point. The in-memory :class:`~kmeans_imagery.engine.kmeans.KMeans` (narrow rows, with
Hamerly's bounds), the streamed fit and :class:`~kmeans_imagery.engine.dask.DaskKMeans` all stop
by this rule.
"""

import numpy as np

from ._kernels import Centers, _dense_sum_by_label, assign, dense_rows, row_sq_norms

__all__ = [
    "FAN_IN",
    "N_FAR",
    "RELAX",
    "abs_tol",
    "block_stats",
    "label_stats",
    "lloyd_passes",
    "merge_stats",
    "reseed_empty",
    "tree_reduce",
    "update_centers",
]

#: Farthest rows each block reports, the candidates for re-seeding empty clusters.
N_FAR = 8
#: Partial results added per merge in :func:`tree_reduce`.
FAN_IN = 8
#: Over-relaxation factor of the Lloyd steps (measured on MNIST, K = 10..256).
RELAX = 1.8

_ADDED = ("sums", "counts", "inertia", "sq_norms")
_FAR = ("far_d", "far_rows", "far_labels", "far_weight")


def abs_tol(tol, sq_norms, row_sums, n_rows):
    """``tol`` times the mean per-feature variance of the rows (the stopping rule above).

    Parameters
    ----------
    tol : float
    sq_norms : float
        Sum of the squared row norms.
    row_sums : ndarray of shape (n_features,)
        Sum of the rows.
    n_rows : int

    Returns
    -------
    float
    """
    if tol == 0:
        return 0.0
    mean = np.asarray(row_sums, dtype=np.float64) / n_rows
    mean_var = (sq_norms / n_rows - mean @ mean) / len(mean)
    return float(tol * max(mean_var, 0.0))


def label_stats(rows, labels, n_clusters, sample_weight=None):
    """Per-cluster float64 sums and weights of a block of rows with known labels.

    Parameters
    ----------
    rows : ndarray of shape (m, n_features)
    labels : ndarray of shape (m,)
    n_clusters : int
    sample_weight : ndarray of shape (m,) or None
        None weighs every row 1.

    Returns
    -------
    dict
        ``sums`` (n_clusters, n_features) float64 and ``counts`` (n_clusters,) float64.
    """
    sums = np.asarray(_dense_sum_by_label(rows, labels, n_clusters, sample_weight), dtype=np.float64)
    counts = np.bincount(labels, weights=sample_weight, minlength=n_clusters).astype(np.float64)
    return {"sums": sums, "counts": counts}


def block_stats(workers, rows, centers, *, x_sq=None, sample_weight=None, exact=True, labels=False):
    """Assign a block of rows to ``centers`` and return its partial sums.

    Parameters
    ----------
    workers : Workers
    rows : ndarray of shape (m, n_features)
    centers : ndarray of shape (n_clusters, n_features)
        In the dtype of ``rows``.
    x_sq : ndarray of shape (m,) or None
        ``row_sq_norms(rows)`` when already known.
    sample_weight : ndarray of shape (m,) or None
        Weight of each row; None weighs every row 1.
    exact : bool
        Inertia from the differences themselves (no cancellation), else from the distances the
        assignment computes, clipped at 0.
    labels : bool
        Also return the nearest centre of each row.

    Returns
    -------
    dict
        ``sums`` (n_clusters, n_features) float64 and ``counts`` (n_clusters,) float64 (weights
        with ``sample_weight``), ``inertia`` (weighted), ``sq_norms`` (sum of squared row norms),
        the block's :data:`N_FAR` farthest rows of positive weight ``far_rows``, their squared
        distances ``far_d``, labels ``far_labels`` and weights ``far_weight``; as asked,
        ``labels`` (m,) int32.
    """
    if x_sq is None:
        x_sq = row_sq_norms(rows)
    res = assign(workers, rows, x_sq, Centers(centers), sums=True, inertia=exact,
                 sample_weight=sample_weight)
    d1 = res["d1"]
    out = {"sums": res["sums"], "counts": res["counts"].astype(np.float64)}
    w = None if sample_weight is None else sample_weight.astype(np.float64)
    if exact:
        out["inertia"] = res["inertia"]
    else:
        out["inertia"] = float(d1.sum(dtype=np.float64) if w is None else d1 @ w)
    # Rows of weight 0 are never far rows (they would become centroids).
    candidates = d1 if w is None else np.where(w > 0, d1, -1.0)
    far = _farthest(candidates)
    out["sq_norms"] = float(x_sq.sum(dtype=np.float64))
    out["far_d"] = d1[far].astype(np.float64)
    out["far_rows"] = dense_rows(rows, far)
    out["far_labels"] = res["labels"][far]
    out["far_weight"] = np.ones(len(far)) if w is None else w[far]
    if labels:
        out["labels"] = res["labels"]
    return out


def _farthest(d):
    """Indices of the :data:`N_FAR` largest values of ``d`` (of at least 0), largest first."""
    top = np.argpartition(-d, N_FAR)[:N_FAR] if len(d) > N_FAR else np.arange(len(d))
    top = top[d[top] >= 0]
    return top[np.lexsort((top, -d[top]))]


def merge_stats(*parts):
    """Add up partial sums in the given order; keep the :data:`N_FAR` overall farthest rows.

    Parameters
    ----------
    *parts : dict
        As :func:`block_stats` or :func:`label_stats` return them (labels are not merged).

    Returns
    -------
    dict
    """
    first = parts[0]
    out = {}
    for key in _ADDED:
        if key in first:
            out[key] = first[key].copy() if isinstance(first[key], np.ndarray) else first[key]
            for part in parts[1:]:
                out[key] = out[key] + part[key]
    if "far_d" in first:
        far_d = np.concatenate([p["far_d"] for p in parts])
        keep = np.lexsort((np.arange(len(far_d)), -far_d))[:N_FAR]
        for key in _FAR:
            out[key] = np.concatenate([p[key] for p in parts])[keep]
    return out


def tree_reduce(parts, merge, fan_in=FAN_IN):
    """Merge a list of partial results in a fixed tree: groups of ``fan_in``, level by level.

    Parameters
    ----------
    parts : list
        Partial results (or handles to them, such as dask delayed objects or futures).
    merge : callable
        ``merge(*group)`` returning the merged result (or a handle).
    fan_in : int

    Returns
    -------
    The merged result of all ``parts``.
    """
    while len(parts) > 1:
        parts = [merge(*parts[i:i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def reseed_empty(sums, counts, far_rows, far_d, far_labels, far_weight=None):
    """Move the farthest rows into the empty clusters, in place (scikit-learn's rule).

    Each empty cluster, in order, takes the next farthest row (of positive distance): the row
    leaves its cluster's sums and weight and becomes the empty cluster's only member. When every
    row sits on its centre, empty clusters stay empty.

    Parameters
    ----------
    sums : ndarray of shape (n_clusters, n_features), float64
    counts : ndarray of shape (n_clusters,)
    far_rows : ndarray of shape (m, n_features)
    far_d : ndarray of shape (m,)
        Squared distance of each candidate to its centre.
    far_labels : ndarray of shape (m,)
    far_weight : ndarray of shape (m,) or None

    Returns
    -------
    list of (int, int)
        ``(cluster, candidate index)`` of each move.
    """
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return []
    order = [i for i in np.lexsort((np.arange(len(far_d)), -far_d)) if far_d[i] > 0]
    moves = list(zip(empty.tolist(), order, strict=False))
    for j, i in moves:
        w = 1 if far_weight is None else far_weight[i]
        old = far_labels[i]
        sums[old] -= w * far_rows[i]
        counts[old] -= w
        sums[j] = w * far_rows[i]
        counts[j] = w
    return moves


def update_centers(centers, stats):
    """Means of the clusters from a pass's merged sums.

    Empty clusters are re-seeded by :func:`reseed_empty` when ``stats`` carries farthest rows;
    otherwise (or when no row can be moved) they keep their row of ``centers``.

    Parameters
    ----------
    centers : ndarray of shape (n_clusters, n_features)
    stats : dict
        From :func:`merge_stats`, :func:`block_stats` or :func:`label_stats`.

    Returns
    -------
    ndarray of shape (n_clusters, n_features), in the dtype of ``centers``
    """
    sums, counts = stats["sums"], stats["counts"]
    if "far_d" in stats and not counts.all():
        sums, counts = sums.copy(), counts.copy()
        reseed_empty(sums, counts, stats["far_rows"], stats["far_d"], stats["far_labels"],
                     stats["far_weight"])
    new = centers.copy()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return new


def lloyd_passes(full_pass, centers, *, max_iter, tol, rel_tol=0.0, relax=RELAX):
    """Over-relaxed Lloyd iterations, each one call of ``full_pass``; the engine's one loop.

    Each iteration moves the centres ``relax`` times the way to the means of their clusters
    (``relax = 1`` is plain Lloyd). For a fixed partition the inertia is a quadratic in the centres
    with its minimum at the means, so any ``0 < relax < 2`` still lowers it, and the larger step
    follows Lloyd's slow drift in fewer passes. The first two iterations, and any iteration after
    a pass that left the partition unchanged, are plain steps, so a fixed point is reached exactly.
    A partition is "unchanged" when every cluster's weight and sums are (the same rows, added in
    the same fixed order), which needs no labels from the blocks. Stops by the
    :ref:`stopping rule <stopping-rule>`.

    Parameters
    ----------
    full_pass : callable
        ``full_pass(centers) -> stats``, the merged :func:`block_stats` of all rows.
    centers : ndarray of shape (n_clusters, n_features)
        Starting centres.
    max_iter : int
        Most passes.
    tol : float
        Absolute threshold on the summed squared Lloyd step (see :func:`abs_tol`).
    rel_tol : float
        Stop once a pass lowers the inertia by less than this fraction of it; 0 never.
    relax : float
        Over-relaxation factor, in [1, 2).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        The means of the last pass's partition (empty clusters re-seeded).
    stats : dict
        The last pass's merged sums.
    assigned : ndarray of shape (n_clusters, n_features)
        The centres the last pass assigned the rows to (``stats["inertia"]`` is theirs).
    n_iter : int
        Passes run.
    """
    stats, factor = None, 1.0
    for n_iter in range(1, max_iter + 1):
        new_stats = full_pass(centers)
        means = update_centers(centers, new_stats)
        changed = stats is None or not _same_partition(stats, new_stats)
        previous = np.inf if stats is None else stats["inertia"]
        stats, assigned = new_stats, centers
        step = float(((means - centers).astype(np.float64) ** 2).sum())
        small_gain = rel_tol > 0 and previous - stats["inertia"] < rel_tol * stats["inertia"]
        # A plain step that left the partition as it was: a fixed point.
        if (not changed and factor == 1.0) or step <= tol or small_gain:
            break
        factor = relax if changed and n_iter > 2 else 1.0
        centers = means if factor == 1.0 else (centers + factor * (means - centers)).astype(centers.dtype)
    return means, stats, assigned, n_iter


def _same_partition(a, b):
    return np.array_equal(a["counts"], b["counts"]) and np.array_equal(a["sums"], b["sums"])
