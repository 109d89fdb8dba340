"""Fit and apply K-means over a chunked source, in memory that does not grow with its size.

:func:`stream_fit` runs in three stages, each reading the source batch by batch:

1. **Start on a sample.** A seeded random sample of ``init_size`` images is read (only the
   blocks holding them, for sources with random access) and the project's in-memory
   :class:`~kmeans_imagery.engine.kmeans.KMeans` (k-means++, then Lloyd) runs on it.
2. **Mini-batch passes.** The project's :class:`~kmeans_imagery.engine.kmeans.MiniBatchKMeans`
   is fed the source by ``partial_fit``, ``batch_size`` images at a time. Sources with random
   access are visited in a random order of blocks, mixed in a buffer of ``shuffle_blocks``
   blocks, so that sorted data (class folders) does not drag the centroids class by class.
3. **Exact Lloyd passes.** Each pass assigns every image with the project's fused kernel and
   adds up per-cluster sums and counts; the centroids then move to the means. The last pass
   (also run when there are no Lloyd passes) gives the exact inertia of the returned centroids
   and the class votes that name the clusters.

Memory: one read block of uint8 images and its float32 rows, the shuffle buffer
(``shuffle_blocks * read_size`` uint8 images), the sample (``init_size`` float32 rows) and
O(K x d) sums, whatever the number of images: for 28x28 images, K = 256 and the defaults the
whole process peaked at 436 MiB over 1M images and 464 MiB over 2M (``benchmarks/bench_scale.py``).
"""

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state

from .datasets.folders import open_progress
from .engine._kernels import Workers, blas_threads
from .engine._passes import block_stats, merge_stats, update_centers
from .engine.kmeans import KMeans, MiniBatchKMeans
from .errors import KMIError
from .labeling import ClusterClassifier, majority_vote, name_clusters
from .preprocessing import flatten_scale
from .sources import DEFAULT_CHUNK, ImageSource, open_source

__all__ = [
    "StreamFit",
    "dask_fit_classifier",
    "stream_evaluate",
    "stream_fit",
    "stream_fit_classifier",
    "stream_predict",
]


@dataclass
class StreamFit:
    """The result of :func:`stream_fit`.

    Attributes
    ----------
    cluster_centers : ndarray of shape (n_clusters, n_features), float32
        Centroids in the space of images scaled to [0, 1].
    inertia : float
        Exact sum of squared distances of all images to their nearest centroid.
    n_images : int
    image_shape : tuple
    classes : ndarray of shape (n_classes,) or None
        Sorted labels seen in the source; None when it has no labels.
    votes : ndarray of shape (n_clusters, n_classes) or None
        ``votes[k, c]``: images of class ``classes[c]`` nearest to centroid ``k``.
    n_minibatch_steps : int
        ``partial_fit`` calls.
    n_lloyd_passes : int
        Lloyd updates of the centroids (each a full pass).
    inertia_history : list of float
        Exact inertia after the mini-batch passes and after each Lloyd pass.
    """

    cluster_centers: np.ndarray
    inertia: float
    n_images: int
    image_shape: tuple
    classes: np.ndarray | None
    votes: np.ndarray | None
    n_minibatch_steps: int
    n_lloyd_passes: int
    inertia_history: list = field(default_factory=list)


