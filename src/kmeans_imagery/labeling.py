"""Naming clusters after the labels of their members, and the classifier built on that.

K-means only finds groups; a person wants classes. Each cluster is named after the most frequent true
label among its training members (the tutorial's idea, vectorised here into one ``bincount``), and a new
image gets the name of its nearest centroid.
"""

import math
import numbers
from typing import NamedTuple

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import euclidean_distances, pairwise_distances_argmin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .datasets.convert import pixel_scale
from .engine import make_kmeans
from .errors import KMIError

__all__ = [
    "ClusterClassifier",
    "Members",
    "central_samples",
    "cluster_means",
    "cluster_sums",
    "fitted_classifier",
    "label_kind",
    "majority_vote",
    "name_clusters",
    "name_from_clusters",
    "name_from_examples",
    "nearest_members",
]


def majority_vote(clusters, label_codes, n_clusters, n_classes, sample_weight=None):
    """Count (or weigh) the members of each class in each cluster.

    Parameters
    ----------
    clusters : ndarray of shape (n_samples,)
        Cluster index of each sample, in ``[0, n_clusters)``.
    label_codes : ndarray of shape (n_samples,)
        Class index of each sample, in ``[0, n_classes)``.
    n_clusters, n_classes : int
        Number of clusters and of classes.
    sample_weight : ndarray of shape (n_samples,) or None
        Vote of each sample; None gives each one vote.

    Returns
    -------
    counts : ndarray of shape (n_clusters, n_classes)
        ``counts[k, c]`` is the number (int) or total weight (float) of samples of class ``c`` in
        cluster ``k``; one ``bincount`` over the combined index, no loop over samples or clusters.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import majority_vote
    >>> clusters = np.array([0, 0, 1, 1, 1])
    >>> classes = np.array([0, 1, 1, 1, 0])
    >>> majority_vote(clusters, classes, n_clusters=2, n_classes=2)
    array([[1, 1],
           [1, 2]])
    """
    combined = np.asarray(clusters, dtype=np.int64) * n_classes + np.asarray(label_codes)
    counts = np.bincount(combined, weights=sample_weight, minlength=n_clusters * n_classes)
    return counts.reshape(n_clusters, n_classes)


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

    Examples
    --------
    Cluster 0 ties (class 0 wins), cluster 2 has no labelled member and takes the name of the
    nearest named centroid, cluster 1's:

    >>> import numpy as np
    >>> from kmeans_imagery.labeling import name_clusters
    >>> counts = np.array([[2, 2], [0, 3], [0, 0]])
    >>> centers = np.array([[0.0, 0.0], [5.0, 5.0], [4.0, 4.0]])
    >>> name_clusters(counts, centers)
    array([0, 1, 1])
    """
    names = counts.argmax(axis=1)
    voted = counts.sum(axis=1) > 0
    if not voted.any():
        raise KMIError("no cluster has a labelled member, so no cluster can be named")
    if not voted.all():
        nearest = pairwise_distances_argmin(centers[~voted], centers[voted])
        names[~voted] = names[voted][nearest]
    return names


def cluster_sums(rows, clusters, n_clusters, sample_weight=None):
    """(Weighted) sum of the rows of each cluster.

    Parameters
    ----------
    rows : ndarray of shape (n_samples, n_features)
        The rows to add up.
    clusters : ndarray of shape (n_samples,)
        Cluster index of each row, in ``[0, n_clusters)``.
    n_clusters : int
        Number of clusters.
    sample_weight : ndarray of shape (n_samples,) or None
        Weight of each row; None weighs every row 1.

    Returns
    -------
    sums : ndarray of shape (n_clusters, n_features), float32
        Zeros for a cluster without rows.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import cluster_sums
    >>> rows = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    >>> cluster_sums(rows, np.array([0, 0, 1]), 3)
    array([[ 4.,  6.],
           [10., 10.],
           [ 0.,  0.]], dtype=float32)
    """
    from .engine._kernels import _dense_sum_by_label

    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
    return np.asarray(_dense_sum_by_label(np.asarray(rows, dtype=np.float32), clusters, n_clusters,
                                          weights), dtype=np.float32)

def cluster_means(rows, clusters, n_clusters, sample_weight=None):
    """(Weighted) mean row of each cluster, such as each cluster's mean image.

    Parameters
    ----------
    rows : ndarray of shape (n_samples, n_features)
        The rows to average.
    clusters : ndarray of shape (n_samples,)
        Cluster index of each row, in ``[0, n_clusters)``.
    n_clusters : int
        Number of clusters.
    sample_weight : ndarray of shape (n_samples,) or None
        Weight of each row; None weighs every row 1.

    Returns
    -------
    means : ndarray of shape (n_clusters, n_features), float32
        Zeros for a cluster without rows.

    See Also
    --------
    cluster_sums : The sums these means divide.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import cluster_means
    >>> rows = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    >>> cluster_means(rows, np.array([0, 0, 1]), 2)
    array([[ 2.,  3.],
           [10., 10.]], dtype=float32)
    >>> cluster_means(rows, np.array([0, 0, 1]), 2, sample_weight=np.array([3.0, 1.0, 1.0]))
    array([[ 1.5,  2.5],
           [10. , 10. ]], dtype=float32)
    """
    counts = np.bincount(clusters, weights=sample_weight, minlength=n_clusters).astype(np.float32)
    sums = cluster_sums(rows, clusters, n_clusters, sample_weight)
    return sums / np.where(counts > 0, counts, 1)[:, None]


def name_from_examples(model, sample_indices, labels):
    """Rename a fitted model's clusters from a few labelled training samples.

    This is the few-labels workflow: a person labels some images (say the most central one of each
    cluster), and every cluster takes the majority label of its labelled members; clusters with no
    labelled member take the name of the nearest named centroid.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted; ``model.labels_`` gives the cluster of each training sample.
    sample_indices : array-like of int, shape (n_labelled,)
        Positions of the labelled samples in the training data.
    labels : array-like of shape (n_labelled,)
        The label a person gave each of them.

    Returns
    -------
    model : ClusterClassifier
        The same model with new ``classes_`` and ``cluster_labels_``.

    Raises
    ------
    KMIError
        When an index is out of range, or the counts of indices and labels differ.

    See Also
    --------
    central_samples : The most central training sample of each cluster, the ones to label.

    Examples
    --------
    Cluster the digits without labels, then label only the most central image of each of
    30 clusters (30 labels out of 1437 images):

    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.labeling import ClusterClassifier, central_samples, name_from_examples
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=30, algorithm="full", random_state=0)
    >>> model = model.fit(digits.train_images, None)
    >>> central = central_samples(model, digits.train_images)
    >>> model = name_from_examples(model, central, digits.train_labels[central])
    >>> print(f"{model.score(digits.test_images, digits.test_labels):.2f}")
    0.89
    """
    given = np.asarray(sample_indices)
    sample_indices = given.astype(np.int64)
    # A cast would truncate 0.5 to the image at 0.
    if given.dtype.kind not in "iub" and not np.array_equal(sample_indices, given):
        raise KMIError(f"sample_indices must be whole numbers, got {given.ravel()[:5].tolist()}")
    n_samples = len(model.labels_)
    if len(sample_indices) and (sample_indices.min() < 0 or sample_indices.max() >= n_samples):
        raise KMIError(f"sample index out of range: the training data has {n_samples} images")
    return name_from_clusters(model, model.labels_[sample_indices], labels)


def name_from_clusters(model, clusters, labels):
    """Rename a fitted model's clusters from labelled examples whose clusters are known.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted.
    clusters : array-like of int, shape (n_labelled,)
        The cluster of each labelled example (``model.predict_cluster`` of its image).
    labels : array-like of shape (n_labelled,)
        The label of each example.

    Returns
    -------
    model : ClusterClassifier
        The same model with new ``classes_`` and ``cluster_labels_``.

    Raises
    ------
    KMIError
        When there are no labels, the counts of clusters and labels differ, a cluster is not
        one of the model's, or the labels mix numbers and strings.

    Examples
    --------
    Name two clusters from three labelled images that were not in the training data:

    >>> import numpy as np
    >>> from kmeans_imagery.labeling import ClusterClassifier, name_from_clusters
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, None)
    >>> labelled = np.array([[0.5, 0.5], [8.0, 9.0], [9.5, 9.0]])
    >>> model = name_from_clusters(model, model.predict_cluster(labelled), ["cat", "dog", "dog"])
    >>> model.predict(np.array([[1.0, 0.0], [10.0, 10.0]]))
    array(['cat', 'dog'], dtype='<U3')
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labels = np.asarray(labels)
    if len(clusters) != len(labels):
        raise KMIError(f"{len(labels)} labels for {len(clusters)} samples")
    if len(labels) == 0:
        raise KMIError("no labelled samples to name the clusters from")
    if clusters.min() < 0 or clusters.max() >= model.n_clusters:
        bad = clusters[(clusters < 0) | (clusters >= model.n_clusters)][0]
        raise KMIError(f"clusters: {bad} is not a cluster of the model's {model.n_clusters}")
    label_kind(labels)  # a mix cannot be sorted into classes: say so, not a TypeError
    model.classes_, codes = np.unique(labels, return_inverse=True)
    counts = majority_vote(clusters, codes, model.n_clusters, len(model.classes_))
    model.cluster_labels_ = model.classes_[name_clusters(counts, model.cluster_centers_)]
    return model


