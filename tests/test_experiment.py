"""The tutorial pipeline as a library: sweeps, features, init stability, label budgets, label sheets."""

import dataclasses
import json
import warnings

import numpy as np
import pytest

from kmeans_imagery import KMIError
from kmeans_imagery.cli import main
from kmeans_imagery.datasets import load_dataset
from kmeans_imagery.experiment import label_budget_curve, parse_ks, run_experiment, run_sweep
from kmeans_imagery.model_io import load_model
from kmeans_imagery.outputs import write_outputs


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_parse_ks():
    assert parse_ks("10, 16,10,256") == (10, 16, 256)
    for junk in ("", "ten", "5,-1", "1.5"):
        with pytest.raises(KMIError):
            parse_ks(junk)


@pytest.mark.parametrize("options, message", [
    ({"ks": (10, 5000)}, "ks: K=5000 is larger than the 1437 images"),
    ({"ks": ()}, "ks is empty"),
    ({"ks": (10, 0)}, "ks: 0 is not a positive integer"),
    ({"ks": (10,), "label_budgets": (5000,)}, "label_budgets: K=5000 is larger"),
])
def test_bad_ks_are_refused_before_any_fit(digits, monkeypatch, options, message):
    # A K too large used to be found only after the first look at K = 10 had been fitted.
    monkeypatch.setattr("kmeans_imagery.experiment.run_sweep", None)
    with pytest.raises(KMIError, match=message):
        run_experiment(digits, stability_seeds=0, **options)


def test_experiment_with_features_budget_and_stability(digits, tmp_path):
    experiment = run_experiment(digits, ks=(10, 36), features="l2", n_init=2,
                                stability_seeds=3, label_budgets=(10, 36), random_state=0)
    results = experiment.results
    assert results["features"] == "deskew+l2"
    assert [row["seed"] for row in results["init_stability"]] == [0, 1, 2]
    assert all(0 < row["test_hungarian_accuracy"] <= 1 for row in results["init_stability"])
    assert [row["labels"] for row in results["label_budget"]] == [10, 36]
    # 36 labels (one per cluster) do better than 10
    assert results["label_budget"][1]["test_accuracy"] > results["label_budget"][0]["test_accuracy"]
    # centroid images are drawn in pixel space even though K-means ran on features
    assert experiment.centroid_images.shape == (36, 64)
    written = write_outputs(experiment, tmp_path)
    assert {"label_budget", "centroids", "report", "results"} <= set(written)


def test_label_budget_uses_only_one_label_per_cluster(digits):
    from kmeans_imagery.preprocessing import flatten_scale

    X, y = flatten_scale(digits.train_images), digits.train_labels
    Xt, yt = flatten_scale(digits.test_images), digits.test_labels
    seen = []

    class Spy(np.ndarray):
        def __getitem__(self, item):
            seen.append(np.atleast_1d(np.arange(len(self))[item]).size)
            return np.asarray(self)[item]

    rows = label_budget_curve(X, y.view(Spy), Xt, yt, [20], random_state=0)
    assert seen == [20]
    assert rows[0]["test_accuracy"] > 0.6


def test_fit_with_features_saves_them(tmp_path, capsys):
    assert main(["fit", "digits", "--k", "20", "--features", "hog", "--out",
                 str(tmp_path / "hog.kmi")]) == 0
    model = load_model(tmp_path / "hog.kmi")
    assert model.metadata_["features"]["spec"].startswith("deskew+hog")
    assert main(["show", str(tmp_path / "hog.kmi"), "--out", str(tmp_path / "c.png")]) == 0


def test_bad_feature_spec_is_a_user_error(capsys):
    assert main(["sweep", "--dataset", "digits", "--ks", "10", "--features", "sparkle"]) == 2
    assert "sparkle" in capsys.readouterr().err


