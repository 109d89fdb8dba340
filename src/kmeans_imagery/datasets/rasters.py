"""Rasters: multiband images whose pixels are the rows, read strip by strip.

:func:`open_raster` opens

- any raster GDAL reads (GeoTIFF first of all), through rasterio (the ``geo`` extra), with its CRS,
  transform, nodata value and per-band masks;
- MATLAB files: v5 through :func:`scipy.io.loadmat`, v7.3 (HDF5) through h5py; the variable is
  the file's only 3-D array (2-D for a one-band raster such as a ground truth) unless ``var``
  names it;
- ``.npy`` (memory-mapped), ``.npz`` and Zarr arrays of shape (rows, cols, bands) or (rows, cols);
- photos (every format of image folders but TIFF: PNG, JPEG, WebP, ...), as RGB, read upright as
  image folders read them; their fully transparent pixels are nodata.

A :class:`Raster` reads full-width strips of rows (:meth:`Raster.read`): the values of the chosen
bands and a validity mask. A pixel is valid when every chosen band is valid there: not equal to the
nodata value (the file's, or ``nodata``), not masked by the file's band masks, and finite. Only
the strip asked for is in memory (GDAL's block cache is held small), so a scene larger than memory
is read in bounded memory.
"""

import math
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import KMIError
from .folders import IMAGE_SUFFIXES, load_images

__all__ = ["PHOTO_SUFFIXES", "Raster", "open_raster", "parse_bands"]

#: Suffixes read as RGB photos by the image-folder reader (TIFFs go through GDAL, which keeps
#: their georeferencing).
PHOTO_SUFFIXES = tuple(sorted(IMAGE_SUFFIXES - {".tif", ".tiff"}))
#: GDAL's block cache while reading: strips are read once each, so a small cache loses nothing and
#: keeps the resident memory bounded (GDAL's default is 5 % of the machine's memory).
GDAL_CACHE_BYTES = 64 * 2**20
#: Pixels per strip that :meth:`Raster.strips` aims at (whole blocks of the file, at least one row).
STRIP_PIXELS = 2**21
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Rows that strips are a multiple of: the tile height of the class maps written from them.
STRIP_ALIGN = 256


def parse_bands(text):
    """Band numbers from the text of ``--bands``: 1-based, as GDAL counts them.

    Parameters
    ----------
    text : str or None
        Comma-separated numbers.

    Returns
    -------
    tuple of int or None
        None for None or an empty text (all bands).

    Raises
    ------
    KMIError
        For a text that is not comma-separated numbers, or a number given twice.

    Examples
    --------
    >>> parse_bands("1,2,4")
    (1, 2, 4)
    >>> parse_bands("") is None
    True
    """
    if text is None or not str(text).strip():
        return None
    try:
        bands = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise KMIError(f"--bands: expected comma-separated band numbers such as 1,2,4, got {text!r}") \
            from None
    if len(set(bands)) != len(bands):
        raise KMIError(f"--bands: band numbers repeat in {text!r}")
    return bands


