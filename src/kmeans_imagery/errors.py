"""The project's own error type.

Every error a user can cause (a missing file, a corrupt image, a bad option) is raised as a
:class:`KMIError`. The CLI prints such errors as one line on stderr and exits with code 2; any other
exception is a bug and keeps its traceback.
"""

__all__ = ["KMIError"]


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
