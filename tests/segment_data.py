"""Small rasters with planted classes, written by the segment tests into temporary folders."""

from pathlib import Path

import numpy as np

RASTERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rasters"
HSI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hsi"

#: Mean spectra of the planted classes (4 bands).
SPECTRA = np.array([[100, 400, 900, 300], [800, 700, 200, 100], [300, 300, 300, 1200]], dtype=np.float64)


def planted_scene(height=40, width=48, seed=0, collar=3):
    """A (rows, cols, 4) uint16 scene of three vertical stripes of classes plus noise, and its truth.

    The first ``collar`` rows and columns are nodata (0 in every band; 0 in the truth).
    """
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(width) * 3 // width, height).reshape(width, height).T + 1
    cube = SPECTRA[truth - 1] + rng.normal(0, 20, (height, width, 4))
    cube = np.clip(cube, 1, None).astype(np.uint16)
    cube[:collar], cube[:, :collar] = 0, 0
    truth = truth.astype(np.uint8)
    truth[:collar], truth[:, :collar] = 0, 0
    return cube, truth


def write_geotiff(path, cube, *, nodata=0, crs="EPSG:32618", tiled=False):
    """Write a (rows, cols, bands) cube as a GeoTIFF with a UTM CRS and 30 m pixels."""
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "height": cube.shape[0], "width": cube.shape[1], "count": cube.shape[2],
               "dtype": cube.dtype, "crs": crs, "transform": Affine(30, 0, 500000, 0, -30, 4000000),
               "nodata": nodata}
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.moveaxis(cube, -1, 0))
    return path