def fitted_classifier(centers, classes, cluster_labels, *, image_shape, features, cluster_images,
                      inertia, n_iter=None, params=None):
    """A fitted :class:`ClusterClassifier` from its parts (a model file, a streamed fit).

    Parameters
    ----------
    centers : ndarray of shape (n_clusters, n_features)
        Centroids, in the space the clustering ran in.
    classes : ndarray of shape (n_classes,)
        The sorted class labels.
    cluster_labels : ndarray of shape (n_clusters,)
        The class each cluster is named after: values of ``classes``.
    image_shape : tuple or None
        Shape of one image, (H, W) or (H, W, C); None for a model of feature rows.
    features : FeaturePipeline or None
        The fitted feature pipeline; None when the centroids are pixels.
    cluster_images : ndarray of shape (n_clusters, n_pixels)
        Mean image of each cluster (``centers`` without features).
    inertia : float or None
        Inertia of the fit, when known.
    n_iter : int or None
        Iterations of the fit, when known.
    params : dict or None
        Constructor parameters to record; unknown names are ignored.

    Returns
    -------
    ClusterClassifier
        Without ``labels_`` (one per training image would grow with the data).

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import fitted_classifier
    >>> centers = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> model = fitted_classifier(centers, np.array(["dark", "light"]), np.array(["dark", "light"]),
    ...                           image_shape=None, features=None, cluster_images=centers,
    ...                           inertia=None, params={"n_clusters": 2})
    >>> model.predict(np.array([[0.1, 0.2], [0.9, 0.7]]))
    array(['dark', 'light'], dtype='<U5')
    """
    known = ClusterClassifier().get_params()
    model = ClusterClassifier(**{k: v for k, v in (params or {}).items() if k in known})
    model.cluster_centers_ = centers
    model.classes_ = classes
    model.cluster_labels_ = cluster_labels
    model.image_shape_ = None if image_shape is None else tuple(image_shape)
    model.features_ = features
    model.cluster_images_ = cluster_images
    model.n_features_in_ = (int(np.prod(model.image_shape_)) if model.image_shape_ is not None
                            else centers.shape[1])
    model.inertia_ = None if inertia is None else float(inertia)
    model.n_iter_ = n_iter
    return model


