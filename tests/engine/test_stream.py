"""stream_kmeans: Lloyd passes over blocks read one at a time, and the same centres in every mode."""

import tracemalloc

import numpy as np
import pytest

from kmeans_imagery.engine.kmeans import KMeans
from kmeans_imagery.engine.stream import stream_kmeans
from kmeans_imagery.errors import KMIError


class Blocks:
    """Rows in blocks of ``size``, as the fit path's source reader gives them."""

    def __init__(self, rows, size, weight=None):
        self.rows, self.size, self.n_rows, self.weight = rows, size, len(rows), weight

    def _w(self, index):
        return None if self.weight is None else self.weight[index]

    def blocks(self):
        for s in range(0, self.n_rows, self.size):
            yield self.rows[s:s + self.size], self._w(slice(s, s + self.size)), s

    def shuffled(self, batch_size, rng):
        order = rng.permutation(self.n_rows)
        for s in range(0, self.n_rows, batch_size):
            index = np.sort(order[s:s + batch_size])
            yield self.rows[index], self._w(index)


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, (8, 16))
    return (centres[np.arange(4000) % 8] + rng.normal(0, 0.15, (4000, 16))).astype(np.float32)


def _one_per_blob(rows):
    return rows[:8].copy()  # rows are blob 0, 1, ..., 7, 0, 1, ...


def _matched(a, b):
    """The rows of ``b`` nearest each row of ``a`` (centres in another order)."""
    return b[((a[:, None] - b[None]) ** 2).sum(-1).argmin(axis=1)]


