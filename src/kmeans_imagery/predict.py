"""Applying a fitted model to new images: streaming predictions and evaluation on labelled data.

:func:`predict_paths` reads image files in batches, so that a million files never sit in memory at
once; :func:`evaluate` scores a labelled dataset with every metric of :mod:`kmeans_imagery.metrics`.
"""

import csv
from itertools import chain, islice
from pathlib import Path

import numpy as np

from .errors import KMIError
from .metrics import clustering_scores, confusion

__all__ = ["CSV_COLUMNS", "PREDICT_BATCH", "evaluate", "model_color", "model_size",
           "nearest_two", "predict_paths", "score_clusters", "write_predictions"]

CSV_COLUMNS = ("path", "cluster", "label", "distance", "margin")
PREDICT_BATCH = 1024
ARRAY_SUFFIXES = (".npy", ".npz")


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


def _check_image_shape(model, shape, source, resize):
    expected = model.image_shape_
    if expected is not None and tuple(shape) != tuple(expected):
        got = "x".join(map(str, shape))
        want = "x".join(map(str, expected))
        hint = "" if resize else "; pass --resize to resize them"
        raise KMIError(f"images in {source} are {got} but the model expects {want}{hint}")


def _batches(iterable, size):
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


def predict_paths(model, paths, *, batch_size=PREDICT_BATCH, resize=False, skip_bad=False,
                  skipped=None):
    """Predict image files, folders and array files, in batches.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model with an ``image_shape_``.
    paths : sequence of path-like
        Image files, folders of images (walked recursively), ``.npy``/``.npz`` files and IDX folders
        (their images are named ``file#index``).
    batch_size : int, default=1024
        Images decoded and predicted at once; memory stays bounded by one batch.
    resize : bool, default=False
        Resize images to the model's size. Without it a different size is an error.
    skip_bad : bool, default=False
        Skip unreadable image files (counted in ``skipped["bad"]``) instead of raising.
    skipped : dict, optional
        Receives the counts of hidden, non-image and bad files passed over.

    Yields
    ------
    dict
        One per image: path, cluster, label, distance, margin.
    """
    from .datasets import iter_image_files, load_dataset, load_images
    from .sources import is_zarr_store, open_source

    if batch_size < 1:
        raise KMIError(f"batch size must be positive, got {batch_size}")
    counts = skipped if skipped is not None else {}
    size = model_size(model) if resize else None
    color = model_color(model)
    image_inputs = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise KMIError(f"{path} does not exist")
        if path.is_dir() and is_zarr_store(path):
            yield from _predict_source(model, open_source(path, color=color, size=size), path,
                                       batch_size, resize)
        elif path.suffix.lower() in ARRAY_SUFFIXES or (path.is_dir() and _is_idx_folder(path)):
            yield from _predict_dataset(model, load_dataset(path, color=color, size=size), path,
                                        batch_size, resize)
        else:
            image_inputs.append(path)
    if not image_inputs:
        return
    found = False
    for files in _batches(iter_image_files(image_inputs, counts), batch_size):
        found = True
        batch = load_images(files, size=size, color=color, skip_bad=skip_bad)
        counts["bad"] = counts.get("bad", 0) + batch.skipped.get("bad", 0)
        _check_image_shape(model, batch.images.shape[1:], batch.paths[0], resize)
        yield from _rows(model, batch.images, [str(p) for p in batch.paths])
    if not found:
        raise KMIError(f"no image files found in {', '.join(map(str, image_inputs))}")


def _is_idx_folder(path):
    from .datasets import find_idx_files

    return find_idx_files(path)["train_images"] is not None


def _predict_dataset(model, dataset, path, batch_size, resize):
    splits = [("", dataset.train_images)]
    if dataset.test_images is not None:
        splits = [("train", dataset.train_images), ("test", dataset.test_images)]
    for split, images in splits:
        _check_image_shape(model, images.shape[1:], path, resize)
        prefix = f"{path}#{split + ':' if split else ''}"
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            names = [f"{prefix}{start + i}" for i in range(len(chunk))]
            yield from _rows(model, chunk, names)


def _predict_source(model, source, path, batch_size, resize):
    """Predict a chunked source (a Zarr store) batch by batch; images are named ``path#index``."""
    _check_image_shape(model, source.image_shape, path, resize)
    for batch in source.iter_batches(batch_size):
        names = [f"{path}#{batch.start + i}" for i in range(len(batch.images))]
        yield from _rows(model, batch.images, names)


def _rows(model, images, names):
    clusters, distance, margin = nearest_two(model, images)
    labels = model.cluster_labels_[clusters]
    for name, cluster, label, dist, gap in zip(names, clusters, labels, distance, margin,
                                               strict=True):
        yield {"path": name, "cluster": int(cluster), "label": _plain(label),
               "distance": float(dist), "margin": float(gap)}


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


def evaluate(model, dataset, *, split="auto", resize=False):
    """Score a model on a labelled dataset.

    Parameters
    ----------
    model : ClusterClassifier
    dataset : kmeans_imagery.datasets.Dataset
        Loaded with the model's colour mode (and size, when resizing).
    split : {"auto", "train", "test", "all"}, default="auto"
        Which images to score; "auto" takes the test split when there is one, else all images.
    resize : bool, default=False
        Whether the images were resized to the model's size (only changes the error hint).

    Returns
    -------
    dict
        dataset, split, n_images, accuracy, metrics (see
        :func:`~kmeans_imagery.metrics.clustering_scores`), confusion_matrix, class_names.
    """
    images, labels, used = _pick_split(dataset, split)
    if labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels to evaluate against")
    _check_image_shape(model, images.shape[1:], dataset.name, resize)
    label_names = model.metadata_.get("label_names") if hasattr(model, "metadata_") else None
    results = score_clusters(model, labels, model.predict_cluster(images), dataset.name,
                             label_names or dataset.label_names)
    return {"dataset": dataset.name, "split": used, **results}


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


def _pick_split(dataset, split):
    if split == "auto":
        split = "test" if dataset.test_images is not None else "all"
    if split == "test":
        if dataset.test_images is None:
            raise KMIError(f"dataset {dataset.name!r} has no test split")
        return dataset.test_images, dataset.test_labels, "test"
    if split == "train" or dataset.test_images is None:
        return dataset.train_images, dataset.train_labels, split
    if split != "all":
        raise KMIError(f"unknown split {split!r}; choose auto, train, test or all")
    labels = None
    if dataset.train_labels is not None and dataset.test_labels is not None:
        labels = np.concatenate([dataset.train_labels, dataset.test_labels])
    return np.concatenate([dataset.train_images, dataset.test_images]), labels, "all"


def display_names(classes, label_names):
    """Text for each class: its display name for integer classes with names, else the class itself."""
    if label_names and np.asarray(classes).dtype.kind in "iu":
        return [str(label_names[c]) if 0 <= c < len(label_names) else str(c) for c in classes]
    return [str(c) for c in classes]
