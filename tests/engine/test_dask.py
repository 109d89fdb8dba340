"""The Dask backend: the in-memory engine's results, whatever the workers; lazy predict; clear errors."""

import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

da = pytest.importorskip("dask.array", reason="the dask backend needs dask[array]")
distributed = pytest.importorskip("distributed", reason="the dask backend needs distributed")
pytest.importorskip("zarr", reason="the worker-loss test reads a Zarr store")

from kmeans_imagery.datasets import ArraySource, convert_to_zarr  # noqa: E402
from kmeans_imagery.engine import dask as dask_module  # noqa: E402
from kmeans_imagery.engine.dask import DaskKMeans, connect  # noqa: E402
from kmeans_imagery.engine.kmeans import KMeans  # noqa: E402
from kmeans_imagery.errors import KMIError  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    centers = rng.random((8, 12), dtype=np.float32)
    X = centers[rng.integers(0, 8, 3000)] + rng.normal(0, 0.05, (3000, 12)).astype(np.float32)
    # One start near each true cluster, so every correct Lloyd variant ends at the same optimum.
    return X, centers + rng.normal(0, 0.1, centers.shape).astype(np.float32)


@pytest.fixture(scope="module")
def wide():
    """Rows wide and many enough for the principal-subspace path (256 features, 16,384 rows)."""
    rng = np.random.default_rng(1)
    scales = np.linspace(2, 0.01, 256).astype(np.float32)
    X = rng.normal(size=(16384, 256)).astype(np.float32) * scales
    X += np.repeat(rng.normal(0, 3, (16, 256)).astype(np.float32) * scales, 1024, axis=0)
    return X


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
    model = DaskKMeans(8, init=init, tol=0).fit(da.from_array(X, chunks=700))
    assert model.cluster_centers_.dtype == dtype
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-5)
    assert model.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)


@pytest.mark.parametrize("tol", [1e-4, 0])
def test_same_strategy_as_in_memory_on_wide_rows(wide, tol, monkeypatch):
    """Same seed, same sample, subspace and stopping rule: the same clustering, with the subspace
    rows on the driver or kept on the workers."""
    memory = KMeans(16, random_state=3, tol=tol).fit(wide)
    X = da.from_array(wide, chunks=3000)
    on_driver = DaskKMeans(16, random_state=3, tol=tol).fit(X)
    monkeypatch.setattr(dask_module, "_DRIVER_BYTES", 0)
    on_workers = DaskKMeans(16, random_state=3, tol=tol).fit(X)
    for model in (on_driver, on_workers):
        np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-4)
        assert model.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)
        assert model.n_iter_ == memory.n_iter_


@pytest.mark.parametrize("driver_bytes", [dask_module._DRIVER_BYTES, 0])
def test_results_do_not_depend_on_the_workers(wide, client, driver_bytes, monkeypatch):
    monkeypatch.setattr(dask_module, "_DRIVER_BYTES", driver_bytes)
    X = da.from_array(wide, chunks=2000)
    threads = DaskKMeans(16, random_state=0).fit(X)
    remote = DaskKMeans(16, random_state=0, client=client).fit(X)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster, set_as_default=False) as one:
            single = DaskKMeans(16, random_state=0, client=one).fit(X)
    for model in (remote, single):
        np.testing.assert_array_equal(model.cluster_centers_, threads.cluster_centers_)
        assert model.inertia_ == threads.inertia_


def test_predict_transform_score_on_dask_arrays(rows, client):
    X, init = rows
    lazy_X = da.from_array(X, chunks=500)
    model = DaskKMeans(8, init=init, client=client).fit(lazy_X)
    memory = KMeans(8, init=model.cluster_centers_, max_iter=1).fit(X)
    labels = model.predict(lazy_X)
    assert isinstance(labels, da.Array) and labels.dtype == np.int32
    np.testing.assert_array_equal(client.compute(labels).result(), memory.predict(X))
    np.testing.assert_array_equal(client.compute(model.labels_).result(), memory.predict(X))
    distances = model.transform(lazy_X)
    assert isinstance(distances, da.Array)
    np.testing.assert_allclose(distances.compute(), memory.transform(X), rtol=1e-4, atol=1e-4)
    assert model.score(lazy_X) == pytest.approx(-model.inertia_, rel=1e-9)
    np.testing.assert_array_equal(model.predict(X), memory.predict(X))  # numpy in, numpy out


