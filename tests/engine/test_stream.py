"""stream_kmeans: Lloyd passes over blocks read one at a time, and the same centres in every mode."""

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
