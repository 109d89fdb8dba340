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

#: What :func:`make_kmeans` can run: mini-batch steps, or full Lloyd iterations.
ALGORITHMS = ("minibatch", "full")


def sharing(X):
    """Context in which fits on ``X`` share their preparation.

    Fits of :class:`~kmeans_imagery.engine.kmeans.KMeans` and
    :class:`~kmeans_imagery.engine.kmeans.MiniBatchKMeans` on ``X`` inside the block reuse its
    row norms and, for wide rows, its principal subspace (computed from a fixed-seed sample, so a
    property of the data): sharing changes the time of a sweep over K, never its results.
    Imported on first use, so that reading the engine names (the CLI's options) loads no numpy.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        The rows the fits will use (the same object).

    Returns
    -------
    context manager
        The sharing lasts for its block.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.engine import sharing
    >>> from kmeans_imagery.engine.kmeans import KMeans
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> with sharing(X):
    ...     sweep = {k: KMeans(k, random_state=0).fit(X).inertia_ for k in (4, 8, 16)}
    >>> sweep[16] < sweep[8] < sweep[4]
    True
    >>> bool(sweep[8] == KMeans(8, random_state=0).fit(X).inertia_)  # the same result alone
    True
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


#: Engine name -> factory ``(algorithm, n_clusters, random_state, **params)``: the project's own
#: ``"kmi"``, scikit-learn's for comparison, and ``"dask"`` (full Lloyd over dask arrays).
ENGINES = {"kmi": _kmi_engine, "sklearn": _sklearn_engine, "dask": _dask_engine}
#: The engine :func:`make_kmeans` uses when none is named.
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

    Raises
    ------
    KMIError
        For an unknown engine or algorithm, or the dask engine with ``"minibatch"``.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.engine import make_kmeans
    >>> X = np.random.default_rng(0).random((200, 5), dtype=np.float32)
    >>> ours = make_kmeans(4, algorithm="full", random_state=0)
    >>> theirs = make_kmeans(4, algorithm="full", engine="sklearn", random_state=0)
    >>> ours
    KMeans(n_clusters=4, random_state=0)
    >>> type(theirs).__module__, ours.fit(X).cluster_centers_.shape
    ('sklearn.cluster._kmeans', (4, 5))
    """
    engine = DEFAULT_ENGINE if engine is None else engine
    if engine not in ENGINES:
        raise KMIError(f"unknown engine {engine!r}; choose from {', '.join(sorted(ENGINES))}")
    if algorithm not in ALGORITHMS:
        raise KMIError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    return ENGINES[engine](algorithm, n_clusters, random_state, **params)
