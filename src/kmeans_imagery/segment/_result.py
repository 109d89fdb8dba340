"""What :func:`~kmeans_imagery.segment.segment` returns: the run's results and where its files are."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..display import figure_html, html_table, image_html, result_html, result_repr
from ._outputs import OUTPUT_NAMES

__all__ = ["Segmentation"]


@dataclass
class Segmentation:
    """A segmented raster: the content of results.json, the output files and the class signatures.

    In Jupyter it shows its key table (K, pixels, timings, and the scores when a truth was given)
    beside thumbnails of the class map and of the class spectra.

    Attributes
    ----------
    results : dict
        The content of results.json (input, parameters, class sizes, timings, scores).
    out : Path
        The output folder.
    paths : dict of str to Path
        Each output file by name: ``classes.tif``, ``preview.png``, ``signatures.csv``,
        ``results.json``, ``report.html``, ``model.kmi``.
    n_clusters : int
        K, the number of classes.
    signatures : ndarray of shape (n_clusters, n_bands), float64
        Mean band values of each class (as in signatures.csv).
    colours : ndarray of shape (n_clusters, 3), uint8
        The colour of each class in classes.tif and the figures.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from kmeans_imagery.segment import segment
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cube = np.zeros((20, 20, 3), dtype=np.uint8)
    ...     cube[:, 10:] = (200, 40, 90)  # two fields
    ...     np.save(Path(folder) / "scene.npy", cube + np.arange(20, dtype=np.uint8)[:, None, None] % 3)
    ...     result = segment(Path(folder) / "scene.npy", Path(folder) / "seg", n_clusters=2, n_init=1)
    ...     html = result._repr_html_()
    >>> result.n_clusters, result.signatures.shape
    (2, (2, 3))
    >>> "<table>" in html and "<img" in html
    True
    """

    results: dict
    out: Path
    signatures: np.ndarray
    colours: np.ndarray

    @property
    def n_clusters(self):
        """K, the number of classes."""
        return len(self.signatures)

    @property
    def paths(self):
        """Each output file by name."""
        return {name: self.out / name for name in OUTPUT_NAMES}

    @property
    def accuracy(self):
        """Hungarian-matched overall accuracy against the truth, or None without one."""
        return self.results.get("test", {}).get("hungarian_accuracy")

    def _key_figures(self):
        results = self.results
        figures = {"K": self.n_clusters, "pixels": results["input"]["valid_pixels"],
                   "size": f"{results['input']['rows']} x {results['input']['cols']} x "
                           f"{len(results['input']['bands'])} bands",
                   "features": results["features"]}
        if "test" in results:
            figures.update(accuracy=results["test"]["hungarian_accuracy"], kappa=results["test"]["kappa"])
            for row in results.get("label_budget", ()):
                figures[f"accuracy, {row['labels']} labels"] = row["accuracy"]
        figures.update({name.replace("_seconds", " s"): seconds
                        for name, seconds in results["timings"].items()})
        return figures

    def __repr__(self):
        fields = {"dataset": self.results["dataset"], "n_clusters": self.n_clusters,
                  "pixels": self.results["input"]["valid_pixels"]}
        if self.accuracy is not None:
            fields["accuracy"] = self.accuracy
        fields["out"] = str(self.out)
        return result_repr("Segmentation", fields)

    def _repr_html_(self):
        from ._plots import plot_spectra

        given = self.results["input"]
        spectra = plot_spectra(self.signatures, self.colours, bands=given["bands"],
                               wavelengths=given.get("wavelengths"),
                               wavelength_unit=given.get("wavelength_unit"))
        images = [image_html(self.paths["preview.png"], alt="class map"),
                  figure_html(spectra, alt="class spectra")]
        return result_html(f"kmi segment: {self.results['dataset']}", html_table(self._key_figures()), images,
                           note=f"outputs in {self.out}")
