"""The tutorial end to end: preprocess, cluster over a K sweep, name clusters, score, draw, report.

Everything ``kmi run`` and ``kmi sweep`` do lives here, callable from Python: :func:`run_sweep` fits and
scores one model per K, :func:`run_experiment` adds the tutorial's first look at K = number of classes and
the held-out test score, and :func:`write_outputs` saves the figures, ``results.json`` and ``report.html``.
"""

import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import KMIError
from .labeling import ClusterClassifier
from .metrics import clustering_scores, confusion
from .preprocessing import flatten_scale

__all__ = [
    "DEFAULT_KS",
    "Experiment",
    "atomic_text_file",
    "draw_model",
    "evaluation_outputs",
    "fit_model",
    "library_versions",
    "parse_ks",
    "run_experiment",
    "run_sweep",
    "write_json",
    "write_outputs",
]

DEFAULT_KS = (10, 16, 36, 64, 144, 256)
# The tutorial draws the centroids of a K=36 model as a 6x6 grid.
CENTROID_FIGURE_K = 36


@dataclass
class Experiment:
    """What one run of the tutorial produced.

    Attributes
    ----------
    results : dict
        JSON-able results (the content of ``results.json``).
    models : dict of int to ClusterClassifier
        The fitted model for each K of the sweep.
    sample_images : ndarray of shape (9, H, W[, C])
        The first training images, for the samples figure.
    sample_labels : ndarray of shape (9,) or None
    label_names : tuple of str or None
        Display names for integer labels.
    """

    results: dict
    models: dict = field(default_factory=dict)
    sample_images: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    label_names: tuple | None = None


def parse_ks(text):
    """Parse a comma-separated list of cluster counts such as ``"10,16,36"``.

    Raises
    ------
    KMIError
        When an item is not a positive integer or the list is empty.
    """
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise KMIError(f"--ks needs a comma-separated list of positive integers, got {text!r}")
    ks = []
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise KMIError(f"--ks: {item!r} is not a positive integer (in {text!r})")
        ks.append(int(item))
    return tuple(dict.fromkeys(ks))


def library_versions():
    """Versions of Python and the libraries whose behaviour shapes the results."""
    import matplotlib
    import scipy
    import sklearn

    from . import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "kmeans-imagery": __version__,
    }


def _jsonable(values):
    return np.asarray(values).tolist()


def _check_ks(ks, n_samples):
    too_big = [k for k in ks if k > n_samples]
    if too_big:
        raise KMIError(
            f"K={too_big[0]} is larger than the {n_samples} images it would cluster; "
            f"use K <= {n_samples}"
        )


def run_sweep(
    X_fit,
    y_fit,
    ks,
    *,
    X_test=None,
    y_test=None,
    algorithm="minibatch",
    engine=None,
    random_state=0,
    on_fitted=None,
):
    """Fit one classifier per K and score it on the fit set and, when given, the test set.

    Parameters
    ----------
    X_fit : ndarray of shape (n_samples, n_features)
        Rows the models are fitted on.
    y_fit : ndarray of shape (n_samples,)
        Their labels, used to name clusters and to score.
    ks : sequence of int
        Cluster counts.
    X_test, y_test : ndarray, optional
        Held-out rows and labels; adds ``test_accuracy`` (and ``test_hungarian_accuracy`` where K
        equals the number of classes).
    algorithm, engine, random_state
        See :class:`~kmeans_imagery.ClusterClassifier`.
    on_fitted : callable, optional
        Called with each finished row (a dict), e.g. to advance a progress bar.

    Returns
    -------
    rows : list of dict
        One row per K: k, inertia, homogeneity, completeness, v_measure, accuracy, test_accuracy,
        fit_seconds, and hungarian_accuracy / test_hungarian_accuracy where K = number of classes.
    models : dict of int to ClusterClassifier
    """
    _check_ks(ks, len(X_fit))
    n_classes = len(np.unique(y_fit))
    rows, models = [], {}
    for k in ks:
        model = ClusterClassifier(
            n_clusters=k, algorithm=algorithm, engine=engine, random_state=random_state
        )
        started = time.perf_counter()
        model.fit(X_fit, y_fit)
        fit_seconds = time.perf_counter() - started
        scores = clustering_scores(y_fit, model.labels_, model.cluster_labels_[model.labels_])
        row = {
            "k": k,
            "inertia": model.inertia_,
            "homogeneity": scores["homogeneity"],
            "completeness": scores["completeness"],
            "v_measure": scores["v_measure"],
            "accuracy": scores["accuracy"],
            "test_accuracy": None,
            "fit_seconds": fit_seconds,
        }
        if X_test is not None:
            row["test_accuracy"] = float(model.score(X_test, y_test))
        if k == n_classes:
            row["hungarian_accuracy"] = scores["hungarian_accuracy"]
            if X_test is not None:
                test_scores = clustering_scores(y_test, model.predict_cluster(X_test))
                row["test_hungarian_accuracy"] = test_scores["hungarian_accuracy"]
        rows.append(row)
        models[k] = model
        if on_fitted is not None:
            on_fitted(row)
    return rows, models