def test_kmeans_plus_plus_start_is_reproducible_and_good(rows, client):
    X, _ = rows
    big = np.concatenate([X] * 12)  # more rows than the seeding sample
    lazy_X = da.from_array(big, chunks=4000)
    a = DaskKMeans(8, random_state=5, client=client).fit(lazy_X)
    b = DaskKMeans(8, random_state=5, client=client).fit(lazy_X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ <= 1.001 * KMeans(8, random_state=0).fit(big).inertia_


def test_n_init_keeps_the_best_run_as_in_memory(wide):
    X = da.from_array(wide, chunks=4096)
    one = DaskKMeans(16, init="random", n_init=1, random_state=2).fit(X)
    three = DaskKMeans(16, init="random", n_init=3, random_state=2).fit(X)
    assert three.inertia_ <= one.inertia_
    memory = KMeans(16, init="random", n_init=3, random_state=2).fit(wide)
    assert three.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)


def test_sample_weights_equal_repeated_rows(rows):
    X, init = rows
    w = np.random.default_rng(4).integers(0, 3, len(X))
    weighted = DaskKMeans(8, init=init, tol=0).fit(da.from_array(X, chunks=700),
                                                   sample_weight=da.from_array(w, chunks=1000))
    repeated = DaskKMeans(8, init=init, tol=0).fit(da.from_array(np.repeat(X, w, axis=0), chunks=700))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, atol=1e-5)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-4)
    unweighted = DaskKMeans(8, init=init, tol=0).fit(da.from_array(X, chunks=700))
    assert not np.allclose(unweighted.cluster_centers_, weighted.cluster_centers_, atol=1e-5)
    assert weighted.score(X, sample_weight=w) == pytest.approx(-weighted.inertia_, rel=1e-4)


def test_uint8_images_equal_scaled_rows():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (400, 4, 5), dtype=np.uint8)
    init = images[:5].reshape(5, -1).astype(np.float32) / 255
    from_images = DaskKMeans(5, init=init, tol=0).fit(da.from_array(images, chunks=(90, 4, 5)))
    scaled = images.reshape(400, -1).astype(np.float32) / 255
    from_rows = DaskKMeans(5, init=init, tol=0).fit(da.from_array(scaled, chunks=90))
    np.testing.assert_allclose(from_images.cluster_centers_, from_rows.cluster_centers_, atol=1e-6)


def test_empty_cluster_is_reseeded(rows):
    X, init = rows
    init = init.copy()
    init[3] = 100.0  # far from every row: empty after the first assignment
    model = DaskKMeans(8, init=init, tol=0).fit(da.from_array(X, chunks=700))
    assert np.abs(model.cluster_centers_).max() < 10
    assert model.inertia_ == pytest.approx(KMeans(8, init=init, tol=0).fit(X).inertia_, rel=1e-3)


def test_bad_input():
    with pytest.raises(KMIError, match="n_samples=3 should be >= n_clusters=4"):
        DaskKMeans(4).fit(da.zeros((3, 2), chunks=2))
    with pytest.raises(KMIError, match="does not match the number of features of the data 2"):
        DaskKMeans(4, init=np.zeros((4, 3))).fit(da.zeros((30, 2), chunks=10))
    with pytest.raises(KMIError, match="'init' parameter of DaskKMeans must be"):
        DaskKMeans(4, init="kmeans").fit(da.zeros((30, 2), chunks=10))
    with pytest.raises(KMIError, match="expected rows"):
        DaskKMeans(4).fit(da.zeros((30, 2, 2), chunks=10, dtype=np.float32))
    with pytest.raises(KMIError, match="at least 1 feature"):
        DaskKMeans(1).fit(da.zeros((30, 0), chunks=10))
    with pytest.raises(KMIError, match="'timeout' parameter of DaskKMeans must be"):
        DaskKMeans(4, timeout=0).fit(da.zeros((30, 2), chunks=10))
    with pytest.raises(KMIError, match="client must be a distributed.Client"):
        DaskKMeans(4, client="tcp://scheduler:8786").fit(da.zeros((30, 2), chunks=10))
    with pytest.raises(KMIError, match="sample_weight has shape"):
        DaskKMeans(4).fit(da.zeros((30, 2), chunks=10), sample_weight=np.ones(29))
    with pytest.raises(KMIError, match="sample_weight must be"):
        DaskKMeans(4).fit(da.zeros((30, 2), chunks=10), sample_weight=-np.ones(30))


def _slow_rows(block):
    time.sleep(5)
    return block


def test_a_pass_past_the_timeout_is_a_kmi_error(rows, client):
    X, _ = rows
    slow = da.from_array(X, chunks=1000).map_blocks(_slow_rows, dtype=X.dtype)
    with pytest.raises(KMIError, match=r"did not finish .* within 0.5 s .* no model was produced"):
        DaskKMeans(8, client=client, timeout=0.5).fit(slow)


