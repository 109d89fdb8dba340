"""The pixels of a raster as feature rows: the neighbourhood step and the linear form of a pipeline.

A pixel pipeline (:func:`~kmeans_imagery.features.make_pixel_features`) reads rows laid out as
the pixel's band values followed, for each radius ``r`` of its ``nbr:r`` steps, by the mean of
every band over the pixel's (2r+1) x (2r+1) neighbourhood. Computing those means needs the raster
around the pixel (strips, nodata), which is :mod:`kmeans_imagery.segment`'s business; here a
:class:`Neighbourhood` step only picks its columns of the row, and every pipeline that does not
start with ``nbr`` starts by picking the band values.
"""

import numpy as np

from ..errors import KMIError
from ._steps import PCA, Concat, Identity, L2Normalize, Standardize, _Step


class Neighbourhood(_Step):
    """Pick the band values (radius 0) or their neighbourhood mean (radius r) from pixel rows ("nbr").

    Parameters
    ----------
    radius : int
        0 for the pixel's own band values, r > 0 for their mean over its (2r+1) x (2r+1)
        neighbourhood.
    radii : sequence of int
        The radii of the input rows' parts, in order: rows hold ``len(radii)`` parts of
        ``n_features_in_ / len(radii)`` values (the bands) each.

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.array([[1.0, 2.0, 1.5, 2.5]])  # 2 bands, then their 3 x 3 neighbourhood mean
    >>> Neighbourhood(1, (0, 1)).fit_transform(rows)
    array([[1.5, 2.5]], dtype=float32)
    """

    def __init__(self, radius=1, radii=(0, 1)):
        self.radius = radius
        self.radii = radii

    def _fit(self, X):
        radii = list(self.radii)
        if self.radius not in radii or X.shape[1] % len(radii):
            raise KMIError(f"nbr:{self.radius}: rows of {X.shape[1]} values do not hold {len(radii)} "
                           f"parts of radii {radii}")

    def _transform(self, X):
        n_bands = self.n_features_in_ // len(self.radii)
        first = list(self.radii).index(self.radius) * n_bands
        return X[:, first : first + n_bands]


def input_radii(pipeline):
    """The radii of the rows a pixel pipeline reads: ``(0,)`` plus those of its ``nbr`` steps.

    Parameters
    ----------
    pipeline : FeaturePipeline

    Returns
    -------
    tuple of int
    """
    for step in _all_steps(pipeline.steps):
        if isinstance(step, Neighbourhood):
            return tuple(int(r) for r in step.radii)
    return (0,)


def _all_steps(steps):
    for step in steps:
        if isinstance(step, Concat):
            for branch in step.branches:
                yield from _all_steps(branch.steps)
        else:
            yield step


def linear_form(pipeline):
    """A fitted pixel pipeline as side-by-side parts ``g(x[:, columns]) @ A + b``, or None.

    ``g`` is the identity, or the division by the norm when the part starts with ``l2``; the
    affine steps after it (``std``, ``pca``, ``raw``) fold into one ``A`` and ``b``. Classifying
    a scene then costs one small product per part instead of a pass per step. None when the
    pipeline is not of that form (a step after a concatenation, ``l2`` after an affine step, UMAP).

    Parameters
    ----------
    pipeline : FeaturePipeline
        Fitted, from :func:`~kmeans_imagery.features.make_pixel_features`.

    Returns
    -------
    list of (slice, bool, ndarray of shape (n_bands, d), ndarray of shape (d,)) or None
        Input columns, unit length, ``A`` and ``b`` (float64) of each part, in output order.
    """
    steps = pipeline.steps
    if len(steps) == 1 and isinstance(steps[0], Concat):
        parts = [branch.steps for branch in steps[0].branches]
    else:
        parts = [steps]
    n_in = pipeline.n_features_in_
    radii = input_radii(pipeline)
    forms = []
    for part in parts:
        radius = 0
        if part and isinstance(part[0], Neighbourhood):
            radius, part = part[0].radius, part[1:]
        width = n_in // len(radii)
        first = radii.index(radius) * width
        unit = bool(part) and isinstance(part[0], L2Normalize)
        A, b = np.eye(width), np.zeros(width)
        for step in part[1:] if unit else part:
            affine = _affine(step)
            if affine is None:
                return None
            A, b = A @ affine[0], b @ affine[0] + affine[1]
        forms.append((slice(first, first + width), unit, A, b))
    return forms


def _affine(step):
    """A fitted step as ``x @ A + b`` (float64), or None when it is not affine."""
    if isinstance(step, Identity):
        width = step.n_features_in_
        return np.eye(width), np.zeros(width)
    if isinstance(step, Standardize):
        scale = step.scale_.astype(np.float64)
        return np.diag(scale), -step.mean_.astype(np.float64) * scale
    if isinstance(step, PCA):
        A = step.components_.T.astype(np.float64) / step.scale_.astype(np.float64)
        return A, -step.mean_.astype(np.float64) @ A
    return None
