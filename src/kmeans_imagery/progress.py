"""Progress reporting that library code can take without depending on a terminal library.

Long operations accept ``progress``: a callable ``progress(total, description)`` returning a
context manager whose value has ``advance(n=1)`` (the CLI passes a thin wrapper around
:class:`rich.progress.Progress`); None shows nothing.
"""

from contextlib import nullcontext


def open_progress(progress, total, description):
    """Open the caller's progress bar, or a silent stand-in when ``progress`` is None."""
    return nullcontext(_NoBar()) if progress is None else progress(total, description)


class _NoBar:
    def advance(self, n=1):
        """Nothing to show."""