class Raster:
    """A raster opened for reading: its size, georeferencing, bands and nodata.

    The readers below (GDAL, arrays) subclass it with their ``_read(start, stop, out)``.

    Attributes
    ----------
    path : Path
    height, width : int
        Rows and columns of pixels.
    n_bands : int
        Bands read (after band selection).
    bands : tuple of int
        1-based numbers of the bands read, in the file's numbering.
    dtype : numpy.dtype
        The values' type.
    crs : rasterio.crs.CRS or None
    transform : affine.Affine or None
        Pixel to map coordinates; None for arrays, photos and files without a geotransform.
    gcps : (list of rasterio.control.GroundControlPoint, CRS) or None
        The file's ground control points, when it has some.
    rpcs : rasterio.rpc.RPC or None
        The file's rational polynomial coefficients, when it has them.
    nodata : float or None
        The value that marks missing data given by the caller (it overrides the file's masks).
    file_nodata : float, tuple or None
        The file's own nodata value, for the record (GDAL's masks apply it): one value, or a tuple
        of each chosen band's (None for a band without one) where they differ.
    block_height : int
        Rows per block of the file; strips are whole blocks.
    wavelengths : tuple of float or None
        Centre wavelength of each band read, when the file gives every one (GDAL band metadata:
        ENVI headers' ``wavelength``, or the ``IMAGERY`` domain's ``CENTRAL_WAVELENGTH_UM``).
    wavelength_unit : str or None
        Their unit ("nm", "µm", or as the file names it).

    Examples
    --------
    A (rows, cols, bands) array with a nodata pixel, read strip by strip:

    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cube = np.arange(24, dtype=np.uint16).reshape(4, 3, 2)
    ...     np.save(Path(folder) / "cube.npy", cube)
    ...     with open_raster(Path(folder) / "cube.npy", nodata=0) as raster:
    ...         size = (raster.height, raster.width, raster.n_bands)
    ...         values, valid = raster.read(*raster.strips()[0])
    >>> size, values.shape, int(valid.sum())
    ((4, 3, 2), (4, 3, 2), 11)
    """

    def __init__(self, path, height, width, bands, dtype, *, crs=None, transform=None, nodata=None,
                 file_nodata=None, block_height=1, wavelengths=None, wavelength_unit=None):
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        self.bands = tuple(bands)
        self.n_bands = len(self.bands)
        self.dtype = np.dtype(dtype)
        self.crs, self.transform, self.nodata = crs, transform, nodata
        self.gcps = self.rpcs = None
        self.block_height = max(1, int(block_height))
        self.file_nodata = file_nodata
        self.wavelengths, self.wavelength_unit = wavelengths, wavelength_unit
        self._lock = threading.Lock()

    @property
    def name(self):
        return self.path.name

    @property
    def n_pixels(self):
        return self.height * self.width

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release the file."""

    def strips(self, target_pixels=None):
        """Row ranges ``(start, stop)`` covering the raster, about ``target_pixels`` each.

        Each strip is a multiple of the file's block height and of :data:`STRIP_ALIGN` rows, so
        that it reads whole blocks and writes whole tiles of the output; a last strip shorter than
        :data:`STRIP_ALIGN` rows joins the one before (neighbourhood steps then always find their
        halo in one neighbouring strip). A block height that is neither a divisor nor a multiple
        of :data:`STRIP_ALIGN` (strips of 13 rows, tiles of 500) would make that common multiple
        thousands of rows: strips are then multiples of :data:`STRIP_ALIGN` rows at least one
        block high, and read parts of the blocks at their edges.
        """
        target_pixels = STRIP_PIXELS if target_pixels is None else target_pixels
        unit = math.lcm(self.block_height, STRIP_ALIGN)
        if unit * self.width > target_pixels:  # whole blocks would hold more rows than wanted
            unit = STRIP_ALIGN * -(-self.block_height // STRIP_ALIGN)
        step = unit * max(1, -(-target_pixels // max(1, self.width * unit)))
        starts = list(range(0, self.height, step))
        if len(starts) > 1 and self.height - starts[-1] < STRIP_ALIGN:
            starts.pop()
        return [(start, stops) for start, stops in zip(starts, [*starts[1:], self.height], strict=True)]

    def read(self, start, stop, out=None):
        """Rows ``start:stop`` of the chosen bands.

        Parameters
        ----------
        start, stop : int
        out : ndarray of shape (n_bands, stop - start, width), optional
            In the file's dtype: the band planes are read into it (a strip read into a larger
            buffer, beside rows of its neighbours, is not copied again).

        Returns
        -------
        values : ndarray of shape (stop - start, width, n_bands)
            In the file's dtype; a view of ``out`` when given (and of a band-planar array for
            GDAL files: ``np.moveaxis(values, -1, 0)`` is contiguous).
        valid : ndarray of bool, shape (stop - start, width)
            True where every band holds data.
        """
        with self._lock:  # a GDAL dataset must not be read by two threads at once
            values, valid = self._read(start, stop, out)
        nodata = None if self.nodata is None else _as_dtype(self.nodata, values.dtype)
        if nodata is not None:
            valid &= ~(values == nodata).any(axis=-1)
        if values.dtype.kind == "f":
            valid &= np.isfinite(values).all(axis=-1)
        return values, valid


def _as_dtype(value, dtype):
    """A nodata value in the values' type, as GDAL compares it, or None when no value of that type
    equals it.

    1.0 given for uint8 data compares as 1, -3.4028235e38 for float32 data as float32's lowest
    value; -9999 or 1.5 given for uint8 data matches no pixel (cast, they would match 241 or 1).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            cast = dtype.type(value)
        return cast if np.isfinite(cast) == np.isfinite(value) else None
    if not math.isfinite(value) or not float(value).is_integer():
        return None
    low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    return dtype.type(value) if low <= value <= high else None