def stream_fit(source, n_clusters, *, minibatch_passes=1, lloyd_passes=10, batch_size=4096,
               init_size=None, tol=1e-4, read_size=DEFAULT_CHUNK, shuffle_blocks=8,
               random_state=None, progress=None):
    """Fit K-means by passes over a source, holding one block of images at a time.

    Parameters
    ----------
    source : source or str or path-like
        A source from :func:`~kmeans_imagery.sources.open_source`, or anything it accepts.
    n_clusters : int
    minibatch_passes : int, default=1
        Passes of mini-batch steps over all images (0: go straight to Lloyd).
    lloyd_passes : int, default=10
        Most exact Lloyd passes after the mini-batch passes.
    batch_size : int, default=4096
        Images per mini-batch step.
    init_size : int or None
        Images in the starting sample; None means ``max(16384, 64 * n_clusters)`` (the whole
        source when it is smaller).
    tol : float, default=1e-4
        Stop the Lloyd passes when one lowers the inertia by less than ``tol`` times the
        inertia. 0 runs all ``lloyd_passes``.
    read_size : int, default=8192
        Images read from the source at once.
    shuffle_blocks : int, default=8
        Blocks mixed together for the mini-batch steps (random-access sources only).
    random_state : int, RandomState or None
        Seed of the sample, the block order and the mini-batch steps.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``;
        one bar per pass, advanced by images.

    Returns
    -------
    StreamFit
    """
    source = source if isinstance(source, ImageSource) else open_source(source)
    _check_params(source, n_clusters, minibatch_passes, lloyd_passes, batch_size, init_size,
                  tol, read_size, shuffle_blocks)
    seeds = check_random_state(random_state).randint(np.iinfo(np.int32).max, size=3)
    rng = np.random.default_rng(seeds[0])
    n = source.n_images
    size = min(n, init_size or max(16384, 64 * n_clusters))
    sample = flatten_scale(source.take(np.sort(rng.choice(n, size, replace=False)),
                                       batch_size=read_size))
    centers = KMeans(n_clusters, n_init=1, random_state=seeds[1]).fit(sample).cluster_centers_
    del sample
    n_steps = 0
    if minibatch_passes:
        mbk = MiniBatchKMeans(n_clusters, init=centers, n_init=1, batch_size=batch_size,
                              random_state=seeds[2])
        for p in range(minibatch_passes):
            with open_progress(progress, n, f"mini-batch pass {p + 1}/{minibatch_passes}") as bar:
                for rows in _mini_batches(source, batch_size, read_size, shuffle_blocks, rng):
                    if len(rows) >= n_clusters or hasattr(mbk, "cluster_centers_"):
                        mbk.partial_fit(rows)
                        n_steps += 1
                    bar.advance(len(rows))
        centers = mbk.cluster_centers_
    history = []
    n_lloyd = 0
    with Workers(blas_threads()) as workers:
        stats, votes = _full_pass(workers, source, centers, read_size, progress, "exact pass 1")
        history.append(stats["inertia"])
        while n_lloyd < lloyd_passes:
            new = update_centers(centers, stats)
            new_stats, new_votes = _full_pass(workers, source, new, read_size, progress,
                                              f"exact pass {n_lloyd + 2}")
            n_lloyd += 1
            gain = stats["inertia"] - new_stats["inertia"]
            centers, stats, votes = new, new_stats, new_votes
            history.append(stats["inertia"])
            if gain < tol * stats["inertia"]:
                break
    classes, vote_matrix = _vote_matrix(votes, n_clusters)
    return StreamFit(centers, float(stats["inertia"]), n, source.image_shape, classes,
                     vote_matrix, n_steps, n_lloyd, history)


def _check_params(source, n_clusters, minibatch_passes, lloyd_passes, batch_size, init_size, tol,
                  read_size, shuffle_blocks):
    def positive(name, value, low=1):
        if not isinstance(value, Integral) or value < low:
            raise KMIError(f"{name} must be an integer >= {low}, got {value!r}.")

    positive("n_clusters", n_clusters)
    positive("minibatch_passes", minibatch_passes, 0)
    positive("lloyd_passes", lloyd_passes, 0)
    positive("batch_size", batch_size)
    positive("read_size", read_size)
    positive("shuffle_blocks", shuffle_blocks)
    if init_size is not None:
        positive("init_size", init_size, n_clusters)
    if not isinstance(tol, Real) or tol < 0:
        raise KMIError(f"tol must be a number >= 0, got {tol!r}.")
    if source.n_images < n_clusters:
        raise KMIError(f"n_samples={source.n_images} should be >= n_clusters={n_clusters}.")


