import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from kmeans_imagery import KMIError
from kmeans_imagery.labeling import ClusterClassifier, majority_vote, name_clusters


def test_majority_vote_counts_by_hand():
    clusters = np.array([0, 0, 1, 1, 1, 2])
    labels = np.array([1, 1, 0, 2, 2, 0])
    counts = majority_vote(clusters, labels, n_clusters=3, n_classes=3)
    np.testing.assert_array_equal(counts, [[0, 2, 0], [1, 0, 2], [1, 0, 0]])


def test_weighted_majority_names_a_cluster_after_the_heaviest_class():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (30, 2))]).astype(np.float32)
    y = np.array([0] * 20 + [1] * 10 + [2] * 30)  # cluster 0: 20 rows of class 0, 10 of class 1
    w = np.where(y == 1, 5.0, 1.0)  # ... but class 1 weighs 50 against 20
    counts = majority_vote(np.repeat([0, 1], 30), y, 2, 3, sample_weight=w)
    np.testing.assert_array_equal(counts, [[20, 50, 0], [0, 0, 30]])
    for algorithm in ("full", "minibatch"):
        plain = ClusterClassifier(2, algorithm=algorithm, random_state=0).fit(X, y)
        weighted = ClusterClassifier(2, algorithm=algorithm, random_state=0).fit(X, y, sample_weight=w)
        assert sorted(plain.cluster_labels_) == [0, 2]
        assert sorted(weighted.cluster_labels_) == [1, 2]
        # the weighted centroid of the first group leans towards the heavy rows
        first = weighted.cluster_centers_[np.argmin(weighted.cluster_centers_[:, 0])]
        np.testing.assert_allclose(first, np.average(X[:30], axis=0, weights=w[:30]), atol=1e-5)


def test_ties_go_to_the_smaller_label():
    counts = np.array([[0, 3, 3], [2, 2, 0]])
    centers = np.zeros((2, 1))
    np.testing.assert_array_equal(name_clusters(counts, centers), [1, 0])


def test_empty_cluster_takes_nearest_named_centroid():
    counts = np.array([[5, 0], [0, 4], [0, 0], [0, 0]])
    centers = np.array([[0.0], [10.0], [9.0], [1.0]])
    np.testing.assert_array_equal(name_clusters(counts, centers), [0, 1, 1, 0])


def test_no_votes_at_all_is_a_clear_error():
    with pytest.raises(KMIError, match="no cluster"):
        name_clusters(np.zeros((3, 2), dtype=int), np.zeros((3, 1)))


def test_classifier_on_digits_names_clusters_and_scores(digits_rows):
    X, y = digits_rows
    model = ClusterClassifier(n_clusters=64, algorithm="full", random_state=0).fit(X, y)
    assert model.cluster_centers_.shape == (64, 64)
    assert set(model.cluster_labels_) <= set(model.classes_)
    assert model.score(X, y) > 0.85
    np.testing.assert_array_equal(model.predict(X), model.cluster_labels_[model.labels_])


def test_classifier_keeps_string_labels(digits_rows):
    X, y = digits_rows
    names = np.array([f"digit-{v}" for v in y])
    model = ClusterClassifier(n_clusters=20, random_state=1).fit(X, names)
    assert model.predict(X[:5]).dtype.kind == "U"
    assert set(model.classes_) == set(names)


def test_classifier_takes_raw_images_and_checks_their_shape():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 4, 5), dtype=np.uint8)
    y = np.arange(60) % 3
    model = ClusterClassifier(n_clusters=6, random_state=0).fit(images, y)
    assert model.image_shape_ == (4, 5)
    np.testing.assert_array_equal(
        model.predict(images), model.predict(images.reshape(60, -1) / np.float32(255))
    )
    with pytest.raises(KMIError, match="5x4 do not match the model's 4x5"):
        model.predict(images.reshape(60, 5, 4))


def test_same_seed_same_model(digits_rows):
    X, y = digits_rows
    a = ClusterClassifier(n_clusters=16, random_state=3).fit(X, y)
    b = ClusterClassifier(n_clusters=16, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.cluster_labels_, b.cluster_labels_)


