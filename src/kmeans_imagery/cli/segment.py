"""``kmi segment``: the pixels of a raster clustered into classes, georeferenced in and out."""

import click

from ..features import DEFAULT_BUDGET_FEATURES, DEFAULT_PIXEL_FEATURES
from ._common import SEED, consoles, metrics_table, parse_ks_option


@click.command()
@click.argument("raster")
@click.option("--k", "n_clusters", type=click.IntRange(1), help="Number of classes (not with --model).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for classes.tif, preview.png, signatures.csv, results.json, report.html, "
                   "model.kmi.")
@click.option("--force", is_flag=True, help="Replace existing outputs in --out.")
@click.option("--bands", help="Comma-separated 1-based band numbers to use, e.g. 1,2,4 [default: all].")
@click.option("--nodata", type=float, help="Value marking missing data [default: the file's].")
@click.option("--var", help="Array to read from a MATLAB/.npz/Zarr file holding several.")
@click.option("--sample", default=100_000, show_default=True, type=click.IntRange(1),
              help="Training pixels, drawn across the whole scene.")
@click.option("--features", default=None,
              help="Pixel features: steps raw, std, l2, pca[:n], nbr[:r] joined with + and | "
                   f"[default: {DEFAULT_PIXEL_FEATURES}, and {DEFAULT_BUDGET_FEATURES} for the "
                   "--label-budget models; a given spec serves both].")
@click.option("--smooth", default=0, show_default=True, type=click.IntRange(0, 15),
              help="Majority filter radius of the class map (0: none).")
@click.option("--truth", type=click.Path(path_type=str),
              help="Ground truth raster or array of the same rows x cols (0 = unlabelled): adds scores.")
@click.option("--label-budget", "label_budgets", default="", callback=parse_ks_option,
              help="With --truth: fit N clusters and name each from its most central labelled pixel "
                   "(comma-separated Ns).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=str),
              help="Classify with this model.kmi from an earlier segment run instead of fitting.")
@SEED
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Classify blocks on a dask cluster: 'local' or a scheduler address.")
def segment(raster, n_clusters, out, force, bands, nodata, var, sample, features, smooth, truth,
            label_budgets, model_path, seed, dask_address):
    """Cluster the pixels of RASTER (GeoTIFF or any GDAL raster, MATLAB/.npy/.npz/Zarr cube, photo).

    Writes a georeferenced class map and its signatures, preview, report and model into --out.
    """
    from ..datasets.rasters import parse_bands
    from ..segment import segment as segment_raster

    console, err = consoles(False)
    results = segment_raster(
        raster, out, n_clusters=n_clusters, force=force, bands=parse_bands(bands), nodata=nodata, var=var,
        sample=sample, features=features, smooth=smooth, truth=truth,
        label_budgets=label_budgets, model=model_path, random_state=seed, dask=dask_address,
        log=err.print,
    ).results
    if "test" in results:
        console.print(metrics_table("scores against the truth", results["test"]["metrics"]))
        for row in results["label_budget"]:
            console.print(f"one label per cluster, {row['labels']} labels ({row['features']}): "
                          f"accuracy {row['accuracy']:.4f}")
    total = sum(results["timings"].values())
    console.print(f"wrote {len(results['outputs'])} files to {out} in {total:.1f} s")
