"""The one fit path: a source and a specification, fitted in memory, streamed, or on Dask.

Every way of fitting a model runs the same steps; only where the rows live changes:

1. **Features.** The feature pipeline (``spec.features``) is fitted on the whole training set in
   ``"memory"`` mode, and on a seeded random sample of :data:`FEATURE_SAMPLE` images otherwise
   (the same images for a given seed), then applied to every image: batch by batch in the driver
   (``"stream"``) or on the workers (``"dask"``).
2. **Clustering**, with the engine's strategy in every mode: the in-memory engine's start
   (k-means++ with its search at small K, the principal subspace on wide rows, ``n_init`` starts
   of which the lowest inertia wins) on the whole set or on the sample, then exact Lloyd passes
   over all rows with the engine's stopping rule (a pass that gains under ``tol`` of the inertia
   ends the fit).
3. **Naming.** Each cluster takes the majority label of its members (the source's labels), or of
   the filled rows of a label sheet (``spec.labels``); without either, each cluster is its own
   class.

The model file is the same whatever the mode.
"""

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from .errors import KMIError, is_whole_number
from .label_sheets import read_label_sheet
from .preprocessing import flatten_scale, image_rows

__all__ = ["FEATURE_SAMPLE", "MODES", "FitResult", "FitSpec", "drop_unreadable", "fit"]

#: Where :func:`fit` runs: the source read whole, streamed batch by batch, or on Dask.
MODES = ("memory", "stream", "dask")
#: Images a feature pipeline (and the starting centroids) are fitted on when the source is not
#: read whole: enough for PCA and HOG statistics to settle, a few seconds of work.
FEATURE_SAMPLE = 20_000
#: Images read from a source at once in ``"stream"`` mode, and per Dask chunk.
READ_SIZE = 8192


@dataclass(frozen=True)
class FitSpec:
    """What to fit, independent of where.

    Attributes
    ----------
    n_clusters : int
        K.
    algorithm : {"minibatch", "full"}
        In memory: mini-batch K-means (the tutorial's) or full Lloyd. Streamed fits run mini-batch
        passes then Lloyd passes; Dask fits run Lloyd passes.
    engine : str or None
        In-memory engine name (see :data:`kmeans_imagery.engine.ENGINES`); None is the default.
    features : str or None
        A feature pipeline spec or preset; None or "raw" clusters the pixels.
    n_init : int or None
        Starts to run; the lowest inertia wins (no labels used).
    max_iter : int or None
        Most Lloyd iterations (full passes over the data when streamed or on Dask); None keeps
        each mode's default (the in-memory engine's, 10 streamed passes, 300 on Dask).
    random_state : int or None
        Seed of the sample, the features and the clustering.
    labels : path-like or None
        A filled label sheet (CSV) to name the clusters from, instead of the source's labels.

    Examples
    --------
    >>> from kmeans_imagery.fit import FitSpec
    >>> FitSpec(64, features="pixhog", n_init=3)  # doctest: +NORMALIZE_WHITESPACE
    FitSpec(n_clusters=64, algorithm='minibatch', engine=None, features='pixhog', n_init=3,
            max_iter=None, random_state=0, labels=None)
    """

    n_clusters: int
    algorithm: str = "minibatch"
    engine: str | None = None
    features: str | None = None
    n_init: int | None = None
    max_iter: int | None = None
    random_state: int | None = 0
    labels: str | Path | None = None


@dataclass
class FitResult:
    """A fitted model and what was measured while fitting it.

    Attributes
    ----------
    model : ClusterClassifier
        Predicts raw images of the source's shape.
    metrics : dict
        ``inertia``, ``fit_seconds``, ``mode`` (streamed: ``seconds_per_pass``, the median
        exact pass); with labels the training scores (accuracy,
        homogeneity, ...; in memory mode) and, given a labelled test source, ``test_accuracy``
        and ``test_metrics``; with a label sheet ``labels_used``.
    training : dict
        The dataset's name, image count, whether it was labelled and whether its images were
        resized as they were read (no paths).
    rows : ndarray of shape (n_images, n_features) or None
        With ``fit(..., keep_rows=True)`` in ``"memory"`` mode: the rows the clustering ran on
        (every image's features, in the source's order), so that a caller that goes on to use
        them does not compute them again; None otherwise.

    Examples
    --------
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.fit import FitSpec, fit
    >>> result = fit(open_source("digits"), FitSpec(16))
    >>> result.training
    {'dataset': 'digits', 'n_samples': 1437, 'labelled': True, 'resized': False}
    >>> result.model.cluster_centers_.shape, result.metrics["mode"]
    ((16, 64), 'memory')
    """

    model: object
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    rows: object = field(default=None, repr=False)


