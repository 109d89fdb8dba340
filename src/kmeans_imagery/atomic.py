"""Writing files so that they appear whole or not at all."""

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import KMIError

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path, mode="wb", *, encoding=None, newline=None):
    """Open a file for writing that replaces ``path`` only when the block succeeds.

    Data goes to a temporary file in the same folder (so the final rename stays on one file system)
    which :func:`os.replace` moves over ``path`` at the end of the block; on any error or
    interruption the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        The destination; its folder must exist.
    mode : {"wb", "w"}, default="wb"
        Binary or text.
    encoding, newline : str, optional
        For text mode, as for :func:`open`. Text is written with ``errors="surrogateescape"``:
        a file name that is not valid UTF-8 (read by Python as lone surrogates) is written as
        its own bytes, the name the file system knows, instead of failing the write.

    Yields
    ------
    file object
        Open for writing on the temporary file.

    Raises
    ------
    KMIError
        When the temporary file cannot be created (missing or read-only folder).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.atomic import atomic_write
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "labels.csv"
    ...     with atomic_write(path, "w") as handle:
    ...         _ = handle.write("path,label")
    ...     try:
    ...         with atomic_write(path, "w") as handle:
    ...             _ = handle.write("half a fil")
    ...             raise KeyboardInterrupt  # interrupted: the old file stays whole
    ...     except KeyboardInterrupt:
    ...         pass
    ...     print(path.read_text(), [p.name for p in Path(folder).iterdir()])
    path,label ['labels.csv']
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # Mode 0o666 lets the umask decide the permissions, as for any newly created file
        # (tempfile.mkstemp would make it readable by its owner only).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise KMIError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        text = {} if "b" in mode else {"errors": "surrogateescape"}
        with os.fdopen(fd, mode, encoding=encoding, newline=newline, **text) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
