"""Turning images into the float32 rows that K-means works on."""

import numpy as np

from .errors import KMIError

__all__ = ["flatten_scale", "image_rows"]


def flatten_scale(images, *, scale=255.0):
    """Flatten images to rows and scale them to float32 in [0, 1].

    Parameters
    ----------
    images : ndarray of shape (n_samples, height, width) or (n_samples, height, width, channels)
        Images, typically uint8. A 2-D array is taken as already flattened.
    scale : float, default=255.0
        The value that maps to 1.0.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
        One row per image. Built in a single allocation: the reshape is a view and the
        multiplication writes float32 directly, so no float64 intermediate exists.

    Raises
    ------
    KMIError
        When ``images`` has fewer than two dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.preprocessing import flatten_scale
    >>> images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)  # one 2x2 image
    >>> X = flatten_scale(images)
    >>> X.shape, X.dtype
    ((1, 4), dtype('float32'))
    >>> X.round(3)
    array([[0. , 1. , 0.2, 0.4]], dtype=float32)
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise KMIError(f"expected a stack of images, got an array of shape {images.shape}")
    rows = images.reshape(len(images), -1)
    return np.multiply(rows, np.float32(1.0 / scale), dtype=np.float32)


def image_rows(features, images):
    """The rows a model clusters: scaled pixels, through a fitted feature pipeline when given.

    Parameters
    ----------
    features : FeaturePipeline or None
        A fitted feature pipeline (a model's ``features_``), or None for the scaled pixels.
    images : ndarray of shape (n_samples, H, W) or (n_samples, H, W, C)
        Images, typically uint8.

    Returns
    -------
    rows : ndarray of shape (n_samples, n_features), float32
        The scaled pixels, or the pipeline's output for them.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.features import make_features
    >>> from kmeans_imagery.preprocessing import image_rows
    >>> images = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    >>> image_rows(None, images).shape
    (20, 64)
    >>> pca = make_features("pca:5", (8, 8)).fit(image_rows(None, images))
    >>> image_rows(pca, images).shape
    (20, 5)
    """
    rows = flatten_scale(images)
    return rows if features is None else features.transform(rows)