def test_sweep_fits_share_one_preparation_of_wide_rows(monkeypatch):
    # Wide rows take the principal-subspace path: one estimate of the axes serves every K.
    from kmeans_imagery.engine import _prepared

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(256, 12)))[0]
    y = rng.integers(0, 4, 20000)
    X = (rng.normal(scale=2.0, size=(4, 12))[y] @ basis.T + 0.05 * rng.normal(size=(20000, 256)))
    X = X.astype(np.float32)
    calls = []
    original = _prepared.principal_axes
    monkeypatch.setattr(_prepared, "principal_axes", lambda *a: calls.append(1) or original(*a))
    rows = run_sweep(X, y, [4, 8, 64], random_state=0).rows
    assert len(calls) == 1
    assert [row["k"] for row in rows] == [4, 8, 64]
    assert rows[0]["accuracy"] > 0.99
    assert not getattr(_prepared._local, "registry", {})


def test_a_class_only_in_the_test_split_keeps_its_confusion_row(digits):
    # the matrix used to have the training classes only: the 3s of the test split were dropped
    keep = digits.train_labels != 3
    data = dataclasses.replace(digits, train_images=digits.train_images[keep],
                               train_labels=digits.train_labels[keep])
    test = run_experiment(data, ks=(9,), algorithm="full", stability_seeds=0).results["test"]
    assert test["class_names"] == [str(label) for label in range(10)]
    matrix = np.array(test["confusion_matrix"])
    assert matrix.sum() == len(digits.test_labels)
    threes = np.sum(digits.test_labels == 3)
    assert matrix[3].sum() == threes and matrix[:, 3].sum() == 0  # never predicted


def test_string_labels_and_one_class(digits):
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    data = dataclasses.replace(digits, train_labels=names[digits.train_labels],
                               test_labels=names[digits.test_labels])
    results = run_experiment(data, ks=(10,), algorithm="full", stability_seeds=0).results
    assert results["test"]["class_names"] == sorted(names)
    zeros, test_zeros = digits.train_labels == 0, digits.test_labels == 0
    one_class = dataclasses.replace(digits, train_images=digits.train_images[zeros],
                                    train_labels=digits.train_labels[zeros],
                                    test_images=digits.test_images[test_zeros],
                                    test_labels=digits.test_labels[test_zeros])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warned about the single label
        test = run_experiment(one_class, ks=(1, 3), algorithm="full", stability_seeds=0).results["test"]
    assert test["confusion_matrix"] == [[int(test_zeros.sum())]] and test["accuracy"] == 1.0


@pytest.mark.parametrize("change, message", [
    (lambda d: {"train_labels": np.array([1, "one"] * (len(d.train_labels) // 2) + [1], dtype=object)},
     "train labels mixes numbers and strings"),
    (lambda d: {"test_labels": d.test_labels.astype(str)},
     "test labels are strings but train labels are numbers"),
    (lambda d: {"test_images": d.test_images[:, :4]},
     r"test images of shape \(4, 8\) do not match the train images' \(8, 8\)"),
])
def test_splits_that_cannot_be_compared_are_refused_before_any_fit(digits, monkeypatch, change,
                                                                   message):
    monkeypatch.setattr("kmeans_imagery.experiment.run_sweep", None)
    with pytest.raises(KMIError, match=message):
        run_experiment(dataclasses.replace(digits, **change(digits)), ks=(10,), stability_seeds=0)


def test_rerun_into_a_folder_leaves_no_figure_of_the_earlier_run(digits, tmp_path):
    with_budget = run_experiment(digits, ks=(10,), algorithm="full", stability_seeds=0,
                                 label_budgets=(10,))
    assert "label_budget" in write_outputs(with_budget, tmp_path)
    without = run_experiment(digits, ks=(10,), algorithm="full", stability_seeds=0)
    written = write_outputs(without, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(p.name for p in written.values())
    assert "label_budget" not in json.loads((tmp_path / "results.json").read_text())["figures"]


def test_results_json_is_strict_json(digits, tmp_path):
    experiment = run_experiment(digits, ks=(10,), algorithm="full", stability_seeds=0)
    experiment.results["sweep"][0]["homogeneity"] = float("nan")
    experiment.results["n_classes"] = np.int64(10)
    write_outputs(experiment, tmp_path)
    text = (tmp_path / "results.json").read_text()
    results = json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert results["sweep"][0]["homogeneity"] is None and results["n_classes"] == 10
