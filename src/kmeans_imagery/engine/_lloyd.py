"""Exact Lloyd iterations: with Hamerly's bounds (:func:`lloyd`) or without (:func:`dense_lloyd`).

Each row keeps an upper bound ``u`` on the distance to its own centroid and a lower bound ``l``
on the distance to every other centroid. After the centroids move, ``u`` grows by the move of its
own centroid and ``l`` shrinks by the largest move of any other; a row whose ``u`` stays below
``max(l, s/2)`` (``s``: distance from its centroid to the nearest other centroid) cannot change
cluster, and is skipped. Only the rest get their ``u`` tightened and, if that is not enough, a
full distance block. Late iterations therefore touch a small fraction of the rows, and the
centroid sums are updated from the rows that changed cluster instead of being rebuilt.
"""

import numpy as np
import scipy.sparse as sp

from ._kernels import Centers, assign, dense_rows, label_delta_sums, sq_dist_to_assigned
from ._passes import RELAX, block_stats, lloyd_passes, reseed_empty

__all__ = ["dense_lloyd", "lloyd"]

# Relative slack on the skip test so that float32 rounding in the bounds never skips a row whose
# nearest centroid is within rounding of another one.
_SLACK = 1e-5

#: Sparse rows use the centroid gaps in the bounds when a pass costs at least this many times
#: more than computing the gaps (``nnz * K`` against ``K**2 * n_features``).
_GAP_COST = 8


def lloyd(workers, X, x_sq, centers, *, max_iter, tol, relax=RELAX, sample_weight=None, verbose=False):
    """Run over-relaxed Lloyd iterations from ``centers``.

    Each iteration moves the centroids ``relax`` times the way to the means of their clusters
    (plain Lloyd is ``relax = 1``). For a fixed partition the inertia is a quadratic in the
    centroids with its minimum at the means, so any ``0 < relax < 2`` still lowers the inertia
    at every iteration, and a larger step follows Lloyd's slow drift in fewer iterations. The
    first two iterations, and any iteration after one in which no row changed cluster, are
    plain Lloyd steps, so that a fixed point is reached exactly.

    Stops when the labels no longer change after a plain step (strict convergence), when the
    squared distance from the centroids to the means of their clusters, summed over clusters,
    is at most ``tol``, or after ``max_iter`` iterations. Iterations are counted as scikit-learn
    counts them: the pass that finds the labels unchanged is one.

    Parameters
    ----------
    workers : Workers
    X : ndarray of shape (n_samples, n_features)
    x_sq : ndarray of shape (n_samples,)
        Squared row norms of ``X``.
    centers : ndarray of shape (n_clusters, n_features)
        Starting centroids, in the dtype of ``X``.
    max_iter : int
    tol : float
        Absolute threshold on the summed squared Lloyd step.
    relax : float
        Over-relaxation factor, in [1, 2).
    sample_weight : ndarray of shape (n_samples,) or None
        Row weights: the centroids move towards weighted means.
    verbose : bool
        Print the inertia of each iteration and why the iterations stopped (as scikit-learn).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        After the last iteration, or the means of the clusters when ``tol`` stopped it.
    n_iter : int
        Iterations run (each one an update of the centroids), plus the pass that found the
        labels unchanged, at most ``max_iter``.
    """
    n_clusters = centers.shape[0]
    # The centroid gaps cost n_clusters**2 * n_features a step: on sparse rows that can be more
    # than a pass, and the bounds do without them there.
    gap = not sp.issparse(X) or _GAP_COST * n_clusters * X.shape[1] <= X.nnz
    cur = Centers(centers)
    state = _full_pass(workers, X, x_sq, cur, sample_weight)
    labels, upper, lower, sums, counts = state
    n_iter = 0
    changed = True
    while n_iter < max_iter:
        n_iter += 1
        if not counts.all():
            _relocate_empty(workers, X, x_sq, cur, labels, sums, counts, upper, lower, sample_weight)
        if verbose:
            d = sq_dist_to_assigned(workers, X, x_sq, cur, labels)
            inertia = d.sum(dtype=np.float64) if sample_weight is None else d @ sample_weight
            print(f"Iteration {n_iter - 1}, inertia {inertia}.")
        means = cur.centers.copy()
        filled = counts > 0
        means[filled] = sums[filled] / counts[filled, None]
        step = (means - cur.centers).astype(np.float64)
        shift = (step**2).sum()
        if shift <= tol:
            if verbose:
                print(f"Converged at iteration {n_iter - 1}: center shift {shift} within tolerance {tol}.")
            cur = Centers(means)
            break
        factor = relax if changed and n_iter > 2 else 1.0
        new = means if factor == 1.0 else (cur.centers + factor * step).astype(cur.centers.dtype)
        shift = np.sqrt(((new - cur.centers).astype(np.float64) ** 2).sum(axis=1))
        cur = Centers(new)
        rows = _candidates(cur, shift, labels, upper, lower, gap)
        if rows is not None and 2 * len(rows) > X.shape[0]:
            old = labels
            labels, upper, lower, sums, counts = _full_pass(workers, X, x_sq, cur, sample_weight)
            changed = bool((labels != old).any())
        else:
            moved = _reassign(workers, X, x_sq, cur, rows, labels, upper, lower)
            changed = moved is not None
            if changed:
                rows, old = moved
                sums += label_delta_sums(X, rows, old, labels[rows], n_clusters, sample_weight)
                w = -1 if sample_weight is None else -sample_weight[rows]
                np.add.at(counts, old, w)
                np.add.at(counts, labels[rows], -w)
        if not changed and factor == 1.0:
            if verbose:
                print(f"Converged at iteration {n_iter}: strict convergence.")
            return cur.centers, min(n_iter + 1, max_iter)
    return cur.centers, n_iter


