"""Centroid seeding: greedy k-means++ in the input dtype."""

import numpy as np

__all__ = ["kmeans_plusplus"]


def kmeans_plusplus(X, x_sq, n_clusters, rng, n_local_trials=None):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials as scikit-learn).

    Each new centroid is the best of ``n_local_trials`` candidates drawn with probability
    proportional to the squared distance to the nearest centroid chosen so far; "best" means the
    largest drop of the potential (the sum of those squared distances).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The rows to seed from (callers pass a random sample when n_samples is large).
    x_sq : ndarray of shape (n_samples,)
        Squared row norms of ``X``.
    n_clusters : int
    rng : numpy.random.Generator
    n_local_trials : int or None
        Candidates per step; None means ``2 + int(log(n_clusters))``.

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
        Rows of ``X`` (copies), in the dtype of ``X``.
    """
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    chosen = np.empty(n_clusters, dtype=np.intp)
    chosen[0] = rng.integers(n)
    closest = _sq_dist_to(X, x_sq, chosen[:1])[0]
    potential = closest.sum(dtype=np.float64)
    for c in range(1, n_clusters):
        if potential <= 0:  # every row already coincides with a centroid: any row will do
            chosen[c] = rng.integers(n)
            continue
        cumulative = np.cumsum(closest, dtype=np.float64)
        draws = rng.random(n_local_trials) * cumulative[-1]
        cand = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        dist = _sq_dist_to(X, x_sq, cand)
        np.minimum(dist, closest, out=dist)
        pots = dist.sum(axis=1, dtype=np.float64)
        best = int(np.argmin(pots))
        chosen[c] = cand[best]
        closest = dist[best]
        potential = pots[best]
    return X[chosen].copy()


def _sq_dist_to(X, x_sq, idx):
    """Squared distances of the rows ``X[idx]`` to all rows of ``X``: shape (len(idx), n_samples).

    One GEMM with the candidates as rows, so that each candidate's distances are contiguous: the
    seeding sample is small, and one call beats blocks on the thread pool here.
    """
    D = (-2.0 * X[idx]) @ X.T
    D += x_sq
    D += x_sq[idx, None]
    return np.maximum(D, 0, out=D)
