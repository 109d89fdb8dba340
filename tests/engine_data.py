"""Data for the engine tests (imported by tests/test_engine.py and tests/engine/)."""

import numpy as np


def low_rank_blobs(n, k, d, rank, seed, spread=0.5):
    """Blobs whose means (``spread`` apart, about) span ``rank`` of the ``d`` dimensions, plus
    small noise, float32: wide rows that take the principal-subspace path."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    means = rng.normal(scale=spread, size=(k, rank)) @ basis.T
    return (means[rng.integers(0, k, n)] + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
