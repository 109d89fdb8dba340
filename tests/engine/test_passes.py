"""The engine's pass primitives: partial sums, their merge, re-seeding and the one Lloyd loop."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKLearnKMeans

from kmeans_imagery.engine._kernels import Workers, row_sq_norms
from kmeans_imagery.engine._passes import (
    abs_tol,
    block_stats,
    label_stats,
    lloyd_passes,
    merge_stats,
    reseed_empty,
    tree_reduce,
    update_centers,
)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.random((6, 5)) * 4
    X = centers[rng.integers(0, 6, 900)] + rng.normal(0, 0.6, (900, 5))
    return X, X[rng.choice(900, 6, replace=False)].copy()


def _pass(X, weight=None):
    def full_pass(c):
        with Workers(1) as workers:
            return block_stats(workers, X, c, sample_weight=weight)
    return full_pass


def test_merged_blocks_equal_one_block_whatever_the_tree(blobs):
    X, C = blobs
    whole = _pass(X)(C)
    with Workers(1) as workers:
        parts = [block_stats(workers, X[s:s + 100], C) for s in range(0, 900, 100)]
    for fan_in in (2, 3, 8):
        merged = tree_reduce(parts, merge_stats, fan_in)
        np.testing.assert_array_equal(merged["counts"], whole["counts"])
        np.testing.assert_allclose(merged["sums"], whole["sums"], rtol=1e-12)
        assert merged["inertia"] == pytest.approx(whole["inertia"], rel=1e-12)
        assert merged["sq_norms"] == pytest.approx(row_sq_norms(X).sum(), rel=1e-12)
        np.testing.assert_array_equal(merged["far_d"], np.sort(whole["far_d"])[::-1])
    # The fixed order makes a tree's result reproducible to the bit.
    a, b = (tree_reduce(parts, merge_stats, 3) for _ in range(2))
    np.testing.assert_array_equal(a["sums"], b["sums"])


def test_inertia_is_exact_and_far_rows_are_the_farthest(blobs):
    X, C = blobs
    stats = _pass(X)(C)
    d = ((X[:, None, :] - C[None]) ** 2).sum(axis=2)
    assert stats["inertia"] == pytest.approx(d.min(axis=1).sum(), rel=1e-12)
    far = np.argsort(-d.min(axis=1))[:8]
    np.testing.assert_array_equal(stats["far_rows"], X[far])
    np.testing.assert_array_equal(stats["far_labels"], d.argmin(axis=1)[far])


def test_weights_equal_repeated_rows(blobs):
    X, C = blobs
    w = np.random.default_rng(1).integers(0, 4, len(X))
    weighted, repeated = _pass(X, w.astype(float))(C), _pass(np.repeat(X, w, axis=0))(C)
    np.testing.assert_allclose(weighted["sums"], repeated["sums"], rtol=1e-10)
    np.testing.assert_allclose(weighted["counts"], repeated["counts"])
    assert weighted["inertia"] == pytest.approx(repeated["inertia"], rel=1e-9)
    assert (weighted["far_weight"] > 0).all()  # rows of weight 0 never re-seed a cluster
    by_label = label_stats(X, np.zeros(len(X), dtype=np.int32), 2, w.astype(float))
    np.testing.assert_allclose(by_label["sums"][0], (X * w[:, None]).sum(axis=0))
    assert by_label["counts"].tolist() == [w.sum(), 0]


def test_weighted_inertia_is_exact_too():
    # float32 rows with a large common part: the norm expansion's rounding is far above the
    # spread, the differences' is not.
    rng = np.random.default_rng(2)
    X = (100 + rng.normal(0, 0.01, (500, 4))).astype(np.float32)
    C, w = X[:3].copy(), rng.random(500)
    stats = _pass(X, w)(C)
    d = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(axis=2)
    assert stats["inertia"] == pytest.approx(d[np.arange(500), _nearest(X, C)] @ w, rel=1e-4)


def _nearest(X, C):
    with Workers(1) as workers:
        return block_stats(workers, X, C, labels=True)["labels"]


def test_reseed_moves_the_farthest_rows_into_empty_clusters():
    sums = np.array([[10.0, 0.0], [0.0, 0.0], [3.0, 3.0], [0.0, 0.0]])
    counts = np.array([5.0, 0.0, 3.0, 0.0])
    far_rows = np.array([[1.0, 1.0], [4.0, 0.0], [2.0, 2.0]])
    moves = reseed_empty(sums, counts, far_rows, np.array([1.0, 9.0, 4.0]), np.array([2, 0, 2]))
    assert moves == [(1, 1), (3, 2)]
    np.testing.assert_array_equal(sums, [[6.0, 0.0], [4.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(counts, [4.0, 1.0, 2.0, 1.0])
    # Every row on its centre: nothing to move, the empty cluster keeps its centre.
    counts = np.array([2.0, 0.0])
    stats = {"sums": np.array([[2.0, 2.0], [0.0, 0.0]]), "counts": counts, "far_d": np.zeros(2),
             "far_rows": np.ones((2, 2)), "far_labels": np.zeros(2, int), "far_weight": np.ones(2)}
    np.testing.assert_array_equal(update_centers(np.array([[0.0, 0.0], [7.0, 7.0]]), stats),
                                  [[1.0, 1.0], [7.0, 7.0]])


@pytest.mark.parametrize("max_iter", [1, 2, 3, 5])
def test_plain_steps_are_exact_lloyd_steps(blobs, max_iter):
    X, C = blobs
    expected = SKLearnKMeans(6, init=C, n_init=1, tol=0, max_iter=max_iter, algorithm="lloyd").fit(X)
    centers, stats, assigned, n_iter = lloyd_passes(_pass(X), C, max_iter=max_iter, tol=0, relax=1.0)
    assert n_iter == max_iter
    np.testing.assert_allclose(centers, expected.cluster_centers_, atol=1e-10)


@pytest.fixture(scope="module")
def uniform():
    """Rows without clusters: Lloyd converges slowly there."""
    X = np.random.default_rng(2).random((3000, 2))
    return X, X[:30].copy()


def test_relaxed_loop_ends_at_a_fixed_point_in_fewer_passes(uniform):
    X, C = uniform
    plain = SKLearnKMeans(30, init=C, n_init=1, tol=0, max_iter=300, algorithm="lloyd").fit(X)
    centers, stats, assigned, n_iter = lloyd_passes(_pass(X), C, max_iter=300, tol=0)
    np.testing.assert_array_equal(centers, assigned)  # the last pass changed nothing
    again = lloyd_passes(_pass(X), centers, max_iter=1, tol=0, relax=1.0)[0]
    np.testing.assert_array_equal(again, centers)
    assert stats["inertia"] <= 1.01 * plain.inertia_
    assert n_iter < plain.n_iter_


def test_tol_and_rel_tol_stop_early(uniform):
    X, C = uniform
    x_sq = row_sq_norms(X)
    tol = abs_tol(1e-2, x_sq.sum(), X.sum(axis=0), len(X))
    assert tol == pytest.approx(1e-2 * X.var(axis=0).mean())
    assert abs_tol(0, x_sq.sum(), X.sum(axis=0), len(X)) == 0
    _, _, _, full = lloyd_passes(_pass(X), C, max_iter=300, tol=0)
    _, _, _, loose = lloyd_passes(_pass(X), C, max_iter=300, tol=tol)
    _, _, _, quick = lloyd_passes(_pass(X), C, max_iter=300, tol=0, rel_tol=1e-2)
    assert loose < full and quick < full