def fit(source, spec, *, mode="memory", client=None, test=None, progress=None,
        sample_weight=None, keep_rows=False):
    """Fit a :class:`~kmeans_imagery.ClusterClassifier` on a source.

    Parameters
    ----------
    source : ImageSource
        From :func:`~kmeans_imagery.datasets.open_source`.
    spec : FitSpec
        What to fit.
    mode : {"memory", "stream", "dask"}
        Read the source whole, stream it batch by batch (memory independent of its size), or
        run the passes on a Dask cluster.
    client : distributed.Client or None
        The cluster for ``"dask"`` (see :func:`~kmeans_imagery.engine.dask.connect`);
        None uses dask's default scheduler.
    test : ImageSource or None
        Labelled images to score the model on (``test_accuracy``).
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.
    sample_weight : array-like of shape (n_images,) or None
        Weight of each image of the source (in its order) in the means, the inertia, the
        mini-batch steps and the naming votes; None weighs every image 1.
    keep_rows : bool
        In ``"memory"`` mode, hand back the rows the clustering ran on as ``rows`` (held as long
        as the result is); other modes never hold them all and hand back None.

    Returns
    -------
    FitResult
        The model (it predicts raw images of the source's shape), its metrics and training facts.

    Raises
    ------
    KMIError
        For a bad parameter or field of ``spec`` (named), too few images for K, test images of
        another shape than the training images, or data that cannot be read.

    See Also
    --------
    kmeans_imagery.model_io.save_model : Writes ``result.model`` with its metrics.

    Examples
    --------
    What ``kmi fit digits --k 32 --features l2 --algorithm full`` does, scored on the test split:

    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.fit import FitSpec, fit
    >>> train, test = open_source("digits"), open_source("digits", split="test")
    >>> result = fit(train, FitSpec(32, algorithm="full", features="l2"), test=test)
    >>> result.model.predict(test.read(0, 8)), test.labels[:8]
    (array([7, 6, 3, 7, 7, 5, 2, 8]), array([7, 6, 3, 7, 7, 3, 2, 8]))
    >>> print(f"{result.metrics['test_accuracy']:.2f}")
    0.95

    The same fit streamed, holding one batch of images at a time:

    >>> streamed = fit(train, FitSpec(32, features="l2"), mode="stream", test=test)
    >>> sorted(streamed.metrics)  # doctest: +NORMALIZE_WHITESPACE
    ['fit_seconds', 'inertia', 'mode', 'seconds_per_pass', 'test_accuracy', 'test_metrics']
    """
    if mode not in MODES:
        raise KMIError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_spec(spec)
    if spec.n_clusters > source.n_images:
        raise KMIError(f"n_clusters={spec.n_clusters} is more than the {source.n_images} images "
                       f"of {source.display_name}")
    if test is not None and tuple(test.image_shape) != tuple(source.image_shape):
        # Found now, not after the fit that would be scored on them.
        raise KMIError(f"test images are {'x'.join(map(str, test.image_shape))} but the "
                       f"training images {'x'.join(map(str, source.image_shape))}")
    weights = _check_weights(sample_weight, source.n_images)
    examples = None if spec.labels is None else read_label_sheet(spec.labels, source)
    started = time.perf_counter()
    rows = None
    if mode == "memory":
        model, labels, rows = _fit_memory(source, spec, examples, progress, weights)
        labelled = labels is not None
        if not keep_rows:
            rows = None
    else:
        model, labelled, timings = _fit_passes(source, spec, mode, client, progress, weights)
        labels = None
    if examples is not None:
        from .labeling import name_from_clusters

        name_from_clusters(model, model.predict_cluster(source.take(examples[0]).images),
                           examples[1])
    metrics = {"inertia": model.inertia_, "fit_seconds": time.perf_counter() - started,
               "mode": mode}
    if mode != "memory":
        metrics.update(timings)
    if examples is not None:
        metrics["labels_used"] = len(examples[1])
    metrics.update(_scores(model, labels, test))
    training = {"dataset": Path(str(source.name)).name, "n_samples": source.n_images,
                "labelled": labelled or examples is not None, "resized": source.resizes}
    return FitResult(model, metrics, training, rows)


