"""kmeans-imagery: turn unlabeled images into classes with K-means.

The public names are imported on first use, so that ``kmi --help`` and ``import kmeans_imagery`` stay
fast (scikit-learn and matplotlib load only when needed). Each is documented where it is defined:

- :class:`~kmeans_imagery.labeling.ClusterClassifier` (``kmeans_imagery.labeling``): cluster, then
  name each cluster after its most frequent label;
- :class:`~kmeans_imagery.engine.kmeans.KMeans` and
  :class:`~kmeans_imagery.engine.kmeans.MiniBatchKMeans` (``kmeans_imagery.engine.kmeans``): the
  project's K-means engine, drop-ins for scikit-learn's;
- :class:`~kmeans_imagery.engine.dask.DaskKMeans` (``kmeans_imagery.engine.dask``): K-means over a
  dask array on a cluster;
- :func:`~kmeans_imagery.datasets.load_dataset` (``kmeans_imagery.datasets``): a dataset by name or
  path, in memory;
- :func:`~kmeans_imagery.model_io.load_model` and :func:`~kmeans_imagery.model_io.save_model`
  (``kmeans_imagery.model_io``): the model file;
- :class:`~kmeans_imagery.errors.KMIError` (``kmeans_imagery.errors``): every error a user can cause.

Examples
--------
>>> import kmeans_imagery
>>> from kmeans_imagery import KMeans, load_dataset
>>> digits = load_dataset("digits")
>>> KMeans(n_clusters=10, random_state=0).fit(digits.train_images.reshape(-1, 64) / 16.0).n_clusters
10
"""

from importlib import import_module

from .errors import KMIError

_LAZY = {
    "ClusterClassifier": ".labeling",
    "DaskKMeans": ".engine.dask",
    "KMeans": ".engine.kmeans",
    "MiniBatchKMeans": ".engine.kmeans",
    "load_dataset": ".datasets",
    "load_model": ".model_io",
    "save_model": ".model_io",
}

__all__ = ["KMIError", "__version__", *_LAZY]


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kmeans-imagery")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name):
    if name == "__version__":  # read from the installed metadata on first use (70 ms)
        globals()[name] = _version()
        return globals()[name]
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
