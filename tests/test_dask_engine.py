"""The Dask backend: same results as the in-memory engine, lazy predict, surviving lost workers."""

import os
import signal
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="the dask backend needs dask[array]")
distributed = pytest.importorskip("distributed", reason="the dask backend needs distributed")
pytest.importorskip("zarr", reason="the worker-loss test reads a Zarr store")

from kmeans_imagery.engine.dask_engine import fit_dask, predict_dask  # noqa: E402
from kmeans_imagery.engine.kmeans import KMeans  # noqa: E402
from kmeans_imagery.errors import KMIError  # noqa: E402
from kmeans_imagery.sources import ArraySource, convert_to_zarr  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    centers = rng.random((8, 12), dtype=np.float32)
    X = centers[rng.integers(0, 8, 3000)] + rng.normal(0, 0.05, (3000, 12)).astype(np.float32)
    # One start near each true cluster, so every correct Lloyd variant ends at the same optimum.
    return X, centers + rng.normal(0, 0.1, centers.shape).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    """A 2-worker cluster in this process, started and closed by this module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster, set_as_default=False) as c:
            yield c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_init_same_centroids_as_in_memory(rows, dtype):
    X, init = (a.astype(dtype) for a in rows)
    memory = KMeans(8, init=init, tol=0, max_iter=300).fit(X)
    centers, inertia, n_iter = fit_dask(da.from_array(X, chunks=700), 8, init=init, tol=0)
    assert centers.dtype == dtype
    np.testing.assert_allclose(centers, memory.cluster_centers_, atol=1e-5)
    assert inertia == pytest.approx(memory.inertia_, rel=1e-6)
    assert n_iter >= 1


@pytest.mark.parametrize("max_iter", [1, 2, 3, 5])
def test_each_pass_is_an_exact_lloyd_step(rows, max_iter):
    from sklearn.cluster import KMeans as SKLearnKMeans

    X = rows[0] + np.random.default_rng(1).normal(0, 0.2, rows[0].shape).astype(np.float32)
    init = rows[1]
    lloyd = SKLearnKMeans(8, init=init, n_init=1, tol=0, max_iter=max_iter,
                          algorithm="lloyd").fit(X)
    centers, _, n_iter = fit_dask(da.from_array(X, chunks=700), 8, init=init, tol=0,
                                  max_iter=max_iter)
    assert n_iter == max_iter
    np.testing.assert_allclose(centers, lloyd.cluster_centers_, atol=1e-5)


def test_distributed_equals_local_and_predict_is_lazy(rows, client):
    X, init = rows
    lazy_X = da.from_array(X, chunks=500)
    local = fit_dask(lazy_X, 8, init=init, tol=0)
    remote = fit_dask(lazy_X, 8, init=init, tol=0, client=client)
    np.testing.assert_allclose(remote[0], local[0], atol=1e-6)
    assert remote[1] == pytest.approx(local[1], rel=1e-9)
    labels = predict_dask(lazy_X, remote[0])
    assert isinstance(labels, da.Array) and labels.dtype == np.int32
    memory = KMeans(8, init=remote[0], max_iter=1).fit(X)
    np.testing.assert_array_equal(client.compute(labels).result(), memory.predict(X))


def test_kmeans_plus_plus_start_is_reproducible_and_good(rows, client):
    X, _ = rows
    big = np.concatenate([X] * 12)  # more rows than the sample, so the sample start is used
    lazy_X = da.from_array(big, chunks=4000)
    a = fit_dask(lazy_X, 8, random_state=5, client=client)
    b = fit_dask(lazy_X, 8, random_state=5, client=client)
    np.testing.assert_array_equal(a[0], b[0])
    memory = KMeans(8, random_state=0).fit(big)
    assert a[1] <= 1.001 * memory.inertia_


def test_uint8_images_equal_scaled_rows(rows):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (400, 4, 5), dtype=np.uint8)
    init = images[:5].reshape(5, -1).astype(np.float32) / 255
    from_images = fit_dask(da.from_array(images, chunks=(90, 4, 5)), 5, init=init, tol=0)
    scaled = images.reshape(400, -1).astype(np.float32) / 255
    from_rows = fit_dask(da.from_array(scaled, chunks=90), 5, init=init, tol=0)
    np.testing.assert_allclose(from_images[0], from_rows[0], atol=1e-6)


def test_empty_cluster_is_reseeded(rows):
    X, init = rows
    init = init.copy()
    init[3] = 100.0  # far from every row: empty after the first assignment
    centers, _, _ = fit_dask(da.from_array(X, chunks=700), 8, init=init, tol=0)
    assert np.abs(centers).max() < 10


def test_bad_input():
    with pytest.raises(KMIError, match="dask array"):
        fit_dask(np.zeros((10, 2)), 2)
    with pytest.raises(KMIError, match="n_samples=3 should be >= n_clusters=4"):
        fit_dask(da.zeros((3, 2), chunks=2), 4)
    with pytest.raises(KMIError, match="init has shape"):
        fit_dask(da.zeros((30, 2), chunks=10), 4, init=np.zeros((4, 3)))
    with pytest.raises(KMIError, match="init must be"):
        fit_dask(da.zeros((30, 2), chunks=10), 4, init="kmeans")
    with pytest.raises(KMIError, match="expected float rows"):
        fit_dask(da.zeros((30, 2), chunks=10, dtype=np.int32), 4)


def test_worker_killed_mid_fit_completes_or_fails_cleanly(tmp_path):
    """SIGKILL one of two worker processes during the fit: a correct fit or a KMIError, fast."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4000, 6, 6), dtype=np.uint8)
    store = convert_to_zarr(ArraySource(images), tmp_path / "x.zarr", chunk_size=400)
    init = images[:16].reshape(16, -1).astype(np.float32) / 255
    expected = fit_dask(store.to_dask(), 16, init=init, tol=0, max_iter=25)
    outcome = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            pids = list(client.run(os.getpid).values())

            def fit():
                try:
                    outcome["result"] = fit_dask(store.to_dask(), 16, init=init, tol=0,
                                                 max_iter=25, client=client, timeout=60)
                except KMIError as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=fit, daemon=True)
            thread.start()
            time.sleep(1.0)
            os.kill(pids[0], signal.SIGKILL)
            thread.join(timeout=180)
            assert not thread.is_alive(), "the fit hung after a worker was killed"
    if "error" in outcome:
        assert "no model was produced" in str(outcome["error"])
    else:
        centers, inertia, n_iter = outcome["result"]
        np.testing.assert_allclose(centers, expected[0], atol=1e-5)
        assert inertia == pytest.approx(expected[1], rel=1e-6)
        assert n_iter == expected[2]