def _check_spec(spec):
    """Check every field of a spec before any work, the same way in every mode (the streamed
    and Dask passes read some fields only after the sample is drawn, or never)."""
    from .engine import ALGORITHMS

    for name, value, optional in (("n_clusters", spec.n_clusters, False),
                                  ("n_init", spec.n_init, True),
                                  ("max_iter", spec.max_iter, True)):
        if not (optional and value is None) and not (is_whole_number(value) and value >= 1):
            raise KMIError(f"{name} must be a positive integer, got {value!r}")
    if spec.algorithm not in ALGORITHMS:
        raise KMIError(f"unknown algorithm {spec.algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    if spec.random_state is not None and not (is_whole_number(spec.random_state)
                                              and 0 <= spec.random_state < 2**32):
        raise KMIError(f"random_state must be None or an integer in 0..2**32-1, got "
                       f"{spec.random_state!r}")


def _check_weights(sample_weight, n_images):
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_images,):
        raise KMIError(f"sample_weight.shape == {weights.shape}, expected ({n_images},), one "
                       f"weight per image")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise KMIError("sample_weight must be finite and >= 0")
    return weights


def _fit_memory(source, spec, examples, progress, weights):
    from .labeling import ClusterClassifier

    batch = source.read_all(progress=progress)
    if weights is not None and len(batch.images) < source.n_images:
        weights = weights[source.positions(batch)]
    labels = batch.labels
    model = ClusterClassifier(
        n_clusters=spec.n_clusters, algorithm=spec.algorithm, engine=spec.engine,
        random_state=spec.random_state, features=spec.features, n_init=spec.n_init,
        max_iter=spec.max_iter,
    )
    rows = model.fit_rows(batch.images, labels if examples is None else None, sample_weight=weights)
    return model, labels, rows


def _scores(model, train_labels, test):
    """Training scores (when the fit kept every image's cluster) and test scores."""
    from .metrics import clustering_scores

    scores = {}
    kind = np.asarray(model.classes_).dtype.kind
    if (train_labels is not None and getattr(model, "labels_", None) is not None
            and np.asarray(train_labels).dtype.kind == kind):
        scores.update(clustering_scores(train_labels, model.labels_,
                                        model.cluster_labels_[model.labels_]))
    if test is not None and test.labels is not None and test.labels.dtype.kind == kind:
        batch = test.read_all()
        clusters = model.predict_cluster(batch.images)
        test_scores = clustering_scores(batch.labels, clusters, model.cluster_labels_[clusters])
        scores["test_accuracy"] = test_scores["accuracy"]
        scores["test_metrics"] = test_scores
    return scores


# -- streamed and Dask fits ------------------------------------------------------------------------


def _fit_passes(source, spec, mode, client, progress, weights):
    """Features and start on a sample, then exact passes over every image (stream or Dask).

    Returns the fitted classifier, whether the source had labels to name it by, and timings.
    """
    from .engine.kmeans import KMeans

    timings = {}
    if spec.engine not in (None, "kmi"):
        raise KMIError(f"engine {spec.engine!r} fits in memory only; streamed and Dask fits use "
                       f"the project's engine")
    seeds = np.random.SeedSequence(spec.random_state).generate_state(3)
    rng = np.random.default_rng(seeds[0])
    size = min(source.n_images, max(FEATURE_SAMPLE, 64 * spec.n_clusters))
    drawn = np.sort(rng.choice(source.n_images, size, replace=False))
    sample = source.take(drawn, batch_size=READ_SIZE)
    # Unreadable files skipped leave gaps: the images read are found by their paths.
    sample_weight = None if weights is None else weights[
        source.positions(sample) if source.skips_bad else drawn]
    features = None
    if spec.features not in (None, "raw"):
        from .features import make_features

        features = make_features(spec.features, source.image_shape, int(seeds[1]))
        features.fit(flatten_scale(sample.images))
    to_rows = partial(image_rows, features)
    sample_rows = to_rows(sample.images)
    del sample
    start = KMeans(spec.n_clusters, n_init=spec.n_init or 1, random_state=int(seeds[2])).fit(
        sample_rows, sample_weight=sample_weight).cluster_centers_
    tally = partial(_Tally, spec.n_clusters, source.image_shape, features is not None)
    if mode == "stream":
        from .engine.stream import stream_kmeans

        reader = _SourceRows(source, to_rows, weights)
        centers, inertia, n_iter, _, seconds, seen = stream_kmeans(
            reader, start, sample=sample_rows,
            minibatch_passes=1 if spec.algorithm == "minibatch" else 0,
            max_iter=10 if spec.max_iter is None else spec.max_iter,
            random_state=int(seeds[2]), progress=progress, observe=tally)
        timings["seconds_per_pass"] = float(np.median(seconds))
    else:
        centers, inertia, n_iter, seen = _dask_passes(source, to_rows, start, client, tally,
                                                      spec.max_iter or 300, weights)
    return seen.classifier(spec, centers, inertia, n_iter, features), bool(seen.votes), timings


