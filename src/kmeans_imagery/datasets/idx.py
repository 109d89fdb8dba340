"""Read and write IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in C order, big-endian. Every malformed file raises
:class:`~kmeans_imagery.errors.KMIError` naming the file, never a numpy or gzip exception.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError

# IDX type code -> big-endian numpy dtype, as in the format's description by LeCun et al.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1, so a gzip stream declaring more values than
# this bound allows is truncated; checking it first avoids allocating memory for a bogus header.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 22


def read_idx(path):
    """Read an IDX file, raw or gzip-compressed (detected by content, not by name).

    Parameters
    ----------
    path : str or path-like
        The IDX file.

    Returns
    -------
    array : ndarray of shape (d0, d1, ...)
        The values in native byte order: uint8 for MNIST images (n, 28, 28) and labels (n,).

    Raises
    ------
    KMIError
        If the file is missing, has a wrong magic number or type code, is truncated, is longer than
        its header declares, or is not a valid gzip stream.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            file_size = os.fstat(raw.fileno()).st_size
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_stream(stream, path, file_size * _MAX_DEFLATE_RATIO + 1024)
            return _read_stream(raw, path, file_size)
    except FileNotFoundError:
        raise KMIError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise KMIError(f"{path} is a folder, not an IDX file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise KMIError(f"IDX file {path} is a truncated or corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise KMIError(f"cannot read IDX file {path}: {exc}") from None


def _read_stream(stream, path, max_size):
    """Parse the header and read the values into one preallocated array (no second copy)."""
    magic = _read_exactly(stream, 4, path, "magic number")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES or magic[3] == 0:
        raise KMIError(
            f"{path} is not an IDX file: magic number {magic.hex()} is not 0000<type><ndim> with a "
            f"known type ({', '.join(f'{c:02x}' for c in IDX_DTYPES)}) and ndim >= 1"
        )
    dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    dims = _read_exactly(stream, 4 * ndim, path, "dimensions")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if 4 + 4 * ndim + n_bytes > max_size:
        raise KMIError(
            f"IDX file {path} is truncated: its header declares shape {shape} ({n_bytes} bytes of "
            f"data) but the file is too small to hold them"
        )
    try:
        values = np.empty(shape, dtype=dtype.newbyteorder("="))
    except MemoryError:
        raise KMIError(f"IDX file {path} declares shape {shape}, too large for memory") from None
    buffer = memoryview(values).cast("B") if values.size else memoryview(b"")
    filled = 0
    while filled < n_bytes:
        got = stream.readinto(buffer[filled : filled + _CHUNK])
        if not got:
            raise KMIError(
                f"IDX file {path} is truncated: shape {shape} needs {n_bytes} bytes of data, "
                f"found {filled}"
            )
        filled += got
    if stream.read(1):
        raise KMIError(f"IDX file {path} is longer than its header (shape {shape}) declares")
    if dtype.itemsize > 1 and values.dtype.byteorder != dtype.byteorder:
        values.byteswap(inplace=True)  # the bytes were big-endian; make them native in place
    return values


def _read_exactly(stream, n, path, what):
    data = stream.read(n)
    if len(data) != n:
        raise KMIError(f"IDX file {path} is truncated: it ends inside the {what}")
    return data


def write_idx(path, array):
    """Write an array as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    The file is written atomically (a temporary file in the same folder, then renamed), and gzip
    output carries no timestamp, so the same array always gives the same bytes.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    array : array-like of shape (d0, d1, ...)
        At least one dimension. uint8, int8, int16, int32, float32 and float64 are written as
        such; bool is written as uint8; other integer types as the smallest IDX integer type that
        holds their values; float16 as float32.

    Raises
    ------
    KMIError
        If the array has no dimension, a dimension too large for IDX, or a type IDX cannot hold.
    """
    path = Path(path)
    array = _idx_compatible(np.asarray(array), path)
    header = bytes([0, 0, _CODE_OF_KIND[(array.dtype.kind, array.dtype.itemsize)], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    big_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    data = big_endian.reshape(-1).view(np.uint8)
    try:
        with atomic_write(path) as out:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as stream:
                    stream.write(header)
                    stream.write(data)
            else:
                out.write(header)
                out.write(data)
    except OSError as exc:
        raise KMIError(f"cannot write {path}: {exc.strerror or exc}") from None


def _idx_compatible(array, path):
    """Return ``array`` with a dtype IDX can store, or raise."""
    if array.ndim == 0 or array.ndim > 255:
        raise KMIError(f"cannot write {path}: IDX needs 1 to 255 dimensions, got {array.ndim}")
    if max(array.shape) > np.iinfo(np.uint32).max:
        raise KMIError(f"cannot write {path}: dimension too large for IDX {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8)
    if kind == "f" and array.dtype.itemsize == 2:
        return array.astype(np.float32)
    if (kind, array.dtype.itemsize) in _CODE_OF_KIND:
        return array
    if kind in "iu":
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint8, np.int8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return array.astype(dtype)
        raise KMIError(f"cannot write {path}: integer values {lo}..{hi} do not fit IDX's int32")
    raise KMIError(f"cannot write {path}: IDX cannot hold {array.dtype} values")