def dense_lloyd(workers, X, x_sq, centers, *, max_iter, tol, rel_tol=0.0, relax=RELAX, sample_weight=None):
    """Over-relaxed Lloyd iterations that assign every row at every iteration.

    On narrow rows (a few dozen principal components) one pass is a cheap GEMM and the
    bookkeeping of Hamerly's bounds costs more than it saves, so this variant keeps none: it is
    the engine's one loop, :func:`._passes.lloyd_passes`, over all rows held in memory (steps,
    stopping rule and re-seeding of empty clusters as documented there).

    Parameters
    ----------
    workers : Workers
    X : ndarray of shape (n_samples, n_features)
    x_sq : ndarray of shape (n_samples,)
    centers : ndarray of shape (n_clusters, n_features)
    max_iter : int
    tol : float
        Absolute threshold on the summed squared Lloyd step.
    rel_tol : float
        Stop once an iteration lowers the inertia by less than this fraction of it; 0 never.
    relax : float
    sample_weight : ndarray of shape (n_samples,) or None
        Row weights: weighted means, weighted inertia.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        The means of the last partition (a cluster it left empty re-seeded on a far row).
    labels : ndarray of shape (n_samples,), int32
        The last partition: nearest centroid of each row before the last step.
    inertia : float
        (Weighted) inertia of that partition against the centroids it was assigned to.
    n_iter : int
        Passes over the rows.
    """

    def full_pass(c):
        return block_stats(workers, X, c, x_sq=x_sq, sample_weight=sample_weight, exact=False,
                           labels=True)

    means, stats, _, n_iter = lloyd_passes(full_pass, centers, max_iter=max_iter, tol=tol,
                                           rel_tol=rel_tol, relax=relax)
    return means, stats["labels"], stats["inertia"], n_iter


def _full_pass(workers, X, x_sq, cur, sample_weight=None):
    """Labels, Hamerly bounds, per-cluster (weighted) sums and counts from one pass over all rows."""
    n_clusters = cur.centers.shape[0]
    res = assign(workers, X, x_sq, cur, second=n_clusters > 1, sums=True, sample_weight=sample_weight)
    upper = np.sqrt(res["d1"])
    lower = np.sqrt(res["d2"]) if n_clusters > 1 else np.full_like(upper, np.inf)
    return res["labels"], upper, lower, res["sums"], res["counts"]


def _candidates(cur, shift, labels, upper, lower, gap=True):
    """Widen the bounds by the centroid shifts; return the rows the bounds cannot settle.

    With ``gap``, a row is also settled when its upper bound is under half the distance from its
    centroid to the nearest other one. Updates ``upper`` and ``lower`` in place; returns None
    when every row is settled.
    """
    n_clusters = len(shift)
    upper += shift[labels].astype(upper.dtype)
    if n_clusters > 1:
        top2 = np.argsort(shift)[-2:]
        far = np.where(labels == top2[1], shift[top2[0]], shift[top2[1]])
        lower -= far.astype(lower.dtype)
    if n_clusters > 1 and gap:
        C = cur.centers.astype(np.float64)
        sq = (C**2).sum(axis=1)
        cc = sq[:, None] + sq[None, :] - 2 * C @ C.T
        np.fill_diagonal(cc, np.inf)
        half_gap = 0.5 * np.sqrt(np.maximum(cc.min(axis=1), 0))
        bound = np.maximum(lower, half_gap[labels].astype(lower.dtype))
    else:
        bound = lower.copy()
    bound *= 1 - _SLACK
    rows = np.flatnonzero(upper > bound)
    if rows.size == 0:
        return None
    return rows, bound[rows]


def _reassign(workers, X, x_sq, cur, cand, labels, upper, lower):
    """Tighten the upper bounds of the candidate rows, reassign those still unsettled.

    Updates ``labels``, ``upper`` and ``lower`` in place.

    Returns
    -------
    (rows, old_labels) or None
        The rows that changed cluster and their previous labels; None when none changed.
    """
    if cand is None:
        return None
    rows, bound = cand
    upper[rows] = np.sqrt(sq_dist_to_assigned(workers, X, x_sq, cur, labels[rows], rows))
    rows = rows[upper[rows] > bound]
    if rows.size == 0:
        return None
    n_clusters = cur.centers.shape[0]
    res = assign(workers, X, x_sq, cur, rows=rows, second=n_clusters > 1)
    upper[rows] = np.sqrt(res["d1"])
    if n_clusters > 1:
        lower[rows] = np.sqrt(res["d2"])
    changed = res["labels"] != labels[rows]
    if not changed.any():
        return None
    rows = rows[changed]
    old = labels[rows].copy()
    labels[rows] = res["labels"][changed]
    return rows, old


def _relocate_empty(workers, X, x_sq, cur, labels, sums, counts, upper, lower, sample_weight=None):
    """Re-seed empty clusters on the rows farthest from their centroids (:func:`._passes.reseed_empty`).

    Each such row leaves its cluster's sums and becomes the only member of an empty cluster; its
    bounds are reset so that the next step reassigns it.
    """
    dist = sq_dist_to_assigned(workers, X, x_sq, cur, labels)
    far = np.argsort(-dist, kind="stable")[: int((counts == 0).sum())]
    weight = None if sample_weight is None else sample_weight[far]
    for j, i in reseed_empty(sums, counts, dense_rows(X, far), dist[far], labels[far], weight):
        row = far[i]
        labels[row] = j
        upper[row] = np.inf
        lower[row] = 0
