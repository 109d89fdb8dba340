"""``kmi explore``, ``organize`` and ``similar``: an unlabelled collection browsed and sorted."""

import sys
from functools import partial

import click

from ._common import (
    DATA_DIR,
    FORCE,
    RESIZE,
    SEED,
    SKIP_BAD,
    color_for_features,
    consoles,
    data_options,
    loading_progress,
    report_skipped,
)


def _parse_k(_ctx, _param, value):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a whole number, got {value!r}") from None


def _parse_k_range(_ctx, _param, value):
    low, _, high = value.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise click.BadParameter(f"expected MIN-MAX such as 2-50, got {value!r}") from None


@click.command()
@click.argument("data")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for index.html, the CSV files, results.json, model.kmi and figures.")
@FORCE
@click.option("--k", default="auto", show_default=True, callback=_parse_k,
              help="Number of clusters, or auto: the elbow of the sum of squares over --k-range.")
@click.option("--k-range", default="2-50", show_default=True, callback=_parse_k_range,
              help="Range of K that --k auto considers, MIN-MAX.")
@click.option("--map", "map_method", type=click.Choice(["pca", "umap"]), default="pca",
              show_default=True, help="2-D map: principal axes, or UMAP (the umap extra).")
@click.option("--duplicate-threshold", default=0.025, show_default=True, type=click.FloatRange(0),
              help="Largest RMS difference of 16x16 gray descriptors of near duplicates (0: exact "
                   "copies only).")
@click.option("--fit-size", default=60000, show_default=True, type=click.IntRange(2),
              help="Collections of at most this many images (and 256 MiB of rows) are read once "
                   "and fitted in memory; larger ones are streamed.")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Fit on a dask cluster: 'local' (this machine's cores) or a scheduler address "
                   "such as tcp://scheduler:8786; every image is then scored here, batch by "
                   "batch.")
@SEED
@click.option("--features", default="l2", show_default=True,
              help="Feature pipeline before K-means (see kmi fit --help), e.g. raw or "
                   "onnx:model.onnx.")
@data_options(size="auto", features=True)
def explore(data, out, force, k, k_range, map_method, duplicate_threshold, fit_size, dask_address,
            seed, features, data_dir, color, size, skip_bad):
    """Explore DATA, no labels needed: choose K, galleries, outliers, duplicates, a 2-D map.

    DATA is any input kmi fit takes, read whole: every image below a folder, both splits of a
    dataset. Writes OUT/index.html (opens offline), clusters.csv, outliers.csv, duplicates.csv,
    results.json and model.kmi (usable with kmi predict). Labels never shape the clusters;
    where DATA has some (class sub-folders, a dataset's own), the page shows each cluster's
    label mix and the accuracy, and model.kmi names each cluster by its majority label.
    """
    from ..explore import explore as run_explore

    console, err = consoles(False)
    run = partial(run_explore, data, out, k=k, k_range=k_range, features=features,
                  color=color_for_features(color, features),
                  size=size, data_dir=data_dir, skip_bad=skip_bad, fit_size=fit_size,
                  duplicate_threshold=duplicate_threshold, map_method=map_method,
                  random_state=seed, force=force, progress=loading_progress(err))
    if dask_address:
        from ..engine.dask import connect

        with connect(dask_address) as client:
            found = run(client=client)
    else:
        found = run()
    report_skipped(found.results["dataset"], found.results["skipped"], err)
    n_images = found.results["n_images"]
    console.print(f"{n_images:,} image{'s' * (n_images != 1)}, K={found.k}, "
                  f"{found.results['duplicates']['n_groups']:,} duplicate groups; wrote "
                  f"{found.files['index.html']}")


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--into", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to sort into, one sub-folder per cluster (named by label if any).")
@click.option("--mode", type=click.Choice(["link", "copy", "move"]), default="link",
              show_default=True, help="Hard-link, copy or move the files.")
@click.option("--dry-run", is_flag=True, help="Print the manifest CSV and touch nothing.")
@RESIZE
@SKIP_BAD
def organize(model_path, data, into, mode, dry_run, resize, skip_bad):
    """Sort the image files of DATA into a folder per cluster of MODEL; never overwrites.

    Writes INTO/manifest.csv (old and new place of every file); an interrupted run finishes
    when run again.
    """
    from ..explore import organize as run_organize

    console, err = consoles(dry_run)
    done = run_organize(model_path, data, into, mode=mode, dry_run=dry_run, resize=resize,
                        skip_bad=skip_bad, progress=loading_progress(err))
    if done["unreadable"]:
        err.print(f"left {done['unreadable']} unreadable file(s) where they are")
    if done["missing"]:
        err.print(f"left out {done['missing']} file(s) no longer on disk")
    if done["sorted_before"]:
        err.print(f"left {done['sorted_before']} file(s) already in the cluster folders of "
                  f"{into} where they are")
    if dry_run:
        import csv

        writer = csv.DictWriter(sys.stdout, ["old_path", "new_path", "cluster", "label"])
        writer.writeheader()
        writer.writerows(done["rows"])
        return
    finished = "finished an interrupted run: " if done["resumed"] else ""
    console.print(f"{finished}{mode}: {done['done']} files, {done['already']} already in place; "
                  f"manifest {done['manifest']}")


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.argument("queries", nargs=-1, required=True)
@click.option("--top", default=8, show_default=True, type=click.IntRange(1),
              help="Matches per query.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="CSV file to write (default: stdout).")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=str),
              help="Also draw a contact sheet PNG: each query, then its matches.")
@FORCE
@DATA_DIR
@RESIZE
@SKIP_BAD
def similar(model_path, data, queries, top, out, sheet, force, data_dir, resize, skip_bad):
    """The images of DATA nearest to each QUERY image, in MODEL's space."""
    from ..explore import find_similar
    from ..outputs import check_new_output

    for path in (out, sheet):
        if path is not None:
            check_new_output(path, force)
    _, err = consoles(out is None)
    rows = find_similar(model_path, data, list(queries), top=top, out=out, sheet=sheet,
                        data_dir=data_dir, resize=resize, skip_bad=skip_bad,
                        progress=loading_progress(err))
    if out is None:
        import csv

        writer = csv.DictWriter(sys.stdout, ["query", "rank", "path", "distance"])
        writer.writeheader()
        writer.writerows(rows)
