"""Backends that fit data held elsewhere (a dask array), found by name.

The in-memory :class:`~kmeans_imagery.engine.kmeans.KMeans` fits a dask array on Dask by itself,
but must not import the Dask backend, which imports it (the package has no import cycle).
``kmeans_imagery.engine`` registers a loader for each backend here, and the package always runs
before any of its modules, so the loaders are in place when an estimator asks; a backend's
module is imported on first use only.
"""

from dataclasses import dataclass

__all__ = ["Backend", "get", "register"]

_LOADERS = {}


@dataclass(frozen=True)
class Backend:
    """A backend: its estimator class and a lazy ``predict(X, centers)`` for its arrays."""

    estimator: type
    predict: callable


def register(name, loader):
    """Make ``loader()``, which returns a :class:`Backend`, the backend called ``name``."""
    _LOADERS[name] = loader


def get(name):
    """The backend called ``name``, its module imported on first use.

    Returns
    -------
    Backend
    """
    return _LOADERS[name]()
