"""Unsupervised classification of the pixels of a raster (``kmi segment``).

One concern per module: :mod:`.features` (pixel feature steps), :mod:`.pixels` (strips as rows,
training sample), :mod:`.classify` (the pixel model and the per-strip classification),
:mod:`.smoothing` (majority filter), :mod:`.scoring` (truth scores), :mod:`.outputs` and
:mod:`.plots` (files and figures), :mod:`.model` (the model file), :mod:`.api` (the whole run).
"""

from .api import segment

__all__ = ["segment"]
