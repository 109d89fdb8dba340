"""The tutorial end to end: cluster over a K sweep, name clusters, score, first look, budgets.

Everything ``kmi run`` and ``kmi sweep`` compute lives here, callable from Python: :func:`run_sweep`
fits and scores one model per K, :func:`run_experiment` adds the tutorial's first look at K = number
of classes and the held-out test score; :func:`~kmeans_imagery.outputs.write_outputs` saves the
figures, ``results.json`` and ``report.html``.
"""

import copy
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from .display import figure_html, html_table, result_html, result_repr
from .engine import sharing
from .errors import KMIError, is_whole_number
from .labeling import (
    ClusterClassifier,
    central_samples,
    cluster_means,
    label_kind,
    name_from_examples,
)
from .metrics import clustering_scores, confusion, hungarian_accuracy, sweep_scores
from .predict import display_names
from .preprocessing import flatten_scale

__all__ = [
    "DEFAULT_KS",
    "Experiment",
    "Sweep",
    "init_stability",
    "label_budget_curve",
    "library_versions",
    "parse_ks",
    "run_experiment",
    "run_sweep",
]

DEFAULT_KS = (10, 16, 36, 64, 144, 256)
# The tutorial draws the centroids of a K=36 model as a 6x6 grid.
CENTROID_FIGURE_K = 36
# The sweep's columns a rich display shows (results.json keeps them all).
_SWEEP_COLUMNS = ("k", "inertia", "homogeneity", "accuracy", "test_accuracy", "fit_seconds")


def _sweep_table(rows):
    shown = [name for name in _SWEEP_COLUMNS if any(row.get(name) is not None for row in rows)]
    return html_table(rows, shown)


def _sweep_figures(rows):
    """Draw the inertia and score curves of a sweep: name -> callable returning the axes."""
    from . import plots

    ks = [row["k"] for row in rows]
    test_accuracy = [row.get("test_accuracy") for row in rows]
    return {
        "inertia": lambda: plots.plot_inertia(ks, [row["inertia"] for row in rows]),
        "scores": lambda: plots.plot_scores(
            ks, [row["homogeneity"] for row in rows], [row["accuracy"] for row in rows],
            test_accuracy=None if all(value is None for value in test_accuracy) else test_accuracy,
        ),
    }


def _thumbnails(drawers, names):
    return [figure_html(drawers[name](), alt=name) for name in names if name in drawers]


@dataclass(repr=False)
class Sweep:
    """One fitted classifier per K and its scores: what :func:`run_sweep` returns.

    In Jupyter it shows its K table and the inertia and score curves.

    Attributes
    ----------
    rows : list of dict
        One row per K, in the order fitted (see :func:`run_sweep`).
    models : dict of int to ClusterClassifier
        The fitted model for each K.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> sweep = run_sweep(X[:500] / 16, y[:500], [10, 20], random_state=0)
    >>> sweep  # doctest: +ELLIPSIS
    Sweep(ks=[10, 20], best_k=20, accuracy=0...)
    >>> sorted(sweep.models)
    [10, 20]
    """

    rows: list
    models: dict = field(default_factory=dict)

    def _best(self):
        """The row of highest test accuracy, or of training accuracy without a test set; None
        for a sweep of no K."""
        tested = all(row.get("test_accuracy") is not None for row in self.rows)
        key = "test_accuracy" if tested else "accuracy"
        return max(self.rows, key=lambda row: row[key], default=None), key

    def __repr__(self):
        best, key = self._best()
        fields = {"ks": [row["k"] for row in self.rows]}
        if best is not None:
            fields.update({"best_k": best["k"], key: best[key]})
        return result_repr("Sweep", fields)

    def _repr_html_(self):
        best, key = self._best()
        note = None if best is None else f"highest {key.replace('_', ' ')}: {best[key]:.4f} at K={best['k']}"
        return result_html("K sweep", _sweep_table(self.rows),
                           _thumbnails(_sweep_figures(self.rows), ("inertia", "scores")), note=note)


