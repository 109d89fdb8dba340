"""Rich displays of results (experiment, sweep, evaluation) and of fitted estimators in Jupyter."""

import dataclasses

import numpy as np
import pytest

from kmeans_imagery import ClusterClassifier, KMeans, MiniBatchKMeans
from kmeans_imagery.datasets import ArraySource, load_dataset
from kmeans_imagery.experiment import Experiment, Sweep, run_experiment, run_sweep
from kmeans_imagery.predict import Evaluation, evaluate

# A notebook should stay light: a result's inline figures are thumbnails, not full images.
MAX_HTML_BYTES = 100 * 1024
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _check_html(page, n_images):
    assert page.count("<table>") == 1
    assert page.count("<img") == n_images
    assert len(page.encode()) < MAX_HTML_BYTES


def test_experiment_displays_its_table_and_figures(digits):
    experiment = run_experiment(dataclasses.replace(digits, name=HOSTILE), ks=(10, 20), stability_seeds=0)
    assert isinstance(experiment, Experiment)
    page = experiment._repr_html_()
    _check_html(page, 4)  # inertia, scores, centroids, confusion
    assert "&lt;script&gt;" in page and HOSTILE not in page
    for row in experiment.results["sweep"]:
        assert f"<td>{row['k']}</td>" in page
    assert repr(experiment).startswith(
        f"Experiment(dataset={HOSTILE!r}, n_train=1437, n_test=360, ks=[10, 20], test_k=20")


def test_sweep_displays_its_table_and_curves(digits):
    X = digits.train_images.reshape(len(digits.train_images), -1) / 16
    sweep = run_sweep(X, digits.train_labels, [5, 15, 30], random_state=0)
    assert isinstance(sweep, Sweep)
    assert [row["k"] for row in sweep.rows] == sorted(sweep.models) == [5, 15, 30]
    page = sweep._repr_html_()
    _check_html(page, 2)
    # without a test set there is no test accuracy column, and the best K is by training accuracy
    assert "test_accuracy" not in page and "<th>fit_seconds</th>" in page
    best = max(sweep.rows, key=lambda row: row["accuracy"])
    assert repr(sweep) == f"Sweep(ks=[5, 15, 30], best_k={best['k']}, accuracy={best['accuracy']:.4g})"


def test_sweep_with_a_test_set_ranks_by_test_accuracy(digits):
    X = digits.train_images.reshape(len(digits.train_images), -1) / 16
    y = digits.train_labels
    sweep = run_sweep(X[:1000], y[:1000], [5, 30], X_test=X[1000:], y_test=y[1000:], random_state=0)
    assert "test_accuracy=" in repr(sweep) and "<th>test_accuracy</th>" in sweep._repr_html_()


def test_evaluation_displays_scores_and_confusion(digits):
    model = ClusterClassifier(n_clusters=20, random_state=0).fit(digits.train_images, digits.train_labels)
    source = ArraySource(digits.test_images, digits.test_labels, name=HOSTILE, split="test")
    evaluation = evaluate(model, source)
    assert isinstance(evaluation, Evaluation)
    page = evaluation._repr_html_()
    _check_html(page, 1)
    assert "&lt;script&gt;" in page and HOSTILE not in page
    assert "<th>hungarian_accuracy</th>" in page
    accuracy = evaluation.results["accuracy"]
    assert accuracy == pytest.approx(model.score(digits.test_images, digits.test_labels))
    assert repr(evaluation) == (f"Evaluation(dataset={HOSTILE!r}, split='test', n_images=360, "
                                f"accuracy={accuracy:.4g})")


@pytest.mark.parametrize("estimator", [KMeans(n_clusters=3, random_state=0),
                                       MiniBatchKMeans(n_clusters=3, random_state=0),
                                       ClusterClassifier(n_clusters=3, random_state=0)],
                         ids=lambda estimator: type(estimator).__name__)
def test_fitted_estimators_keep_scikit_learns_html(estimator):
    from sklearn.base import BaseEstimator

    X = np.random.default_rng(0).normal(size=(60, 4))
    fitted = estimator.fit(X, np.arange(60) % 2)
    # the display is scikit-learn's own (its interactive diagram), not one of ours
    assert type(fitted)._repr_html_ is BaseEstimator._repr_html_
    page = fitted._repr_html_()
    assert 'class="sk-top-container' in page and type(fitted).__name__ in page
    assert 'class="sk-estimator fitted' in page  # marked as fitted, with its parameters
    assert "kmi-result" not in page


def test_experiment_at_large_k_stays_light(digits):
    # one centroid per training image: the centroid figure is a thumbnail, not a 2,300 px montage
    experiment = run_experiment(digits, ks=(len(digits.train_images),), algorithm="full",
                                stability_seeds=0)
    _check_html(experiment._repr_html_(), 4)


def test_sweep_of_no_k_displays():
    sweep = Sweep([])
    assert repr(sweep) == "Sweep(ks=[])"
    assert sweep._repr_html_().count("<table>") == 1