def _mini_batches(source, batch_size, read_size, shuffle_blocks, rng):
    """Float rows for the mini-batch steps: shuffled blocks, mixed in a small buffer."""
    n = source.n_images
    if not source.random_access:
        for batch in source.iter_batches(read_size):
            yield from _split_rows(batch.images, batch_size, rng)
        return
    starts = rng.permutation(np.arange(0, n, read_size))
    for g in range(0, len(starts), shuffle_blocks):
        buffer = np.concatenate([source.read(s, s + read_size)
                                 for s in starts[g:g + shuffle_blocks]])
        yield from _split_rows(buffer, batch_size, rng)


def _split_rows(images, batch_size, rng):
    order = rng.permutation(len(images))
    for s in range(0, len(images), batch_size):
        yield flatten_scale(images[np.sort(order[s:s + batch_size])])


def _full_pass(workers, source, centers, read_size, progress, what):
    """One exact pass: summed Lloyd statistics and the per-class votes of each cluster."""
    total = None
    votes = {}
    with open_progress(progress, source.n_images, what) as bar:
        for batch in source.iter_batches(read_size):
            stats = block_stats(workers, flatten_scale(batch.images), centers,
                                labels=batch.labels is not None)
            if batch.labels is not None:
                _add_votes(votes, stats.pop("labels"), batch.labels, len(centers))
            total = stats if total is None else merge_stats(total, stats)
            bar.advance(len(batch.images))
    return total, votes


def _add_votes(votes, clusters, labels, n_clusters):
    values, codes = np.unique(labels, return_inverse=True)
    counts = majority_vote(clusters, codes.ravel(), n_clusters, len(values))
    for value, column in zip(values.tolist(), counts.T, strict=True):
        if value in votes:
            votes[value] += column
        else:
            votes[value] = column.astype(np.int64)


def _vote_matrix(votes, n_clusters):
    if not votes:
        return None, None
    classes = np.array(sorted(votes))
    return classes, np.stack([votes[c] for c in classes.tolist()], axis=1).reshape(
        n_clusters, len(classes))


def stream_fit_classifier(source, n_clusters, *, random_state=None, **params):
    """Fit a :class:`~kmeans_imagery.ClusterClassifier` by :func:`stream_fit`.

    Parameters
    ----------
    source : source or str or path-like
    n_clusters : int
    random_state : int, RandomState or None
    **params
        Further :func:`stream_fit` parameters.

    Returns
    -------
    ClusterClassifier
        Fitted as :func:`~kmeans_imagery.model_io.load_model` leaves one: ``cluster_centers_``,
        ``cluster_labels_`` (majority vote of each cluster's images; without labels each
        cluster is its own class), ``classes_``, ``image_shape_``, ``n_features_in_``,
        ``inertia_``, ``n_iter_``; no ``labels_`` (one per image would grow with the source).
        ``stream_fit_`` holds the :class:`StreamFit`.
    """
    fit = stream_fit(source, n_clusters, random_state=random_state, **params)
    model = _classifier(fit.cluster_centers, fit.inertia, fit.n_lloyd_passes, fit.image_shape,
                        fit.classes, fit.votes, batch_size=params.get("batch_size", 4096),
                        random_state=random_state)
    model.stream_fit_ = fit
    return model


def dask_fit_classifier(source, n_clusters, *, client=None, chunk_size=DEFAULT_CHUNK,
                        random_state=None, **params):
    """Fit a :class:`~kmeans_imagery.ClusterClassifier` on a dask cluster.

    The source's images become a ``dask.array`` (:meth:`~kmeans_imagery.sources.ZarrSource.to_dask`:
    each worker reads its own chunks), :class:`~kmeans_imagery.engine.dask.DaskKMeans` fits
    the centroids, and one more lazy pass (its ``labels_``) gives each image's cluster for the
    majority vote, as one small integer per image on the driver.

    Parameters
    ----------
    source : source or str or path-like
        A random-access source (convert gzip IDX files to Zarr first).
    n_clusters : int
    client : distributed.Client or None
        As in :class:`~kmeans_imagery.engine.dask.DaskKMeans`.
    chunk_size : int
        Images per dask chunk.
    random_state : int, RandomState or None
    **params
        Further :class:`~kmeans_imagery.engine.dask.DaskKMeans` parameters (``max_iter``,
        ``tol``, ``timeout``, ...).

    Returns
    -------
    ClusterClassifier
        As :func:`stream_fit_classifier` returns, without ``stream_fit_``.
    """
    from .engine.dask import DaskKMeans

    source = source if isinstance(source, ImageSource) else open_source(source)
    model = DaskKMeans(n_clusters, client=client, random_state=random_state, **params).fit(
        source.to_dask(chunk_size))
    centers, inertia, n_iter = model.cluster_centers_, model.inertia_, model.n_iter_
    classes, votes = None, None
    labels = source.labels
    if labels is not None:
        clusters = model.labels_.compute(**({} if client is None else {"scheduler": client}))
        classes, codes = np.unique(labels, return_inverse=True)
        votes = majority_vote(clusters, codes.ravel(), n_clusters, len(classes))
    return _classifier(centers, inertia, n_iter, source.image_shape, classes, votes,
                       batch_size=None, random_state=random_state, algorithm="full")


