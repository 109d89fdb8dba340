"""The files ``kmi segment`` writes: classes.tif, preview.png, signatures.csv and report.html.

Every file is written under a temporary name in the output folder and renamed into place only when
it is complete (results.json and model.kmi use the same writers as the rest of the project).
"""

import csv
import os
import tempfile
import uuid
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError
from ._plots import plot_class_areas, plot_class_map, plot_composite, plot_spectra, stretch

__all__ = ["OUTPUT_NAMES", "ClassMapWriter", "composite_bands", "composite_image", "write_preview",
           "write_report_page", "write_signatures"]

#: Every file a segmentation writes into its output folder.
OUTPUT_NAMES = ("classes.tif", "preview.png", "signatures.csv", "results.json", "report.html", "model.kmi")
#: Tile side of classes.tif, and the value that marks its nodata pixels (classes are numbered from 1).
TILE = 256
NODATA_CLASS = 0


class ClassMapWriter:
    """Writes a class map as a tiled, compressed GeoTIFF strip by strip, then moves it into place.

    Classes 0..K-1 are stored as 1..K, nodata as 0 (uint8, or uint16 past 255 classes), with the
    raster's CRS and transform (or its ground control points, or RPCs) and a colour table. Use as a
    context manager; :meth:`commit` renames the finished file, and leaving the block without it
    removes the temporary file.

    Parameters
    ----------
    path : path-like
    raster : Raster
        The scene: size, CRS, transform.
    colours : ndarray of shape (n_classes, 3), uint8
    """

    def __init__(self, path, raster, colours):
        import rasterio

        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self.dtype = np.uint8 if len(colours) < 256 else np.uint16
        self._colours = colours
        profile = {
            "driver": "GTiff", "height": raster.height, "width": raster.width, "count": 1,
            "dtype": self.dtype, "crs": raster.crs, "transform": raster.transform,
            "nodata": NODATA_CLASS, "tiled": True, "blockxsize": TILE, "blockysize": TILE,
            # A class map compresses well with a fast DEFLATE level; compression runs on all cores.
            "compress": "deflate", "zlevel": 1, "num_threads": "all_cpus", "bigtiff": "if_safer",
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                self._dataset = rasterio.open(self._tmp, "w", **profile)
            except rasterio.errors.RasterioIOError as error:
                raise KMIError(f"cannot write {self.path}: {error}") from None
        if raster.gcps is not None:
            self._dataset.gcps = raster.gcps
        if raster.rpcs is not None:
            self._dataset.rpcs = raster.rpcs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None
        self._tmp.unlink(missing_ok=True)

    def write(self, start, labels):
        """Write the strip of rows starting at ``start``: classes 0..K-1, -1 for nodata."""
        from rasterio.windows import Window

        window = Window(0, start, labels.shape[1], labels.shape[0])
        classes = labels.astype(self.dtype)  # -1 wraps round to the largest value, + 1 to 0: nodata
        classes += 1
        self._dataset.write(classes, 1, window=window)

    def commit(self):
        """Finish the file and move it into place."""
        table = {NODATA_CLASS: (0, 0, 0, 0)}
        table.update({c + 1: (*map(int, rgb), 255) for c, rgb in enumerate(self._colours)})
        self._dataset.write_colormap(1, table)
        self._dataset.close()
        self._dataset = None
        os.replace(self._tmp, self.path)


def write_preview(path, classes, colours):
    """The class map (decimated) as a PNG: class colours, nodata transparent."""
    from PIL import Image

    palette = np.vstack([colours, [[0, 0, 0]]]).astype(np.uint8)
    rgba = np.dstack([palette[np.where(classes < 0, len(colours), classes)],
                      np.where(classes < 0, 0, 255).astype(np.uint8)])
    with atomic_write(path) as handle:
        Image.fromarray(rgba, "RGBA").save(handle, format="PNG")


def write_signatures(path, counts, means, *, pixel_area=None, area_unit=None, band_names):
    """signatures.csv: class, pixels, area (when the CRS has map units), mean value per band."""
    area_column = [f"area_{area_unit}2"] if pixel_area is not None else []
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "pixels", *area_column, *[f"mean_{name}" for name in band_names]])
        for c, (count, mean) in enumerate(zip(counts, means, strict=True)):
            area = [f"{count * pixel_area:.6g}"] if pixel_area is not None else []
            writer.writerow([c + 1, int(count), *area, *[f"{value:.6g}" for value in mean]])


def write_report_page(results, path, *, composite, classes, colours, means, counts, confusion=None,
                      class_names=None, pixel_area=None, area_unit=None, bands=None, wavelengths=None,
                      wavelength_unit=None):
    """report.html: the class map next to the scene, class spectra, class areas, truth scores.

    Parameters
    ----------
    results : dict
        As written to results.json; its ``test`` and ``label_budget`` entries become tables.
    composite : ndarray of shape (rows, cols, 3) or (rows, cols), in [0, 1]
    classes : ndarray of shape (rows, cols), int
        The decimated class map, -1 = nodata.
    colours, means, counts : ndarray
        Class colours, mean spectra (K, n_bands) and pixel counts (K,).
    confusion : ndarray, optional
        A square (true x matched class) confusion matrix to draw.
    class_names : sequence of str, optional
        Its class names.
    pixel_area, area_unit
        As :func:`~._plots.plot_class_areas` takes them.
    bands, wavelengths, wavelength_unit
        As :func:`~._plots.plot_spectra` takes them.
    """
    from matplotlib.figure import Figure

    from ..plots import plot_confusion, save_png
    from ..report import write_report

    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=".kmi-figures-") as folder:
        folder = Path(folder)
        figure = Figure(figsize=(12, 6), layout="constrained")
        left, right = figure.subplots(1, 2)
        plot_composite(composite, ax=left)
        plot_class_map(classes, colours, ax=right)
        figures = {"scene_and_classes": save_png(right, folder / "scene.png")}
        spectra = plot_spectra(means, colours, bands=bands, wavelengths=wavelengths,
                               wavelength_unit=wavelength_unit)
        figures["class_spectra"] = save_png(spectra, folder / "spectra.png")
        areas = plot_class_areas(counts, colours, pixel_area=pixel_area, area_unit=area_unit)
        figures["class_areas"] = save_png(areas, folder / "areas.png")
        if confusion is not None:
            figures["confusion"] = save_png(plot_confusion(confusion, class_names), folder / "confusion.png")
        return write_report(results, figures, path, title=f"kmi segment: {results['dataset']}")


def composite_bands(n_bands):
    """0-based bands shown as red, green, blue: 1-2-3 for up to 4 bands (RGB files, Landsat-like
    subsets), else three spread over the spectrum (a false-colour view of a hyperspectral cube)."""
    if n_bands < 3:
        return [0]
    if n_bands <= 4:
        return [0, 1, 2]
    return [round(n_bands * f) for f in (0.75, 0.5, 0.25)]


def composite_image(thumb, valid):
    """The stretched composite of the decimated scene (gray for a single band)."""
    image = stretch(thumb, valid)
    return image[..., 0] if image.shape[-1] == 1 else image
