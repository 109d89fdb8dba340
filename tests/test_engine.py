"""Tests of make_kmeans and the project's own K-means estimators (correctness, not speed)."""

import numpy as np
import pytest
from sklearn import cluster as skcluster
from sklearn.metrics import euclidean_distances
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from engine_data import low_rank_blobs
from kmeans_imagery import KMeans, KMIError, MiniBatchKMeans
from kmeans_imagery.engine import DEFAULT_ENGINE, ENGINES, _kernels, make_kmeans
from kmeans_imagery.engine import kmeans as kmeans_module
from kmeans_imagery.engine._kernels import Workers, block_rows, row_sq_norms
from kmeans_imagery.engine._lloyd import dense_lloyd, lloyd
from kmeans_imagery.engine._prepared import prepared


def _blobs(n=600, k=5, d=8, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(k, d))
    X = means[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return X.astype(dtype)


#: As scikit-learn declares for its own KMeans and MiniBatchKMeans: the random draws of the
#: seeding see a row of weight 2 once, its repeat twice.
_WEIGHT_XFAIL = "sample_weight is not equivalent to removing/repeating samples."


@parametrize_with_checks(
    [KMeans(n_clusters=3, random_state=0), MiniBatchKMeans(n_clusters=3, random_state=0)],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHT_XFAIL,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHT_XFAIL,
    },
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_make_kmeans_default_engine_is_ours():
    assert DEFAULT_ENGINE == "kmi"
    assert isinstance(make_kmeans(4, algorithm="full", random_state=0), KMeans)
    assert isinstance(make_kmeans(4, random_state=0, batch_size=256), MiniBatchKMeans)
    sk = make_kmeans(4, algorithm="full", engine="sklearn", random_state=0)
    assert isinstance(sk, skcluster.KMeans)
    assert set(ENGINES) >= {"kmi", "sklearn"}


def _one_row_per_blob(X, k):
    """Rows of X, one from each of the k blobs of :func:`_blobs` (the first of each label)."""
    labels = skcluster.KMeans(k, n_init=3, random_state=0).fit(X).labels_
    return X[[np.flatnonzero(labels == j)[0] for j in range(k)]].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_init_same_centroids_as_sklearn(dtype):
    X = _blobs(dtype=dtype)
    init = _one_row_per_blob(X, 5)
    ours = KMeans(5, init=init, n_init=1, tol=0).fit(X)
    ref = skcluster.KMeans(5, init=init, n_init=1, tol=0, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    assert ours.cluster_centers_.dtype == dtype


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_lloyd_steps_match_sklearn_iteration_by_iteration(seed):
    # With relax=1 the bounded, incrementally updated iterations are Lloyd's own: any init,
    # even one that lands in a poor local minimum, gives scikit-learn's centroids.
    X = _blobs(n=5000, k=6, d=5, seed=seed)
    init = X[:6].copy()
    for max_iter in (1, 3, 50):
        with Workers(1) as workers:
            ours, _ = lloyd(workers, X, row_sq_norms(X), init, max_iter=max_iter, tol=0, relax=1.0)
        ref = skcluster.KMeans(6, init=init, n_init=1, tol=0, max_iter=max_iter).fit(X)
        np.testing.assert_allclose(ours, ref.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of the least size (2048 rows) whatever the width, so that small data spans several."""
    monkeypatch.setattr(_kernels, "BLOCK_ELEMENTS", 1)
    assert block_rows(16, 20) == _kernels.CHUNK


def test_blocks_grow_for_narrow_rows_only():
    assert block_rows(784, 256) == _kernels.CHUNK
    assert block_rows(64, 256) == _kernels.BLOCK_ELEMENTS // 256
    assert block_rows(32, 10) == _kernels.BLOCK_ELEMENTS // 32


def test_inertia_is_exact_and_labels_match_predict(small_blocks):
    X = _blobs(n=9000, k=12, d=20)  # more rows than one block, so several blocks run
    est = KMeans(12, random_state=1).fit(X)
    np.testing.assert_array_equal(est.labels_, est.predict(X))
    X64 = X.astype(np.float64)
    C = est.cluster_centers_.astype(np.float64)
    d2 = ((X64[:, None, :] - C[None]) ** 2).sum(-1)
    assert est.inertia_ == pytest.approx(d2.min(axis=1).sum(), rel=1e-6)
    assert est.score(X) == pytest.approx(-est.inertia_, rel=1e-6)
    np.testing.assert_allclose(est.transform(X[:50]), np.sqrt(d2[:50]), rtol=1e-3, atol=1e-3)


def test_quality_close_to_sklearn_lloyd(digits_rows):
    X, _ = digits_rows
    # Local minima differ from seed to seed: compare medians over several seeds.
    ours = [KMeans(10, random_state=s).fit(X).inertia_ for s in range(8)]
    ref = [skcluster.KMeans(10, n_init=1, random_state=s).fit(X).inertia_ for s in range(8)]
    assert np.median(ours) <= 1.01 * np.median(ref)


def test_minibatch_quality_close_to_sklearn(digits_rows):
    X, _ = digits_rows
    ours = [MiniBatchKMeans(10, random_state=s).fit(X).inertia_ for s in range(8)]
    ref = [skcluster.MiniBatchKMeans(10, random_state=s).fit(X).inertia_ for s in range(8)]
    assert np.median(ours) <= 1.03 * np.median(ref)


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_empty_clusters_are_reseeded(Est):
    X = _blobs(n=300, k=3)
    init = np.repeat(X[:1], 4, axis=0)  # four identical centroids: three start empty
    est = Est(4, init=init).fit(X)
    assert len(np.unique(est.labels_)) == 4
    assert not (est.cluster_centers_ == 0).all(axis=1).any()


def test_empty_cluster_relocation_matches_sklearn():
    X = _blobs(n=300, k=3, d=4)
    init = np.vstack([X[:2], X[:1]])  # the third centroid duplicates the first: empty at once
    ours = KMeans(3, init=init, tol=0).fit(X)
    ref = skcluster.KMeans(3, init=init, n_init=1, tol=0).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_duplicate_points_and_k_equals_n(Est):
    X = np.array([[0, 0], [0, 0], [1, 1], [1, 1], [5, 5]], dtype=np.float32)
    est = Est(3, random_state=0).fit(X)
    assert est.inertia_ == pytest.approx(0.0, abs=1e-6)
    assert len(np.unique(est.labels_)) == 3
    est = Est(5, random_state=0).fit(X)  # K = n with duplicates: no NaN, no zero centroids
    assert np.isfinite(est.cluster_centers_).all()
    assert est.inertia_ == pytest.approx(0.0, abs=1e-6)
    Y = np.arange(8, dtype=np.float32).reshape(4, 2)
    est = Est(4, random_state=0).fit(Y)
    assert len(np.unique(est.labels_)) == 4


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_more_clusters_than_rows_is_a_clear_error(Est):
    with pytest.raises(KMIError, match="n_samples=2 should be >= n_clusters=3"):
        Est(3).fit(np.zeros((2, 4)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"n_init": 0}, "n_init"),
        ({"init": "bogus"}, "init"),
        ({"init": np.zeros((2, 3))}, "shape of the initial centers"),
    ],
)
def test_bad_parameters(params, match):
    params = {"n_clusters": 3, **params}
    with pytest.raises(KMIError, match=match):
        KMeans(**params).fit(np.ones((10, 4)))


def test_float64_stays_float64_and_int_becomes_float64():
    X = _blobs(dtype=np.float64)
    assert KMeans(3, random_state=0).fit(X).cluster_centers_.dtype == np.float64
    Xi = np.rint(X * 10).astype(np.int64)
    est = MiniBatchKMeans(3, random_state=0).fit(Xi)
    assert est.cluster_centers_.dtype == np.float64
    assert est.transform(Xi).dtype == np.float64


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_deterministic_whatever_the_thread_count(Est, small_blocks):
    X = _blobs(n=10000, k=20, d=16)  # several blocks, so the pool really runs them
    params = {"random_state": 3, "batch_size": 512} if Est is MiniBatchKMeans else {"random_state": 3}
    with threadpool_limits(1):
        one = Est(20, **params).fit(X)
    with threadpool_limits(2):
        two = Est(20, **params).fit(X)
    np.testing.assert_array_equal(one.cluster_centers_, two.cluster_centers_)
    np.testing.assert_array_equal(one.labels_, two.labels_)
    assert one.inertia_ == two.inertia_
    again = Est(20, **params).fit(X)
    np.testing.assert_array_equal(again.cluster_centers_, two.cluster_centers_)


def test_n_init_keeps_the_best_run():
    X = _blobs(n=800, k=8)
    runs = [KMeans(8, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(4)]
    best = KMeans(8, init="random", n_init=4, random_state=0).fit(X).inertia_
    assert best <= max(runs)


def test_callable_init():
    X = _blobs()

    def first_rows(X, n_clusters, random_state):
        assert isinstance(random_state, np.random.RandomState)  # as scikit-learn calls it
        return X[:n_clusters]

    est = KMeans(5, init=first_rows, tol=0).fit(X)
    ref = KMeans(5, init=X[:5].copy(), tol=0).fit(X)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)


def test_partial_fit_runs_steps_and_keeps_dtype():
    X = _blobs(n=2000, k=4)
    est = MiniBatchKMeans(4, random_state=0)
    for batch in np.array_split(X, 10):
        est.partial_fit(batch)
    assert est.n_steps_ == 10
    assert est.cluster_centers_.dtype == np.float32
    full = MiniBatchKMeans(4, random_state=0).fit(X)
    assert est.score(X) >= 1.1 * full.score(X)  # scores are negative: within 10%


@pytest.mark.mnist
def test_mnist_k64_full_and_minibatch(mnist_dir):
    import gzip

    with gzip.open(mnist_dir / "train-images-idx3-ubyte.gz", "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    X = (raw.reshape(-1, 784)[:20000] / np.float32(255)).astype(np.float32)
    ours = KMeans(64, random_state=0).fit(X)
    ref = skcluster.KMeans(64, n_init=1, random_state=0).fit(X)
    assert ours.inertia_ <= 1.002 * ref.inertia_
    mb = MiniBatchKMeans(64, random_state=0).fit(X)
    ref_mb = skcluster.MiniBatchKMeans(64, random_state=0).fit(X)
    assert mb.inertia_ <= 1.01 * ref_mb.inertia_


def test_principal_subspace_path_is_exact_and_deterministic(monkeypatch):
    # Wide rows: seeding and the iterations run on the top principal axes.
    X = low_rank_blobs(n=16384, k=150, d=256, rank=24, seed=4)
    assert kmeans_module._use_subspace(*X.shape, 128)
    taken = []
    subspace_fit = KMeans._subspace_fit

    def spy(self, *args):
        found = subspace_fit(self, *args)
        taken.append(found is not None)
        return found

    with threadpool_limits(1):
        one = KMeans(128, random_state=0).fit(X)
    with threadpool_limits(2):
        two = KMeans(128, random_state=0).fit(X)
    np.testing.assert_array_equal(one.cluster_centers_, two.cluster_centers_)
    assert one.inertia_ == two.inertia_
    assert one.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(two.labels_, two.predict(X))
    X64, C = X.astype(np.float64), two.cluster_centers_.astype(np.float64)
    d2 = (X64**2).sum(1)[:, None] - 2 * X64 @ C.T + (C**2).sum(1)
    assert two.inertia_ == pytest.approx(d2.min(axis=1).sum(), rel=1e-6)
    assert np.bincount(two.labels_, minlength=128).all()
    monkeypatch.setattr(KMeans, "_subspace_fit", spy)
    KMeans(128, random_state=0).fit(X)
    assert taken == [True]
    monkeypatch.setattr(kmeans_module, "_use_subspace", lambda *shape: False)
    exact = KMeans(128, random_state=0).fit(X)
    assert two.inertia_ <= 1.01 * exact.inertia_


def test_subspace_search_keeps_the_start_with_the_lowest_sample_inertia(monkeypatch):
    # Few clusters: several seedings converge on a sample of the projected rows, the best one
    # goes on over all rows.
    X = low_rank_blobs(n=40000, k=6, d=256, rank=12, seed=1)
    n_starts = kmeans_module._n_starts(5)
    assert n_starts > 1
    runs = []

    def spy(workers, Z, z_sq, centers, **kw):
        found = dense_lloyd(workers, Z, z_sq, centers, **kw)
        runs.append((Z.shape[0], centers.copy(), found))
        return found

    monkeypatch.setattr(kmeans_module, "dense_lloyd", spy)
    est = KMeans(5, random_state=0).fit(X)
    search, final = runs[:-1], runs[-1]
    assert len(search) == n_starts
    assert all(n_rows == kmeans_module._SEARCH_MIN_ROWS for n_rows, _, _ in search)
    assert final[0] == X.shape[0]
    best = min(search, key=lambda run: run[2][2])
    np.testing.assert_array_equal(final[1], best[2][0])
    assert est.n_iter_ == final[2][3]
    ref = skcluster.KMeans(5, n_init=10, random_state=0).fit(X)
    assert est.inertia_ <= 1.001 * ref.inertia_


def test_subspace_path_with_tol_zero_ends_at_a_full_space_fixed_point():
    X = low_rank_blobs(n=20000, k=8, d=256, rank=16, seed=2)
    est = KMeans(8, tol=0, random_state=0).fit(X)
    counts = np.bincount(est.labels_, minlength=8)
    means = np.stack([X[est.labels_ == j].mean(axis=0, dtype=np.float64) for j in range(8)])
    assert counts.all()
    np.testing.assert_allclose(est.cluster_centers_, means, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_lloyd_matches_sklearn_and_ends_at_a_fixed_point(seed):
    X = _blobs(n=5000, k=6, d=5, seed=seed)
    init = X[:6].copy()
    x_sq = row_sq_norms(X)
    with Workers(1) as workers:
        plain = dense_lloyd(workers, X, x_sq, init, max_iter=300, tol=0, relax=1.0)
        relaxed = dense_lloyd(workers, X, x_sq, init, max_iter=300, tol=0)
    ref = skcluster.KMeans(6, init=init, n_init=1, tol=0, max_iter=300).fit(X)
    np.testing.assert_allclose(plain[0], ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(plain[1], ref.labels_)
    assert plain[2] == pytest.approx(ref.inertia_, rel=1e-4)
    # Over-relaxed steps may reach another fixed point, but a fixed point: each centroid is the
    # mean of its rows, and each row is nearest to its own centroid.
    centers, labels, inertia, n_iter = relaxed
    assert n_iter < 300
    np.testing.assert_allclose(centers, [X[labels == j].mean(axis=0) for j in range(6)], atol=1e-4)
    d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d2.argmin(axis=1))
    assert inertia <= 1.01 * ref.inertia_


def test_dense_lloyd_reseeds_empty_clusters_and_stops_on_small_gains():
    X = _blobs(n=3000, k=4, d=6, seed=3)
    init = np.vstack([X[:3], np.full((1, 6), 1e3, dtype=X.dtype)])  # the last centroid gets no rows
    with Workers(1) as workers:
        centers, labels, _, n_iter = dense_lloyd(workers, X, row_sq_norms(X), init, max_iter=100, tol=0)
        assert np.bincount(labels, minlength=4).all()
        assert np.abs(centers).max() < 100
        slow = _blobs(n=5000, k=6, d=5, seed=0)  # many iterations from these seeds
        args = (workers, slow, row_sq_norms(slow), slow[:6].copy())
        _, _, inertia, n_iter = dense_lloyd(*args, max_iter=300, tol=0)
        _, _, quick_inertia, quick = dense_lloyd(*args, max_iter=300, tol=0, rel_tol=1e-3)
    assert quick < n_iter
    assert inertia <= quick_inertia <= 1.01 * inertia


def test_principal_subspace_is_skipped_when_it_carries_too_little_variance(monkeypatch):
    X = _blobs(n=16384, k=150, d=256, seed=4)  # means spread over all 256 dimensions
    assert kmeans_module._use_subspace(*X.shape, 128)
    with Workers(1) as workers:
        assert prepared(X).subspace(workers, 64) is None
    called = []
    monkeypatch.setattr(KMeans, "_subspace_fit", lambda *args: called.append(args))
    est = KMeans(128, random_state=0, max_iter=3).fit(X)
    assert not called
    assert est.cluster_centers_.shape == (128, 256)


def test_fits_inside_sharing_reuse_the_preparation_and_give_the_same_results(monkeypatch):
    from kmeans_imagery.engine import _prepared, sharing

    X = low_rank_blobs(n=20000, k=40, d=256, rank=20, seed=5)
    alone = [Est(k, random_state=1).fit(X) for Est in (KMeans, MiniBatchKMeans) for k in (8, 64)]
    calls = []
    original = _prepared.principal_axes
    monkeypatch.setattr(_prepared, "principal_axes", lambda *a: calls.append(1) or original(*a))
    with sharing(X):
        together = [Est(k, random_state=1).fit(X.reshape(X.shape)) for Est in (KMeans, MiniBatchKMeans)
                    for k in (8, 64)]
    assert len(calls) == 1  # one estimate of the axes for 4 fits, 2 subspace widths
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
        assert a.inertia_ == b.inertia_
    with sharing(X):
        KMeans(8, random_state=1).fit(X.copy())  # another buffer: prepared on its own
    assert len(calls) == 2
    assert not getattr(_prepared._local, "registry", {})  # nothing outlives the block


def test_minibatch_on_wide_rows_steps_in_the_subspace_and_stays_exact(monkeypatch):
    X = low_rank_blobs(n=20000, k=16, d=256, rank=16, seed=6)
    polished = []

    def spy(workers, Y, y_sq, centers, **kw):
        polished.append((Y.shape[1], kw["max_iter"]))
        return dense_lloyd(workers, Y, y_sq, centers, **kw)

    monkeypatch.setattr(kmeans_module, "dense_lloyd", spy)
    est = MiniBatchKMeans(16, random_state=0).fit(X)
    assert polished == [(32, kmeans_module._polish_iter(16))]  # projected rows, 32 axes
    np.testing.assert_array_equal(est.labels_, est.predict(X))
    X64, C = X.astype(np.float64), est.cluster_centers_.astype(np.float64)
    d2 = (X64**2).sum(1)[:, None] - 2 * X64 @ C.T + (C**2).sum(1)
    assert est.inertia_ == pytest.approx(d2.min(axis=1).sum(), rel=1e-6)
    ref = skcluster.MiniBatchKMeans(16, random_state=0).fit(X)
    assert est.inertia_ <= ref.inertia_


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
@pytest.mark.parametrize("init", ["random", "array", "callable", "n_init"])
def test_every_init_works_on_the_subspace_path(Est, init):
    X = low_rank_blobs(n=20000, k=12, d=256, rank=12, seed=7)
    params = {"random_state": 0}
    if init == "array":
        params["init"] = X[:12].copy()
    elif init == "callable":
        params["init"] = lambda X, k, random_state: X[random_state.choice(len(X), k, replace=False)]
    elif init == "n_init":
        params["n_init"] = 2
    else:
        params["init"] = "random"
    est = Est(12, **params).fit(X)
    again = Est(12, **params).fit(X)
    np.testing.assert_array_equal(est.cluster_centers_, again.cluster_centers_)
    np.testing.assert_array_equal(est.labels_, est.predict(X))
    assert np.bincount(est.labels_, minlength=12).all()
    if init == "array":  # iterations only lower the inertia of the given start
        start = euclidean_distances(X, params["init"], squared=True).min(axis=1).sum(dtype=np.float64)
        assert est.inertia_ < start
    if init == "n_init":  # random rows (the other inits) are poor seeds on overlapping blobs
        ref = skcluster.KMeans(12, n_init=2, random_state=0).fit(X)
        assert est.inertia_ <= 1.05 * ref.inertia_


def test_float64_wide_rows_stay_float64_on_the_subspace_path():
    X = low_rank_blobs(n=20000, k=8, d=256, rank=8, seed=8).astype(np.float64)
    for Est in (KMeans, MiniBatchKMeans):
        est = Est(8, random_state=0).fit(X)
        assert est.cluster_centers_.dtype == np.float64
        np.testing.assert_array_equal(est.labels_, est.predict(X))


# -- sample weights -------------------------------------------------------------------------


def _csr(X):
    import scipy.sparse as sp

    return sp.csr_matrix(X)


@pytest.mark.parametrize("sparse", [False, True])
def test_assign_weighted_sums_counts_and_inertia(sparse, small_blocks):
    X = _blobs(n=5000, k=4, d=6, dtype=np.float64)
    w = np.random.default_rng(0).uniform(0, 3, len(X))
    C = X[:4].copy()
    Xk = _csr(X) if sparse else X
    with Workers(2) as workers:
        res = _kernels.assign(
            workers, Xk, row_sq_norms(Xk), _kernels.Centers(C), sums=True, inertia=True, sample_weight=w
        )
    d2 = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    labels = d2.argmin(1)
    np.testing.assert_array_equal(res["labels"], labels)
    np.testing.assert_allclose(res["counts"], np.bincount(labels, weights=w, minlength=4))
    sums = np.stack([(w[labels == j, None] * X[labels == j]).sum(0) for j in range(4)])
    np.testing.assert_allclose(res["sums"], sums, rtol=1e-10)
    assert res["inertia"] == pytest.approx((w * d2.min(1)).sum(), rel=1e-9)


@pytest.mark.parametrize("sparse", [False, True])
def test_integer_weights_equal_repeated_rows(sparse, small_blocks):
    # Several blocks and Hamerly's partial reassignments: the weighted fit from an explicit init
    # is the fit of the repeated rows.
    X = _blobs(n=6000, k=6, d=5, seed=3, dtype=np.float64)
    w = np.random.default_rng(1).integers(1, 4, len(X))
    init = X[:6].copy()
    rep = np.repeat(X, w, axis=0)
    one = KMeans(6, init=init, tol=0).fit(_csr(X) if sparse else X, sample_weight=w)
    ref = KMeans(6, init=init, tol=0).fit(_csr(rep) if sparse else rep)
    np.testing.assert_allclose(one.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.repeat(one.labels_, w), ref.labels_)
    assert one.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert one.score(X, sample_weight=w) == pytest.approx(-one.inertia_, rel=1e-9)


def test_uniform_weights_take_the_unweighted_path_and_scale_the_inertia():
    X = _blobs()
    plain = KMeans(5, random_state=0).fit(X)
    tripled = KMeans(5, random_state=0).fit(X, sample_weight=np.full(len(X), 3.0))
    np.testing.assert_array_equal(plain.cluster_centers_, tripled.cluster_centers_)
    assert tripled.inertia_ == pytest.approx(3 * plain.inertia_, rel=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_weighted_seeding_never_draws_a_row_of_weight_zero(sparse):
    from kmeans_imagery.engine._init import kmeans_plusplus

    X = _blobs(n=400, k=8, d=4, dtype=np.float64)
    w = np.random.default_rng(2).uniform(size=len(X))
    w[::2] = 0
    Xk = _csr(X) if sparse else X
    for seed in range(5):
        C = kmeans_plusplus(Xk, row_sq_norms(Xk), 12, np.random.default_rng(seed), sample_weight=w)
        hit = (C[:, None, :] == X[None]).all(-1)
        assert hit.any(1).all() and not hit[:, ::2].any()
    est = KMeans(12, init="random", max_iter=1, n_init=1, random_state=0)
    with Workers(1) as workers:
        est._check_fit_data(Xk)
        C = est._seed(workers, Xk, row_sq_norms(Xk), np.random.default_rng(0), len(X), sample_weight=w)
    assert not (C[:, None, :] == X[None, ::2]).all(-1).any()


def test_minibatch_weights_move_the_centroids_towards_heavy_rows():
    X = np.concatenate([np.zeros((500, 2)), np.ones((500, 2))])
    w = np.where(np.arange(1000) < 500, 1.0, 9.0)
    for Est in (KMeans, MiniBatchKMeans):
        est = Est(1, random_state=0).fit(X, sample_weight=w)
        np.testing.assert_allclose(est.cluster_centers_, [[0.9, 0.9]], atol=0.02)
    mb = MiniBatchKMeans(1, random_state=0).partial_fit(X[:500], sample_weight=np.full(500, 1.0))
    mb.partial_fit(X[500:], sample_weight=np.full(500, 9.0))  # a uniform weight counts across batches
    np.testing.assert_allclose(mb.cluster_centers_, [[0.9, 0.9]], atol=1e-6)


def test_bad_sample_weight_is_a_clear_error():
    X = _blobs(n=50)
    with pytest.raises(KMIError, match="sample_weight.shape"):
        KMeans(3).fit(X, sample_weight=np.ones(49))
    with pytest.raises(KMIError, match="finite and >= 0"):
        KMeans(3).fit(X, sample_weight=-np.ones(50))


# -- sparse input -----------------------------------------------------------------------------


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_gives_the_dense_results(Est, fmt, small_blocks):
    import scipy.sparse as sp

    # At most 4096 rows: dense k-means++ seeds from all of them, as sparse k-means++ always does.
    X = _blobs(n=4000, k=6, d=12, seed=5)
    X[X < 0] = 0  # mostly zeros, as sparse data is
    Xs = sp.csr_matrix(X).asformat(fmt)
    dense = Est(6, random_state=0).fit(X)
    sparse = Est(6, random_state=0).fit(Xs)
    np.testing.assert_array_equal(dense.labels_, sparse.labels_)
    np.testing.assert_allclose(dense.cluster_centers_, sparse.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert sparse.cluster_centers_.dtype == np.float32 and isinstance(sparse.cluster_centers_, np.ndarray)
    assert sparse.inertia_ == pytest.approx(dense.inertia_, rel=1e-4)
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(X))
    np.testing.assert_allclose(sparse.transform(Xs[:100]), dense.transform(X[:100]), rtol=1e-4, atol=1e-4)
    assert sparse.score(Xs) == pytest.approx(dense.score(X), rel=1e-4)


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_sparse_rows_are_never_densified(Est):
    # 4000 x 1,000,000 at 20 entries a row: 32 GB dense, 1 MB sparse. Only the centroids are dense.
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, d, k = 4000, 1_000_000, 4
    topic = rng.integers(0, k, n)
    cols = (topic[:, None] * 250_000 + rng.integers(0, 25, (n, 20))).ravel()
    X = sp.csr_matrix((rng.uniform(0.5, 1, n * 20), (np.repeat(np.arange(n), 20), cols)), shape=(n, d))
    est = Est(k, random_state=0).fit(X)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(topic, est.labels_) > 0.99
    np.testing.assert_array_equal(est.predict(X), est.labels_)


# -- the estimators' scikit-learn surface ---------------------------------------------------------


def test_n_iter_counts_as_sklearn_counts():
    # Plain Lloyd steps: the same iterations as scikit-learn, counted alike (the pass that finds
    # no label changed is one). The estimator's over-relaxed steps (documented) end at a fixed
    # point of their own, in their own number of iterations.
    X = _blobs(n=3000, k=5, d=4, seed=7, dtype=np.float64)
    init = X[:5].copy()
    ref = skcluster.KMeans(5, init=init, n_init=1, tol=0).fit(X)
    with Workers(1) as workers:
        centers, n_iter = lloyd(workers, X, row_sq_norms(X), init, max_iter=300, tol=0, relax=1.0)
    assert n_iter == ref.n_iter_
    np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-9)
    ours = KMeans(5, init=init, tol=0).fit(X)
    means = np.stack([X[ours.labels_ == j].mean(0) for j in range(5)])
    np.testing.assert_allclose(ours.cluster_centers_, means, rtol=1e-9)


def test_feature_names_and_pandas_output_in_a_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame(_blobs(n=200, d=3), columns=["a", "b", "c"])
    pipe = make_pipeline(StandardScaler(), MiniBatchKMeans(4, random_state=0)).set_output(transform="pandas")
    out = pipe.fit_transform(X)
    assert list(out.columns) == [f"minibatchkmeans{i}" for i in range(4)]


def test_verbose_prints_each_iteration(capsys):
    X = _blobs(n=2000, k=4, d=4, dtype=np.float64)
    KMeans(4, n_init=1, tol=0, verbose=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization complete" in out and "Iteration 0, inertia" in out
    assert "strict convergence" in out
    MiniBatchKMeans(4, verbose=1, random_state=0, batch_size=100).fit(X)
    assert "Minibatch step 2/" in capsys.readouterr().out


def test_compute_labels_false_skips_the_last_pass():
    X = _blobs()
    est = MiniBatchKMeans(5, compute_labels=False, random_state=0).fit(X)
    assert not hasattr(est, "labels_")
    np.testing.assert_allclose(
        est.cluster_centers_, MiniBatchKMeans(5, random_state=0).fit(X).cluster_centers_
    )


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_algorithm_and_copy_x_are_accepted_and_x_is_never_modified(algorithm):
    X = _blobs(dtype=np.float64)
    before = X.copy()
    est = KMeans(5, algorithm=algorithm, copy_x=False, random_state=0).fit(X)
    np.testing.assert_array_equal(X, before)
    ref = KMeans(5, random_state=0).fit(X)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)
    with pytest.raises(KMIError, match="algorithm"):
        KMeans(5, algorithm="auto").fit(X)
