"""K-means over blocks of rows read one at a time, in memory that does not grow with their number.

:func:`stream_kmeans` takes starting centroids (the caller runs the in-memory engine, with its
k-means++ search and subspace path, on a sample) and a reader of row blocks, then:

1. **Mini-batch passes.** :class:`~kmeans_imagery.engine.kmeans.MiniBatchKMeans` is fed the
   blocks by ``partial_fit``, ``batch_size`` rows at a time, in the reader's shuffled order (so
   that sorted data, class folders say, does not drag the centroids class by class).
2. **Exact Lloyd passes.** The engine's one Lloyd loop (:func:`._passes.lloyd_passes`), each
   pass the merged :func:`._passes.block_stats` of every block, with the engine's stopping rule
   (``tol`` as in :class:`~kmeans_imagery.engine.kmeans.KMeans`; the rows' variance that scales
   it is estimated on the starting sample) and, like the in-memory engine over all rows, a pass
   gaining under 0.005% of the inertia ends the fit. The returned centroids are those the last
   pass assigned every row to, so the inertia is exact for them.

Rows far from the origin for their spread (the starting sample's, else the centroids') are fitted
less their mean, block by block, as the in-memory engine fits them (see
``kmeans._FAR_ROUNDING``): the norm expansion of distances would blur their clusters.

The reader is any object with ``n_rows``, ``blocks()`` (every block in order, as
``(rows, weight, batch)``: float rows, their sample weights or None, and whatever the caller wants
to see again in ``observe``) and ``shuffled(batch_size, rng)`` (``(rows, weight)`` pairs for the
mini-batch steps).
"""

import time
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state

from ..errors import KMIError
from ..progress import open_progress
from ._kernels import Workers, blas_threads, row_sq_norms
from ._passes import abs_tol, block_stats, lloyd_passes, merge_stats
from .kmeans import _REL_TOL, MiniBatchKMeans, _far_offset

__all__ = ["StreamResult", "stream_kmeans"]


class StreamResult(NamedTuple):
    """What :func:`stream_kmeans` returns.

    Attributes
    ----------
    centers : ndarray of shape (n_clusters, n_features)
        The centroids the last exact pass assigned every row to.
    inertia : float
        Exact sum of squared distances of all rows to their nearest centroid in ``centers``.
    n_iter : int
        Exact passes run.
    history : list of float
        Exact inertia of each pass.
    pass_seconds : list of float
        Wall time of each exact pass.
    observed : object or None
        The accumulator of the last pass (see ``observe``).

    Examples
    --------
    >>> from kmeans_imagery.engine.stream import StreamResult
    >>> StreamResult._fields
    ('centers', 'inertia', 'n_iter', 'history', 'pass_seconds', 'observed')
    """

    centers: object
    inertia: float
    n_iter: int
    history: list
    pass_seconds: list
    observed: object