class Members(NamedTuple):
    """Each cluster's members nearest its centroid, from :func:`nearest_members`.

    Attributes
    ----------
    indices : list of ndarray of int64, one per cluster
        Positions in the source, nearest first (at most ``per_cluster``).
    distances : list of ndarray, one per cluster
        Their distances to the centroid.
    images : ndarray of uint8, shape (n_clusters, per_cluster, H, W[, 3])
        Their images; rows past a cluster's members are zeros.
    paths : list of list of Path, or None
        Their files, for sources of image files.
    sizes : ndarray of int64, shape (n_clusters,)
        Images nearest each centroid, in the whole source.

    Examples
    --------
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.labeling import ClusterClassifier, nearest_members
    >>> source = open_source("digits")
    >>> digits = source.read_all()
    >>> model = ClusterClassifier(n_clusters=10, algorithm="full", random_state=0)
    >>> model = model.fit(digits.images, digits.labels)
    >>> members = nearest_members(model, source, per_cluster=4)
    >>> members.images.shape
    (10, 4, 8, 8)
    >>> int(members.sizes.sum()), members.paths is None
    (1437, True)
    """

    indices: list
    distances: list
    images: np.ndarray
    paths: list | None
    sizes: np.ndarray


def nearest_members(model, source, per_cluster, *, batch_size=4096):
    """For each cluster, its members nearest to its centroid, in one pass over a source.

    Memory is one batch of ``batch_size`` x n_clusters distances plus the kept members, whatever
    the size of the source.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted, taking the source's images.
    source : ImageSource
        The images to search, read in batches (for example from
        :func:`~kmeans_imagery.datasets.open_source`).
    per_cluster : int
        How many members to keep per cluster.
    batch_size : int, default=4096
        Images read and compared at once.

    Returns
    -------
    Members
        Each cluster's nearest members (their positions, distances, images and files) and the
        cluster sizes.

    Examples
    --------
    The four digits nearest each centroid, which a person would look at to check (or give) the
    cluster's name; here they show a cluster that mixes 8s and 1s, and one that mixes 3s and 9s:

    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.labeling import ClusterClassifier, nearest_members
    >>> source = open_source("digits")
    >>> digits = source.read_all()
    >>> model = ClusterClassifier(n_clusters=10, algorithm="full", random_state=0)
    >>> model = model.fit(digits.images, digits.labels)
    >>> members = nearest_members(model, source, per_cluster=4)
    >>> for cluster in range(10):
    ...     print(model.cluster_labels_[cluster], digits.labels[members.indices[cluster]])
    4 [4 4 4 4]
    6 [6 6 6 6]
    8 [8 8 1 1]
    0 [0 0 0 0]
    7 [7 7 7 7]
    5 [5 5 5 5]
    1 [1 9 1 1]
    3 [9 3 9 3]
    1 [1 1 1 1]
    2 [2 2 2 2]
    """
    k = len(model.cluster_centers_)
    kept = None  # (cluster, distance, position, image, path) of the candidates so far
    sizes = np.zeros(k, dtype=np.int64)
    for batch in source.iter_batches(batch_size):
        if not len(batch.images):
            continue
        distances = model.cluster_distances(batch.images)
        clusters = distances.argmin(axis=1)
        nearest = distances[np.arange(len(clusters)), clusters]
        sizes += np.bincount(clusters, minlength=k)
        new = (clusters, nearest, source.positions(batch), batch.images,
               None if batch.paths is None else np.array(batch.paths, dtype=object))
        kept = new if kept is None else tuple(
            None if a is None else np.concatenate([a, b]) for a, b in zip(kept, new, strict=True))
        # Keep each cluster's first ``per_cluster`` rows by (cluster, distance).
        order = np.lexsort((kept[1], kept[0]))
        first = np.searchsorted(kept[0][order], kept[0][order], side="left")
        keep = order[np.arange(len(order)) - first < per_cluster]
        kept = tuple(None if a is None else a[keep] for a in kept)
    images = np.zeros((k, per_cluster, *source.image_shape), dtype=np.uint8)
    indices, distances, paths = [], [], [] if kept is not None and kept[4] is not None else None
    for c in range(k):
        rows = np.flatnonzero(kept[0] == c) if kept is not None else np.empty(0, np.int64)
        indices.append(kept[2][rows] if kept is not None else rows)
        distances.append(kept[1][rows] if kept is not None else np.empty(0))
        if len(rows):
            images[c, :len(rows)] = kept[3][rows]
        if paths is not None:
            paths.append(list(kept[4][rows]))
    return Members(indices, distances, images, paths, sizes)


