"""Majority filter of a class map, strip by strip."""

import numpy as np

__all__ = ["majority_filter", "smooth_strips"]


def majority_filter(labels, radius, n_classes):
    """Each pixel's most frequent class in its (2r+1) x (2r+1) neighbourhood.

    Nodata pixels (-1) neither vote nor change; a tie keeps the pixel's own class if it is among
    the most frequent, else the smallest class.

    Parameters
    ----------
    labels : ndarray of shape (rows, cols), int
        Classes 0..n_classes-1, -1 for nodata.
    radius : int
    n_classes : int

    Returns
    -------
    ndarray of shape (rows, cols), int32
    """
    from scipy.ndimage import uniform_filter

    size = 2 * radius + 1
    best_count = np.full(labels.shape, -1.0, dtype=np.float32)
    best = np.full(labels.shape, -1, dtype=np.int32)
    # A bonus below one vote (the filter returns vote counts / size^2) breaks ties for the own class.
    bonus = np.float32(0.5 / size**2)
    for c in range(n_classes):
        votes = uniform_filter((labels == c).astype(np.float32), size=size, mode="constant")
        votes[labels == c] += bonus
        better = votes > best_count
        best_count[better] = votes[better]
        best[better] = c
    return np.where(labels < 0, -1, best).astype(np.int32)


def smooth_strips(strips, radius, n_classes):
    """Majority-filter a class map given as consecutive strips; yields the strips filtered.

    Each strip is filtered with ``radius`` rows of its neighbours above and below, so the result
    equals :func:`majority_filter` of the whole map, one strip behind its input.

    Parameters
    ----------
    strips : iterable of (start, labels)
        Consecutive strips from the top; every strip but the last at least ``radius`` rows high.
    radius : int
        0 passes the strips through.
    n_classes : int

    Yields
    ------
    (start, labels)
    """
    if radius == 0:
        yield from strips
        return
    above = np.zeros((0, 0), dtype=np.int32)
    pending = None
    for start, labels in strips:
        if pending is not None:
            yield pending[0], _filter_between(above, pending[1], labels[:radius], radius, n_classes)
            above = pending[1][-radius:]
        pending = (start, labels)
    if pending is not None:
        yield pending[0], _filter_between(above, pending[1], pending[1][:0], radius, n_classes)


def _filter_between(above, labels, below, radius, n_classes):
    above = above if above.size else labels[:0]
    stacked = np.concatenate([above, labels, below])
    return majority_filter(stacked, radius, n_classes)[len(above) : len(above) + len(labels)]
