"""Applying a fitted model to new images: predictions and evaluation, batch by batch.

:func:`predict_source` reads a source in batches, so that a million files never sit in memory at
once; :func:`evaluate` scores labelled sources with every metric of :mod:`kmeans_imagery.metrics`.
"""

import csv
import warnings
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from .datasets.folders import IMAGE_SUFFIXES
from .display import figure_html, html_table, result_html, result_repr
from .errors import KMIError
from .metrics import clustering_scores, confusion

__all__ = ["CSV_COLUMNS", "PREDICT_BATCH", "Evaluation", "check_model_shape", "display_names", "evaluate",
           "model_color", "model_size", "nearest_and_margin", "nearest_two", "open_inputs", "predict_source",
           "reading_options", "reads_resized", "score_clusters", "write_predictions"]

#: Columns of the predictions CSV, in order (see :func:`write_predictions`).
CSV_COLUMNS = ("path", "cluster", "label", "distance", "margin")
#: Images decoded and predicted at once by default.
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
    """The colour mode ("gray" or "rgb") of the images a model was fitted on.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model, or one read by :func:`~kmeans_imagery.load_model`.

    Returns
    -------
    str
        "rgb" for colour images, else "gray" (also for a model of feature rows).

    Examples
    --------
    New images are opened in the colour and size of the model they will be predicted with:

    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.predict import model_color, model_size
    >>> photos = np.random.default_rng(0).integers(0, 256, size=(20, 4, 4, 3), dtype=np.uint8)
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(photos, None)
    >>> model_color(model), model_size(model)
    ('rgb', (4, 4))
    """
    shape = model.image_shape_
    return "rgb" if shape is not None and len(shape) == 3 else "gray"


def reads_resized(model):
    """Whether a model was fitted on images resized as they were read (a size was given, or
    "auto" chose one, as ``kmi explore`` does): new images are then read at its size too.

    Parameters
    ----------
    model : ClusterClassifier
        A model read by :func:`~kmeans_imagery.load_model` (its metadata say how it was fitted).

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> model = ClusterClassifier(n_clusters=1).fit(np.zeros((4, 8, 8), np.uint8), None)
    >>> reads_resized(model)
    False
    >>> model.metadata_ = {"training": {"resized": True}}
    >>> reads_resized(model)
    True
    """
    metadata = getattr(model, "metadata_", None) or {}
    return bool((metadata.get("training") or {}).get("resized", False))


def reading_options(model, resize=False):
    """How to read images for a model: the ``color`` and ``size`` to open them with.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model.
    resize : bool
        Resize images to the model's size; a model fitted on resized images
        (:func:`reads_resized`) always does.

    Returns
    -------
    dict
        ``{"color": ..., "size": ...}`` for :func:`~kmeans_imagery.datasets.open_source` or
        :func:`~kmeans_imagery.datasets.load_images`; ``size`` None keeps the images' own
        size, which :func:`check_model_shape` then checks.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> model = ClusterClassifier(n_clusters=1).fit(np.zeros((4, 8, 8), np.uint8), None)
    >>> reading_options(model), reading_options(model, resize=True)
    ({'color': 'gray', 'size': None}, {'color': 'gray', 'size': (8, 8)})
    """
    resized = resize or reads_resized(model)
    return {"color": model_color(model), "size": model_size(model) if resized else None}


def model_size(model):
    """(H, W) of the images a model was fitted on.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model.

    Returns
    -------
    tuple of int
        The height and width.

    Raises
    ------
    KMIError
        When the model was fitted on feature rows, not images.

    Examples
    --------
    A model fitted on images knows their size; one fitted on feature rows does not:

    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.predict import model_size
    >>> scans = np.zeros((6, 28, 20), dtype=np.uint8)
    >>> model_size(ClusterClassifier(n_clusters=1).fit(scans, None))
    (28, 20)
    >>> model_size(ClusterClassifier(n_clusters=1).fit(scans.reshape(6, -1), None))
    Traceback (most recent call last):
        ...
    kmeans_imagery.errors.KMIError: this model was fitted on feature rows, not images; it cannot read images
    """
    if model.image_shape_ is None:
        raise KMIError("this model was fitted on feature rows, not images; it cannot read images")
    return tuple(model.image_shape_[:2])


def nearest_two(model, images):
    """Nearest centroid, its distance, and the margin to the second-nearest centroid.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model.
    images : ndarray of shape (n, H, W[, C]) or (n, n_features)
        Images or rows of the kind the model was fitted on.

    Returns
    -------
    clusters : ndarray of shape (n,)
        Index of the nearest centroid.
    distance : ndarray of shape (n,)
        Euclidean distance to the nearest centroid (in the model's feature space).
    margin : ndarray of shape (n,)
        Second-nearest distance minus nearest distance: small values mean the image sits between
        two clusters, a hint of low confidence. Infinite when the model has one cluster.

    Examples
    --------
    A point near a centroid has a large margin; one between the two has a small one:

    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.predict import nearest_two
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
    >>> clusters, distance, margin = nearest_two(model, np.array([[0.0, 0.5], [4.5, 4.0]]))
    >>> clusters.tolist(), distance.round(2).tolist(), margin.round(2).tolist()
    ([0, 0], [0.0, 5.7], [12.04, 0.66])
    """
    return nearest_and_margin(model.cluster_distances(images))


