"""Scores for a clustering and for the classifier built from it.

Everything scikit-learn computes is taken from :mod:`sklearn.metrics`; this module adds inertia (exact,
accumulated in float64), purity and Hungarian (one-cluster-per-class) accuracy, and one function that
gathers them all for a report.

Labels may be any hashable values (ints, strings, or a mix of them in one array): they are compared
by equality only, so ``1`` and ``"1"`` are different labels, and ``1`` and ``1.0`` the same.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix

from .errors import KMIError

__all__ = [
    "clustering_scores",
    "cohen_kappa",
    "confusion",
    "contingency_scores",
    "hungarian_accuracy",
    "inertia",
    "purity",
    "sweep_scores",
]


def _codes(*labels):
    """Integer codes of label arrays: equal labels get equal codes across all of them.

    Scores only compare labels, but :func:`numpy.unique` (and scikit-learn after it) sorts them,
    which fails on a mix of types such as ``1`` and ``"cat"``; such labels are coded by hashing.

    Raises
    ------
    KMIError
        When there are no labels to score.
    """
    arrays = [np.asarray(y).ravel() for y in labels]
    if not len(arrays[0]):
        raise KMIError("y_true is empty: there are no samples to score")
    ends = np.cumsum([len(y) for y in arrays])
    kinds = {"number" if y.dtype.kind in "biuf" else y.dtype.kind for y in arrays}
    if kinds in ({"number"}, {"U"}):
        # Numbers only, or strings only: concatenating keeps every label's value.
        codes = np.unique(np.concatenate(arrays), return_inverse=True)[1].reshape(-1)
    else:
        seen = {}
        codes = np.fromiter((seen.setdefault(value, len(seen)) for y in arrays for value in y.tolist()),
                            dtype=np.int64, count=int(ends[-1]))
    return np.split(codes, ends[:-1])


def inertia(X, centers, labels, *, chunk_size=8192):
    """Sum of squared distances of samples to their assigned centroid.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The clustered rows.
    centers : ndarray of shape (n_clusters, n_features)
        The centroids.
    labels : ndarray of shape (n_samples,)
        Index of the centroid assigned to each sample.
    chunk_size : int, default=8192
        Rows processed at once; bounds the temporary memory to chunk_size x n_features floats.

    Returns
    -------
    float
        The inertia, accumulated in float64 whatever the input dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.metrics import inertia
    >>> X = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0]], dtype=np.float32)
    >>> centers = np.array([[0.0, 1.0], [10.0, 0.0]], dtype=np.float32)
    >>> inertia(X, centers, np.array([0, 0, 1]))
    2.0
    """
    total = 0.0
    for start in range(0, len(X), chunk_size):
        rows = X[start : start + chunk_size]
        diff = rows - centers[labels[start : start + chunk_size]]
        total += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return total


def hungarian_accuracy(y_true, clusters):
    """Clustering accuracy under the best one-to-one matching of clusters to classes.

    The classic unsupervised-clustering accuracy: each cluster is matched to at most one class (and each
    class to at most one cluster) so that the number of correctly matched samples is largest, found with
    :func:`scipy.optimize.linear_sum_assignment`. Samples in unmatched clusters count as wrong.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    clusters : array-like of shape (n_samples,)
        Cluster index of each sample.

    Returns
    -------
    float
        Fraction of samples in a cluster matched to their own class, in [0, 1].

    See Also
    --------
    purity : Each cluster named after its most frequent class instead (several may share one).

    Examples
    --------
    Two clusters split class 1; only one of them can be matched to it:

    >>> from kmeans_imagery.metrics import hungarian_accuracy
    >>> hungarian_accuracy([0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 2, 2])
    0.6666666666666666
    """
    table = contingency_matrix(*_paired(y_true, clusters))
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def cohen_kappa(matrix):
    """Cohen's kappa of a square confusion matrix (rows true, columns predicted).

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_classes)
        ``matrix[i, j]`` counts samples of true class ``i`` predicted as ``j``.

    Returns
    -------
    float
        (observed - chance agreement) / (1 - chance agreement); 1 for perfect agreement.

    Examples
    --------
    85% agreement where chance alone would give 50%:

    >>> from kmeans_imagery.metrics import cohen_kappa
    >>> round(cohen_kappa([[45, 5], [10, 40]]), 3)
    0.7
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    observed = np.trace(matrix) / total
    chance = float(matrix.sum(axis=1) @ matrix.sum(axis=0)) / total**2
    return float((observed - chance) / (1 - chance)) if chance < 1 else 1.0


