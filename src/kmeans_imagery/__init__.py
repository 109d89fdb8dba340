"""kmeans-imagery: turn unlabeled images into classes with K-means."""

from importlib.metadata import PackageNotFoundError, version

from .engine.kmeans import KMeans, MiniBatchKMeans
from .errors import KMIError
from .labeling import ClusterClassifier

try:
    __version__ = version("kmeans-imagery")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ClusterClassifier", "KMIError", "KMeans", "MiniBatchKMeans", "__version__"]