def nearest_and_margin(distances):
    """Nearest centroid, its distance and the margin to the second nearest, from all distances.

    Parameters
    ----------
    distances : ndarray of shape (n, n_clusters)
        Distance of each row to each centroid.

    Returns
    -------
    clusters, distance, margin : ndarray of shape (n,)
        As :func:`nearest_two` returns them (margin infinite for one cluster).

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.predict import nearest_and_margin
    >>> clusters, distance, margin = nearest_and_margin(np.array([[1.0, 4.0, 2.0], [3.0, 0.5, 3.5]]))
    >>> clusters.tolist(), distance.tolist(), margin.tolist()
    ([0, 1], [1.0, 0.5], [1.0, 2.5])
    """
    clusters = distances.argmin(axis=1)
    nearest = distances[np.arange(len(distances)), clusters]
    if distances.shape[1] < 2:
        return clusters, nearest, np.full(len(distances), np.inf)
    second = np.partition(distances, 1, axis=1)[:, 1]
    return clusters, nearest, second - nearest


def check_model_shape(model, source):
    """Raise a KMIError when a source's images are not of the model's shape.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model.
    source : ImageSource
        The images to check, opened in the model's colour (a model of feature rows accepts
        any shape).

    Raises
    ------
    KMIError
        When the shapes differ; the message suggests resizing.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import ArraySource
    >>> from kmeans_imagery.predict import check_model_shape
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(np.zeros((4, 8, 8), np.uint8), None)
    >>> scans = np.zeros((2, 16, 16), dtype=np.uint8)
    >>> check_model_shape(model, ArraySource(scans, name="scans"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    kmeans_imagery.errors.KMIError: images in scans are 16x16 but the model expects 8x8; pass ...
    >>> check_model_shape(model, ArraySource(scans, name="scans", size=(8, 8)))  # resized: fine
    """
    expected = model.image_shape_
    if expected is not None and tuple(source.image_shape) != tuple(expected):
        got = "x".join(map(str, source.image_shape))
        want = "x".join(map(str, expected))
        raise KMIError(f"images in {source.origin or source.display_name} are {got} but the model "
                       f"expects {want}; pass resize=True to resize them")