def test_worker_killed_mid_fit_completes_or_fails_cleanly(tmp_path):
    """SIGKILL one of two worker processes during the fit: a correct fit or a KMIError, fast."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4000, 6, 6), dtype=np.uint8)
    store = convert_to_zarr(ArraySource(images), tmp_path / "x.zarr", chunk_size=400)
    init = images[:16].reshape(16, -1).astype(np.float32) / 255
    params = dict(init=init, tol=0, max_iter=25)
    expected = DaskKMeans(16, **params).fit(store.to_dask())
    outcome = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            pids = list(client.run(os.getpid).values())

            def fit():
                try:
                    outcome["model"] = DaskKMeans(16, client=client, timeout=60, **params).fit(
                        store.to_dask())
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
        model = outcome["model"]
        np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, atol=1e-5)
        assert model.inertia_ == pytest.approx(expected.inertia_, rel=1e-6)
        assert model.n_iter_ == expected.n_iter_


def test_connect_to_a_missing_scheduler_is_a_kmi_error():
    with pytest.raises(KMIError, match="cannot reach the dask scheduler"):
        with connect("tcp://127.0.0.1:1", timeout=2):
            pass


@pytest.mark.parametrize("address", ["foo", "tcp://scheduler"])
def test_a_malformed_address_is_refused_at_once(address):
    started = time.perf_counter()
    with pytest.raises(KMIError, match="is not a dask scheduler address.*missing port"):
        with connect(address, timeout=30):
            pass
    assert time.perf_counter() - started < 10  # not the 30 s timeout, nor a hang after it


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


def test_public_kmeans_on_dask_names_its_output_features(rows):
    X, init = rows
    model = KMeans(8, init=init).fit(da.from_array(X, chunks=700))
    assert list(model.get_feature_names_out()) == [f"kmeans{i}" for i in range(8)]


@pytest.mark.parametrize("params", [
    {"n_clusters": 0}, {"n_clusters": 2.5}, {"max_iter": 0}, {"tol": -1.0}, {"tol": float("nan")},
    {"n_init": 0}, {"n_init": "x"}, {"init": "kmeans"}, {"verbose": -1}, {"random_state": "x"},
    {"init": np.zeros((3, 2))}, {"init": np.zeros((2, 3))}, {"init": np.zeros(2)},
    {"init": np.full((2, 2), np.nan)},
])
def test_bad_parameters_raise_what_kmeans_raises(params):
    """The same bad parameter, the same error (scikit-learn's, naming the estimator), in both."""
    X = np.random.default_rng(0).random((30, 2))
    params = {"n_clusters": 2, **params}
    with pytest.raises(ValueError) as memory:
        KMeans(**params).fit(X)
    with pytest.raises(type(memory.value)) as on_dask:
        DaskKMeans(**params).fit(da.from_array(X, chunks=10))
    assert str(on_dask.value) == str(memory.value).replace("of KMeans", "of DaskKMeans")
    with pytest.raises(type(memory.value), match=re.escape(str(memory.value))):
        KMeans(**params).fit(da.from_array(X, chunks=10))


@pytest.mark.parametrize("params", [{"timeout": -1}, {"timeout": "5"}, {"retries": -1},
                                    {"retries": 1.5}])
def test_bad_dask_parameters_are_scikit_learn_errors(params):
    with pytest.raises(InvalidParameterError, match=f"'{next(iter(params))}' parameter of DaskKMeans"):
        DaskKMeans(2, **params).fit(da.zeros((30, 2), chunks=10))


@pytest.mark.parametrize("chunks", [1, ((1, 2, 297, 100), (12,)), (64, 5), -1])
def test_chunking_does_not_change_the_fit(rows, chunks):
    """Chunks of one row, uneven chunks, chunks along the features, one chunk: the same fit."""
    X = rows[0][:400]
    expected = DaskKMeans(8, random_state=4).fit(da.from_array(X, chunks=100))
    model = DaskKMeans(8, random_state=4).fit(da.from_array(X, chunks=chunks))
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_, atol=1e-6)
    assert model.inertia_ == pytest.approx(expected.inertia_, rel=1e-6)
    np.testing.assert_array_equal(model.labels_.compute(), expected.labels_.compute())