class _GdalRaster(Raster):
    """A raster read through rasterio (GDAL)."""

    def __init__(self, path, dataset, env, bands, nodata):
        self._dataset, self._env = dataset, env
        self._use_masks = nodata is None and not all(
            flags == [_all_valid_flag()] for flags in (dataset.mask_flag_enums[b - 1] for b in bands)
        )
        # GDAL gives a file without a geotransform the identity: no georeferencing to pass on.
        transform = None if dataset.transform.is_identity else dataset.transform
        super().__init__(
            path, dataset.height, dataset.width, bands, dataset.dtypes[bands[0] - 1],
            crs=dataset.crs, transform=transform,
            # The file's nodata value is applied through GDAL's masks, which also cover per-band
            # values and mask bands; a nodata given by the caller overrides it.
            nodata=nodata, file_nodata=_band_nodata(dataset, bands),
            block_height=dataset.block_shapes[bands[0] - 1][0], **_band_wavelengths(dataset, bands),
        )
        # Ground control points and RPCs georeference a scene that has no geotransform.
        gcps, gcp_crs = dataset.gcps
        self.gcps = (gcps, gcp_crs) if gcps else None
        self.rpcs = dataset.rpcs

    def close(self):
        self._dataset.close()
        self._env.__exit__(None, None, None)

    def _read(self, start, stop, out):
        from rasterio.windows import Window

        window = Window(0, start, self.width, stop - start)
        values = self._dataset.read(self.bands, window=window, out=out)
        if self._use_masks:
            valid = self._dataset.read_masks(self.bands, window=window).all(axis=0)
        else:
            valid = np.ones(values.shape[1:], dtype=bool)
        return np.moveaxis(values, 0, -1), valid


def _band_nodata(dataset, bands):
    """The file's nodata value of the chosen bands: one value, a tuple where they differ, or None."""
    values = [dataset.nodatavals[b - 1] for b in bands]
    # Compared as text: NaN is not equal to itself.
    return values[0] if len({repr(v) for v in values}) == 1 else tuple(values)


#: Spellings of wavelength units in ENVI headers and GDAL metadata, and the symbols shown.
_WAVELENGTH_UNITS = {"nanometers": "nm", "nanometer": "nm", "nm": "nm", "micrometers": "µm",
                     "micrometer": "µm", "microns": "µm", "um": "µm", "µm": "µm"}


def _band_wavelengths(dataset, bands):
    """``wavelengths`` and ``wavelength_unit`` of the bands, from GDAL's band metadata (both None
    unless every band has a number in the same unit)."""
    values, units = [], set()
    for band in bands:
        tags = {key.lower(): value for key, value in dataset.tags(band).items()}
        imagery = dataset.tags(band, ns="IMAGERY")
        if "wavelength" in tags:  # ENVI's own value, at full precision
            value, unit = tags["wavelength"], tags.get("wavelength_units", "")
        elif "CENTRAL_WAVELENGTH_UM" in imagery:
            value, unit = imagery["CENTRAL_WAVELENGTH_UM"], "um"
        else:
            return {}
        try:
            values.append(float(value))
        except ValueError:
            return {}
        units.add(_WAVELENGTH_UNITS.get(unit.strip().lower(), unit.strip()))
    if len(units) != 1 or next(iter(units)).lower() in ("", "index", "unknown"):
        return {}
    return {"wavelengths": tuple(values), "wavelength_unit": units.pop()}


def _all_valid_flag():
    from rasterio.enums import MaskFlags

    return MaskFlags.all_valid


