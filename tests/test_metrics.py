import warnings

import numpy as np
import pytest

from kmeans_imagery import KMIError
from kmeans_imagery.metrics import (
    clustering_scores,
    confusion,
    hungarian_accuracy,
    inertia,
    purity,
    sweep_scores,
)


def test_inertia_by_hand_and_in_float64():
    X = np.array([[0, 0], [2, 0], [10, 10]], dtype=np.float32)
    centers = np.array([[1, 0], [10, 9]], dtype=np.float32)
    assert inertia(X, centers, np.array([0, 0, 1]), chunk_size=2) == pytest.approx(3.0)
    big = np.full((3, 1), 1e4, dtype=np.float32)
    assert inertia(big, np.zeros((1, 1), np.float32), np.zeros(3, int)) == 3e8


def test_hungarian_accuracy_by_hand():
    # clusters 0,1,2 hold classes {a,a,b}, {b,b}, {c}: best matching 0->a, 1->b, 2->c gets 5 of 6
    y = np.array(["a", "a", "b", "b", "b", "c"])
    clusters = np.array([0, 0, 0, 1, 1, 2])
    assert hungarian_accuracy(y, clusters) == pytest.approx(5 / 6)


def test_hungarian_is_one_to_one_unlike_purity():
    # two clusters both mostly class 0: purity counts both, the matching only one
    y = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 1, 1, 1, 0])
    assert purity(y, clusters) == pytest.approx(4 / 6)
    assert hungarian_accuracy(y, clusters) == pytest.approx(3 / 6)


def test_clustering_scores_perfect_and_relabelled():
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = clustering_scores(y, np.array([2, 2, 0, 0, 1, 1]), y_pred=y)
    for name in ("homogeneity", "completeness", "v_measure", "nmi", "ari", "purity",
                 "hungarian_accuracy", "accuracy"):
        assert scores[name] == pytest.approx(1.0), name


def test_homogeneity_by_hand():
    # each cluster is pure but class 0 is split: homogeneity 1, completeness < 1
    y = np.array([0, 0, 1, 1])
    scores = clustering_scores(y, np.array([0, 1, 2, 2]))
    assert scores["homogeneity"] == pytest.approx(1.0)
    # H(K|C) = 0.5 * log 2, H(K) = 1.5 log 2 -> completeness = 1 - 1/3
    assert scores["completeness"] == pytest.approx(2 / 3)


def test_confusion_rows_true_columns_predicted():
    matrix = confusion(["a", "b", "b"], ["a", "a", "b"], classes=["a", "b"])
    np.testing.assert_array_equal(matrix, [[1, 0], [1, 1]])


def test_sweep_scores_are_the_subset_of_clustering_scores_a_sweep_reports():
    rng = np.random.default_rng(0)
    y, clusters = rng.integers(0, 4, 500), rng.integers(0, 7, 500)
    y_pred = rng.integers(0, 4, 500)
    full = clustering_scores(y, clusters, y_pred)
    light = sweep_scores(y, clusters, y_pred)
    assert set(light) == {"homogeneity", "completeness", "v_measure", "accuracy"}
    assert light == {name: full[name] for name in light}
    assert "accuracy" not in clustering_scores(y, clusters)


def test_labels_of_mixed_types_are_compared_by_equality():
    # an object array mixing ints and strings cannot be sorted; scores only need equality
    y = np.array([1, "a", "a", 2, 1], dtype=object)
    clusters = np.array([0, 1, 1, 0, 0])
    scores = clustering_scores(y, clusters, y)
    assert scores["purity"] == scores["hungarian_accuracy"] == pytest.approx(0.8)
    assert scores["accuracy"] == 1.0
    assert sweep_scores(y, clusters, y)["homogeneity"] == pytest.approx(scores["homogeneity"])
    assert confusion(y, y, np.array([1, 2, "a"], dtype=object)).tolist() == [
        [2, 0, 0], [0, 1, 0], [0, 0, 2]]
    # 1 and "1" are different labels
    assert sweep_scores([0, 1, 1], [0, 0, 0], ["0", "1", "1"])["accuracy"] == 0.0


def test_one_class_and_one_cluster():
    assert clustering_scores([7, 7, 7], [0, 0, 0], [7, 7, 7])["accuracy"] == 1.0
    scores = clustering_scores([0, 1, 2], [0, 0, 0], [0, 0, 0])
    assert scores["purity"] == scores["hungarian_accuracy"] == pytest.approx(1 / 3)


def test_confusion_of_one_class_without_warning():
    # scikit-learn warns about a single label even when all labels are passed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert confusion([3, 3], [3, 3], [3]).tolist() == [[2]]
    assert confusion([0, 5], [0, 0], [0, 1]).tolist() == [[1, 0], [0, 0]]  # 5 is not a class


@pytest.mark.parametrize("score", [
    lambda y, other: clustering_scores(y, other),
    lambda y, other: sweep_scores(y, other, other),
    hungarian_accuracy,
    purity,
    lambda y, other: confusion(y, other, [0, 1]),
])
def test_empty_or_unequal_labels_are_one_clear_error(score):
    with pytest.raises(KMIError, match="y_true is empty"):
        score([], [])
    with pytest.raises(KMIError, match="y_true has 2 labels"):
        score([0, 1], [0])