class _SourceRows:
    """A source's images as blocks of rows, for :func:`~kmeans_imagery.engine.stream.stream_kmeans`."""

    def __init__(self, source, to_rows, weights=None):
        self.source, self.to_rows, self.weights = source, to_rows, weights
        self.n_rows = source.n_images

    def _weight(self, batch):
        return None if self.weights is None else self.weights[self.source.positions(batch)]

    def blocks(self):
        for batch in self.source.iter_batches(READ_SIZE):
            if len(batch.images):
                yield self.to_rows(batch.images), self._weight(batch), batch

    def shuffled(self, batch_size, rng, shuffle_blocks=8):
        """Rows for mini-batch steps: blocks in random order, mixed ``shuffle_blocks`` at a time."""
        source = self.source
        if not source.random_access:
            for batch in source.iter_batches(READ_SIZE):
                yield from self._split(batch.images, self._weight(batch), batch_size, rng)
            return
        starts = rng.permutation(np.arange(0, source.n_images, READ_SIZE))
        for g in range(0, len(starts), shuffle_blocks):
            batches = [source.read_batch(s, s + READ_SIZE) for s in starts[g:g + shuffle_blocks]]
            weights = None if self.weights is None else np.concatenate(
                [self._weight(b) for b in batches])
            yield from self._split(np.concatenate([b.images for b in batches]), weights,
                                   batch_size, rng)

    def _split(self, images, weights, batch_size, rng):
        order = rng.permutation(len(images))
        for s in range(0, len(images), batch_size):
            pick = np.sort(order[s:s + batch_size])
            yield self.to_rows(images[pick]), None if weights is None else weights[pick]


class _Tally:
    """What a final pass counts per cluster: class votes, and pixel sums for drawing."""

    def __init__(self, n_clusters, image_shape, pixel_means):
        self.n_clusters, self.image_shape = n_clusters, tuple(image_shape)
        self.votes = {}
        self.pixel_sums = np.zeros((n_clusters, int(np.prod(image_shape)))) if pixel_means else None
        self.counts = np.zeros(n_clusters)

    def add(self, batch, clusters, weight=None):
        """Count a batch (its images and labels) whose images are in ``clusters``, weighted."""
        from .labeling import majority_vote

        self.counts += np.bincount(clusters, weights=weight, minlength=self.n_clusters)
        if self.pixel_sums is not None:
            from .labeling import cluster_sums

            self.pixel_sums += cluster_sums(flatten_scale(batch.images), clusters, self.n_clusters,
                                            weight)
        if batch.labels is not None:
            values, codes = np.unique(batch.labels, return_inverse=True)
            counts = majority_vote(clusters, codes.ravel(), self.n_clusters, len(values), weight)
            for value, column in zip(values.tolist(), counts.T, strict=True):
                self.votes[value] = self.votes.get(value, 0) + column.astype(np.float64)
        return self

    def merge(self, other):
        self.counts += other.counts
        if self.pixel_sums is not None:
            self.pixel_sums += other.pixel_sums
        for value, column in other.votes.items():
            self.votes[value] = self.votes.get(value, 0) + column
        return self

    def classifier(self, spec, centers, inertia, n_iter, features):
        """The fitted classifier these counts name."""
        from .labeling import fitted_classifier, name_clusters

        if self.votes:
            classes = np.array(sorted(self.votes))
            votes = np.stack([self.votes[c] for c in classes.tolist()], axis=1)
            cluster_labels = classes[name_clusters(votes, centers)]
        else:
            classes = np.arange(self.n_clusters)
            cluster_labels = classes.copy()
        images = centers if self.pixel_sums is None else (
            self.pixel_sums / np.maximum(self.counts, 1)[:, None]).astype(np.float32)
        return fitted_classifier(
            centers, classes, cluster_labels, image_shape=self.image_shape, features=features,
            cluster_images=images, inertia=inertia, n_iter=n_iter,
            params={"n_clusters": spec.n_clusters, "algorithm": spec.algorithm,
                    "features": spec.features, "n_init": spec.n_init,
                    "random_state": spec.random_state},
        )