def test_rows_far_from_the_origin_keep_their_labels():
    """float32 rows around 10,000 with unit spread: fitted less their mean, as in memory (the
    norm expansion alone got two thirds of the labels wrong)."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 2000)
    X = (10_000 + rng.normal(0, 2, (4, 4))[truth] + rng.normal(0, 1, (2000, 4))).astype(np.float32)
    memory = KMeans(4, random_state=0).fit(X)
    lazy = da.from_array(X, chunks=500)
    model = DaskKMeans(4, random_state=0).fit(lazy)
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, rtol=1e-6)
    assert model.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)
    exact = ((X[:, None].astype(np.float64) - model.cluster_centers_[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(model.labels_.compute(), exact)
    np.testing.assert_array_equal(model.predict(lazy).compute(), exact)
    np.testing.assert_allclose(model.transform(lazy).compute(), model.transform(X), atol=1e-3)
    assert model.score(lazy) == pytest.approx(-model.inertia_, rel=1e-6)
    init = memory.cluster_centers_.copy()
    started = DaskKMeans(4, init=init).fit(lazy)
    np.testing.assert_array_equal(init, memory.cluster_centers_)  # the init is not moved
    assert started.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)


def test_nan_in_a_chunk_is_a_clear_error(rows):
    X = rows[0].copy()
    X[1234, 5] = np.nan
    with pytest.raises(KMIError, match="Input X contains NaN"):
        DaskKMeans(8, random_state=0).fit(da.from_array(X, chunks=500))
    model = DaskKMeans(8, random_state=0).fit(da.from_array(rows[0], chunks=500))
    with pytest.raises(KMIError, match="Input X contains NaN"):
        model.predict(da.from_array(X, chunks=500)).compute()
    with pytest.raises(KMIError, match="Input X contains NaN"):
        model.score(da.from_array(X, chunks=500))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16])
def test_other_rows_become_float64_as_in_memory(rows, dtype):
    X = (rows[0] * 100).astype(dtype)
    memory = KMeans(8, random_state=0).fit(X)
    model = KMeans(8, random_state=0).fit(da.from_array(X, chunks=500))
    assert model.cluster_centers_.dtype == memory.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(model.predict(da.from_array(X, chunks=500)).compute(),
                                  memory.labels_)


def test_a_number_as_sample_weight_weighs_every_row(rows):
    X, init = rows
    lazy = da.from_array(X, chunks=700)
    memory = KMeans(8, init=init).fit(X, sample_weight=2.0)
    model = DaskKMeans(8, init=init).fit(lazy, sample_weight=2.0)
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-6)
    assert model.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)
    assert model.score(lazy, sample_weight=3.0) == pytest.approx(-1.5 * model.inertia_, rel=1e-6)
    with pytest.raises(KMIError, match="sample_weight must be"):
        DaskKMeans(8, init=init).fit(lazy, sample_weight=0.0)


def _scikit_learn_init(X, n_clusters, random_state):
    return X[random_state.choice(len(X), n_clusters, replace=False)]


def test_callable_init_as_in_memory(rows, wide):
    """scikit-learn's signature (a RandomState), and the rows KMeans gives it, in full space and
    in the principal subspace."""
    X = rows[0]
    memory = KMeans(8, init=_scikit_learn_init, n_init=1, random_state=1).fit(X)
    model = DaskKMeans(8, init=_scikit_learn_init, n_init=1, random_state=1).fit(
        da.from_array(X, chunks=700))
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-5)
    memory = KMeans(16, init=_scikit_learn_init, n_init=1, random_state=1).fit(wide)
    model = DaskKMeans(16, init=_scikit_learn_init, n_init=1, random_state=1).fit(
        da.from_array(wide, chunks=4096))
    np.testing.assert_allclose(model.cluster_centers_, memory.cluster_centers_, atol=1e-4)
    assert model.inertia_ == pytest.approx(memory.inertia_, rel=1e-6)


def test_fitted_names_and_the_duplicate_rows_warning_as_in_memory():
    X = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"clusters \(3\) found smaller than n_clusters \(4\)"):
        model = DaskKMeans(4, random_state=0).fit(da.from_array(X, chunks=7))
    assert list(model.get_feature_names_out()) == [f"daskkmeans{i}" for i in range(4)]


@pytest.mark.parametrize("as_dask", [False, True])
def test_sample_weights_on_a_distributed_client(rows, client, as_dask):
    """The weights' chunks stay on the cluster for every pass (they were lost after the first)."""
    X, init = rows
    w = np.random.default_rng(4).integers(0, 3, len(X)).astype(np.float64)
    weights = da.from_array(w, chunks=1000) if as_dask else w
    lazy = da.from_array(X, chunks=700)
    remote = DaskKMeans(8, init=init, tol=0, client=client).fit(lazy, sample_weight=weights)
    local = DaskKMeans(8, init=init, tol=0).fit(lazy, sample_weight=w)
    np.testing.assert_array_equal(remote.cluster_centers_, local.cluster_centers_)
    assert remote.inertia_ == local.inertia_
    assert remote.score(lazy, sample_weight=weights) == pytest.approx(-remote.inertia_, rel=1e-6)