def open_inputs(inputs, *, color, size=None, skip_bad=False, data_dir=None):
    """Sources for a list of inputs: datasets and folders each, loose image files together.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Anything :func:`~kmeans_imagery.datasets.open_source` accepts, and image files.
    color : {"gray", "rgb"}
        Colour mode to read the images in (the model's, see :func:`model_color`).
    size : None, "HxW", int or (H, W), default=None
        Resize every image to this size; None keeps the sizes.
    skip_bad : bool, default=False
        Skip unreadable image files instead of raising.
    data_dir : path-like or None, default=None
        As in :func:`~kmeans_imagery.datasets.open_source`.

    Returns
    -------
    list of ImageSource
        Every split of a dataset that has two; one source for all the loose image files.

    Examples
    --------
    A named dataset and two loose image files, as ``kmi predict MODEL digits a.png b.png``
    reads them:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kmeans_imagery.predict import open_inputs
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     files = [Path(tmp, name) for name in ("a.png", "b.png")]
    ...     for file in files:
    ...         Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(file)
    ...     sources = open_inputs(["digits", *files], color="gray")
    >>> [(source.split, source.n_images) for source in sources]
    [('train', 1437), ('test', 360), (None, 2)]
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
        without files), cluster, label, distance, margin (see :func:`nearest_two`).

    Raises
    ------
    KMIError
        When ``batch_size`` is not a positive integer or the images are not of the model's
        shape.

    Examples
    --------
    Classify a folder of scanned digits with a model of the bundled ones (``kmi predict``):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from kmeans_imagery import ClusterClassifier, load_dataset
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.predict import model_size, predict_source
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(36, algorithm="full", random_state=0)
    >>> model = model.fit(digits.train_images, digits.train_labels)
    >>> with tempfile.TemporaryDirectory() as scans:
    ...     for i, image in enumerate(digits.test_images[:4]):
    ...         Image.fromarray(image).save(Path(scans, f"scan{i}.png"))
    ...     for row in predict_source(model, open_source(scans, size=model_size(model))):
    ...         print(Path(row["path"]).name, row["label"], f"{row['margin']:.2f}")
    scan0.png 7 0.35
    scan1.png 6 0.06
    scan2.png 3 0.10
    scan3.png 7 0.91
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise KMIError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_model_shape(model, source)
    for batch in source.iter_batches(batch_size):
        if not len(batch.images):
            continue
        names = ([str(p) for p in batch.paths] if batch.paths is not None
                 else source.image_names(source.positions(batch)))
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
        A fitted model.
    sources : ImageSource or list of ImageSource
        Labelled, opened in the model's colour (and size); several (a dataset's two splits, say)
        are scored together.
    batch_size : int, default=1024
        Images decoded and predicted at once.

    Returns
    -------
    Evaluation
        Its ``results`` dict holds dataset, split ("train", "test", or "all" for a whole collection
        or several splits), n_images, accuracy, metrics (see
        :func:`~kmeans_imagery.metrics.clustering_scores`), confusion_matrix and class_names.

    Raises
    ------
    KMIError
        When a source has no labels, or its labels are not of the kind the model was named with.

    Examples
    --------
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import load_dataset, open_source
    >>> from kmeans_imagery.predict import evaluate
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=36, algorithm="full", random_state=0)
    >>> model = model.fit(digits.train_images, digits.train_labels)
    >>> results = evaluate(model, open_source("digits", split="test")).results
    >>> results["split"], results["n_images"], round(results["accuracy"], 2)
    ('test', 360, 0.89)
    >>> len(results["confusion_matrix"]), results["class_names"][:3]
    (10, ['0', '1', '2'])
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
    """Write prediction rows as CSV with a header to an open text file.

    The first row is computed before anything is written, so input errors found in the first batch
    (wrong image size, unreadable file) leave the output empty.

    Parameters
    ----------
    rows : iterable of dict
        Rows with the keys of :data:`CSV_COLUMNS`, such as :func:`predict_source` yields.
    handle : file-like
        Open text file (opened with ``newline=""``).

    Returns
    -------
    int
        The number of rows written.

    Examples
    --------
    >>> import io
    >>> from kmeans_imagery.predict import write_predictions
    >>> rows = [{"path": "a.png", "cluster": 3, "label": "cat", "distance": 1.234567891, "margin": 0.5},
    ...         {"path": "b.png", "cluster": 0, "label": "dog", "distance": 2.0, "margin": 0.0625}]
    >>> out = io.StringIO()
    >>> write_predictions(rows, out)
    2
    >>> print(out.getvalue(), end="")
    path,cluster,label,distance,margin
    a.png,3,cat,1.23457,0.5
    b.png,0,dog,2,0.0625
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
        The fitted model that gave the clusters.
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
        Keys n_images, accuracy, metrics (see
        :func:`~kmeans_imagery.metrics.clustering_scores`), confusion_matrix and class_names
        (rows and columns of the matrix).

    Raises
    ------
    KMIError
        When the labels are strings and the model's classes integers, or the reverse.

    Warns
    -----
    UserWarning
        When no label is one of the model's names (a model named by hand, say): its accuracy
        is then 0 whatever its clusters.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.predict import score_clusters
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
    >>> results = score_clusters(model, np.array(["cat", "dog", "dog"]), np.array([0, 1, 0]), "pets")
    >>> round(results["accuracy"], 3), results["confusion_matrix"], results["class_names"]
    (0.667, [[1, 0], [1, 1]], ['cat', 'dog'])
    """
    labels = np.asarray(labels)
    model_classes = np.asarray(model.classes_)
    if (labels.dtype.kind in "iu") != (model_classes.dtype.kind in "iu"):
        def kind(values):
            return "numbers" if values.dtype.kind in "iu" else "text"

        raise KMIError(
            f"the labels of {name!r} are {kind(labels)} (such as {str(labels[0])!r}) but the "
            f"model's names are {kind(model_classes)} (such as {str(model_classes[0])!r})"
        )
    if not np.isin(labels, model_classes).any():
        names = ", ".join(map(str, model_classes[:5])) + (", ..." if len(model_classes) > 5 else "")
        warnings.warn(f"no label of {name!r} is one of the model's names ({names}): accuracy "
                      f"counts only equal names; the cluster scores (homogeneity, NMI, purity, "
                      f"...) do not depend on them", UserWarning, stacklevel=2)
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
    """Text for each class: its display name for integer classes with names, else the class itself.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        Class labels: integers, or names already.
    label_names : sequence of str or None
        Display name of each integer label 0..C-1 (Fashion-MNIST's "T-shirt/top", say).

    Returns
    -------
    list of str
        One per class; integers without a name are written as numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.predict import display_names
    >>> display_names(np.array([0, 2, 7]), ["T-shirt/top", "Trouser", "Pullover"])
    ['T-shirt/top', 'Pullover', '7']
    >>> display_names(np.array(["cat", "dog"]), None)
    ['cat', 'dog']
    """
    if label_names and np.asarray(classes).dtype.kind in "iu":
        return [str(label_names[c]) if 0 <= c < len(label_names) else str(c) for c in classes]
    return [str(c) for c in classes]
