"""Streaming fits, predictions and evaluation over chunked sources."""

import numpy as np
import pytest

from kmeans_imagery.datasets import write_idx
from kmeans_imagery.engine.kmeans import KMeans
from kmeans_imagery.errors import KMIError
from kmeans_imagery.preprocessing import flatten_scale
from kmeans_imagery.sources import ArraySource, open_source
from kmeans_imagery.streaming import (
    stream_evaluate,
    stream_fit,
    stream_fit_classifier,
    stream_predict,
)


@pytest.fixture(scope="module")
def blobs():
    """3000 8x8 images around 6 prototypes (labels 0..5), in a shuffled order."""
    rng = np.random.default_rng(1)
    prototypes = rng.integers(0, 256, (6, 8, 8))
    labels = rng.integers(0, 6, 3000)
    noise = rng.normal(0, 25, (3000, 8, 8))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def _inertia(images, centers):
    rows = flatten_scale(images).astype(np.float64)
    d = ((rows[:, None, :] - centers[None].astype(np.float64)) ** 2).sum(-1)
    return d.min(axis=1).sum()


def test_fit_names_clusters_and_reports_exact_inertia(blobs):
    images, labels = blobs
    model = stream_fit_classifier(ArraySource(images, labels), 6, random_state=0,
                                  read_size=500, batch_size=256)
    assert model.cluster_centers_.shape == (6, 64)
    assert model.image_shape_ == (8, 8) and model.n_features_in_ == 64
    assert model.inertia_ == pytest.approx(_inertia(images, model.cluster_centers_), rel=1e-5)
    assert (model.predict(images) == labels).mean() > 0.99
    assert sorted(model.cluster_labels_.tolist()) == list(range(6))
    assert not hasattr(model, "labels_")


def test_same_seed_same_model_and_sources_agree(tmp_path, blobs):
    images, labels = blobs
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    np.save(tmp_path / "x.npy", images)
    params = dict(random_state=3, read_size=700, batch_size=300, lloyd_passes=3)
    a = stream_fit(open_source(tmp_path / "x.npy"), 6, **params)
    b = stream_fit(open_source(tmp_path / "x.npy"), 6, **params)
    np.testing.assert_array_equal(a.cluster_centers, b.cluster_centers)
    gz = stream_fit(open_source(tmp_path / "x-idx3-ubyte.gz"), 6, **params)
    assert gz.inertia == pytest.approx(a.inertia, rel=1e-3)
    assert gz.classes is None and gz.votes is None


def test_lloyd_passes_reach_the_in_memory_fit(blobs):
    images, _ = blobs
    rng = np.random.default_rng(0)
    images = np.clip(images + rng.normal(0, 40, images.shape), 0, 255).astype(np.uint8)
    streamed = stream_fit(ArraySource(images), 20, minibatch_passes=1, lloyd_passes=30,
                          random_state=0, read_size=512, batch_size=256)
    memory = KMeans(20, random_state=0).fit(flatten_scale(images))
    assert streamed.inertia <= 1.01 * memory.inertia_
    history = streamed.inertia_history
    assert len(history) == streamed.n_lloyd_passes + 1
    assert all(b <= a * (1 + 1e-9) for a, b in zip(history, history[1:], strict=False))


def test_no_passes_still_gives_a_consistent_model(blobs):
    images, labels = blobs
    fit = stream_fit(ArraySource(images, labels), 6, minibatch_passes=0, lloyd_passes=0,
                     random_state=0)
    assert fit.n_lloyd_passes == 0 and fit.n_minibatch_steps == 0
    assert fit.votes.sum() == len(images)
    assert fit.inertia == pytest.approx(_inertia(images, fit.cluster_centers), rel=1e-5)


def test_string_labels_from_a_sorted_source(blobs):
    images, labels = blobs
    order = np.argsort(labels, kind="stable")  # class by class, as a folder of classes is
    names = np.array([f"c{label}" for label in labels[order]])
    model = stream_fit_classifier(ArraySource(images[order], names), 6, random_state=0,
                                  read_size=256, batch_size=128)
    assert model.classes_.tolist() == [f"c{i}" for i in range(6)]
    assert (model.predict(images[order]) == names).mean() > 0.99


def test_predict_and_evaluate_stream(blobs):
    images, labels = blobs
    model = stream_fit_classifier(ArraySource(images, labels), 6, random_state=0)
    test = ArraySource(images[:1000], labels[:1000])
    got = list(stream_predict(model, test, batch_size=300))
    assert [start for start, _, _ in got] == [0, 300, 600, 900]
    clusters = np.concatenate([c for _, c, _ in got])
    np.testing.assert_array_equal(clusters, model.predict_cluster(images[:1000]))
    results = stream_evaluate(model, test, batch_size=300)
    assert results["n_images"] == 1000
    assert results["accuracy"] == pytest.approx((model.predict(images[:1000]) ==
                                                 labels[:1000]).mean())
    assert np.asarray(results["confusion_matrix"]).sum() == 1000
    with pytest.raises(KMIError, match="no labels"):
        stream_evaluate(model, ArraySource(images[:10]))
    with pytest.raises(KMIError, match="expects 8x8"):
        list(stream_predict(model, ArraySource(np.zeros((4, 5, 5), np.uint8))))


def test_bad_parameters(blobs):
    images, _ = blobs
    with pytest.raises(KMIError, match="n_samples=10 should be >= n_clusters=20"):
        stream_fit(ArraySource(images[:10]), 20)
    with pytest.raises(KMIError, match="lloyd_passes"):
        stream_fit(ArraySource(images), 3, lloyd_passes=-1)
    with pytest.raises(KMIError, match="tol"):
        stream_fit(ArraySource(images), 3, tol=-1.0)


def test_fitted_classifier_saves_and_loads(tmp_path, blobs):
    from kmeans_imagery.model_io import load_model, save_model

    images, labels = blobs
    model = stream_fit_classifier(ArraySource(images, labels), 6, random_state=0)
    save_model(model, tmp_path / "m.kmi")
    loaded = load_model(tmp_path / "m.kmi")
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    assert loaded.inertia_ == pytest.approx(model.inertia_)


def test_dask_fit_classifier(blobs):
    pytest.importorskip("dask.array", reason="needs dask[array]")
    from kmeans_imagery.streaming import dask_fit_classifier

    images, labels = blobs
    model = dask_fit_classifier(ArraySource(images, labels), 6, chunk_size=700, random_state=0)
    assert (model.predict(images) == labels).mean() > 0.99
    assert model.image_shape_ == (8, 8)
