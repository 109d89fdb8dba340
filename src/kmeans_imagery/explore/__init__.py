"""Exploring an unlabelled image collection: choose K, galleries, outliers, duplicates, a map,
sorting files into folders, and finding similar images.

The entry points are :func:`explore` (``kmi explore``), :func:`organize` (``kmi organize``) and
:func:`find_similar` (``kmi similar``).
"""

from ._choose_k import KChoice, choose_k, plot_k_choice
from ._duplicates import DuplicateGroups, descriptors, find_duplicates, pixel_hashes
from ._explore import explore
from ._organize import organize
from ._outliers import OutlierScorer
from ._similar import find_similar

__all__ = ["DuplicateGroups", "KChoice", "OutlierScorer", "choose_k", "descriptors", "explore",
           "find_duplicates", "find_similar", "organize", "pixel_hashes", "plot_k_choice"]
