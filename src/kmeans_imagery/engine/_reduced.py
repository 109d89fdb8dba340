"""Principal axes for running the bulk of K-means on wide data in a low-dimensional space.

Lloyd iterations in the span of the top principal axes cost a fraction of full-space ones (a
GEMM with ``n_components`` columns instead of ``n_features``). On MNIST they converge to the same
local optimum as full-space Lloyd from the same seeds, and the clusters found there, lifted back
as full-space means of the same rows, come within 0.003 % of that optimum's inertia.
"""

import numpy as np
import scipy.linalg

from ._kernels import _blas_controller

__all__ = ["MIN_EXPLAINED", "N_COMPONENTS", "principal_axes", "subspace_components"]

#: Principal axes estimated, and kept from 64 clusters up (measured on MNIST at K = 256: 48 lose
#: inertia, 96 or 128 cost more time than they gain).
N_COMPONENTS = 64

#: Least fraction of the variance the axes must carry for the subspace to be used: below it the
#: clusters found there are too far from the full-space ones for a few exact iterations to
#: repair (MNIST: 0.86; 150 isotropic blobs in 256 dimensions: about 0.5, and 6 % more inertia).
MIN_EXPLAINED = 0.8


def subspace_components(n_clusters):
    """Axes to cluster on: 32 below 64 clusters (at K = 10 on MNIST, the same optima as 64 axes
    and full space), :data:`N_COMPONENTS` from there."""
    return N_COMPONENTS if n_clusters >= 64 else N_COMPONENTS // 2


def principal_axes(X, rows, n_components):
    """Top principal axes of the rows ``X[rows]``, largest variance first.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rows : ndarray of int
        The sample the covariance is estimated from.
    n_components : int
        At most ``n_features``.

    Returns
    -------
    axes : ndarray of shape (n_features, n_components), C-contiguous, in the dtype of ``X``
        Orthonormal columns.
    explained : float
        Fraction of the sample's variance along them.
    """
    S = X[rows]
    S -= S.mean(axis=0, dtype=np.float64).astype(X.dtype)
    # float32 throughout for float32 input: the covariance GEMM is float32 anyway, and LAPACK's
    # single-precision solver takes half the time for axes that only have to span a subspace.
    cov = S.T @ S
    d = cov.shape[0]
    # One BLAS thread: LAPACK's threads cost seconds on this small a problem when the cores are
    # busy, and the result must not depend on the thread count.
    with _blas_controller().limit(limits=1, user_api="blas"):
        w, V = scipy.linalg.eigh(cov, subset_by_index=(d - n_components, d - 1))
    trace = float(np.trace(cov, dtype=np.float64))
    explained = float(w.sum(dtype=np.float64) / trace) if trace > 0 else 1.0
    return np.ascontiguousarray(V[:, ::-1], dtype=X.dtype), explained