def stream_kmeans(reader, start, *, sample=None, minibatch_passes=1, max_iter=10, batch_size=4096,
                  tol=1e-4, random_state=None, progress=None, observe=None):
    """Fit K-means by passes over a block reader, holding one block at a time.

    Parameters
    ----------
    reader : object
        ``n_rows``, ``blocks()`` and ``shuffled(batch_size, rng)`` (see the module's docstring).
    start : ndarray of shape (n_clusters, n_features)
        Starting centroids.
    sample : ndarray of shape (m, n_features) or None
        Rows drawn from the reader (those ``start`` was fitted on), to estimate the variance that
        scales ``tol``; None: ``tol`` is absolute.
    minibatch_passes : int, default=1
        Passes of mini-batch steps over all rows (0: go straight to Lloyd).
    max_iter : int, default=10
        Most exact Lloyd passes after the mini-batch passes.
    batch_size : int, default=4096
        Rows per mini-batch step (the first takes at least ``n_clusters`` rows: the leading
        batches are merged up to that).
    tol : float, default=1e-4
        The engine's stopping rule, as ``tol`` of :class:`~kmeans_imagery.engine.kmeans.KMeans`;
        0 runs to a fixed point or ``max_iter`` passes.
    random_state : int, RandomState or None
        Seed of the mini-batch steps and the block order.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``;
        one bar per pass, advanced by rows.
    observe : callable or None
        ``observe()`` returns a fresh accumulator with ``add(batch, clusters, weight)``; each
        exact pass feeds one the nearest centroid of every row, and the last pass's is returned.

    Returns
    -------
    StreamResult
        The centroids, their exact inertia and the history of the passes.

    Raises
    ------
    KMIError
        For a parameter out of range, fewer rows than centroids, or rows with NaN or infinity.

    Examples
    --------
    A reader of blocks, here slices of an array standing in for files read one at a time:

    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.engine.kmeans import KMeans
    >>> from kmeans_imagery.engine.stream import stream_kmeans
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> class Blocks:
    ...     n_rows = len(X)
    ...     def blocks(self):  # every block in order: rows, weights, what observe sees
    ...         for s in range(0, len(X), 500):
    ...             yield X[s:s + 500], None, s
    ...     def shuffled(self, batch_size, rng):  # mini-batches in a random order
    ...         order = rng.permutation(len(X))
    ...         for s in range(0, len(X), batch_size):
    ...             yield X[np.sort(order[s:s + batch_size])], None
    >>> sample = X[::4]
    >>> start = KMeans(10, random_state=0).fit(sample).cluster_centers_
    >>> result = stream_kmeans(Blocks(), start, sample=sample, batch_size=256, random_state=0)
    >>> result.centers.shape, len(result.history) == result.n_iter
    ((10, 64), True)
    >>> in_memory = KMeans(10, random_state=0).fit(X).inertia_  # all rows at once, for comparison
    >>> bool(result.inertia < 1.01 * in_memory)
    True
    """
    centers = np.asarray(start)
    _check_params(reader, centers, minibatch_passes, max_iter, batch_size, tol)
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    n_clusters = len(centers)
    near = centers if sample is None else sample
    offset = _far_offset(near, row_sq_norms(near))
    if offset is not None:  # every row, centroid and the sample, less the offset
        offset = offset.astype(centers.dtype)
        centers = centers - offset
        sample = None if sample is None else sample - offset
    if minibatch_passes:
        mbk = MiniBatchKMeans(n_clusters, init=centers, n_init=1, batch_size=batch_size,
                              random_state=int(rng.integers(np.iinfo(np.int32).max)))
        for p in range(minibatch_passes):
            with open_progress(progress, reader.n_rows,
                               f"mini-batch pass {p + 1}/{minibatch_passes}") as bar:
                batches = reader.shuffled(batch_size, rng)
                if not hasattr(mbk, "cluster_centers_"):
                    batches = _first_whole(batches, n_clusters)
                for rows, weight in batches:
                    mbk.partial_fit(_shifted(rows, offset), sample_weight=weight)
                    bar.advance(len(rows))
        centers = mbk.cluster_centers_.astype(centers.dtype, copy=False)
    history, seconds, last = [], [], {}
    threshold = tol
    if sample is not None and tol:
        threshold = abs_tol(tol, float(row_sq_norms(sample).sum(dtype=np.float64)),
                            sample.sum(axis=0, dtype=np.float64), len(sample))

    def full_pass(centers):
        started = time.perf_counter()
        stats, last["seen"] = _full_pass(workers, reader, centers, progress,
                                         f"exact pass {len(history) + 1}", observe, offset)
        if not np.isfinite(stats["sq_norms"]):  # a float64 sum: NaN and infinity carry
            raise KMIError("the rows contain NaN or infinity; K-means needs finite values.")
        seconds.append(time.perf_counter() - started)
        history.append(stats["inertia"])
        return stats

    with Workers(blas_threads()) as workers:
        _, stats, assigned, n_iter = lloyd_passes(full_pass, centers, max_iter=max_iter,
                                                  tol=threshold, rel_tol=_REL_TOL if tol else 0.0)
    centers = assigned if offset is None else assigned + offset
    return StreamResult(centers, float(stats["inertia"]), n_iter, history, seconds, last["seen"])


def _first_whole(batches, n_rows):
    """``batches`` with the leading ones merged until they hold ``n_rows`` rows: the first
    mini-batch step seeds from its batch, which needs as many rows as centroids."""
    rows, weights = [], []
    for r, w in batches:
        if rows is None:
            yield r, w
            continue
        rows.append(r)
        weights.append(w)
        if sum(map(len, rows)) >= n_rows:
            yield np.concatenate(rows), None if w is None else np.concatenate(weights)
            rows = None
    if rows:  # fewer rows than centroids in all: partial_fit says so
        yield np.concatenate(rows), None if weights[0] is None else np.concatenate(weights)


def _shifted(rows, offset):
    return rows if offset is None else rows - offset


def _check_params(reader, start, minibatch_passes, max_iter, batch_size, tol):
    def whole(name, value, low):
        if not isinstance(value, Integral) or value < low:
            raise KMIError(f"{name} must be an integer >= {low}, got {value!r}.")

    whole("minibatch_passes", minibatch_passes, 0)
    whole("max_iter", max_iter, 1)
    whole("batch_size", batch_size, 1)
    if not isinstance(tol, Real) or not tol >= 0:  # NaN too
        raise KMIError(f"tol must be a number >= 0, got {tol!r}.")
    if start.ndim != 2 or start.dtype.kind != "f" or not np.isfinite(start).all():
        raise KMIError(f"start must be finite float centroids of shape (n_clusters, n_features), "
                       f"got {start.dtype} of shape {start.shape}.")
    if reader.n_rows < len(start):
        raise KMIError(f"n_samples={reader.n_rows} should be >= n_clusters={len(start)}.")


def _full_pass(workers, reader, centers, progress, what, observe, offset):
    """One exact pass: summed Lloyd statistics, and the observer fed every row's cluster.

    The rows are taken less ``offset`` (None: as they are); ``centers`` meet them in their dtype.
    """
    total = None
    seen = None if observe is None else observe()
    with open_progress(progress, reader.n_rows, what) as bar:
        for rows, weight, batch in reader.blocks():
            rows = _shifted(rows, offset)
            stats = block_stats(workers, rows, centers.astype(rows.dtype, copy=False),
                                sample_weight=weight, labels=seen is not None)
            if seen is not None:
                seen.add(batch, stats.pop("labels"), weight)
            total = stats if total is None else merge_stats(total, stats)
            bar.advance(len(rows))
    return total, seen