class _ArrayRaster(Raster):
    """A raster held in an array (in memory, memory-mapped, or a Zarr array read by slices)."""

    def __init__(self, path, array, bands, nodata, mask=None):
        self._array, self._mask = array, mask
        super().__init__(path, array.shape[0], array.shape[1], bands, array.dtype, nodata=nodata,
                         block_height=_zarr_block_height(array))

    def _read(self, start, stop, out):
        values = np.asarray(self._array[start:stop])
        if values.ndim == 2:
            values = values[:, :, None]
        values = values[:, :, [b - 1 for b in self.bands]]
        if out is not None:
            np.copyto(out, np.moveaxis(values, -1, 0))
            values = np.moveaxis(out, 0, -1)
        # A mask given (a photo's alpha) is overridden by a nodata given, as GDAL's masks are.
        if self._mask is None or self.nodata is not None:
            return values, np.ones(values.shape[:2], dtype=bool)
        return values, self._mask[start:stop].copy()


def _zarr_block_height(array):
    chunks = getattr(array, "chunks", None)
    return chunks[0] if isinstance(chunks, tuple) and chunks else 1


def open_raster(path, *, bands=None, nodata=None, var=None, ndim=3):
    """Open a raster for reading strip by strip.

    Parameters
    ----------
    path : path-like
    bands : sequence of int, optional
        1-based numbers of the bands to read; default all but an alpha band (which masks the
        others).
    nodata : float, optional
        Value marking missing data; replaces the file's own nodata value and masks. A value that
        the bands' type cannot hold (-9999 for uint8 data) marks no pixel.
    var : str, optional
        The array to read in a MATLAB, ``.npz`` or Zarr group file that holds several, or the
        subdataset of a GDAL container (HDF5, netCDF).
    ndim : {3, 2}, default=3
        Which arrays ``var`` may be chosen among automatically: 3-D cubes (rows, cols, bands) or
        2-D maps (a ground truth).

    Returns
    -------
    Raster

    Raises
    ------
    KMIError
        When the file is missing or not a raster, a band is out of range, the bands hold complex
        values, or the array to read is ambiguous.

    Examples
    --------
    A two-band GeoTIFF whose nodata value marks one pixel; the second band only:

    >>> import tempfile, numpy as np, rasterio
    >>> from pathlib import Path
    >>> from affine import Affine
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "scene.tif"
    ...     with rasterio.open(path, "w", driver="GTiff", width=4, height=3, count=2, dtype="uint8",
    ...                        nodata=0, crs="EPSG:32618", transform=Affine(30, 0, 0, 0, -30, 0)) as dst:
    ...         dst.write(np.full((2, 3, 4), 7, dtype=np.uint8))
    ...         dst.write(np.zeros((1, 1), dtype=np.uint8), 2, window=((0, 1), (0, 1)))
    ...     with open_raster(path, bands=[2]) as raster:
    ...         values, valid = raster.read(0, raster.height)
    ...         crs = raster.crs.to_string()
    >>> crs, values.shape, int(valid.sum())
    ('EPSG:32618', (3, 4, 1), 11)
    """
    raster = _open(Path(path), bands, nodata, var, ndim)
    # What reopens it elsewhere (a dask worker): the file and the same choices.
    raster.open_args = {"path": str(path), "bands": raster.bands, "nodata": nodata, "var": var, "ndim": ndim}
    return raster


def _open(path, bands, nodata, var, ndim):
    if not path.exists():
        raise KMIError(f"{path} does not exist")
    suffix = path.suffix.lower()
    mask = None
    if suffix in (".npy", ".npz", ".mat", ".zarr") or path.is_dir():
        array = _load_array(path, suffix, var, ndim)
    elif suffix in PHOTO_SUFFIXES:
        if var is not None:
            raise KMIError(f"--var: {path.name} is a single image; --var names an array in a MATLAB, "
                           f".npz, Zarr, HDF5 or netCDF file")
        array = _load_photo(path)
        mask = _photo_opaque(path, array.shape[:2])
    else:
        return _open_gdal(path, bands, nodata, var)
    if array.ndim not in (2, 3) or min(array.shape) == 0:
        raise KMIError(f"{path}: expected an array of shape (rows, cols, bands) or (rows, cols), got "
                       f"{tuple(array.shape)}")
    if array.dtype.kind not in "iubf":
        raise KMIError(f"{path}: expected numbers, got an array of {array.dtype}")
    count = 1 if array.ndim == 2 else array.shape[2]
    return _ArrayRaster(path, array, _check_bands(bands, count, path), nodata, mask=mask)