def run_experiment(
    dataset,
    *,
    ks=DEFAULT_KS,
    algorithm="minibatch",
    engine=None,
    random_state=0,
    transductive=False,
    log=None,
    on_fitted=None,
):
    """Run the whole tutorial on a labelled dataset.

    Models are fitted on the training images and scored on the held-out test images. With
    ``transductive=True`` they are fitted and scored on the test images instead, as the tutorial did
    (its ~90% at K=256 comes from that).

    Parameters
    ----------
    dataset : kmeans_imagery.datasets.Dataset
        Needs train and test images with labels.
    ks : sequence of int, default=DEFAULT_KS
    algorithm, engine, random_state
        See :class:`~kmeans_imagery.ClusterClassifier`.
    transductive : bool, default=False
    log : callable, optional
        Receives one human-readable line per step.
    on_fitted : callable, optional
        Receives each sweep row as it finishes.

    Returns
    -------
    Experiment
    """
    say = log if log is not None else (lambda line: None)
    if dataset.train_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels; the tutorial needs labelled images")
    if dataset.test_images is None or dataset.test_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labelled test split")
    ks = tuple(ks)
    X_train = flatten_scale(dataset.train_images)
    X_test = flatten_scale(dataset.test_images)
    y_train, y_test = np.asarray(dataset.train_labels), np.asarray(dataset.test_labels)
    say(f"train images: {dataset.train_images.shape} -> rows {X_train.shape} {X_train.dtype}")
    say(f"test images:  {dataset.test_images.shape} -> rows {X_test.shape} {X_test.dtype}")
    X_fit, y_fit = (X_test, y_test) if transductive else (X_train, y_train)
    classes = np.unique(y_fit)

    # The tutorial's first look: K = number of classes, predicted vs true labels of the fit set.
    first_rows, first_models = run_sweep(
        X_fit, y_fit, [len(classes)], X_test=X_test, y_test=y_test,
        algorithm=algorithm, engine=engine, random_state=random_state,
    )
    first = first_models[len(classes)]
    first_predictions = {
        "predicted": _jsonable(first.cluster_labels_[first.labels_[:20]]),
        "true": _jsonable(y_fit[:20]),
    }
    say(f"K={len(classes)}: first 20 predicted {first_predictions['predicted']}")
    say(f"K={len(classes)}: first 20 true      {first_predictions['true']}")

    sweep_ks = [k for k in ks if k != len(classes)]
    rows, models = run_sweep(
        X_fit, y_fit, sweep_ks, X_test=X_test, y_test=y_test,
        algorithm=algorithm, engine=engine, random_state=random_state, on_fitted=on_fitted,
    )
    if len(classes) in ks:
        rows.extend(first_rows)
        models.update(first_models)
        if on_fitted is not None:
            on_fitted(first_rows[0])
    rows.sort(key=lambda row: row["k"])

    best_k = max(ks)
    best = models[best_k]
    y_pred = best.predict(X_test)
    test_metrics = clustering_scores(y_test, best.predict_cluster(X_test), y_pred)
    results = {
        "dataset": dataset.name,
        "source": str(getattr(dataset, "source", "")),
        "n_train": len(X_train),
        "n_test": len(X_test),
        "image_shape": list(dataset.train_images.shape[1:]),
        "n_classes": len(classes),
        "classes": _jsonable(classes),
        "label_names": list(dataset.label_names) if dataset.label_names else None,
        "algorithm": algorithm,
        "engine": engine or _default_engine(),
        "seed": random_state,
        "transductive": transductive,
        "features": "raw",
        "versions": library_versions(),
        "first_predictions": first_predictions,
        "sweep": rows,
        "test": {
            "k": best_k,
            "accuracy": test_metrics["accuracy"],
            "metrics": test_metrics,
            "confusion_matrix": confusion(y_test, y_pred, classes).tolist(),
            "class_names": _class_names(classes, dataset.label_names),
        },
    }
    return Experiment(
        results=results,
        models=models,
        sample_images=dataset.train_images[:9],
        sample_labels=y_train[:9],
        label_names=dataset.label_names,
    )


