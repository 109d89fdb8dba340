"""The project's own error type.

Every error a user can cause (a missing file, a corrupt image, a bad option) is raised as a
:class:`KMIError`. The CLI prints such errors as one line on stderr and exits with code 2; any other
exception is a bug and keeps its traceback.
"""

from numbers import Integral

__all__ = ["KMIError", "is_whole_number"]


class KMIError(ValueError):
    """An error caused by the user's input (data, options, files), not by a bug.

    It subclasses :class:`ValueError` so that scikit-learn style callers that catch bad-input
    errors as ``ValueError`` keep working.

    Examples
    --------
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.errors import KMIError
    >>> try:
    ...     open_source("no-such-folder")
    ... except KMIError as error:
    ...     print(error)
    no-such-folder does not exist (expected mnist, fashion-mnist, digits, a .zarr store, ...)
    >>> issubclass(KMIError, ValueError)
    True
    """


def is_whole_number(value):
    """Whether ``value`` is an integer (Python's or NumPy's), not a bool: what a parameter that
    counts (K, a seed, a size) must be before its range is checked.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.errors import is_whole_number
    >>> is_whole_number(3), is_whole_number(np.int64(3)), is_whole_number(True), is_whole_number(3.0)
    (True, True, False, False)
    """
    return isinstance(value, Integral) and not isinstance(value, bool)