def contingency_scores(table):
    """Scores of a clustering given only its contingency table, for data too big to hold as labels.

    Parameters
    ----------
    table : ndarray of shape (n_classes, n_clusters)
        ``table[i, j]`` counts samples of class ``i`` in cluster ``j``.

    Returns
    -------
    dict
        ``hungarian_accuracy`` (clusters matched one-to-one to classes), ``majority_accuracy``
        (each cluster named after its most frequent class: the purity), ``kappa`` (Cohen's, of the
        one-to-one matching; samples of unmatched clusters count as a class of their own),
        ``nmi``, ``ari``, ``per_class_accuracy`` (recall of each class under the matching),
        ``confusion_matrix`` (rows true class, columns matched class, then a last column for
        unmatched clusters when K exceeds the number of classes) and ``matching`` (the class index
        of each cluster, -1 when unmatched).

    Examples
    --------
    Two classes in three clusters, counted (strip by strip, say) without keeping the labels:

    >>> import numpy as np
    >>> from kmeans_imagery.metrics import contingency_scores
    >>> table = np.array([[40, 0, 10],
    ...                   [0, 50, 0]])
    >>> scores = contingency_scores(table)
    >>> scores["hungarian_accuracy"], scores["majority_accuracy"]
    (0.9, 1.0)
    >>> scores["matching"]
    [0, 1, -1]
    >>> scores["confusion_matrix"]
    [[40, 0, 10], [0, 50, 0]]
    """
    table = np.asarray(table, dtype=np.int64)
    n_classes, n_clusters = table.shape
    total = table.sum()
    rows, cols = linear_sum_assignment(table, maximize=True)
    matching = np.full(n_clusters, -1, dtype=np.int64)
    matching[cols] = rows
    confusion_table = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    for cluster, cls in enumerate(matching):
        confusion_table[:, cls if cls >= 0 else n_classes] += table[:, cluster]
    square = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    square[:n_classes] = confusion_table
    class_totals = table.sum(axis=1)
    recall = np.divide(np.diag(confusion_table[:, :n_classes]), class_totals,
                       out=np.zeros(n_classes), where=class_totals > 0)
    if not confusion_table[:, n_classes].any():
        confusion_table = confusion_table[:, :n_classes]
    return {
        "hungarian_accuracy": float(table[rows, cols].sum() / total),
        "majority_accuracy": float(table.max(axis=0).sum() / total),
        "kappa": cohen_kappa(square),
        "nmi": _nmi(table),
        "ari": _ari(table),
        "per_class_accuracy": recall.tolist(),
        "confusion_matrix": confusion_table.tolist(),
        "matching": matching.tolist(),
    }


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _nmi(table):
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn's default)."""
    mutual = skm.mutual_info_score(None, None, contingency=table)
    h_true, h_pred = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    mean = (h_true + h_pred) / 2
    return float(mutual / mean) if mean > 0 else 1.0


def _ari(table):
    """Adjusted Rand index from a contingency table (pair counts, in float64)."""
    def pairs(x):
        x = np.asarray(x, dtype=np.float64)
        return float((x * (x - 1) / 2).sum())

    total = pairs([table.sum()])
    index, rows, cols = pairs(table.ravel()), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    return float((index - expected) / (maximum - expected)) if maximum != expected else 1.0


def purity(y_true, clusters):
    """Fraction of samples whose cluster's most frequent class is their own class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    clusters : array-like of shape (n_samples,)
        Cluster index of each sample.

    Returns
    -------
    float
        The accuracy of naming each cluster after its majority class, in [0, 1].

    See Also
    --------
    hungarian_accuracy : Clusters matched one-to-one to classes instead.

    Examples
    --------
    >>> from kmeans_imagery.metrics import purity
    >>> round(purity([0, 0, 1, 1, 1, 2], [0, 0, 0, 1, 1, 1]), 3)
    0.667
    """
    table = contingency_matrix(*_paired(y_true, clusters))
    return float(table.max(axis=0).sum() / table.sum())