def _dask_passes(source, to_rows, start, client, tally, max_iter, weights):
    """Lloyd passes on Dask from ``start``, then one pass that tallies every chunk."""
    import dask
    import dask.array as da

    from .engine.dask import DaskKMeans

    if source.skips_bad:
        source, kept = drop_unreadable(source, client)
        weights = None if weights is None else weights[kept]
    images = source.to_dask(READ_SIZE)
    rows = images.map_blocks(to_rows, dtype=start.dtype, drop_axis=list(range(2, images.ndim)),
                             chunks=(images.chunks[0], (start.shape[1],)))
    weight_chunks = None if weights is None else da.from_array(weights, chunks=(images.chunks[0],))
    kmeans = DaskKMeans(len(start), init=start, n_init=1, max_iter=max_iter,
                        client=client).fit(rows, sample_weight=weight_chunks)
    # The tally pass: each chunk's images, its rows' nearest centres (the lazy labels_) and labels.
    labels = source.labels
    parts = []
    for block, assigned, (s, e) in zip(images.to_delayed().ravel(),
                                       kmeans.labels_.to_delayed().ravel(),
                                       _bounds(images.chunks[0]), strict=True):
        parts.append(dask.delayed(_tally_block)(
            block, assigned, None if labels is None else labels[s:e],
            None if weights is None else weights[s:e], tally))
    seen = tally()
    for part in dask.compute(*parts, scheduler=client or "threads"):
        seen.merge(part)
    return kmeans.cluster_centers_, kmeans.inertia_, kmeans.n_iter_, seen


def _bounds(chunks):
    ends = np.cumsum(chunks)
    return zip((ends - np.asarray(chunks)).tolist(), ends.tolist(), strict=True)


def _tally_block(images, clusters, labels, weight, tally):
    """One chunk's tally, on a worker: votes and pixel sums of its images by nearest centre."""
    from .datasets import Batch

    return tally().add(Batch(0, images, labels), clusters, weight)


def drop_unreadable(source, client=None):
    """A folder source that skips bad files, without them: found by one decoding pass.

    Passes that number images by their position in the source (a Dask array of it, a pass that
    fills per-image arrays) need every file readable; skipping one inside a batch would shift the
    rest.

    Parameters
    ----------
    source : FolderSource
        With ``skip_bad``.
    client : dask.distributed.Client, optional
        Decode on its workers; None decodes here.

    Returns
    -------
    source : FolderSource
        The readable files only.
    kept : ndarray of int64
        Their positions in the given source.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets import FolderSource
    >>> from kmeans_imagery.fit import drop_unreadable
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("a.png", "c.png"):
    ...         Image.new("L", (4, 4)).save(Path(folder) / name)
    ...     _ = (Path(folder) / "b.png").write_bytes(b"not a PNG")
    ...     readable, kept = drop_unreadable(FolderSource(folder, skip_bad=True))
    >>> readable.n_images, kept.tolist()
    (2, [0, 2])
    """
    spans = [(s, min(s + READ_SIZE, source.n_images)) for s in range(0, source.n_images, READ_SIZE)]
    if client is None:
        parts = [_readable(source, s, e) for s, e in spans]
    else:
        from dask import compute, delayed

        parts = compute(*[delayed(_readable)(source, s, e) for s, e in spans], scheduler=client)
    kept = np.concatenate(parts)
    return source.subset(kept), kept


def _readable(source, start, stop):
    paths = set(source.read_batch(start, stop).paths)
    return np.array([i for i in range(start, stop) if source.paths[i] in paths], dtype=np.int64)
