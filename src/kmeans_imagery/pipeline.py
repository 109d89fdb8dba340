"""The tutorial end to end: preprocess, cluster over a K sweep, name clusters, score, draw, report.

Everything ``kmi run`` and ``kmi sweep`` do lives here, callable from Python: :func:`run_sweep` fits and
scores one model per K, :func:`run_experiment` adds the tutorial's first look at K = number of classes and
the held-out test score, and :func:`write_outputs` saves the figures, ``results.json`` and ``report.html``.
"""

import copy
import csv
import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .engine import sharing
from .errors import KMIError
from .labeling import (
    ClusterClassifier,
    central_samples,
    cluster_means,
    name_from_examples,
    nearest_assigned,
)
from .metrics import clustering_scores, confusion, hungarian_accuracy, sweep_scores
from .predict import display_names
from .preprocessing import flatten_scale

__all__ = [
    "DEFAULT_KS",
    "Experiment",
    "atomic_text_file",
    "draw_model",
    "evaluation_outputs",
    "fit_model",
    "init_stability",
    "label_budget_curve",
    "read_label_sheet",
    "write_label_sheet",
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
    centroid_images : ndarray of shape (k, n_pixels) or None
        Centres of the model drawn in the centroid figure (K nearest 36), in pixel space.
    centroid_labels : ndarray of shape (k,) or None
        Their inferred labels.
    """

    results: dict
    models: dict = field(default_factory=dict)
    sample_images: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    label_names: tuple | None = None
    centroid_images: np.ndarray | None = None
    centroid_labels: np.ndarray | None = None


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
    from importlib.metadata import version

    from . import __version__

    # From the installed metadata: importing matplotlib only to read its version costs 0.3 s.
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "scikit-learn": version("scikit-learn"),
        "matplotlib": version("matplotlib"),
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
    n_init=None,
    on_fitted=None,
):
    """Fit one classifier per K and score it on the fit set and, when given, the test set.

    Parameters
    ----------
    X_fit : ndarray of shape (n_samples, n_features)
        Rows the models are fitted on (pixels or features).
    y_fit : ndarray of shape (n_samples,)
        Their labels, used to name clusters and to score.
    ks : sequence of int
        Cluster counts.
    X_test, y_test : ndarray, optional
        Held-out rows and labels; adds ``test_accuracy`` (and ``test_hungarian_accuracy`` where K
        equals the number of classes).
    algorithm, engine, random_state, n_init
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
    with sharing(X_fit):  # the fits share the row norms and principal axes of X_fit
        for k in ks:
            model = ClusterClassifier(
                n_clusters=k, algorithm=algorithm, engine=engine, n_init=n_init,
                random_state=random_state,
            )
            started = time.perf_counter()
            model.fit(X_fit, y_fit)
            fit_seconds = time.perf_counter() - started
            scores = sweep_scores(y_fit, model.labels_, model.cluster_labels_[model.labels_])
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
                row["hungarian_accuracy"] = hungarian_accuracy(y_fit, model.labels_)
                if X_test is not None:
                    row["test_hungarian_accuracy"] = hungarian_accuracy(
                        y_test, model.predict_cluster(X_test)
                    )
            rows.append(row)
            models[k] = model
            if on_fitted is not None:
                on_fitted(row)
    return rows, models


def init_stability(X_fit, X_test, y_test, n_clusters, seeds, *, algorithm="minibatch",
                   engine=None, n_init=None, fitted=None):
    """How much the unsupervised choice among inits changes the clustering, seed by seed.

    For each seed, the engine runs ``n_init`` inits and keeps the one of lowest inertia (no labels
    involved); the labels of the test set only score the kept run.

    Parameters
    ----------
    fitted : dict of int to ClusterClassifier, optional
        Models already fitted on ``X_fit`` with these settings, by seed, reused instead of
        refitting (cluster names play no part here).

    Returns
    -------
    list of dict
        One per seed: seed, inertia (of the kept run, on the fit rows) and
        test_hungarian_accuracy.
    """
    rows = []
    with sharing(X_fit):
        for seed in seeds:
            model = (fitted or {}).get(seed) or ClusterClassifier(
                n_clusters=n_clusters, algorithm=algorithm, engine=engine, n_init=n_init,
                random_state=seed,
            ).fit(X_fit, None)
            rows.append({
                "seed": seed,
                "inertia": model.inertia_,
                "test_hungarian_accuracy": hungarian_accuracy(y_test, model.predict_cluster(X_test)),
            })
    return rows


def label_budget_curve(X_fit, y_fit, X_test, y_test, budgets, *, algorithm="minibatch",
                       engine=None, random_state=0, models=None, on_fitted=None):
    """Test accuracy when a person labels only one image per cluster, for several budgets.

    For a budget of B labels, K=B clusters are fitted without labels and each is named after the
    true label of its single most central training image (the labels act as the person, asked
    about those B images only).

    Parameters
    ----------
    X_fit, y_fit, X_test, y_test : ndarray
    budgets : sequence of int
    models : dict of int to ClusterClassifier, optional
        Already fitted models (same rows and seed) to reuse instead of refitting.

    Returns
    -------
    list of dict
        One per budget: labels, test_accuracy.
    """
    _check_ks(budgets, len(X_fit))
    rows = []
    with sharing(X_fit):
        for budget in budgets:
            model = (models or {}).get(budget)
            if model is None:
                model = ClusterClassifier(n_clusters=budget, algorithm=algorithm, engine=engine,
                                          random_state=random_state).fit(X_fit, None)
            # A shallow copy: naming replaces attributes, so the sweep's model keeps its own names.
            named = name_from_examples(copy.copy(model), *_central_labels(model, X_fit, y_fit))
            rows.append({"labels": budget, "test_accuracy": float(named.score(X_test, y_test))})
            if on_fitted is not None:
                on_fitted(rows[-1])
    return rows


def _central_labels(model, X_fit, y_fit):
    central = central_samples(model, X_fit)
    central = central[central >= 0]
    return central, y_fit[central]


def run_experiment(
    dataset,
    *,
    ks=DEFAULT_KS,
    algorithm="minibatch",
    engine=None,
    random_state=0,
    transductive=False,
    features=None,
    n_init=None,
    stability_seeds=5,
    label_budgets=(),
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
        Labelled. Without a test split, 20% of the images are held out (stratified) as one.
    ks : sequence of int, default=DEFAULT_KS
    algorithm, engine, random_state, n_init
        See :class:`~kmeans_imagery.ClusterClassifier`.
    transductive : bool, default=False
    features : str or None
        Feature pipeline spec or preset, fitted once on the fit images and applied to both splits.
    stability_seeds : int, default=5
        At K = number of classes, refit with this many seeds (each keeping its best of ``n_init``
        inits by inertia) and report how the test Hungarian accuracy varies; 0 skips it.
    label_budgets : sequence of int
        Label budgets to simulate (see :func:`label_budget_curve`).
    log : callable, optional
        Receives one human-readable line per step.
    on_fitted : callable, optional
        Receives each finished fit's row (sweep, stability and budget rows).

    Returns
    -------
    Experiment
    """
    say = log if log is not None else (lambda line: None)
    if dataset.train_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels; the tutorial needs labelled images")
    if dataset.test_images is None:
        from .datasets import with_test_split

        dataset = with_test_split(dataset, seed=random_state)
        say(f"{dataset.name} has no test split: held out 20% of its images, stratified by label")
    if dataset.test_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels for its test split")
    ks = tuple(ks)
    X_train = flatten_scale(dataset.train_images)
    X_test = flatten_scale(dataset.test_images)
    y_train, y_test = np.asarray(dataset.train_labels), np.asarray(dataset.test_labels)
    say(f"train images: {dataset.train_images.shape} -> rows {X_train.shape} {X_train.dtype}")
    say(f"test images:  {dataset.test_images.shape} -> rows {X_test.shape} {X_test.dtype}")
    pixels_fit, y_fit = (X_test, y_test) if transductive else (X_train, y_train)
    X_fit = pixels_fit
    feature_spec = "raw"
    if features not in (None, "raw"):
        from .features import make_features

        started = time.perf_counter()
        pipeline = make_features(features, dataset.image_shape, random_state)
        X_fit = pipeline.fit_transform(pixels_fit)
        X_test = pipeline.transform(X_test)
        feature_spec = pipeline.spec
        say(f"features {feature_spec}: rows {X_fit.shape} in {time.perf_counter() - started:.1f} s")
    classes = np.unique(y_fit)
    n_classes = len(classes)
    common = {"algorithm": algorithm, "engine": engine}

    # Every fit below shares the row norms and principal axes of X_fit.
    with sharing(X_fit):
        # The tutorial's first look: K = number of classes, predicted vs true labels of the fit set.
        first_rows, first_models = run_sweep(
            X_fit, y_fit, [n_classes], X_test=X_test, y_test=y_test, random_state=random_state,
            n_init=n_init, **common,
        )
        first = first_models[n_classes]
        first_predictions = {
            "predicted": _jsonable(first.cluster_labels_[first.labels_[:20]]),
            "true": _jsonable(y_fit[:20]),
        }
        say(f"K={n_classes}: first 20 predicted {first_predictions['predicted']}")
        say(f"K={n_classes}: first 20 true      {first_predictions['true']}")

        rows, models = run_sweep(
            X_fit, y_fit, [k for k in ks if k != n_classes], X_test=X_test, y_test=y_test,
            random_state=random_state, on_fitted=on_fitted, **common,
        )
        if n_classes in ks:
            rows.extend(first_rows)
            models.update(first_models)
            if on_fitted is not None:
                on_fitted(first_rows[0])
        rows.sort(key=lambda row: row["k"])

        stability = init_stability(
            X_fit, X_test, y_test, n_classes, range(random_state, random_state + stability_seeds),
            n_init=n_init, fitted={random_state: first}, **common,
        )
        if stability:
            spread = [row["test_hungarian_accuracy"] for row in stability]
            say(f"K={n_classes} over {len(spread)} seeds: test Hungarian accuracy "
                f"{min(spread):.3f}..{max(spread):.3f}")
        budget = label_budget_curve(
            X_fit, y_fit, X_test, y_test, label_budgets, random_state=random_state, models=models,
            on_fitted=on_fitted, **common,
        )

    best_k = max(ks)
    best = models[best_k]
    test_clusters = best.predict_cluster(X_test)
    y_pred = best.cluster_labels_[test_clusters]
    test_metrics = clustering_scores(y_test, test_clusters, y_pred)
    results = {
        "dataset": dataset.name,
        "source": str(getattr(dataset, "source", "")),
        "n_train": len(X_train),
        "n_test": len(y_test),
        "image_shape": list(dataset.image_shape),
        "n_classes": n_classes,
        "classes": _jsonable(classes),
        "label_names": list(dataset.label_names) if dataset.label_names else None,
        "algorithm": algorithm,
        "engine": engine or _default_engine(),
        "seed": random_state,
        "n_init": n_init,
        "transductive": transductive,
        "features": feature_spec,
        "versions": library_versions(),
        "first_predictions": first_predictions,
        "sweep": rows,
        "test": {
            "k": best_k,
            "accuracy": test_metrics["accuracy"],
            "metrics": test_metrics,
            "confusion_matrix": confusion(y_test, y_pred, classes).tolist(),
            "class_names": display_names(classes, dataset.label_names),
        },
        "init_stability": stability,
        "label_budget": budget,
    }
    centroid_k = min(models, key=lambda k: (abs(k - CENTROID_FIGURE_K), k))
    centroid_model = models[centroid_k]
    return Experiment(
        results=results,
        models=models,
        sample_images=dataset.train_images[:9],
        sample_labels=y_train[:9],
        label_names=dataset.label_names,
        centroid_images=(
            centroid_model.cluster_centers_ if feature_spec == "raw"
            else cluster_means(pixels_fit, centroid_model.labels_, centroid_k)
        ),
        centroid_labels=centroid_model.cluster_labels_,
    )


def fit_model(dataset, n_clusters, *, algorithm="minibatch", engine=None, random_state=0,
              features=None, n_init=None, examples=None):
    """Fit a classifier on a dataset's training images, as ``kmi fit`` does.

    Parameters
    ----------
    dataset : kmeans_imagery.datasets.Dataset
        Labelled or not; without labels each cluster is its own class.
    n_clusters : int
    algorithm, engine, random_state, features, n_init
        See :class:`~kmeans_imagery.ClusterClassifier`.
    examples : tuple of (indices, labels), optional
        Name the clusters from these labelled training images alone (e.g. a filled label sheet,
        see :func:`read_label_sheet`) instead of the dataset's labels; the dataset's labels, if
        any, then only score the result.

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
        n_clusters=n_clusters, algorithm=algorithm, engine=engine, random_state=random_state,
        features=features, n_init=n_init,
    )
    started = time.perf_counter()
    model.fit(images, labels if examples is None else None)
    if examples is not None:
        name_from_examples(model, *examples)
    metrics = {"inertia": model.inertia_, "fit_seconds": time.perf_counter() - started}
    if examples is not None:
        metrics["labels_used"] = len(examples[1])
    if labels is not None and np.asarray(labels).dtype.kind == np.asarray(model.classes_).dtype.kind:
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
        "labelled": labels is not None or examples is not None,
    }
    return model, metrics, training