def fit_model(dataset, n_clusters, *, algorithm="minibatch", engine=None, random_state=0):
    """Fit a classifier on a dataset's training images, as ``kmi fit`` does.

    Parameters
    ----------
    dataset : kmeans_imagery.datasets.Dataset
        Labelled or not; without labels each cluster is its own class.
    n_clusters : int
    algorithm, engine, random_state
        See :class:`~kmeans_imagery.ClusterClassifier`.

    Returns
    -------
    model : ClusterClassifier
        Fitted on the raw training images (so it predicts raw images).
    fit_metrics : dict
        inertia, fit_seconds, and with labels the training scores (accuracy, homogeneity, ...) and,
        when the dataset has a labelled test split, ``test_accuracy`` and ``test_metrics``.
    training : dict
        The dataset's name, image count and whether it was labelled (no paths).
    """
    images, labels = dataset.train_images, dataset.train_labels
    if not isinstance(n_clusters, int) or n_clusters < 1:
        raise KMIError(f"K must be a positive integer, got {n_clusters!r}")
    _check_ks([n_clusters], len(images))
    model = ClusterClassifier(
        n_clusters=n_clusters, algorithm=algorithm, engine=engine, random_state=random_state
    )
    started = time.perf_counter()
    model.fit(images, labels)
    metrics = {"inertia": model.inertia_, "fit_seconds": time.perf_counter() - started}
    if labels is not None:
        metrics.update(clustering_scores(labels, model.labels_, model.cluster_labels_[model.labels_]))
        if dataset.test_images is not None and dataset.test_labels is not None:
            test_clusters = model.predict_cluster(dataset.test_images)
            test_scores = clustering_scores(
                dataset.test_labels, test_clusters, model.cluster_labels_[test_clusters]
            )
            metrics["test_accuracy"] = test_scores["accuracy"]
            metrics["test_metrics"] = test_scores
    training = {
        "dataset": Path(str(dataset.name)).name,
        "n_samples": len(images),
        "labelled": labels is not None,
    }
    return model, metrics, training


def _default_engine():
    from .engine import DEFAULT_ENGINE

    return DEFAULT_ENGINE


def _class_names(classes, label_names):
    if label_names is not None and np.issubdtype(np.asarray(classes).dtype, np.integer):
        return [str(label_names[c]) for c in classes]
    return [str(c) for c in classes]


def atomic_text_file(path):
    """Open ``path`` for writing UTF-8 text that appears only complete (see :func:`atomic_write`)."""
    return atomic_write(path, "w", encoding="utf-8", newline="")