def confusion(y_true, y_pred, classes):
    """Confusion matrix with rows = true class, columns = predicted class, in the order of ``classes``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    y_pred : array-like of shape (n_samples,)
        Predicted class of each sample.
    classes : array-like of shape (n_classes,)
        The classes, in the order of the rows and columns.

    Returns
    -------
    ndarray of shape (n_classes, n_classes)
        ``matrix[i, j]`` counts samples of class ``classes[i]`` predicted as ``classes[j]``.

    Examples
    --------
    >>> from kmeans_imagery.metrics import confusion
    >>> confusion(["cat", "dog", "dog", "owl"], ["cat", "dog", "owl", "owl"], ["cat", "dog", "owl"])
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])

    A class missing from both lists keeps its (empty) row and column:

    >>> confusion([0, 0, 2], [0, 2, 2], [0, 1, 2])
    array([[1, 0, 1],
           [0, 0, 0],
           [0, 0, 1]])
    """
    true_codes, pred_codes, class_codes = _codes(y_true, y_pred, classes)
    _check_lengths(true_codes, pred_codes)
    n = len(class_codes)
    position = np.full(max(true_codes.max(), pred_codes.max(), class_codes.max(initial=0)) + 1, -1)
    position[class_codes] = np.arange(n)
    rows, cols = position[true_codes], position[pred_codes]
    # Labels that are not in classes are left out, as scikit-learn's confusion_matrix does.
    kept = (rows >= 0) & (cols >= 0)
    return np.bincount(rows[kept] * n + cols[kept], minlength=n * n).reshape(n, n)


def _check_lengths(y_true, y_other):
    if len(y_other) != len(y_true):
        raise KMIError(f"y_true has {len(y_true)} labels but the labels to compare have {len(y_other)}")


def _paired(y_true, y_other):
    """:func:`_codes` of two label arrays of one label per sample."""
    codes = _codes(y_true, y_other)
    _check_lengths(*codes)
    return codes


def _accuracy(y_true, y_pred):
    true_codes, pred_codes = _paired(y_true, y_pred)
    return float(np.mean(true_codes == pred_codes))


def _homogeneity_scores(y_true, clusters):
    homogeneity, completeness, v_measure = skm.homogeneity_completeness_v_measure(y_true, clusters)
    return {"homogeneity": float(homogeneity), "completeness": float(completeness),
            "v_measure": float(v_measure)}


def sweep_scores(y_true, clusters, y_pred):
    """The scores a sweep over K reports for each K, in one pass over the labels each.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    clusters : array-like of shape (n_samples,)
        Cluster index of each sample.
    y_pred : array-like of shape (n_samples,)
        Labels predicted by naming the clusters.

    Returns
    -------
    dict of str to float
        ``homogeneity``, ``completeness``, ``v_measure`` and ``accuracy``.

    Examples
    --------
    Three clusters named after their members: class 1 is split in two, so the clustering is
    homogeneous but not complete.

    >>> from kmeans_imagery.metrics import sweep_scores
    >>> scores = sweep_scores([0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1])
    >>> {name: round(value, 3) for name, value in scores.items()}
    {'homogeneity': 1.0, 'completeness': 0.579, 'v_measure': 0.734, 'accuracy': 1.0}
    """
    return {**_homogeneity_scores(*_paired(y_true, clusters)), "accuracy": _accuracy(y_true, y_pred)}


def clustering_scores(y_true, clusters, y_pred=None):
    """All label-based scores of a clustering, as a dict of floats.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    clusters : array-like of shape (n_samples,)
        Cluster index of each sample.
    y_pred : array-like of shape (n_samples,), optional
        Labels predicted by naming the clusters; adds ``accuracy``.

    Returns
    -------
    dict of str to float
        ``homogeneity``, ``completeness``, ``v_measure``, ``nmi``, ``ari``, ``purity``,
        ``hungarian_accuracy`` and, with ``y_pred``, ``accuracy``.

    Examples
    --------
    >>> from kmeans_imagery.metrics import clustering_scores
    >>> scores = clustering_scores([0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 2, 2])
    >>> {name: round(value, 3) for name, value in scores.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'homogeneity': 1.0, 'completeness': 0.579, 'v_measure': 0.734, 'nmi': 0.734, 'ari': 0.444,
     'purity': 1.0, 'hungarian_accuracy': 0.667}
    """
    true_codes, cluster_codes = _paired(y_true, clusters)
    scores = _homogeneity_scores(true_codes, cluster_codes)
    scores.update(
        {
            "nmi": float(skm.normalized_mutual_info_score(true_codes, cluster_codes)),
            "ari": float(skm.adjusted_rand_score(true_codes, cluster_codes)),
            "purity": purity(true_codes, cluster_codes),
            "hungarian_accuracy": hungarian_accuracy(true_codes, cluster_codes),
        }
    )
    if y_pred is not None:
        scores["accuracy"] = _accuracy(y_true, y_pred)
    return scores