def _check_bands(bands, count, path):
    if bands is None:
        return tuple(range(1, count + 1))
    for band in bands:
        if not 1 <= band <= count:
            raise KMIError(f"--bands: band {band} is out of range: {path.name} has {count} band(s), "
                           f"numbered from 1")
    return tuple(bands)


def _open_gdal(path, bands, nodata, var):
    try:
        import rasterio
    except ImportError:
        raise KMIError("reading rasters needs rasterio: install kmeans-imagery[geo]") from None
    env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)
    env.__enter__()
    dataset = None
    try:
        dataset = _open_dataset(rasterio, path, path)
        if var is not None or (dataset.count == 0 and dataset.subdatasets):
            # A container (HDF5, netCDF) holds its rasters as subdatasets, named by --var.
            dataset = _open_subdataset(rasterio, dataset, path, var)
        if dataset.count == 0:
            raise KMIError(f"{path} holds no raster band")
        bands = _check_bands(_unless_alpha(dataset) if bands is None else bands, dataset.count, path)
        if len({dataset.dtypes[b - 1] for b in bands}) > 1:
            raise KMIError(f"{path}: the chosen bands have different data types; choose bands of one "
                           f"type with --bands")
        if np.dtype(dataset.dtypes[bands[0] - 1]).kind == "c":
            raise KMIError(f"{path}: the bands hold complex values ({dataset.dtypes[bands[0] - 1]}); "
                           f"cluster their amplitude or intensity, written as a raster of real values")
    except KMIError:
        if dataset is not None:
            dataset.close()
        env.__exit__(None, None, None)
        raise
    return _GdalRaster(path, dataset, env, bands, nodata)


def _open_dataset(rasterio, name, path):
    try:
        with warnings.catch_warnings():  # a missing geotransform is a fact of the file, kept as None
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(name)
    except rasterio.errors.RasterioIOError:
        raise KMIError(f"{path} is not a raster that GDAL can read") from None


def _open_subdataset(rasterio, container, path, var):
    """The subdataset of ``container`` named ``var`` (its name after the last ``:`` or ``/``)."""
    names = {name.rsplit(":", 1)[-1].rsplit("/", 1)[-1]: name for name in container.subdatasets}
    if var is None:
        raise KMIError(f"{path.name} holds several rasters ({', '.join(sorted(names))}); name one with --var")
    if var not in names:
        found = f"it has {', '.join(sorted(names))}" if names else "it is a single raster"
        raise KMIError(f"--var: {path.name} has no array {var!r}; {found}")
    container.close()
    return _open_dataset(rasterio, names[var], path)


def _unless_alpha(dataset):
    """Every band but an alpha band: GDAL's masks apply it to the others; its values are no measurement."""
    from rasterio.enums import ColorInterp

    bands = tuple(b for b, kind in enumerate(dataset.colorinterp, 1) if kind != ColorInterp.alpha)
    return bands or None


def _load_photo(path):
    try:
        # skip_bad: an unreadable photo is this one line, not advice about skipping files.
        return load_images([path], color="rgb", skip_bad=True).images[0]
    except KMIError:
        raise KMIError(f"{path} is not a readable image") from None


def _photo_opaque(path, shape):
    """Where a photo with transparency (an alpha channel, or a transparent palette entry or colour)
    is not fully transparent, upright as :func:`_load_photo` reads it; None for an opaque photo."""
    from PIL import Image, ImageOps

    with open(path, "rb") as file, Image.open(file) as image:
        if "A" not in image.getbands() and "transparency" not in image.info:
            return None
        alpha = np.asarray(ImageOps.exif_transpose(image).convert("RGBA").getchannel("A"))
    return alpha > 0 if alpha.shape == tuple(shape) else None


