"""Centroid seeding: greedy k-means++ in the input dtype, weighted or not, dense or sparse."""

import numpy as np
import scipy.sparse as sp

__all__ = ["draw_weighted", "kmeans_plusplus"]


def kmeans_plusplus(X, x_sq, n_clusters, rng, n_local_trials=None, sample_weight=None):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials as scikit-learn).

    Each new centroid is the best of ``n_local_trials`` candidates drawn with probability
    proportional to the squared distance to the nearest centroid chosen so far; "best" means the
    largest drop of the potential (the sum of those squared distances).

    With ``sample_weight``, the first centroid is drawn with probability proportional to the
    weight, the candidates proportionally to weight times squared distance, and the potential
    is the weighted sum: a row of weight 0 is never drawn (as in scikit-learn).

    Parameters
    ----------
    X : ndarray or CSR sparse matrix of shape (n_samples, n_features)
        The rows to seed from (callers pass a random sample when n_samples is large).
    x_sq : ndarray of shape (n_samples,)
        Squared row norms of ``X``.
    n_clusters : int
    rng : numpy.random.Generator
    n_local_trials : int or None
        Candidates per step; None means ``2 + int(log(n_clusters))``.
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative row weights, not all 0; None weighs every row alike.

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
        Rows of ``X`` (dense copies), in the dtype of ``X``.
    """
    n = X.shape[0]
    w = None if sample_weight is None else sample_weight.astype(np.float64)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    # Sparse rows: the transpose once, as CSR, so each candidates-times-rows product only walks
    # the columns the candidates touch.
    XT = X.T.tocsr() if sp.issparse(X) else X.T
    chosen = np.empty(n_clusters, dtype=np.intp)
    chosen[0] = rng.integers(n) if w is None else draw_weighted(np.cumsum(w), rng.random(1))[0]
    closest = _sq_dist_to(X, XT, x_sq, chosen[:1])[0]
    potential = closest.sum(dtype=np.float64) if w is None else closest @ w
    for c in range(1, n_clusters):
        if potential <= 0:  # every row already coincides with a centroid: any row will do
            chosen[c] = rng.integers(n)
            continue
        cumulative = np.cumsum(closest, dtype=np.float64) if w is None else np.cumsum(closest * w)
        cand = draw_weighted(cumulative, rng.random(n_local_trials))
        dist = _sq_dist_to(X, XT, x_sq, cand)
        np.minimum(dist, closest, out=dist)
        pots = dist.sum(axis=1, dtype=np.float64) if w is None else dist @ w
        best = int(np.argmin(pots))
        chosen[c] = cand[best]
        closest = dist[best]
        potential = pots[best]
    centers = X[chosen]
    return centers.toarray() if sp.issparse(centers) else centers.copy()


def draw_weighted(cumulative, uniform):
    """Indices drawn with probability proportional to the increments of ``cumulative``."""
    return np.minimum(np.searchsorted(cumulative, uniform * cumulative[-1]), len(cumulative) - 1)


def _sq_dist_to(X, XT, x_sq, idx):
    """Squared distances of the rows ``X[idx]`` to all rows of ``X`` (``XT`` is its transpose):
    shape (len(idx), n_samples).

    One GEMM with the candidates as rows, so that each candidate's distances are contiguous: the
    seeding sample is small, and one call beats blocks on the thread pool here.
    """
    D = (-2.0 * X[idx]) @ XT
    if sp.issparse(D):
        D = D.toarray()
    D += x_sq
    D += x_sq[idx, None]
    return np.maximum(D, 0, out=D)
