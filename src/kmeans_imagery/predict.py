"""Applying a fitted model to new images: predictions and evaluation, batch by batch.

:func:`predict_source` reads a source in batches, so that a million files never sit in memory at
once; :func:`evaluate` scores labelled sources with every metric of :mod:`kmeans_imagery.metrics`.
"""

import csv
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from .datasets.folders import IMAGE_SUFFIXES
from .display import figure_html, html_table, result_html, result_repr
from .errors import KMIError
from .metrics import clustering_scores, confusion

__all__ = ["CSV_COLUMNS", "PREDICT_BATCH", "Evaluation", "check_model_shape", "evaluate", "model_color",
           "model_size", "nearest_two", "open_inputs", "predict_source", "score_clusters",
           "write_predictions"]

CSV_COLUMNS = ("path", "cluster", "label", "distance", "margin")
PREDICT_BATCH = 1024


@dataclass(repr=False)
class Evaluation:
    """A model's scores on labelled images: what :func:`evaluate` returns.

    In Jupyter it shows its scores table and the confusion matrix as a thumbnail
    (:func:`~kmeans_imagery.outputs.evaluation_outputs` saves the full-size figures).

    Attributes
    ----------
    results : dict
        JSON-able: dataset, split ("train", "test", or "all" for a whole collection or several
        splits), n_images, accuracy, metrics (see
        :func:`~kmeans_imagery.metrics.clustering_scores`), confusion_matrix (list of lists of
        shape (n_classes, n_classes), true class by row) and class_names.

    Examples
    --------
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> train = open_source("digits", split="train").take(range(500))
    >>> model = ClusterClassifier(n_clusters=30, random_state=0).fit(train.images, train.labels)
    >>> evaluation = evaluate(model, open_source("digits", split="test"))
    >>> evaluation  # doctest: +ELLIPSIS
    Evaluation(dataset='digits', split='test', n_images=360, accuracy=0.9...)
    >>> sorted(evaluation.results)  # doctest: +NORMALIZE_WHITESPACE
    ['accuracy', 'class_names', 'confusion_matrix', 'dataset', 'metrics', 'n_images', 'split']
    """

    results: dict

    def __repr__(self):
        return result_repr("Evaluation", {name: self.results[name]
                                          for name in ("dataset", "split", "n_images", "accuracy")})

    def _repr_html_(self):
        from .plots import plot_confusion

        results = self.results
        table = html_table({"images": results["n_images"], **results["metrics"]})
        confusion_figure = figure_html(plot_confusion(np.array(results["confusion_matrix"]),
                                                      results["class_names"]), alt="confusion matrix")
        return result_html(f"Evaluation on {results['dataset']} ({results['split']})", table,
                           [confusion_figure])


def model_color(model):
    """The colour mode ("gray" or "rgb") of the images a model was fitted on."""
    shape = model.image_shape_
    return "rgb" if shape is not None and len(shape) == 3 else "gray"


def model_size(model):
    """(H, W) of the images a model was fitted on."""
    if model.image_shape_ is None:
        raise KMIError("this model was fitted on feature rows, not images; it cannot read images")
    return tuple(model.image_shape_[:2])


def nearest_two(model, images):
    """Nearest centroid, its distance, and the margin to the second-nearest centroid.

    Parameters
    ----------
    model : ClusterClassifier
    images : ndarray of shape (n, H, W[, C]) or (n, n_features)

    Returns
    -------
    clusters : ndarray of shape (n,)
    distance : ndarray of shape (n,)
        Euclidean distance to the nearest centroid (in the model's feature space).
    margin : ndarray of shape (n,)
        Second-nearest distance minus nearest distance: small values mean the image sits between
        two clusters, a hint of low confidence. Infinite when the model has one cluster.
    """
    distances = model.cluster_distances(images)
    clusters = distances.argmin(axis=1)
    rows = np.arange(len(distances))
    nearest = distances[rows, clusters]
    if distances.shape[1] < 2:
        return clusters, nearest, np.full(len(rows), np.inf)
    second = np.partition(distances, 1, axis=1)[:, 1]
    return clusters, nearest, second - nearest


def check_model_shape(model, source):
    """Raise a KMIError when a source's images are not of the model's shape."""
    expected = model.image_shape_
    if expected is not None and tuple(source.image_shape) != tuple(expected):
        got = "x".join(map(str, source.image_shape))
        want = "x".join(map(str, expected))
        raise KMIError(f"images in {source.origin or source.display_name} are {got} but the model "
                       f"expects {want}; pass resize=True (--resize) to resize them")


def open_inputs(inputs, *, color, size=None, skip_bad=False, data_dir=None):
    """Sources for a list of inputs: datasets and folders each, loose image files together.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Anything :func:`~kmeans_imagery.datasets.open_source` accepts, and image files.
    color, size, skip_bad, data_dir
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Returns
    -------
    list of ImageSource
        Every split of a dataset that has two; one source for all the loose image files.
    """
    from .datasets import FolderSource, is_dataset_name, open_source

    options = {"color": color, "size": size, "skip_bad": skip_bad, "data_dir": data_dir}
    sources, files = [], []
    for item in inputs:
        path = Path(item)
        if not is_dataset_name(item) and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
            continue
        source = open_source(item, **options)
        sources.append(source)
        if source.split is not None:
            sources.append(open_source(item, split="test", **options))
    if files:
        sources.append(FolderSource.of_files(files, color=color, size=size, skip_bad=skip_bad))
    return sources