@dataclass(repr=False)
class Experiment:
    """What one run of the tutorial produced: what :func:`run_experiment` returns.

    In Jupyter it shows its K table, the inertia and score curves, the centroids and the test
    confusion matrix as thumbnails (:func:`~kmeans_imagery.outputs.write_outputs` saves them in
    full size).

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

    See Also
    --------
    run_experiment : Makes one.
    kmeans_imagery.outputs.write_outputs : Saves its figures, ``results.json`` and report.

    Examples
    --------
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import run_experiment
    >>> experiment = run_experiment(load_dataset("digits"), ks=(10, 36), algorithm="full",
    ...                             stability_seeds=0)
    >>> sorted(experiment.models)
    [10, 36]
    >>> experiment.results["test"]["k"], round(experiment.results["test"]["accuracy"], 2)
    (36, 0.89)
    >>> experiment.centroid_images.shape, experiment.sample_images.shape
    ((36, 64), (9, 8, 8))
    >>> experiment  # in Jupyter, the K table and the figures  # doctest: +ELLIPSIS
    Experiment(dataset='digits', n_train=1437, n_test=360, ks=[10, 36], test_k=36, test_accuracy=0.89...)
    """

    results: dict
    models: dict = field(default_factory=dict)
    sample_images: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    label_names: tuple | None = None
    centroid_images: np.ndarray | None = None
    centroid_labels: np.ndarray | None = None

    def __repr__(self):
        results = self.results
        return result_repr("Experiment", {
            "dataset": results["dataset"], "n_train": results["n_train"], "n_test": results["n_test"],
            "ks": [row["k"] for row in results["sweep"]], "test_k": results["test"]["k"],
            "test_accuracy": results["test"]["accuracy"],
        })

    def figure_drawers(self):
        """The run's figures, each drawn on demand: what ``write_outputs`` saves and Jupyter shows.

        Returns
        -------
        dict of str to callable
            ``samples``, ``inertia``, ``scores``, ``centroids``, ``confusion`` and
            ``label_budget``, those the run has, in that order; each call draws a new figure and
            returns its axes.

        Examples
        --------
        >>> from kmeans_imagery.datasets import load_dataset
        >>> experiment = run_experiment(load_dataset("digits"), ks=(10,), stability_seeds=0)
        >>> drawers = experiment.figure_drawers()
        >>> list(drawers)
        ['samples', 'inertia', 'scores', 'centroids', 'confusion']
        >>> drawers["inertia"]().get_xlabel()
        'number of clusters K'
        """
        from . import plots

        results = self.results
        drawers = {}
        if self.sample_images is not None:
            drawers["samples"] = lambda: plots.plot_samples(self.sample_images, self.sample_labels,
                                                            label_names=self.label_names)
        drawers.update(_sweep_figures(results["sweep"]))
        if self.centroid_images is not None:
            drawers["centroids"] = lambda: plots.plot_centroids(
                self.centroid_images, tuple(results["image_shape"]), self.centroid_labels,
                label_names=self.label_names)
        test = results.get("test")
        if test is not None:
            drawers["confusion"] = lambda: plots.plot_confusion(np.array(test["confusion_matrix"]),
                                                                test["class_names"])
        if results.get("label_budget"):
            budget = results["label_budget"]
            drawers["label_budget"] = lambda: plots.plot_label_budget(
                [row["labels"] for row in budget], [row["test_accuracy"] for row in budget])
        return drawers

    def _repr_html_(self):
        results = self.results
        test = results["test"]
        images = _thumbnails(self.figure_drawers(), ("inertia", "scores", "centroids", "confusion"))
        fitted_on = "the test images (transductive)" if results["transductive"] else "the training images"
        note = (f"{results['n_train']:,} training and {results['n_test']:,} test images, fitted on "
                f"{fitted_on}; test accuracy at K={test['k']}: {test['accuracy']:.4f}")
        return result_html(f"Experiment on {results['dataset']}", _sweep_table(results["sweep"]), images,
                           note=note)


