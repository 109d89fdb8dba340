"""KMeans and MiniBatchKMeans as drop-ins: the same call behaves as scikit-learn's.

Each test makes one call on ours and on scikit-learn's estimator and compares what a user swapping
the import would see: the error's type and message, the attributes set, the values returned.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import cluster as skcluster
from sklearn.metrics import euclidean_distances
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from engine_data import low_rank_blobs
from kmeans_imagery import KMeans, KMIError, MiniBatchKMeans
from kmeans_imagery.engine import kmeans as kmeans_module

SKLEARN = {KMeans: skcluster.KMeans, MiniBatchKMeans: skcluster.MiniBatchKMeans}


def _rows(n=60, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _raised(call):
    with pytest.raises(Exception) as info:
        call()
    return info.value


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_parameters_pass_sklearns_own_validation_check(Est):
    # Every parameter has scikit-learn's constraint, and fit, partial_fit, fit_predict and
    # fit_transform raise its InvalidParameterError for a bad type or value.
    check_param_validation(Est.__name__, Est())


_BAD_PARAMS = [
    {"n_clusters": 0},
    {"n_clusters": "3"},
    {"init": "kmeans++"},
    {"init": None},
    {"init": 3},
    {"init": sp.csr_matrix(np.eye(3))},
    {"n_init": 0},
    {"max_iter": 1.5},
    {"tol": -1},
    {"verbose": -1},
    {"random_state": "x"},
    {"random_state": -1},
]
_BAD_KMEANS = [{"algorithm": "auto"}, {"algorithm": None}, {"copy_x": 1}]
_BAD_MINIBATCH = [
    {"batch_size": 0},
    {"compute_labels": 1},
    {"max_no_improvement": -1},
    {"init_size": 0},
    {"reassignment_ratio": -0.1},
]


@pytest.mark.parametrize(
    ("Est", "params"),
    [(Est, p) for Est in (KMeans, MiniBatchKMeans) for p in _BAD_PARAMS]
    + [(KMeans, p) for p in _BAD_KMEANS]
    + [(MiniBatchKMeans, p) for p in _BAD_MINIBATCH],
)
def test_a_bad_parameter_raises_sklearns_error(Est, params):
    X, params = _rows(d=3), {"n_clusters": 3, **params}
    ours = _raised(lambda: Est(**params).fit(X))
    theirs = _raised(lambda: SKLEARN[Est](**params).fit(X))
    # scikit-learn's error is a ValueError and a TypeError; ours is also a KMIError for the CLI.
    assert isinstance(ours, InvalidParameterError) and isinstance(ours, KMIError)
    assert str(ours) == str(theirs)


# -- sample weights ---------------------------------------------------------------------------


_BAD_WEIGHTS = {
    "nan": np.full(60, np.nan),
    "inf": np.full(60, np.inf),
    "2d": np.ones((60, 1)),
    "short": np.ones(59),
    "all zero": np.zeros(60),
    "scalar zero": 0,
    "text": np.array(["a"] * 60),
}


@pytest.mark.parametrize(("Est", "method"), [(KMeans, "fit"), (KMeans, "score"),
                                             (MiniBatchKMeans, "fit"),
                                             (MiniBatchKMeans, "partial_fit"),
                                             (MiniBatchKMeans, "score")])
@pytest.mark.parametrize("name", list(_BAD_WEIGHTS))
def test_a_bad_sample_weight_raises_sklearns_error(Est, method, name):
    X, weights = _rows(), _BAD_WEIGHTS[name]

    def call(cls):
        est = cls(3, random_state=0)
        if method == "score":
            return est.fit(X).score(X, sample_weight=weights)
        return getattr(est, method)(X, sample_weight=weights)

    ours, theirs = _raised(lambda: call(Est)), _raised(lambda: call(SKLEARN[Est]))
    assert isinstance(ours, KMIError) and isinstance(ours, type(theirs))
    assert str(ours) == str(theirs)


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_score_takes_negative_weights_as_sklearn(Est):
    # score is the opposite of a weighted sum, whatever the signs; fits still refuse them.
    X = _rows()
    est = Est(3, random_state=0).fit(X)
    ref = SKLEARN[Est](3, random_state=0).fit(X)
    ref.cluster_centers_ = est.cluster_centers_.copy()
    d2 = euclidean_distances(X, est.cluster_centers_, squared=True).min(axis=1)
    for weights in (np.linspace(-1, 2, len(X)), -2.0):
        assert est.score(X, sample_weight=weights) == pytest.approx(ref.score(X, sample_weight=weights))
        assert est.score(X, sample_weight=weights) == pytest.approx(-(weights * d2).sum())
    with pytest.raises(KMIError, match="finite and >= 0"):
        Est(3).fit(X, sample_weight=np.linspace(-1, 2, len(X)))


# -- attributes -------------------------------------------------------------------------------


@pytest.mark.parametrize("subspace", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_without_labels_still_sets_inertia(monkeypatch, subspace, weighted):
    # scikit-learn sets inertia_ from the batches when compute_labels=False; ours is that of the
    # last Lloyd partition of all rows about its means (found in the subspace, or not).
    X = low_rank_blobs(n=3000, k=6, d=64, rank=6, seed=3, spread=2.0)
    monkeypatch.setattr(kmeans_module, "_use_subspace", lambda *shape: subspace)
    weights = np.random.default_rng(1).uniform(0.5, 2, len(X)) if weighted else None
    est = MiniBatchKMeans(6, compute_labels=False, random_state=0).fit(X, sample_weight=weights)
    exact = MiniBatchKMeans(6, random_state=0).fit(X, sample_weight=weights)
    np.testing.assert_array_equal(est.cluster_centers_, exact.cluster_centers_)
    assert not hasattr(est, "labels_") and isinstance(est.inertia_, float)
    assert (1 - 1e-4) * exact.inertia_ <= est.inertia_ <= 1.01 * exact.inertia_  # float32 norms
    assert hasattr(skcluster.MiniBatchKMeans(6, compute_labels=False).fit(X), "inertia_")


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_n_iter_stays_within_max_iter_on_the_subspace_path(monkeypatch, max_iter):
    # With tol=0 the subspace iterations are followed by full-space ones: together within
    # max_iter, as scikit-learn's n_iter_ always is.
    X = low_rank_blobs(n=4500, k=6, d=64, rank=6, seed=3, spread=2.0)  # k-means++ seeds from 4096 rows
    monkeypatch.setattr(kmeans_module, "_use_subspace", lambda *shape: True)
    est = KMeans(6, tol=0, max_iter=max_iter, random_state=0).fit(X)
    assert 1 <= est.n_iter_ <= max_iter
    np.testing.assert_array_equal(est.labels_, est.predict(X))


@pytest.mark.parametrize("Est", [KMeans, MiniBatchKMeans])
def test_rows_far_from_the_origin_keep_their_clusters(Est):
    # float32 rows around 10,000 with a spread of a few units: the norm expansion of distances
    # rounds their clusters away unless the rows are centred (scikit-learn's KMeans centres them).
    X = low_rank_blobs(n=3000, k=6, d=20, rank=6, seed=5, spread=2.0) + np.float32(10_000)
    est = Est(6, random_state=0).fit(X)
    C = est.cluster_centers_.astype(np.float64)
    nearest = euclidean_distances(X.astype(np.float64), C, squared=True)
    assert (est.labels_ == nearest.argmin(axis=1)).mean() > 0.999
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    assert -est.score(X) == pytest.approx(nearest.min(axis=1).sum(), rel=1e-4)
    np.testing.assert_allclose(est.transform(X[:100]), np.sqrt(nearest[:100]), atol=1e-3)
    ref = skcluster.KMeans(6, random_state=0).fit(X)
    assert est.inertia_ <= 1.01 * ref.inertia_