def _inertia(rows, centers):
    d = ((rows[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1)
    return d.min(axis=1).sum()


def test_lloyd_passes_reach_the_in_memory_fit(rows):
    start = rows[:20].copy()
    centers, inertia, n_iter, history, seconds, _ = stream_kmeans(
        Blocks(rows, 512), start, minibatch_passes=1, max_iter=30, random_state=0)
    memory = KMeans(20, random_state=0).fit(rows)
    assert inertia <= 1.01 * memory.inertia_
    assert inertia == pytest.approx(_inertia(rows, centers), rel=1e-5)
    assert len(history) == len(seconds) == n_iter
    assert all(b <= a * (1 + 1e-9) for a, b in zip(history, history[1:], strict=False))


def test_same_start_same_centres_as_in_memory_lloyd(rows):
    """Exact Lloyd passes from the same start are Lloyd: the in-memory engine's fixed point."""
    # One start in each blob: a single basin, which every Lloyd variant must end in.
    start = _one_per_blob(rows)
    streamed, *_ = stream_kmeans(Blocks(rows, 333), start, minibatch_passes=0, max_iter=300,
                                 tol=0.0)
    memory = KMeans(8, init=start, n_init=1, max_iter=300, tol=0.0).fit(rows)
    np.testing.assert_allclose(streamed, _matched(streamed, memory.cluster_centers_), atol=1e-5)


def test_observer_sees_every_row_of_the_last_pass(rows):
    class Count:
        def __init__(self):
            self.n, self.clusters = 0, []

        def add(self, start, clusters, weight):
            self.n += len(clusters)
            self.clusters.append(clusters)

    centers, *_, seen = stream_kmeans(Blocks(rows, 700), rows[:5].copy(), max_iter=2,
                                           random_state=0, observe=Count)
    assert seen.n == len(rows)
    expected = ((rows[:, None] - centers[None]) ** 2).sum(-1).argmin(axis=1)
    assert (np.concatenate(seen.clusters) == expected).mean() > 0.999


def test_bad_parameters(rows):
    with pytest.raises(KMIError, match="n_samples=10 should be >= n_clusters=20"):
        stream_kmeans(Blocks(rows[:10], 5), rows[:20])
    with pytest.raises(KMIError, match="max_iter"):
        stream_kmeans(Blocks(rows, 100), rows[:3], max_iter=0)
    with pytest.raises(KMIError, match="tol"):
        stream_kmeans(Blocks(rows, 100), rows[:3], tol=-1.0)


def test_integer_weights_equal_repeated_rows(rows):
    """A row of weight 2 counts as that row twice: same centres as the repeated data."""
    weight = np.where(np.arange(len(rows)) % 3 == 0, 2.0, 1.0)
    repeated = np.repeat(rows, weight.astype(int), axis=0)
    start = _one_per_blob(rows)
    weighted = stream_kmeans(Blocks(rows, 500, weight), start, minibatch_passes=0, max_iter=100,
                             tol=0.0)
    plain = stream_kmeans(Blocks(repeated, 500), start, minibatch_passes=0, max_iter=100, tol=0.0)
    np.testing.assert_allclose(weighted.centers, plain.centers, atol=1e-5)
    assert weighted.inertia == pytest.approx(plain.inertia, rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 10_000])
def test_any_batch_size_steps(rows, batch_size):
    """Batches smaller than K (the first step needs K rows: the leading ones are merged) or
    larger than the data."""
    start = _one_per_blob(rows)[:, :4].copy()
    X = np.ascontiguousarray(rows[:203, :4])  # not a multiple of the batch or the block
    result = stream_kmeans(Blocks(X, 50), start, batch_size=batch_size, max_iter=30,
                           random_state=0)
    assert result.centers.shape == (8, 4)
    assert result.inertia == pytest.approx(_inertia(X, result.centers), rel=1e-5)


def test_same_seed_same_fit_whatever_the_blocks(rows):
    a = stream_kmeans(Blocks(rows, 333), rows[:8].copy(), batch_size=100, random_state=5)
    b = stream_kmeans(Blocks(rows, 333), rows[:8].copy(), batch_size=100, random_state=5)
    np.testing.assert_array_equal(a.centers, b.centers)
    assert a.history == b.history
    for size in (1, len(rows)):  # rows one at a time, or one block of all
        c = stream_kmeans(Blocks(rows, size), rows[:8].copy(), batch_size=100, random_state=5)
        np.testing.assert_allclose(c.centers, a.centers, atol=1e-6)
        assert c.inertia == pytest.approx(a.inertia, rel=1e-6)


def test_rows_far_from_the_origin_keep_their_labels():
    """float32 rows around 10,000 with unit spread are fitted less their mean, as in memory: the
    norm expansion alone blurs their clusters."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 2000)
    X = (10_000 + rng.normal(0, 2, (4, 4))[truth] + rng.normal(0, 1, (2000, 4))).astype(np.float32)
    memory = KMeans(4, random_state=0).fit(X)

    class Labels:
        def __init__(self):
            self.labels = []

        def add(self, start, clusters, weight):
            self.labels.append(clusters)

    for passes in (0, 1):
        result = stream_kmeans(Blocks(X, 300), memory.cluster_centers_.copy(), sample=X[::2],
                               minibatch_passes=passes, batch_size=256, tol=0.0, max_iter=50,
                               random_state=0, observe=Labels)
        exact = ((X[:, None].astype(np.float64) - result.centers[None]) ** 2).sum(-1).argmin(1)
        np.testing.assert_array_equal(np.concatenate(result.observed.labels), exact)
        assert result.inertia == pytest.approx(memory.inertia_, rel=1e-5)
        assert all(b <= a * (1 + 1e-9) for a, b in zip(result.history, result.history[1:],
                                                         strict=False))


def test_nan_rows_and_bad_starts_are_clear_errors(rows):
    X = rows.copy()
    X[2345, 3] = np.nan
    with pytest.raises(KMIError, match="NaN or infinity"):
        stream_kmeans(Blocks(X, 500), rows[:8].copy(), minibatch_passes=0)
    with pytest.raises(KMIError, match="start must be finite"):
        stream_kmeans(Blocks(rows, 500), np.full((8, 16), np.nan, np.float32))
    with pytest.raises(KMIError, match="tol must be"):
        stream_kmeans(Blocks(rows, 500), rows[:8].copy(), tol=float("nan"))


def test_float32_start_on_float64_rows(rows):
    X = rows.astype(np.float64)
    for passes in (0, 1):
        result = stream_kmeans(Blocks(X, 500), _one_per_blob(rows), minibatch_passes=passes,
                               random_state=0)
        assert result.inertia == pytest.approx(_inertia(X, result.centers), rel=1e-5)


class Generated:
    """Rows made one block at a time, as a source too large to hold is read."""

    def __init__(self, n_rows, n_features, size):
        self.n_rows, self.n_features, self.size = n_rows, n_features, size

    def _rows(self, s, e):
        noise = np.random.default_rng(s).normal(0, 0.1, (e - s, self.n_features))
        return (np.arange(s, e)[:, None] % 5 + noise).astype(np.float32)

    def blocks(self):
        for s in range(0, self.n_rows, self.size):
            yield self._rows(s, min(s + self.size, self.n_rows)), None, s

    def shuffled(self, batch_size, rng):
        for s in rng.permutation(range(0, self.n_rows, batch_size)):
            yield self._rows(s, min(s + batch_size, self.n_rows)), None


def test_memory_does_not_grow_with_the_rows():
    """Peak Python memory stays a fraction of the rows' size: one block at a time, no copy."""
    reader = Generated(40_000, 16, 500)  # 2.56 MB of float32 rows in blocks of 32 kB
    start = np.repeat(np.arange(5, dtype=np.float32)[:, None], 16, axis=1)
    tracemalloc.start()
    try:
        stream_kmeans(reader, start, batch_size=256, max_iter=3, random_state=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40_000 * 16 * 4 / 2
