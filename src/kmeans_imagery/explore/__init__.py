"""Exploring an unlabelled image collection: choose K, galleries, outliers, duplicates, a map,
sorting files into folders, and finding similar images.

The entry points are :func:`explore` (``kmi explore``, returning an :class:`Exploration`),
:func:`organize` (``kmi organize``) and :func:`find_similar` (``kmi similar``); the steps they are
made of (:func:`choose_k`, :class:`OutlierScorer`, :func:`find_duplicates`, ...) are public too.
The guide is ``docs/guide/collections.md``.
"""

from ._choose_k import KChoice, choose_k, plot_k_choice
from ._duplicates import DuplicateGroups, descriptors, find_duplicates, pixel_hashes
from ._explore import Exploration, explore
from ._organize import organize
from ._outliers import OutlierScorer
from ._similar import find_similar

__all__ = ["DuplicateGroups", "Exploration", "KChoice", "OutlierScorer", "choose_k", "descriptors", "explore",
           "find_duplicates", "find_similar", "organize", "pixel_hashes", "plot_k_choice"]