def predict_source(model, source, *, batch_size=PREDICT_BATCH):
    """Predict every image of a source, batch by batch.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model with an ``image_shape_``.
    source : ImageSource
        Opened in the model's colour (and size).
    batch_size : int, default=1024
        Images decoded and predicted at once; memory stays bounded by one batch.

    Yields
    ------
    dict
        One per image: path (the file, or ``origin#index`` / ``origin#split:index`` for images
        without files), cluster, label, distance, margin.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise KMIError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_model_shape(model, source)
    prefix = f"{source.origin or source.name}#{source.split + ':' if source.split else ''}"
    for batch in source.iter_batches(batch_size):
        if not len(batch.images):
            continue
        names = ([str(p) for p in batch.paths] if batch.paths is not None
                 else [f"{prefix}{i}" for i in source.positions(batch)])
        clusters, distance, margin = nearest_two(model, batch.images)
        labels = model.cluster_labels_[clusters]
        for name, cluster, label, dist, gap in zip(names, clusters, labels, distance, margin,
                                                   strict=True):
            yield {"path": name, "cluster": int(cluster), "label": _plain(label),
                   "distance": float(dist), "margin": float(gap)}


def evaluate(model, sources, *, batch_size=PREDICT_BATCH):
    """Score a model on labelled sources, reading them batch by batch.

    Memory holds one batch of images plus two small integers per image (true class and
    cluster), which the label-based scores need.

    Parameters
    ----------
    model : ClusterClassifier
    sources : ImageSource or list of ImageSource
        Labelled, opened in the model's colour (and size); several (a dataset's two splits, say)
        are scored together.
    batch_size : int, default=1024

    Returns
    -------
    Evaluation
        Its ``results`` hold dataset, split, n_images, accuracy, metrics, confusion_matrix and
        class_names.
    """
    sources = list(sources) if isinstance(sources, list | tuple) else [sources]
    labels, clusters = [], []
    for source in sources:
        check_model_shape(model, source)
        if source.labels is None:
            raise KMIError(f"dataset {source.display_name!r} has no labels to evaluate against")
        for batch in source.iter_batches(batch_size):
            if len(batch.images):
                clusters.append(model.predict_cluster(batch.images))
                labels.append(batch.labels)
    first = sources[0]
    label_names = getattr(model, "metadata_", {}).get("label_names") or first.label_names
    splits = {source.split for source in sources}
    split = first.split if len(splits) == 1 and first.split is not None else "all"
    results = score_clusters(model, np.concatenate(labels), np.concatenate(clusters), first.name,
                             label_names)
    return Evaluation({"dataset": first.name, "split": split, **results})


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def write_predictions(rows, handle):
    """Write prediction rows as CSV with a header to an open text file; returns the row count.

    The first row is computed before anything is written, so input errors found in the first batch
    (wrong image size, unreadable file) leave the output empty.
    """
    rows = iter(rows)
    first = next(rows, None)
    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in chain([first], rows) if first is not None else ():
        writer.writerow({**row, "distance": f"{row['distance']:.6g}",
                         "margin": f"{row['margin']:.6g}"})
        count += 1
    return count


def score_clusters(model, labels, clusters, name, label_names=None):
    """Score the clusters a model gave to labelled images.

    Parameters
    ----------
    model : ClusterClassifier
    labels : ndarray of shape (n,)
        True labels, of the kind (integers or strings) the model was named with.
    clusters : ndarray of shape (n,)
        Nearest centroid of each image.
    name : str
        The data's name, for error messages.
    label_names : sequence of str, optional
        Display names of integer labels.

    Returns
    -------
    dict
        n_images, accuracy, metrics (see :func:`~kmeans_imagery.metrics.clustering_scores`),
        confusion_matrix and class_names (rows and columns of the matrix).
    """
    labels = np.asarray(labels)
    model_classes = np.asarray(model.classes_)
    if (labels.dtype.kind in "iu") != (model_classes.dtype.kind in "iu"):
        raise KMIError(
            f"the labels of {name!r} ({labels.dtype.kind!r} values such as {labels[0]!r}) are "
            f"not of the kind the model was named with (such as {model_classes[0]!r})"
        )
    y_pred = model.cluster_labels_[clusters]
    classes = np.union1d(model_classes, labels)
    metrics = clustering_scores(labels, clusters, y_pred)
    return {
        "n_images": len(labels),
        "accuracy": metrics["accuracy"],
        "metrics": metrics,
        "confusion_matrix": confusion(labels, y_pred, classes).tolist(),
        "class_names": display_names(classes, label_names),
    }


def display_names(classes, label_names):
    """Text for each class: its display name for integer classes with names, else the class itself."""
    if label_names and np.asarray(classes).dtype.kind in "iu":
        return [str(label_names[c]) if 0 <= c < len(label_names) else str(c) for c in classes]
    return [str(c) for c in classes]
