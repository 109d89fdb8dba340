"""Scores of a class map against a ground truth, from (cluster, class) counts gathered strip by strip."""

import numpy as np

from ..metrics import contingency_scores

__all__ = ["TruthCounts", "budget_accuracy"]


class TruthCounts:
    """(cluster, class) pair counts over the labelled pixels (truth > 0) of a class map.

    Parameters
    ----------
    n_clusters : int
    """

    def __init__(self, n_clusters):
        self.n_clusters = n_clusters
        self._codes = {}

    def add(self, labels, truth):
        """Count a strip: ``labels`` (-1 = nodata, never counted) and ``truth`` of the same shape."""
        keep = (truth > 0) & (labels >= 0)
        codes = labels[keep].astype(np.int64) << 32 | truth[keep].astype(np.int64)
        for code, count in zip(*np.unique(codes, return_counts=True), strict=True):
            self._codes[int(code)] = self._codes.get(int(code), 0) + int(count)

    def table(self):
        """``(classes, table)``: the truth's class values and the (class x cluster) count table."""
        codes = np.array(sorted(self._codes), dtype=np.int64)
        classes = np.unique(codes & 0xFFFFFFFF)
        table = np.zeros((len(classes), self.n_clusters), dtype=np.int64)
        for code in codes:
            table[np.searchsorted(classes, code & 0xFFFFFFFF), code >> 32] = self._codes[int(code)]
        return classes, table

    def scores(self):
        """Metrics of the class map (see :func:`kmeans_imagery.metrics.contingency_scores`)."""
        classes, table = self.table()
        scores = contingency_scores(table)
        scores["classes"] = classes.tolist()
        scores["n_labelled"] = int(table.sum())
        return scores


def budget_accuracy(parts, n_clusters):
    """Accuracy of naming each cluster from the truth of its most central labelled pixel.

    Parameters
    ----------
    parts : list of (best_distance, best_class, pair_codes, pair_counts)
        Per strip, as :func:`~._classify.classify_strip` returns them.
    n_clusters : int

    Returns
    -------
    dict
        ``labels`` (clusters that got a labelled pixel: the labels an analyst gives), ``accuracy``
        over all labelled pixels; pixels of clusters without a labelled member count as wrong.
    """
    best = np.full(n_clusters, np.inf)
    names = np.zeros(n_clusters, dtype=np.int64)
    pairs = {}
    for distance, classes, codes, counts in parts:  # strips in order: ties go to the first strip
        better = distance < best
        best[better], names[better] = distance[better], classes[better]
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            pairs[code] = pairs.get(code, 0) + count
    correct = sum(count for code, count in pairs.items() if names[code >> 32] == (code & 0xFFFFFFFF))
    total = sum(pairs.values())
    return {"labels": int(np.isfinite(best).sum()), "accuracy": correct / total if total else None}