def write_json(data, path):
    """Write ``data`` as indented JSON, atomically."""
    with atomic_text_file(path) as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def prepare_out_dir(out_dir):
    """Create ``out_dir`` if needed and check that it is writable.

    Raises
    ------
    KMIError
        When the folder cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".kmi-write-test-")
        probe.close()
    except OSError as error:
        raise KMIError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    return out


def write_outputs(experiment, out_dir):
    """Save every figure, ``results.json`` and a self-contained ``report.html`` into ``out_dir``.

    Parameters
    ----------
    experiment : Experiment
    out_dir : path-like

    Returns
    -------
    dict of str to Path
        The written files by name (figure names, ``"results"``, ``"report"``).
    """
    from . import plots
    from .report import write_report

    out = prepare_out_dir(out_dir)
    results = experiment.results
    sweep = results["sweep"]
    ks = [row["k"] for row in sweep]
    label_names = experiment.label_names
    figures = {}
    if experiment.sample_images is not None:
        figures["samples"] = plots.save_png(
            plots.plot_samples(
                experiment.sample_images, experiment.sample_labels, label_names=label_names
            ),
            out / "samples.png",
        )
    figures["inertia"] = plots.save_png(
        plots.plot_inertia(ks, [row["inertia"] for row in sweep]), out / "inertia.png"
    )
    figures["scores"] = plots.save_png(
        plots.plot_scores(
            ks,
            [row["homogeneity"] for row in sweep],
            [row["accuracy"] for row in sweep],
            test_accuracy=[row["test_accuracy"] for row in sweep],
        ),
        out / "scores.png",
    )
    centroid_k = min(experiment.models, key=lambda k: (abs(k - CENTROID_FIGURE_K), k))
    centroid_model = experiment.models[centroid_k]
    figures["centroids"] = plots.save_png(
        plots.plot_centroids(
            centroid_model.cluster_centers_,
            tuple(results["image_shape"]),
            centroid_model.cluster_labels_,
            label_names=label_names,
        ),
        out / "centroids.png",
    )
    test = results.get("test")
    if test is not None:
        figures["confusion"] = plots.save_png(
            plots.plot_confusion(np.array(test["confusion_matrix"]), test["class_names"]),
            out / "confusion.png",
        )
    results["figures"] = {name: path.name for name, path in figures.items()}
    written = dict(figures)
    written["results"] = out / "results.json"
    write_json(results, written["results"])
    written["report"] = write_report(results, figures, out / "report.html")
    return written


def _centroid_images(model):
    """Cluster centres as images (n_clusters, H, W[, C]) in [0, 1], in pixel space even with features."""
    return np.asarray(model.cluster_images_).reshape((-1, *model.image_shape_))


def nearest_members(model, images, per_cluster, *, batch_size=4096):
    """The ``per_cluster`` images nearest to each centroid among the images assigned to it.

    Parameters
    ----------
    model : ClusterClassifier
    images : ndarray of shape (n, H, W[, C])
    per_cluster : int

    Returns
    -------
    members : ndarray of shape (n_clusters, per_cluster, H, W[, C]), float in [0, 1]
        NaN where a cluster has fewer members.
    sizes : ndarray of shape (n_clusters,)
        Number of images assigned to each cluster.
    """
    clusters = np.empty(len(images), dtype=np.int64)
    distance = np.empty(len(images))
    for start in range(0, len(images), batch_size):
        block = model.cluster_distances(images[start : start + batch_size])
        clusters[start : start + len(block)] = block.argmin(axis=1)
        distance[start : start + len(block)] = block.min(axis=1)
    k = len(model.cluster_centers_)
    members = np.full((k, per_cluster, *images.shape[1:]), np.nan, dtype=np.float32)
    # Sort by (cluster, distance) once, then take each cluster's first rows.
    order = np.lexsort((distance, clusters))
    starts = np.searchsorted(clusters[order], np.arange(k))
    ends = np.searchsorted(clusters[order], np.arange(k), side="right")
    for cluster in range(k):
        chosen = order[starts[cluster] : min(ends[cluster], starts[cluster] + per_cluster)]
        members[cluster, : len(chosen)] = images[chosen] / np.float32(255)
    return members, ends - starts


def draw_model(model, path, *, dataset=None, per_cluster=8, max_clusters=20):
    """Draw a model's centroids with their labels, or with ``dataset`` its clusters' nearest members.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model with an ``image_shape_`` (e.g. from :func:`~kmeans_imagery.load_model`).
    path : path-like
        PNG file to write.
    dataset : kmeans_imagery.datasets.Dataset, optional
        Images to pick members from (all splits), in the model's size and colour.
    per_cluster : int, default=8
        Members shown per cluster.
    max_clusters : int, default=20
        With ``dataset``, only the largest clusters are drawn, one row each, so that the figure
        stays readable at K=256.

    Returns
    -------
    Path
    """
    from . import plots

    if model.image_shape_ is None:
        raise KMIError("this model was fitted on feature rows, not images; nothing to draw")
    label_names = getattr(model, "metadata_", {}).get("label_names")
    labels = np.asarray(model.cluster_labels_)
    if label_names and labels.dtype.kind in "iu":
        labels = np.array([label_names[label] for label in labels])
    if dataset is None:
        ax = plots.plot_centroids(model.cluster_images_, tuple(model.image_shape_), labels)
    else:
        images = dataset.train_images
        if dataset.test_images is not None:
            images = np.concatenate([images, dataset.test_images])
        members, sizes = nearest_members(model, images, per_cluster)
        shown = np.sort(np.argsort(-sizes, kind="stable")[:max_clusters])
        ax = plots.plot_cluster_members(
            _centroid_images(model)[shown], members[shown], labels[shown]
        )
    return plots.save_png(ax, path)


def evaluation_outputs(model, dataset, results, out_dir):
    """Save the figures, ``results.json`` and ``report.html`` of ``kmi evaluate``.

    Parameters
    ----------
    model : ClusterClassifier
    dataset : kmeans_imagery.datasets.Dataset
    results : dict
        From :func:`kmeans_imagery.predict.evaluate`.
    out_dir : path-like

    Returns
    -------
    dict of str to Path
    """
    from . import plots
    from .report import write_report

    out = prepare_out_dir(out_dir)
    label_names = getattr(model, "metadata_", {}).get("label_names")
    figures = {
        "samples": plots.save_png(
            plots.plot_samples(dataset.train_images[:9],
                               None if dataset.train_labels is None else dataset.train_labels[:9],
                               label_names=label_names),
            out / "samples.png",
        ),
        "confusion": plots.save_png(
            plots.plot_confusion(np.array(results["confusion_matrix"]), results["class_names"]),
            out / "confusion.png",
        ),
    }
    if model.image_shape_ is not None:
        figures["centroids"] = draw_model(model, out / "centroids.png")
    report = {
        "dataset": results["dataset"],
        "n_test": results["n_images"],
        "n_classes": len(results["class_names"]),
        "image_shape": list(dataset.image_shape),
        "versions": library_versions(),
        "test": {"k": len(model.cluster_centers_), **results},
        "figures": {name: path.name for name, path in figures.items()},
    }
    written = dict(figures)
    written["results"] = out / "results.json"
    write_json(report, written["results"])
    written["report"] = write_report(report, figures, out / "report.html",
                                     title=f"Evaluation on {results['dataset']}")
    return written