def test_connect_to_a_missing_scheduler_is_a_kmi_error():
    from kmeans_imagery.engine.dask_engine import connect

    with pytest.raises(KMIError, match="cannot reach the dask scheduler"):
        with connect("tcp://127.0.0.1:1", timeout=2):
            pass


def test_kmeans_estimator_selects_dask_for_a_dask_array(rows):
    X, init = rows
    local = KMeans(n_clusters=8, init=init, random_state=0).fit(X)
    on_dask = KMeans(n_clusters=8, init=init, random_state=0).fit(da.from_array(X, chunks=700))
    assert isinstance(on_dask.labels_, da.Array)
    np.testing.assert_allclose(on_dask.cluster_centers_, local.cluster_centers_, atol=1e-5)
    np.testing.assert_array_equal(on_dask.labels_.compute(), local.labels_)
    assert isinstance(on_dask.predict(da.from_array(X, chunks=700)), da.Array)


def test_engine_dask_on_numpy_input_and_through_make_kmeans(rows):
    from kmeans_imagery.engine import make_kmeans

    X, init = rows
    forced = KMeans(n_clusters=8, init=init, engine="dask").fit(X)
    assert forced.inertia_ == pytest.approx(KMeans(n_clusters=8, init=init).fit(X).inertia_,
                                            rel=1e-5)
    model = make_kmeans(8, algorithm="full", engine="dask", random_state=0).fit(X)
    assert model.engine == "dask" and model.cluster_centers_.shape == (8, 12)
    with pytest.raises(KMIError, match="--algorithm full"):
        make_kmeans(8, algorithm="minibatch", engine="dask")
    with pytest.raises(KMIError, match="engine must be"):
        KMeans(n_clusters=2, engine="spark").fit(X)