def parse_ks(text):
    """Parse a comma-separated list of cluster counts such as ``"10,16,36"``.

    Parameters
    ----------
    text : str
        Positive integers separated by commas; spaces around them are ignored.

    Returns
    -------
    tuple of int
        The counts in the order given, each once.

    Raises
    ------
    KMIError
        When an item is not a positive integer or the list is empty.

    Examples
    --------
    >>> from kmeans_imagery.experiment import parse_ks
    >>> parse_ks("10, 16,36,16")
    (10, 16, 36)
    >>> parse_ks("10,abc")
    Traceback (most recent call last):
        ...
    kmeans_imagery.errors.KMIError: --ks: 'abc' is not a positive integer (in '10,abc')
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
    """Versions of Python and the libraries whose behaviour shapes the results.

    Returns
    -------
    dict of str to str
        Version of each of python, numpy, scipy, scikit-learn, matplotlib and kmeans-imagery,
        as recorded in ``results.json``.

    Examples
    --------
    >>> from kmeans_imagery.experiment import library_versions
    >>> sorted(library_versions())
    ['kmeans-imagery', 'matplotlib', 'numpy', 'python', 'scikit-learn', 'scipy']
    """
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


def _check_ks(ks, n_samples, name="ks"):
    bad = [k for k in ks if not is_whole_number(k) or k < 1]
    if bad:
        raise KMIError(f"{name}: {bad[0]!r} is not a positive integer")
    too_big = [k for k in ks if k > n_samples]
    if too_big:
        raise KMIError(
            f"{name}: K={too_big[0]} is larger than the {n_samples} images it would cluster; "
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
    X_test : ndarray of shape (n_test, n_features), optional
        Held-out rows; adds ``test_accuracy`` (and ``test_hungarian_accuracy`` where K equals
        the number of classes).
    y_test : ndarray of shape (n_test,), optional
        Their labels.
    algorithm : {"minibatch", "full"}, default="minibatch"
        See :class:`~kmeans_imagery.ClusterClassifier`.
    engine : str or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    random_state : int, default=0
        Seed of every fit.
    n_init : int or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    on_fitted : callable, optional
        Called with each finished row (a dict), e.g. to advance a progress bar.

    Returns
    -------
    Sweep
        ``rows``: one dict per K: k, inertia, homogeneity, completeness, v_measure, accuracy,
        test_accuracy, fit_seconds, and hungarian_accuracy / test_hungarian_accuracy where K = number
        of classes; ``models``: dict of int to ClusterClassifier, the fitted model of each K.

    Raises
    ------
    KMIError
        When a K is not a positive integer or exceeds the number of rows.

    Examples
    --------
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import run_sweep
    >>> from kmeans_imagery.preprocessing import flatten_scale
    >>> digits = load_dataset("digits")
    >>> X, X_test = flatten_scale(digits.train_images), flatten_scale(digits.test_images)
    >>> sweep = run_sweep(X, digits.train_labels, (10, 36), X_test=X_test,
    ...                   y_test=digits.test_labels, algorithm="full")
    >>> for row in sweep.rows:
    ...     print(row["k"], f"{row['accuracy']:.2f}", f"{row['test_accuracy']:.2f}")
    10 0.74 0.71
    36 0.92 0.89
    >>> sorted(sweep.models)
    [10, 36]
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
    return Sweep(rows, models)


def init_stability(X_fit, X_test, y_test, n_clusters, seeds, *, algorithm="minibatch",
                   engine=None, n_init=None, fitted=None):
    """How much the unsupervised choice among inits changes the clustering, seed by seed.

    For each seed, the engine runs ``n_init`` inits and keeps the one of lowest inertia (no labels
    involved); the labels of the test set only score the kept run.

    Parameters
    ----------
    X_fit : ndarray of shape (n_samples, n_features)
        Rows the models are fitted on, without labels.
    X_test : ndarray of shape (n_test, n_features)
        Held-out rows to score.
    y_test : ndarray of shape (n_test,)
        Their labels.
    n_clusters : int
        K of every fit.
    seeds : iterable of int
        One fit per seed.
    algorithm : {"minibatch", "full"}, default="minibatch"
        See :class:`~kmeans_imagery.ClusterClassifier`.
    engine : str or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    n_init : int or None, default=None
        Inits per seed, the one of lowest inertia kept.
    fitted : dict of int to ClusterClassifier, optional
        Models already fitted on ``X_fit`` with these settings, by seed, reused instead of
        refitting (cluster names play no part here).

    Returns
    -------
    list of dict
        One per seed: seed, inertia (of the kept run, on the fit rows) and
        test_hungarian_accuracy.

    Examples
    --------
    At K = 10 the seed alone moves the held-out accuracy of the digits by a few points:

    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import init_stability
    >>> from kmeans_imagery.preprocessing import flatten_scale
    >>> digits = load_dataset("digits")
    >>> X, X_test = flatten_scale(digits.train_images), flatten_scale(digits.test_images)
    >>> rows = init_stability(X, X_test, digits.test_labels, 10, seeds=[0, 1], algorithm="full")
    >>> for row in rows:
    ...     print(row["seed"], round(row["inertia"]), f"{row['test_hungarian_accuracy']:.2f}")
    0 3644 0.71
    1 3640 0.68
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
    X_fit : ndarray of shape (n_samples, n_features)
        Rows the models are fitted on, without labels.
    y_fit : ndarray of shape (n_samples,)
        Their labels; only those of the most central rows are read.
    X_test : ndarray of shape (n_test, n_features)
        Held-out rows to score.
    y_test : ndarray of shape (n_test,)
        Their labels.
    budgets : sequence of int
        Numbers of labels (= clusters) to try.
    algorithm : {"minibatch", "full"}, default="minibatch"
        See :class:`~kmeans_imagery.ClusterClassifier`.
    engine : str or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    random_state : int, default=0
        Seed of the fits not taken from ``models``.
    models : dict of int to ClusterClassifier, optional
        Already fitted models (same rows and seed) to reuse instead of refitting.
    on_fitted : callable, optional
        Called with each finished row (a dict).

    Returns
    -------
    list of dict
        One per budget: labels, test_accuracy.

    Examples
    --------
    30 labelled digits out of 1437 name 30 clusters well enough to classify most test digits:

    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import label_budget_curve
    >>> from kmeans_imagery.preprocessing import flatten_scale
    >>> digits = load_dataset("digits")
    >>> X, X_test = flatten_scale(digits.train_images), flatten_scale(digits.test_images)
    >>> rows = label_budget_curve(X, digits.train_labels, X_test, digits.test_labels, (10, 30),
    ...                           algorithm="full")
    >>> [(row["labels"], round(row["test_accuracy"], 2)) for row in rows]
    [(10, 0.71), (30, 0.89)]
    """
    _check_ks(budgets, len(X_fit), "budgets")
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
        Cluster counts of the sweep; the largest K is scored on the test set.
    algorithm : {"minibatch", "full"}, default="minibatch"
        See :class:`~kmeans_imagery.ClusterClassifier`.
    engine : str or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    random_state : int, default=0
        Seed of every fit (and of the held-out split, when one is made).
    transductive : bool, default=False
        Fit on the test images, as the tutorial did.
    features : str or None, default=None
        Feature pipeline spec or preset, fitted once on the fit images and applied to both splits.
    n_init : int or None, default=None
        See :class:`~kmeans_imagery.ClusterClassifier`.
    stability_seeds : int, default=5
        At K = number of classes, refit with this many seeds (each keeping its best of ``n_init``
        inits by inertia) and report how the test Hungarian accuracy varies; 0 skips it.
    label_budgets : sequence of int, default=()
        Label budgets to simulate (see :func:`label_budget_curve`).
    log : callable, optional
        Receives one human-readable line per step.
    on_fitted : callable, optional
        Receives each finished fit's row (sweep, stability and budget rows).

    Returns
    -------
    Experiment
        The results (``results.json``'s content), the fitted models and what the figures draw.

    Raises
    ------
    KMIError
        When the dataset has no labels, labels that mix strings and numbers or splits whose
        labels or image shapes differ in kind, ``ks`` is empty, or a K of ``ks`` or
        ``label_budgets`` is not a positive integer or exceeds the number of images it would
        cluster (all checked before any fit).

    See Also
    --------
    kmeans_imagery.outputs.write_outputs : Saves the figures, ``results.json`` and report.

    Examples
    --------
    ``kmi run digits`` from Python, with a shorter sweep:

    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import run_experiment
    >>> experiment = run_experiment(load_dataset("digits"), ks=(10, 36), algorithm="full",
    ...                             stability_seeds=0, label_budgets=(36,))
    >>> for row in experiment.results["sweep"]:
    ...     print(row["k"], f"{row['accuracy']:.2f}", f"{row['test_accuracy']:.2f}")
    10 0.74 0.71
    36 0.92 0.89
    >>> first = experiment.results["first_predictions"]  # K = 10, on the training images
    >>> for name in ("predicted", "true"):
    ...     print(first[name][:10])
    [3, 3, 8, 3, 8, 3, 4, 7, 2, 8]
    [3, 9, 1, 3, 1, 9, 4, 4, 2, 8]
    >>> experiment.results["label_budget"]  # doctest: +ELLIPSIS
    [{'labels': 36, 'test_accuracy': 0.8...}]
    """
    say = log if log is not None else (lambda line: None)
    if dataset.train_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels; the tutorial needs labelled images")
    train_kind = label_kind(dataset.train_labels, "train labels")
    if dataset.test_images is None:
        from .datasets import with_test_split

        dataset = with_test_split(dataset, seed=random_state)
        say(f"{dataset.name} has no test split: held out 20% of its images, stratified by label")
    if dataset.test_labels is None:
        raise KMIError(f"dataset {dataset.name!r} has no labels for its test split")
    if dataset.test_images.shape[1:] != dataset.train_images.shape[1:]:
        raise KMIError(f"test images of shape {dataset.test_images.shape[1:]} do not match the train "
                       f"images' {dataset.train_images.shape[1:]}")
    ks = tuple(ks)
    X_train = flatten_scale(dataset.train_images)
    X_test = flatten_scale(dataset.test_images)
    y_train, y_test = np.asarray(dataset.train_labels), np.asarray(dataset.test_labels)
    # Labels of two kinds never match: every test image would count as wrong.
    test_kind = label_kind(y_test, "test labels")
    if test_kind != train_kind:
        raise KMIError(f"test labels are {test_kind}s but train labels are {train_kind}s; give "
                       "both splits labels of one type")
    say(f"train images: {dataset.train_images.shape} -> rows {X_train.shape} {X_train.dtype}")
    say(f"test images:  {dataset.test_images.shape} -> rows {X_test.shape} {X_test.dtype}")
    pixels_fit, y_fit = (X_test, y_test) if transductive else (X_train, y_train)
    # Before any fit: a bad K found after the first models would waste their time.
    if not ks:
        raise KMIError("ks is empty: give at least one K")
    _check_ks(ks, len(pixels_fit))
    _check_ks(label_budgets, len(pixels_fit), "label_budgets")
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
        first_sweep = run_sweep(
            X_fit, y_fit, [n_classes], X_test=X_test, y_test=y_test, random_state=random_state,
            n_init=n_init, **common,
        )
        first = first_sweep.models[n_classes]
        first_predictions = {
            "predicted": _jsonable(first.cluster_labels_[first.labels_[:20]]),
            "true": _jsonable(y_fit[:20]),
        }
        say(f"K={n_classes}: first 20 predicted {first_predictions['predicted']}")
        say(f"K={n_classes}: first 20 true      {first_predictions['true']}")

        sweep = run_sweep(
            X_fit, y_fit, [k for k in ks if k != n_classes], X_test=X_test, y_test=y_test,
            random_state=random_state, on_fitted=on_fitted, **common,
        )
        rows, models = sweep.rows, sweep.models
        if n_classes in ks:
            rows.extend(first_sweep.rows)
            models.update(first_sweep.models)
            if on_fitted is not None:
                on_fitted(first_sweep.rows[0])
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
    # A class found only in the test split still gets its row (all wrong) in the confusion matrix.
    test_classes = np.unique(np.concatenate([classes, y_test]))
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
            "confusion_matrix": confusion(y_test, y_pred, test_classes).tolist(),
            "class_names": display_names(test_classes, dataset.label_names),
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


def _default_engine():
    from .engine import DEFAULT_ENGINE

    return DEFAULT_ENGINE