def _default_engine():
    from .engine import DEFAULT_ENGINE

    return DEFAULT_ENGINE


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
    if experiment.centroid_images is not None:
        figures["centroids"] = plots.save_png(
            plots.plot_centroids(
                experiment.centroid_images,
                tuple(results["image_shape"]),
                experiment.centroid_labels,
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
    if results.get("label_budget"):
        figures["label_budget"] = plots.save_png(
            plots.plot_label_budget(
                [row["labels"] for row in results["label_budget"]],
                [row["test_accuracy"] for row in results["label_budget"]],
            ),
            out / "label_budget.png",
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


def _member_images(images, chosen, per_cluster):
    """Images of each cluster's chosen members, (n_clusters, per_cluster, H, W[, C]) in [0, 1].

    NaN (drawn blank) where a cluster has fewer members.
    """
    members = np.full((len(chosen), per_cluster, *images.shape[1:]), np.nan, dtype=np.float32)
    for cluster, indices in enumerate(chosen):
        members[cluster, : len(indices)] = images[indices] / np.float32(255)
    return members


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
    labels = np.array(
        display_names(model.cluster_labels_, getattr(model, "metadata_", {}).get("label_names"))
    )
    if dataset is None:
        ax = plots.plot_centroids(model.cluster_images_, tuple(model.image_shape_), labels)
    else:
        images = dataset.train_images
        if dataset.test_images is not None:
            images = np.concatenate([images, dataset.test_images])
        chosen, _, sizes = nearest_assigned(model, images, per_cluster)
        shown = np.sort(np.argsort(-sizes, kind="stable")[:max_clusters])
        ax = plots.plot_cluster_members(
            _centroid_images(model)[shown],
            _member_images(images, [chosen[c] for c in shown], per_cluster),
            labels[shown],
            cluster_ids=shown,
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


SHEET_COLUMNS = ("index", "cluster", "distance", "label")


def write_label_sheet(model, dataset, out_dir, *, per_cluster=5, clusters_per_page=32):
    """Export, for each cluster, the images nearest its centroid for a person to label.

    Writes ``labels.csv`` (index of the image in the dataset's training split, cluster, distance to
    the centroid, and an empty ``label`` column to fill in) and ``sheet-NNN.png`` contact sheets
    (one row per cluster: its centroid, then its images in the CSV's order). The filled CSV names
    the clusters of ``kmi fit ... --labels labels.csv``.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted, with an ``image_shape_``.
    dataset : kmeans_imagery.datasets.Dataset
        The images to choose from (training split), in the model's size and colour.
    out_dir : path-like
    per_cluster : int, default=5
    clusters_per_page : int, default=32

    Returns
    -------
    dict of str to Path
        ``"csv"`` and one entry per sheet page.
    """
    from . import plots

    out = prepare_out_dir(out_dir)
    images = dataset.train_images
    chosen, own, _ = nearest_assigned(model, images, per_cluster)
    k = len(chosen)
    written = {"csv": out / "labels.csv"}
    with atomic_text_file(written["csv"]) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SHEET_COLUMNS)
        for cluster, indices in enumerate(chosen):
            for index in indices:
                writer.writerow([int(index), cluster, f"{own[index]:.6g}", ""])
    members = _member_images(images, chosen, per_cluster)
    centres = _centroid_images(model)
    for page, first in enumerate(range(0, k, clusters_per_page), start=1):
        rows = slice(first, min(first + clusters_per_page, k))
        ax = plots.plot_cluster_members(centres[rows], members[rows],
                                        cluster_ids=np.arange(k)[rows])
        written[f"sheet-{page:03d}"] = plots.save_png(ax, out / f"sheet-{page:03d}.png")
    return written


def read_label_sheet(path, n_images):
    """Read a filled label sheet: the indices and labels of the rows whose label is filled in.

    Parameters
    ----------
    path : path-like
        CSV with at least the columns ``index`` and ``label`` (as written by
        :func:`write_label_sheet`).
    n_images : int
        Size of the training split the indices refer to.

    Returns
    -------
    indices : ndarray of int64
    labels : ndarray
        Integers when every filled label is an integer, else strings.

    Raises
    ------
    KMIError
        For a missing file or column, a bad or out-of-range index, or no filled label at all.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"index", "label"} <= set(reader.fieldnames):
                raise KMIError(f"{path} needs the columns 'index' and 'label'")
            filled = [(row["index"], row["label"].strip()) for row in reader
                      if (row.get("label") or "").strip()]
    except FileNotFoundError:
        raise KMIError(f"label file {path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise KMIError(f"{path} is not a readable CSV file ({error})") from None
    if not filled:
        raise KMIError(f"{path} has no filled-in label")
    indices = []
    for index, _ in filled:
        if not index.strip().isdigit() or int(index) >= n_images:
            raise KMIError(f"{path}: index {index!r} is not an image of the {n_images} training images")
        indices.append(int(index))
    labels = [label for _, label in filled]
    if all(label.lstrip("-").isdigit() for label in labels):
        return np.array(indices, dtype=np.int64), np.array(labels, dtype=np.int64)
    return np.array(indices, dtype=np.int64), np.array(labels)