def _load_array(path, suffix, var, ndim):
    if suffix == ".npy":
        if var is not None:
            raise KMIError(f"--var: {path.name} holds a single array; --var names an array in a "
                           f"MATLAB, .npz, Zarr, HDF5 or netCDF file")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as error:
            raise KMIError(f"{path} is not a readable .npy array ({error})") from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return _choose(path, {name: archive[name] for name in archive.files}, var, ndim)
        except (ValueError, OSError) as error:
            raise KMIError(f"{path} is not a readable .npz archive ({error})") from None
    if suffix == ".mat":
        return _load_mat(path, var, ndim)
    return _load_zarr(path, var, ndim)


def _choose(path, arrays, var, ndim):
    """The array named ``var``, else the only one of ``ndim`` dimensions."""
    if var is not None:
        if var not in arrays:
            raise KMIError(f"--var: {path.name} has no array {var!r}; it has {', '.join(sorted(arrays))}")
        return arrays[var]
    candidates = [name for name, array in arrays.items() if len(array.shape) == ndim]
    if len(candidates) != 1:
        # Several: the ones to choose among; none: everything the file holds.
        found, listed = ("several", candidates) if candidates else ("no", list(arrays))
        listed = ", ".join(f"{name} {tuple(arrays[name].shape)}" for name in listed) or "nothing"
        raise KMIError(f"{path.name} holds {found} {ndim}-D arrays ({listed}); name one with --var")
    return arrays[candidates[0]]


def _unmixing_cubes(arrays):
    """``arrays`` with each scene stored as the unmixing datasets store it made a cube.

    Jasper Ridge, Urban, Samson and the like hold a scene as a (bands, pixels) matrix, its pixels
    in MATLAB's column-major order, beside the scalars ``nRow`` and ``nCol``: such a matrix (or
    its transpose) becomes (nRow, nCol, bands).
    """
    try:
        rows, cols = int(arrays["nRow"].item()), int(arrays["nCol"].item())
    except (KeyError, ValueError, TypeError):
        return arrays
    cubes = dict(arrays)
    for name, array in arrays.items():
        if array.ndim == 2 and array.shape[1] == rows * cols:
            cubes[name] = array.T.reshape(rows, cols, -1, order="F")
        elif array.ndim == 2 and array.shape[0] == rows * cols:
            cubes[name] = array.reshape(rows, cols, -1, order="F")
    return cubes


def _load_mat(path, var, ndim):
    import scipy.io

    with open(path, "rb") as handle:
        header = handle.read(1024)
    # MATLAB v7.3 files are HDF5, whose signature follows a 512-byte header (or opens the file).
    if _HDF5_SIGNATURE in (header[:8], header[512:520]):
        return _load_mat73(path, var, ndim)
    try:
        contents = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as error:
        raise KMIError(f"{path} is not a readable MATLAB file ({error})") from None
    arrays = {name: value for name, value in contents.items()
              if not name.startswith("__") and isinstance(value, np.ndarray)}
    return _choose(path, _unmixing_cubes(arrays) if ndim == 3 else arrays, var, ndim)


def _load_mat73(path, var, ndim):
    try:
        import h5py
    except ImportError:
        raise KMIError("reading MATLAB v7.3 files needs h5py: install kmeans-imagery[geo]") from None
    with h5py.File(path, "r") as handle:
        arrays = {name: item for name, item in handle.items() if isinstance(item, h5py.Dataset)}
        chosen = _choose(path, arrays, var, ndim)
        # MATLAB stores arrays column-major: HDF5 sees their dimensions reversed.
        return np.asarray(chosen[()]).transpose()


def _load_zarr(path, var, ndim):
    try:
        import zarr
    except ImportError:
        raise KMIError("reading Zarr arrays needs zarr: install kmeans-imagery[scale]") from None
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:  # zarr raises many kinds of errors on a folder that is not a store
        raise KMIError(f"{path} is not a readable Zarr array or group ({error})") from None
    if isinstance(node, zarr.Array):
        return node
    return _choose(path, dict(node.arrays()), var, ndim)
