"""Naming clusters after the labels of their members, and the classifier built on that.

K-means only finds groups; a person wants classes. Each cluster is named after the most frequent true
label among its training members (the tutorial's idea, vectorised here into one ``bincount``), and a new
image gets the name of its nearest centroid.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import euclidean_distances, pairwise_distances_argmin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .engine import make_kmeans
from .errors import KMIError
from .preprocessing import flatten_scale

__all__ = ["ClusterClassifier", "majority_vote", "name_clusters"]


def majority_vote(clusters, label_codes, n_clusters, n_classes):
    """Count the members of each class in each cluster.

    Parameters
    ----------
    clusters : ndarray of shape (n_samples,)
        Cluster index of each sample, in ``[0, n_clusters)``.
    label_codes : ndarray of shape (n_samples,)
        Class index of each sample, in ``[0, n_classes)``.
    n_clusters, n_classes : int

    Returns
    -------
    counts : ndarray of shape (n_clusters, n_classes)
        ``counts[k, c]`` is the number of samples of class ``c`` in cluster ``k``; one ``bincount``
        over the combined index, no loop over samples or clusters.
    """
    combined = np.asarray(clusters, dtype=np.int64) * n_classes + np.asarray(label_codes)
    return np.bincount(combined, minlength=n_clusters * n_classes).reshape(n_clusters, n_classes)


def name_clusters(counts, centers):
    """Name each cluster by majority vote; clusters without votes take their nearest named neighbour's name.

    Parameters
    ----------
    counts : ndarray of shape (n_clusters, n_classes)
        Votes from :func:`majority_vote`.
    centers : ndarray of shape (n_clusters, n_features)
        Centroids, used to name clusters that received no votes.

    Returns
    -------
    names : ndarray of shape (n_clusters,)
        Class index of each cluster. Ties go to the smaller class index (``argmax`` keeps the first).

    Raises
    ------
    KMIError
        When no cluster has any vote, so nothing can be named.
    """
    names = counts.argmax(axis=1)
    voted = counts.sum(axis=1) > 0
    if not voted.any():
        raise KMIError("no cluster has a labelled member, so no cluster can be named")
    if not voted.all():
        nearest = pairwise_distances_argmin(centers[~voted], centers[voted])
        names[~voted] = names[voted][nearest]
    return names


class ClusterClassifier(ClassifierMixin, BaseEstimator):
    """A classifier that clusters with K-means, then names each cluster after its members' labels.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of clusters K. More clusters than classes is normal: several clusters share a name.
    algorithm : {"minibatch", "full"}, default="minibatch"
        Mini-batch K-means as in the tutorial, or full Lloyd iterations.
    engine : str or None, default=None
        K-means engine name (see :data:`kmeans_imagery.engine.ENGINES`); None picks the default.
    n_init, max_iter, batch_size : int or None, default=None
        Passed to the engine when set; None keeps the engine's own default.
    random_state : int, RandomState instance or None, default=None
        Seed of the clustering.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels seen in ``fit``.
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centroids, in the space of the (flattened, scaled) input rows.
    cluster_labels_ : ndarray of shape (n_clusters,)
        The class label each cluster is named after.
    labels_ : ndarray of shape (n_samples,)
        Cluster index of each training sample.
    inertia_ : float
        Sum of squared distances of the training samples to their centroids.
    image_shape_ : tuple or None
        Shape of one image when ``fit`` was given images (n, H, W[, C]); None for 2-D rows.
    n_features_in_ : int
        Number of features (pixels) per row.

    Notes
    -----
    ``fit`` and ``predict`` accept either 2-D rows or a stack of images. Integer images are scaled by
    1/255 to [0, 1]; float images are taken as already scaled. So a fitted classifier predicts on raw
    uint8 images directly.
    """

    def __init__(
        self,
        n_clusters=10,
        *,
        algorithm="minibatch",
        engine=None,
        n_init=None,
        max_iter=None,
        batch_size=None,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.engine = engine
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X, y):
        """Cluster ``X`` and name the clusters after ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Training rows or images.
        y : array-like of shape (n_samples,) or None
            Class labels (any sortable values: ints, strings). Without labels each cluster is its
            own class, named by its index, so ``predict`` returns cluster indices.

        Returns
        -------
        self
        """
        rows, image_shape = self._rows(X)
        if y is None:
            rows = validate_data(self, rows, dtype=[np.float32, np.float64], reset=True)
        else:
            rows, y = validate_data(self, rows, y, dtype=[np.float32, np.float64], reset=True)
            check_classification_targets(y)
        if not isinstance(self.n_clusters, int | np.integer) or self.n_clusters < 1:
            raise KMIError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        self.image_shape_ = image_shape
        return self._fit(rows, y)

    def _fit(self, rows, y):
        engine_params = {
            name: value
            for name in ("n_init", "max_iter", "batch_size")
            if (value := getattr(self, name)) is not None
        }
        if self.algorithm == "full":
            engine_params.pop("batch_size", None)
        kmeans = make_kmeans(
            self.n_clusters,
            algorithm=self.algorithm,
            engine=self.engine,
            random_state=self.random_state,
            **engine_params,
        ).fit(rows)
        self.cluster_centers_ = kmeans.cluster_centers_
        self.labels_ = np.asarray(kmeans.labels_)
        self.inertia_ = float(kmeans.inertia_)
        self.n_iter_ = kmeans.n_iter_
        if y is None:
            self.classes_ = np.arange(self.n_clusters)
            self.cluster_labels_ = self.classes_.copy()
            return self
        self.classes_, label_codes = np.unique(y, return_inverse=True)
        counts = majority_vote(self.labels_, label_codes, self.n_clusters, len(self.classes_))
        self.cluster_labels_ = self.classes_[name_clusters(counts, self.cluster_centers_)]
        return self

    def cluster_distances(self, X):
        """Euclidean distance of each row or image to every centroid.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
        """
        check_is_fitted(self)
        rows = self._check_rows(X)
        return euclidean_distances(rows, self.cluster_centers_)

    def predict_cluster(self, X):
        """Index of the nearest centroid for each row or image.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])

        Returns
        -------
        clusters : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        rows = self._check_rows(X)
        return pairwise_distances_argmin(rows, self.cluster_centers_)

    def predict(self, X):
        """Class label of the nearest centroid for each row or image.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.cluster_labels_[self.predict_cluster(X)]

    def _check_rows(self, X):
        rows, image_shape = self._rows(X)
        if image_shape is not None and self.image_shape_ is not None and image_shape != self.image_shape_:
            raise KMIError(
                f"images of shape {_shape_text(image_shape)} do not match the model's "
                f"{_shape_text(self.image_shape_)}; resize them first"
            )
        return validate_data(self, rows, dtype=[np.float32, np.float64], reset=False)

    @staticmethod
    def _rows(X):
        """Flatten (and for integer images, scale) a stack of images; pass 2-D input through."""
        if getattr(X, "ndim", 0) >= 3:
            X = np.asarray(X)
            if np.issubdtype(X.dtype, np.integer):
                return flatten_scale(X), X.shape[1:]
            return X.reshape(len(X), -1), X.shape[1:]
        return X, None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _shape_text(shape):
    return "x".join(str(side) for side in shape)
