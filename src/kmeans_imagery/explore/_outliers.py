"""Outlier scores: how far an image lies from every centroid, relative to its cluster's spread.

An image's score is its distance to the nearest centroid divided by the median of that
distance over its cluster's members. Dividing by the cluster's own scale keeps tight clusters
(thin strokes, plain backgrounds) from hiding their odd members behind the wide clusters'
ordinary ones: a score of 2 means twice as far from the nearest centroid as the cluster's
typical member, whichever cluster it is.
"""

import numpy as np

__all__ = ["outlier_scores"]


def outlier_scores(distance, clusters, n_clusters):
    """Distance to the nearest centroid over the median distance in that cluster.

    Parameters
    ----------
    distance : ndarray of shape (n,)
        Distance of each image to its nearest centroid.
    clusters : ndarray of int, shape (n,)
        Its nearest centroid.
    n_clusters : int

    Returns
    -------
    scores : ndarray of float32, shape (n,)
    """
    distance = np.asarray(distance, dtype=np.float64)
    medians = np.ones(n_clusters)
    order = np.argsort(clusters, kind="stable")
    bounds = np.searchsorted(clusters[order], np.arange(n_clusters + 1))
    for k in range(n_clusters):
        members = distance[order[bounds[k]:bounds[k + 1]]]
        if len(members):
            medians[k] = max(np.median(members), np.finfo(np.float32).tiny)
    return (distance / medians[clusters]).astype(np.float32)