@parametrize_with_checks([ClusterClassifier(n_clusters=3, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_without_labels_each_cluster_is_its_own_class(digits_rows):
    X, _ = digits_rows
    model = ClusterClassifier(n_clusters=12, random_state=0).fit(X, None)
    np.testing.assert_array_equal(model.classes_, np.arange(12))
    np.testing.assert_array_equal(model.predict(X), model.predict_cluster(X))


def test_cluster_distances_agree_with_predict(digits_rows):
    X, y = digits_rows
    model = ClusterClassifier(n_clusters=12, random_state=0).fit(X, y)
    distances = model.cluster_distances(X[:50])
    assert distances.shape == (50, 12)
    np.testing.assert_array_equal(distances.argmin(axis=1), model.predict_cluster(X[:50]))


def _digit_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).astype(np.uint8), digits.target


def test_features_are_fitted_and_applied_to_new_images():
    from kmeans_imagery.labeling import cluster_means

    images, y = _digit_images()
    model = ClusterClassifier(n_clusters=30, features="deskew", random_state=0).fit(images, y)
    assert model.features_ is not None
    assert model.cluster_centers_.shape[1] == model.features_.n_features_out_
    assert model.cluster_images_.shape == (30, 64)
    np.testing.assert_allclose(
        model.cluster_images_, cluster_means(images.reshape(len(images), -1) / 255.0,
                                             model.labels_, 30), rtol=1e-5, atol=1e-6)
    assert model.score(images, y) > 0.85


def test_image_features_refuse_plain_rows(digits_rows):
    X, y = digits_rows
    with pytest.raises(KMIError, match="need images"):
        ClusterClassifier(n_clusters=5, features="hog").fit(X, y)


def test_cluster_means_by_hand():
    from kmeans_imagery.labeling import cluster_means

    rows = np.array([[0, 0], [2, 4], [10, 10]], dtype=np.float32)
    np.testing.assert_array_equal(cluster_means(rows, np.array([0, 0, 2]), 3),
                                  [[1, 2], [0, 0], [10, 10]])


def test_central_samples_are_nearest_members():
    from kmeans_imagery.labeling import central_samples

    X = np.array([[0.0], [0.4], [1.0], [10.0], [10.2], [11.0]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    model = ClusterClassifier(n_clusters=2, algorithm="full", random_state=0).fit(X, y)
    central = central_samples(model, X)
    assert sorted(central.tolist()) == [1, 4]


def test_name_from_examples_uses_only_the_given_labels(digits_rows):
    from kmeans_imagery.labeling import central_samples, name_from_examples

    X, y = digits_rows
    model = ClusterClassifier(n_clusters=40, algorithm="full", random_state=0).fit(X, None)
    central = central_samples(model, X)
    name_from_examples(model, central, y[central])
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.score(X, y) > 0.8
    with pytest.raises(KMIError, match="out of range"):
        name_from_examples(model, [len(X)], [1])
    with pytest.raises(KMIError, match="2 labels for 1 samples"):
        name_from_examples(model, [0], [1, 2])
    with pytest.raises(KMIError, match=r"whole numbers, got \[0.5\]"):
        name_from_examples(model, [0.5], [1])  # not the image at 0
    name_from_examples(model, np.array([0.0, 1.0]), y[:2])  # whole floats are indices


def test_float_images_in_0_255_are_scaled_like_uint8_images():
    # float images in 0..255 used to be taken as already in [0, 1]: 256 times too bright
    images, y = _digit_images()
    model = ClusterClassifier(n_clusters=10, random_state=0).fit(images, y)
    expected = model.predict(images)
    for same in (images.astype(np.float32), images / 255.0, images.astype(np.int64)):
        np.testing.assert_array_equal(model.predict(same), expected)
    # fitted on floats in 0..255, it predicts on raw uint8 images
    from_floats = ClusterClassifier(n_clusters=10, random_state=0).fit(images.astype(np.float64), y)
    np.testing.assert_allclose(from_floats.cluster_centers_, model.cluster_centers_, atol=1e-5)
    np.testing.assert_array_equal(from_floats.predict(images), expected)


@pytest.mark.parametrize("images, message", [
    (np.full((2, 8, 8), 300.0), r"float pixel values must lie in \[0, 1\] or \[0, 255\], found 300"),
    (np.full((2, 8, 8), -0.5), r"found -0.5\.\.-0.5"),
    (np.full((2, 8, 8), 256, np.int64), "integer pixel values must lie in 0..255"),
    (np.full((2, 8, 8), np.nan), "NaN or infinite"),
])
def test_images_out_of_range_are_refused(images, message):
    model = ClusterClassifier(n_clusters=2, random_state=0).fit(np.zeros((4, 8, 8), np.uint8), None)
    with pytest.raises(KMIError, match=message):
        model.predict(images)


def test_one_image_or_none_is_a_clear_error():
    images, y = _digit_images()
    model = ClusterClassifier(n_clusters=10, random_state=0).fit(images, y)
    with pytest.raises(KMIError, match=r"X is one image of shape 8x8; pass a stack .*X\[None\]"):
        model.predict(images[0])
    assert model.predict(images[0][None]).shape == (1,)
    with pytest.raises(ValueError, match="0 sample"):  # not a failed reshape
        model.predict(images[:0])


def test_labels_mixing_strings_and_numbers_are_refused():
    images, _ = _digit_images()
    y = np.array([1, "cat"] * 10, dtype=object)
    with pytest.raises(KMIError, match="y mixes numbers and strings"):
        ClusterClassifier(n_clusters=2, random_state=0).fit(images[:20], y)


def test_tied_majority_goes_to_the_first_class_whatever_the_order():
    X = np.array([[0.0], [0.1], [9.0], [9.1]])
    for order in ([0, 1, 2, 3], [1, 0, 3, 2]):
        model = ClusterClassifier(n_clusters=2, algorithm="full", random_state=0)
        model.fit(X[order], np.array(["b", "a", "b", "a"])[order])
        assert model.predict(X).tolist() == ["a", "a", "a", "a"]


def test_naming_from_clusters_refuses_unknown_clusters_and_mixed_labels():
    from kmeans_imagery.labeling import name_from_clusters

    X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, None)
    for clusters in ([0, 2], [0, -1]):
        with pytest.raises(KMIError, match=r"clusters: -?\d is not a cluster of the model's 2"):
            name_from_clusters(model, clusters, ["cat", "dog"])
    for labels in (np.array([1, "cat"], dtype=object), [None, "cat"]):
        with pytest.raises(KMIError, match="labels mixes"):
            name_from_clusters(model, [0, 1], labels)
    assert name_from_clusters(model, [0, 1], ["cat", "dog"]).cluster_labels_.tolist() == [
        "cat", "dog"]
