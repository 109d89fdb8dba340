"""Unsupervised classification of the pixels of a raster (``kmi segment``).

:func:`segment` samples training pixels across a scene, fits a pixel feature pipeline (see
:func:`kmeans_imagery.features.make_pixel_features`) and K-means on them, classifies every pixel
block by block and writes a georeferenced class map with its companions; it returns a
:class:`Segmentation`.

One concern per private module: ``_pixels`` (strips as rows, neighbourhood means, the training
sample), ``_classify`` (the pixel model and the per-strip classification), ``_smoothing`` (majority
filter), ``_scoring`` (truth scores), ``_outputs`` and ``_plots`` (files and figures), ``_model``
(the model file), ``_result`` (the result object), ``_api`` (the whole run).
"""

from ._api import segment
from ._result import Segmentation

__all__ = ["Segmentation", "segment"]