def _classifier(centers, inertia, n_iter, image_shape, classes, votes, *, batch_size,
                random_state, algorithm="minibatch"):
    """A fitted ClusterClassifier from centroids and per-class votes, as load_model builds one."""
    n_clusters = len(centers)
    model = ClusterClassifier(n_clusters, algorithm=algorithm, batch_size=batch_size,
                              random_state=random_state)
    model.cluster_centers_ = centers
    model.cluster_images_ = centers
    model.features_ = None
    if classes is None:
        model.classes_ = np.arange(n_clusters)
        model.cluster_labels_ = model.classes_.copy()
    else:
        model.classes_ = classes
        model.cluster_labels_ = classes[name_clusters(votes, centers)]
    model.image_shape_ = tuple(image_shape)
    model.n_features_in_ = int(np.prod(image_shape))
    model.inertia_ = float(inertia)
    model.n_iter_ = n_iter
    return model


def stream_predict(model, source, *, batch_size=DEFAULT_CHUNK):
    """Predict every image of a source, batch by batch.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted on images of the source's shape.
    source : source or str or path-like
    batch_size : int

    Yields
    ------
    start : int
        Index of the batch's first image.
    clusters : ndarray of shape (b,)
        Nearest centroid of each image.
    y_pred : ndarray of shape (b,)
        Its cluster's label.
    """
    source = source if isinstance(source, ImageSource) else open_source(source)
    _check_shape(model, source)
    for batch in source.iter_batches(batch_size):
        clusters = model.predict_cluster(batch.images)
        yield batch.start, clusters, model.cluster_labels_[clusters]


def stream_evaluate(model, source, *, batch_size=DEFAULT_CHUNK):
    """Score a model on a labelled source, reading it batch by batch.

    Memory holds one batch of images plus two small integers per image (true class and
    cluster), which the label-based scores need.

    Parameters
    ----------
    model : ClusterClassifier
    source : source or str or path-like
    batch_size : int

    Returns
    -------
    dict
        dataset, n_images, accuracy, metrics (see
        :func:`~kmeans_imagery.metrics.clustering_scores`), confusion_matrix, class_names, as
        :func:`kmeans_imagery.predict.evaluate` returns.
    """
    from .predict import score_clusters

    source = source if isinstance(source, ImageSource) else open_source(source)
    _check_shape(model, source)
    labels = source.labels
    if labels is None:
        raise KMIError(f"{source.name} has no labels to evaluate against")
    clusters = np.empty(source.n_images, dtype=np.int32)
    for start, batch_clusters, _ in stream_predict(model, source, batch_size=batch_size):
        clusters[start:start + len(batch_clusters)] = batch_clusters
    return {"dataset": source.name,
            **score_clusters(model, labels, clusters, source.name, source.label_names)}


def _check_shape(model, source):
    expected = getattr(model, "image_shape_", None)
    if expected is not None and tuple(source.image_shape) != tuple(expected):
        raise KMIError(
            f"images in {source.name} are {'x'.join(map(str, source.image_shape))} but the model "
            f"expects {'x'.join(map(str, expected))}; open the source with size= (--size)"
        )
