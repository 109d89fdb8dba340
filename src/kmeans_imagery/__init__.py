"""kmeans-imagery: turn unlabeled images into classes with K-means.

The public names are imported on first use, so that ``kmi --help`` and ``import kmeans_imagery`` stay
fast (scikit-learn and matplotlib load only when needed).
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