def central_samples(model, X):
    """Index of the training sample nearest to each centroid among the cluster's members.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted on ``X``.
    X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
        The training rows or images the model was fitted on.

    Returns
    -------
    indices : ndarray of shape (n_clusters,)
        Position in ``X`` of each cluster's most central member; -1 for a cluster without members.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import ClusterClassifier, central_samples
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.4], [9.0, 9.0], [9.0, 7.0], [9.0, 8.2]])
    >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, None)
    >>> central = central_samples(model, X)
    >>> sorted(central.tolist())
    [2, 5]
    """
    k = len(model.cluster_centers_)
    best = np.full(k, np.inf)
    central = np.full(k, -1, dtype=np.int64)
    for start in range(0, len(X), 4096):
        distances = model.cluster_distances(X[start:start + 4096])
        clusters = distances.argmin(axis=1)
        nearest = distances[np.arange(len(clusters)), clusters]
        # Rows by (cluster, distance): each cluster's first row is its best in this block.
        order = np.lexsort((nearest, clusters))
        firsts = order[np.r_[True, np.diff(clusters[order]) != 0]]
        better = nearest[firsts] < best[clusters[firsts]]
        best[clusters[firsts[better]]] = nearest[firsts[better]]
        central[clusters[firsts[better]]] = start + firsts[better]
    return central


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
        Passed to the engine when set; None keeps the engine's own default. With ``n_init > 1``
        the run of lowest inertia (in feature space) is kept: an unsupervised choice.
    features : str or None, default=None
        A feature pipeline spec or preset (see :data:`kmeans_imagery.features.FEATURE_PRESETS`),
        fitted on the training images and applied before clustering; None or ``"raw"`` clusters
        the pixels. Pipelines with image steps (deskew, hog) need images, not 2-D rows.
    random_state : int, RandomState instance or None, default=None
        Seed of the clustering (and of randomised feature steps).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels seen in ``fit``.
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centroids, in the space the clustering ran in: the (flattened, scaled) input rows, or the
        features when ``features`` is set.
    cluster_images_ : ndarray of shape (n_clusters, n_pixels)
        Mean of each cluster's training rows in pixel space, for drawing: equal to
        ``cluster_centers_`` without features.
    features_ : FeaturePipeline or None
        The fitted feature pipeline.
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
    ``fit`` and ``predict`` accept either 2-D rows, used as they are, or a stack of images, scaled
    to [0, 1] by the rule array files follow (:func:`~kmeans_imagery.datasets.convert.to_uint8_images`):
    integer images (0..255) and float images with a value above 1 (in [0, 255]) are divided by 255,
    float images in [0, 1] are taken as already scaled, and other values are refused. The rule is
    applied to each call's images, so a fitted classifier predicts on raw uint8 images, on the same
    images as floats in 0..255 and on images scaled to [0, 1] alike.

    Examples
    --------
    The tutorial in four lines: cluster the training digits into 36 groups, name each group after
    its most frequent digit, and score on the held-out test digits.

    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import load_dataset
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=36, algorithm="full", random_state=0)
    >>> model.fit(digits.train_images, digits.train_labels)
    ClusterClassifier(algorithm='full', n_clusters=36, random_state=0)
    >>> model.cluster_labels_[:12]
    array([4, 3, 6, 0, 5, 8, 8, 2, 4, 1, 7, 7])
    >>> model.predict(digits.test_images[:8]), digits.test_labels[:8]
    (array([7, 6, 3, 7, 7, 3, 2, 8]), array([7, 6, 3, 7, 7, 3, 2, 8]))
    >>> print(f"{model.score(digits.test_images, digits.test_labels):.2f}")
    0.89
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
        features=None,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.engine = engine
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.features = features
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Cluster ``X`` and name the clusters after ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Training rows or images.
        y : array-like of shape (n_samples,) or None
            Class labels (any sortable values: ints, strings). Without labels each cluster is its
            own class, named by its index, so ``predict`` returns cluster indices.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample: in the clustering (weighted means and inertia, see
            :class:`kmeans_imagery.KMeans`), in ``cluster_images_``, and as its vote when naming
            the clusters (the class of largest total weight wins).

        Returns
        -------
        self : ClusterClassifier
            The fitted classifier.

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery import ClusterClassifier
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
        >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
        >>> model.labels_.tolist(), model.cluster_labels_.tolist()
        ([0, 0, 1, 1], ['cat', 'dog'])
        """
        self.fit_rows(X, y, sample_weight)
        return self

    def fit_rows(self, X, y, sample_weight=None):
        """Fit as :meth:`fit` does, and return the rows the clustering ran on.

        For a caller that goes on to use the features of every training image (``kmi
        explore``'s pass over the collection): the feature pipeline then runs once per image.

        Parameters
        ----------
        X, y, sample_weight
            As for :meth:`fit`.

        Returns
        -------
        rows : ndarray of shape (n_samples, n_features_out)
            The training rows in the space of ``cluster_centers_``: the scaled pixels, or their
            features when ``features`` is set (equal to ``features_.transform`` of them).

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery import ClusterClassifier
        >>> images = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
        >>> model = ClusterClassifier(n_clusters=3, features="l2", random_state=0)
        >>> rows = model.fit_rows(images, None)
        >>> rows.shape, model.cluster_centers_.shape
        ((20, 64), (3, 64))
        """
        rows, image_shape = self._rows(X)
        if y is None:
            rows = validate_data(self, rows, dtype=[np.float32, np.float64], reset=True)
        else:
            label_kind(y, "y")  # scikit-learn's error for a mix is "Unknown label type: unknown"
            rows, y = validate_data(self, rows, y, dtype=[np.float32, np.float64], reset=True)
            check_classification_targets(y)
        if not isinstance(self.n_clusters, int | np.integer) or self.n_clusters < 1:
            raise KMIError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (len(rows),):
                raise KMIError(f"sample_weight.shape == {sample_weight.shape}, expected ({len(rows)},)")
        self.image_shape_ = image_shape
        return self._fit(rows, y, sample_weight)

    def _fit(self, rows, y, sample_weight=None):
        """Fit on validated rows; return the rows clustered (the features, when there are any)."""
        pixels = rows
        self.features_ = None
        if self.features not in (None, "raw"):
            from .features import make_features

            if self.image_shape_ is None:
                raise KMIError(
                    f"features {self.features!r} need images (n, H, W[, C]), not 2-D rows"
                )
            self.features_ = make_features(self.features, self.image_shape_, self.random_state)
            rows = self.features_.fit_transform(rows)
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
        )
        # Raw rows were checked for NaN and infinity by fit; features are checked by the engine.
        with config_context(assume_finite=self.features_ is None):
            kmeans.fit(rows, sample_weight=sample_weight)
        self.cluster_centers_ = kmeans.cluster_centers_
        self.labels_ = np.asarray(kmeans.labels_)
        self.inertia_ = float(kmeans.inertia_)
        self.n_iter_ = kmeans.n_iter_
        self.cluster_images_ = (
            self.cluster_centers_ if self.features_ is None
            else cluster_means(pixels, self.labels_, self.n_clusters, sample_weight)
        )
        if y is None:
            self.classes_ = np.arange(self.n_clusters)
            self.cluster_labels_ = self.classes_.copy()
            return rows
        self.classes_, label_codes = np.unique(y, return_inverse=True)
        counts = majority_vote(self.labels_, label_codes, self.n_clusters, len(self.classes_), sample_weight)
        self.cluster_labels_ = self.classes_[name_clusters(counts, self.cluster_centers_)]
        return rows

    def cluster_distances(self, X):
        """Euclidean distance of each row or image to every centroid.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Rows or images of the kind the model was fitted on.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
            In the space the clustering ran in (the features, when the model has any).

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery import ClusterClassifier
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
        >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
        >>> model.cluster_distances(np.array([[0.0, 0.5]])).round(3)
        array([[ 0.   , 12.042]])
        """
        check_is_fitted(self)
        rows = self._check_rows(X)
        return euclidean_distances(rows, self.cluster_centers_)

    def predict_cluster(self, X):
        """Index of the nearest centroid for each row or image.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Rows or images of the kind the model was fitted on.

        Returns
        -------
        clusters : ndarray of shape (n_samples,)
            Cluster indices, in ``[0, n_clusters)``.

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery import ClusterClassifier
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
        >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
        >>> model.predict_cluster(np.array([[1.0, 1.0], [8.0, 8.0]]))
        array([0, 1])
        """
        check_is_fitted(self)
        rows = self._check_rows(X)
        return pairwise_distances_argmin(rows, self.cluster_centers_)

    def predict(self, X):
        """Class label of the nearest centroid for each row or image.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Rows or images of the kind the model was fitted on.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Values of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_imagery import ClusterClassifier
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
        >>> model = ClusterClassifier(n_clusters=2, random_state=0).fit(X, ["cat", "cat", "dog", "dog"])
        >>> model.predict(np.array([[1.0, 1.0], [8.0, 8.0]]))
        array(['cat', 'dog'], dtype='<U3')
        """
        check_is_fitted(self)
        return self.cluster_labels_[self.predict_cluster(X)]

    def _check_rows(self, X):
        if self.image_shape_ is not None and np.shape(X) == self.image_shape_:
            raise KMIError(f"X is one image of shape {_shape_text(self.image_shape_)}; pass a stack "
                           "of images, such as X[None]")
        rows, image_shape = self._rows(X)
        if image_shape is not None and self.image_shape_ is not None and image_shape != self.image_shape_:
            raise KMIError(
                f"images of shape {_shape_text(image_shape)} do not match the model's "
                f"{_shape_text(self.image_shape_)}; resize them first"
            )
        rows = validate_data(self, rows, dtype=[np.float32, np.float64], reset=False)
        features = getattr(self, "features_", None)
        return rows if features is None else features.transform(rows)

    @staticmethod
    def _rows(X):
        """Flatten a stack of images into rows scaled to [0, 1] (see Notes); pass 2-D input through."""
        if getattr(X, "ndim", 0) < 3:
            return X, None
        X = np.asarray(X)
        # The explicit row length also reshapes an empty stack.
        rows = X.reshape(len(X), math.prod(X.shape[1:]))
        # Bool (0 and 1) is scaled already; other dtypes are refused by validation.
        if X.dtype.kind in "iuf" and pixel_scale(X, "X") == 1:
            rows = np.multiply(rows, np.float32(1 / 255), dtype=np.float32)
        return rows, X.shape[1:]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _shape_text(shape):
    return "x".join(str(side) for side in shape)


def label_kind(labels, name="labels"):
    """Whether class labels are numbers or strings; a mix of both cannot be sorted into classes.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class labels.
    name : str, default="labels"
        The parameter named in the error.

    Returns
    -------
    {"number", "string", "other"}

    Raises
    ------
    KMIError
        When the labels mix strings and numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.labeling import label_kind
    >>> label_kind([3, 1, 4]), label_kind(np.array(["cat", "dog"], dtype=object))
    ('number', 'string')
    >>> label_kind(np.array([1, "cat"], dtype=object), "y")
    Traceback (most recent call last):
        ...
    kmeans_imagery.errors.KMIError: y mixes numbers and strings (such as 1 and 'cat'); give labels of one type
    """
    labels = np.asarray(labels)
    if labels.dtype.kind in "biuf":
        return "number"
    if labels.dtype.kind in "US":
        return "string"
    examples = {}
    for value in labels.ravel().tolist():
        kind = ("string" if isinstance(value, str | bytes)
                else "number" if isinstance(value, numbers.Number) else "other")
        examples.setdefault(kind, value)
    if len(examples) > 1:
        first, second = list(examples.values())[:2]
        raise KMIError(f"{name} mixes {' and '.join(f'{kind}s' for kind in examples)} (such as "
                       f"{first!r} and {second!r}); give labels of one type")
    return next(iter(examples), "other")
