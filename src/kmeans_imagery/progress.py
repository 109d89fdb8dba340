"""Progress reporting that library code can take without depending on a terminal library.

Long operations accept ``progress``: a callable ``progress(total, description)`` returning a
context manager whose value has ``advance(n=1)`` (the CLI passes a thin wrapper around
:class:`rich.progress.Progress`); None shows nothing.
"""

from contextlib import nullcontext

__all__ = ["open_progress"]


def open_progress(progress, total, description):
    """Open the caller's progress bar, or a silent stand-in when ``progress`` is None.

    Parameters
    ----------
    progress : callable or None
        ``progress(total, description)`` returning a context manager whose value has
        ``advance(n=1)``; None shows nothing.
    total : int
        Steps the operation will take.
    description : str
        What the bar is for.

    Returns
    -------
    context manager
        Its value has ``advance(n=1)``.

    Examples
    --------
    A progress callable that prints instead of drawing a bar:

    >>> from contextlib import contextmanager
    >>> from kmeans_imagery.progress import open_progress
    >>> class Printer:
    ...     def advance(self, n=1):
    ...         print("+", n)
    >>> @contextmanager
    ... def printed(total, description):
    ...     print(description, total)
    ...     yield Printer()
    >>> with open_progress(printed, 2, "reading") as bar:
    ...     bar.advance()
    ...     bar.advance()
    reading 2
    + 1
    + 1
    >>> with open_progress(None, 2, "reading") as bar:
    ...     bar.advance()  # shows nothing
    """
    return nullcontext(_NoBar()) if progress is None else progress(total, description)


class _NoBar:
    def advance(self, n=1):
        """Nothing to show."""
