"""Outlier scores: how far an image lies from the rest of the collection.

An image's score is its distance to its 10th-nearest neighbour among a fixed random reference
sample of the collection (2,000 images), in the space the clustering runs in (the pixels, or
the ``features``), divided by the median of that distance over the collection. A typical image
scores about 1; an image with no close company scores high. Foreign images often come in small
groups (a few blank frames, a few scans of something else) that form a cluster of their own or
pull a centroid towards themselves, so the distance to the nearest centroid hides them; the
10th neighbour is far for any group of fewer than 10.
"""

import numpy as np

from ._neighbours import top_k

__all__ = ["N_NEIGHBOURS", "REFERENCE_SIZE", "OutlierScorer"]

#: The neighbour whose distance is the score.
N_NEIGHBOURS = 10
#: Images in the reference sample.
REFERENCE_SIZE = 2000


class OutlierScorer:
    """Distance to the 10th-nearest reference image, for images seen batch by batch.

    Parameters
    ----------
    reference : ndarray of shape (m, d), float32
        Feature rows of the reference sample.
    reference_index : ndarray of int, shape (m,)
        Their positions in the collection, sorted, so that an image never counts itself.
    """

    def __init__(self, reference, reference_index):
        self.reference = np.ascontiguousarray(reference, dtype=np.float32)
        self.reference_index = np.asarray(reference_index)
        self.k = min(N_NEIGHBOURS, len(reference) - 1)

    def raw_scores(self, rows, start):
        """Unscaled scores of rows ``start, start + 1, ...`` of the collection.

        Returns
        -------
        ndarray of float32, shape (len(rows),)
        """
        dist, index = top_k(np.asarray(rows, dtype=np.float32), self.reference, self.k + 1)
        positions = np.arange(start, start + len(rows))
        # Where the nearest reference image is the image itself, skip it.
        is_self = self.reference_index[index[:, 0]] == positions
        return np.where(is_self, dist[:, self.k], dist[:, self.k - 1])

    @staticmethod
    def scale(raw):
        """Raw scores over their median (so a typical image scores 1)."""
        return (raw / max(float(np.median(raw)), np.finfo(np.float32).tiny)).astype(np.float32)
