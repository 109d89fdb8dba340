"""K-means engines behind one small interface.

An engine is a factory that, given an algorithm (``"minibatch"`` or ``"full"``), a number of
clusters and a seed, returns an unfitted scikit-learn style estimator with ``fit``, ``predict``,
``transform`` and, once fitted, ``cluster_centers_``, ``labels_``, ``inertia_`` and ``n_iter_``.
Fits of the project's own engine inside :func:`sharing` reuse what they compute alike on the
same rows (the pipeline wraps its sweeps in it).

:class:`~.dask.DaskKMeans` fits a dask array with the same strategy, its passes on the workers.
It is registered here (:mod:`._backends`), loaded on first use, so that the in-memory ``KMeans``
hands it dask arrays without importing it (``dask.py`` imports ``kmeans.py``, never the reverse).
"""

from ..errors import KMIError
from . import _backends

__all__ = ["ALGORITHMS", "DEFAULT_ENGINE", "ENGINES", "make_kmeans", "sharing"]


def _load_dask_backend():
    from .dask import DaskKMeans, predict_dask

    return _backends.Backend(DaskKMeans, predict_dask)


_backends.register("dask", _load_dask_backend)

ALGORITHMS = ("minibatch", "full")


def sharing(X):
    """Context in which fits on ``X`` share their preparation (see :mod:`._prepared`).

    Imported on first use, so that reading the engine names (the CLI's options) loads no numpy.
    """
    from ._prepared import sharing as shared

    return shared(X)


def _sklearn_engine(algorithm, n_clusters, random_state, **params):
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if algorithm == "minibatch":
        return MiniBatchKMeans(n_clusters=n_clusters, random_state=random_state, **params)
    params.setdefault("n_init", 1)
    return KMeans(n_clusters=n_clusters, random_state=random_state, **params)


def _kmi_engine(algorithm, n_clusters, random_state, **params):
    from .kmeans import KMeans, MiniBatchKMeans

    if algorithm == "minibatch":
        return MiniBatchKMeans(n_clusters=n_clusters, random_state=random_state, **params)
    return KMeans(n_clusters=n_clusters, random_state=random_state, **params)


def _dask_engine(algorithm, n_clusters, random_state, **params):
    from .kmeans import KMeans

    if algorithm != "full":
        raise KMIError("the dask engine runs full Lloyd passes: use it with --algorithm full")
    return KMeans(n_clusters=n_clusters, random_state=random_state, engine="dask", **params)


ENGINES = {"kmi": _kmi_engine, "sklearn": _sklearn_engine, "dask": _dask_engine}
DEFAULT_ENGINE = "kmi"


def make_kmeans(n_clusters, *, algorithm="minibatch", engine=None, random_state=None, **params):
    """Build an unfitted K-means estimator.

    Parameters
    ----------
    n_clusters : int
        Number of clusters K.
    algorithm : {"minibatch", "full"}, default="minibatch"
        ``"minibatch"`` as in the tutorial, or ``"full"`` Lloyd iterations over all samples.
    engine : str or None
        A name from :data:`ENGINES`; None means :data:`DEFAULT_ENGINE`.
    random_state : int, RandomState or None
        Seed; the same seed gives the same clustering.
    **params
        Further estimator parameters (``n_init``, ``max_iter``, ``batch_size``, ...).

    Returns
    -------
    estimator
        An unfitted estimator.
    """
    engine = DEFAULT_ENGINE if engine is None else engine
    if engine not in ENGINES:
        raise KMIError(f"unknown engine {engine!r}; choose from {', '.join(sorted(ENGINES))}")
    if algorithm not in ALGORITHMS:
        raise KMIError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    return ENGINES[engine](algorithm, n_clusters, random_state, **params)
