"""What every fit on the same training rows computes alike, computed once per data set.

A fit needs the squared norms of the rows and, on wide rows, their projection on the top
principal axes. Neither depends on the number of clusters or on the seed: the axes are estimated
from a sample drawn with a fixed seed, so they are a property of the data, not of a run. Inside
:func:`sharing`, fits on the same array (a sweep over K, several seeds) reuse them; a fit outside
builds its own, with the same values, so sharing changes the time and never the result.
"""

import threading
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from ._kernels import project, row_sq_norms
from ._reduced import MIN_EXPLAINED, N_COMPONENTS, principal_axes

__all__ = ["Prepared", "Subspace", "prepared", "sharing"]

#: Rows the principal axes are estimated from, and the seed that draws them.
PCA_ROWS = 2048
_PCA_SEED = 0x6B6D69

_local = threading.local()


class Subspace:
    """Rows projected on principal axes.

    Attributes
    ----------
    axes : ndarray of shape (n_features, n_components)
        Orthonormal columns, largest variance first.
    Z : ndarray of shape (n_samples, n_components)
        ``X @ axes``.
    z_sq : ndarray of shape (n_samples,)
        Squared row norms of ``Z``.
    """

    def __init__(self, axes, Z, z_sq):
        self.axes, self.Z, self.z_sq = axes, Z, z_sq


class Prepared:
    """Training rows with their squared norms and principal subspaces, each computed on first use.

    Parameters
    ----------
    X : ndarray or CSR sparse matrix of shape (n_samples, n_features)
        Validated rows (float32 or float64, C-contiguous); must not change while this is in use.
        Sparse rows have no subspace.
    """

    def __init__(self, X):
        self.X = X
        self._x_sq = None
        self._axes = None
        self._spaces = {}

    def x_sq(self):
        """Squared row norms, shape (n_samples,), in the dtype of ``X``."""
        if self._x_sq is None:
            self._x_sq = row_sq_norms(self.X)
        return self._x_sq

    def subspace(self, workers, n_components):
        """The rows on their top ``n_components`` principal axes (at most :data:`N_COMPONENTS`).

        Returns None when the top :data:`N_COMPONENTS` axes carry under ``MIN_EXPLAINED`` of
        the variance: clusters found there would be too far from the full-space ones.

        Returns
        -------
        Subspace or None
        """
        if self._axes is None:
            n = self.X.shape[0]
            rows = np.sort(np.random.default_rng(_PCA_SEED).choice(n, min(n, PCA_ROWS), replace=False))
            axes, explained = principal_axes(self.X, rows, N_COMPONENTS)
            self._axes = axes if explained >= MIN_EXPLAINED else False
        if self._axes is False:
            return None
        if n_components not in self._spaces:
            # Each width its own GEMM, not the leading columns of a wider projection: a width's
            # coordinates must not depend on which fits came before it.
            axes = np.ascontiguousarray(self._axes[:, :n_components])
            Z = project(workers, self.X, axes)
            self._spaces[n_components] = Subspace(axes, Z, row_sq_norms(Z))
        return self._spaces[n_components]


def _key(X):
    return (X.__array_interface__["data"][0], X.shape, X.strides, X.dtype.str)


@contextmanager
def sharing(X):
    """Let the fits inside the block share the preparation of ``X``.

    Fits on ``X`` itself, or on any array over the same memory with the same shape, strides
    and dtype (a reshaped view, or what validation hands back unchanged), reuse its squared row
    norms and principal subspaces. ``X`` must not be modified inside the block.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Examples
    --------
    >>> from kmeans_imagery import MiniBatchKMeans
    >>> from kmeans_imagery.engine import sharing
    >>> with sharing(X):  # doctest: +SKIP
    ...     models = [MiniBatchKMeans(k, random_state=0).fit(X) for k in (10, 64, 256)]
    """
    X = np.asarray(X)
    registry = getattr(_local, "registry", None)
    if registry is None:
        registry = _local.registry = {}
    key = _key(X)
    owner = key not in registry
    if owner:
        registry[key] = Prepared(X)
    try:
        yield registry[key]
    finally:
        if owner:
            del registry[key]


def prepared(X):
    """The shared preparation of ``X`` inside :func:`sharing`, else a fresh one (always for sparse ``X``).

    Returns
    -------
    Prepared
    """
    if sp.issparse(X):
        return Prepared(X)
    registry = getattr(_local, "registry", None) or {}
    return registry.get(_key(X)) or Prepared(X)
