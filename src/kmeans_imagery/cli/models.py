"""``kmi fit``, ``predict``, ``evaluate``, ``show`` and ``label-sheet``: models made and applied."""

import json
import sys

import click

from ..datasets import open_source
from ..errors import KMIError
from ._common import (
    FORCE,
    algorithm_options,
    color_for_features,
    confusion_table,
    consoles,
    data_options,
    loading_progress,
    metrics_table,
    model_data_options,
    report_skipped,
)


@click.command()
@click.argument("data")
@click.option("--k", "n_clusters", required=True, type=int, help="Number of clusters.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Model file to write (conventionally *.kmi).")
@FORCE
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False, path_type=str),
              help="Name the clusters from this filled label sheet alone (see label-sheet).")
@click.option("--stream", is_flag=True,
              help="Read DATA in batches (memory independent of its size): features and start "
                   "on a sample, mini-batch passes, then exact Lloyd passes.")
@click.option("--max-iter", type=click.IntRange(1), default=None,
              help="Most Lloyd iterations (full passes over DATA when streamed or on Dask).")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Fit on a dask cluster: 'local' (this machine's cores) or a scheduler address "
                   "such as tcp://scheduler:8786.")
@algorithm_options
@data_options(features=True)
def fit(data, n_clusters, out, force, labels_csv, stream, max_iter, dask_address, features, seed,
        algorithm, engine, n_init, data_dir, color, size, skip_bad):
    """Fit a model on DATA and save it: in memory, streamed (--stream) or on Dask (--dask).

    DATA is a dataset name (mnist, fashion-mnist, digits), an IDX folder, an image folder
    (one sub-folder per class, or flat and unlabelled), a .npy/.npz file or a Zarr store. With
    labels the clusters are named after them; without, each cluster is its own class. Every
    option works in every mode, and the model file is the same.
    """
    from ..features import reading_size
    from ..fit import FitSpec
    from ..fit import fit as fit_source
    from ..model_io import save_model
    from ..outputs import check_new_output, output_file_folders

    console, err = consoles(False)
    check_new_output(out, force)
    # The model's folder is made (and found writable) before the fit, not after it.
    with output_file_folders(out):
        if stream and dask_address:
            raise KMIError("choose one of --stream and --dask")
        mode = "dask" if dask_address else "stream" if stream else "memory"
        size, color = reading_size(size, features), color_for_features(color, features)
        source = open_source(data, data_dir=data_dir, color=color, size=size,
                             skip_bad=skip_bad)
        test = None
        if source.split is not None:
            test = open_source(data, split="test", data_dir=data_dir, color=color, size=size,
                               skip_bad=skip_bad)
        spec = FitSpec(n_clusters, algorithm=algorithm, engine=engine, features=features,
                       n_init=n_init, max_iter=max_iter, random_state=seed, labels=labels_csv)
        console.print(f"fitting K={n_clusters} on {source.display_name}: {source.n_images} "
                      f"images of {'x'.join(map(str, source.image_shape))} ({mode})")
        if dask_address:
            from ..engine.dask import connect

            with connect(dask_address) as client:
                result = fit_source(source, spec, mode=mode, client=client, test=test)
        else:
            with err.status(f"fitting K={n_clusters}"):
                result = fit_source(source, spec, mode=mode, test=test,
                                    progress=loading_progress(err) if stream else None)
        report_skipped(source.name, source.skipped, err)
        save_model(result.model, out, force=force, fit_metrics=result.metrics,
                   training=result.training, label_names=source.label_names)
        console.print(metrics_table(f"model K={n_clusters} on {source.name}", {
            k: v for k, v in result.metrics.items() if k != "test_metrics"}))
        console.print(f"saved model to {out}")


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="CSV file to write (default: stdout).")
@FORCE
@click.option("--batch-size", default=1024, show_default=True, type=int,
              help="Images read and predicted at once.")
@model_data_options
def predict(model_path, data, out, force, batch_size, data_dir, resize, skip_bad):
    """Classify DATA (image files, folders, datasets, array files, Zarr stores) with MODEL.

    Writes CSV: path, cluster, label, distance (to the nearest centroid) and margin (to the
    second-nearest centroid: small means unsure). Images are read in batches.
    """
    from itertools import chain

    from ..model_io import load_model
    from ..outputs import atomic_text_file, check_new_output, output_file_folders
    from ..predict import open_inputs, predict_source, reading_options, write_predictions

    if out is not None:
        check_new_output(out, force)
    # The folder of --out is made first, as kmi fit makes the model's, and removed if this fails.
    with output_file_folders(out):
        model = load_model(model_path)
        sources = open_inputs(data, data_dir=data_dir, skip_bad=skip_bad,
                              **reading_options(model, resize))
        rows = chain.from_iterable(predict_source(model, s, batch_size=batch_size)
                                   for s in sources)
        if out is None:
            count = write_predictions(rows, sys.stdout)
        else:
            with atomic_text_file(out) as handle:
                count = write_predictions(rows, handle)
    _, err = consoles(True)
    skipped = {}
    for source in sources:
        for reason, n in source.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    listed = ", ".join(f"{n} {reason.replace('_', '-')}" for reason, n in skipped.items() if n)
    err.print(f"predicted {count} images" + (f" (skipped: {listed})" if listed else ""))


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--split", type=click.Choice(["auto", "train", "test", "all"]), default="auto",
              show_default=True, help="Images to score; auto = the test split if any, else all.")
@click.option("--json", "json_mode", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str),
              help="Folder for figures, results.json and report.html.")
@FORCE
@model_data_options
def evaluate(model_path, data, split, json_mode, out, force, data_dir, resize, skip_bad):
    """Score MODEL on the labelled DATA: metrics, confusion matrix, figures (read in batches)."""
    from contextlib import nullcontext

    from ..model_io import load_model
    from ..outputs import check_new_output, evaluation_outputs, output_folder
    from ..predict import evaluate as evaluate_model
    from ..predict import reading_options

    console, err = consoles(json_mode)
    if out is not None:
        check_new_output(out, force)
    with nullcontext() if out is None else output_folder(out):
        model = load_model(model_path)
        options = {"data_dir": data_dir, "skip_bad": skip_bad, **reading_options(model, resize)}
        first = open_source(data, split="train", **options)
        if first.split is None:
            if split == "test":
                raise KMIError(f"--split test: {data} has no test split")
            sources = [first]
        elif split == "train":
            sources = [first]
        else:
            test = open_source(data, split="test", **options)
            sources = [first, test] if split == "all" else [test]
        results = evaluate_model(model, sources).results
        for source in sources:
            report_skipped(source.name, source.skipped, err)
        console.print(metrics_table(
            f"{model_path} on {results['dataset']} ({results['split']}, {results['n_images']} images)",
            results["metrics"]))
        console.print(confusion_table(results))
        if out is not None:
            written = evaluation_outputs(model, sources[0], results, out)
            console.print(f"wrote {len(written)} files to {out}: report {written['report']}")
    if json_mode:
        click.echo(json.dumps(results, indent=2))


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", required=False)
@click.option("--out", default="centroids.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=str), help="PNG file to write.")
@FORCE
@click.option("--per-cluster", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Members shown per cluster with DATA.")
@click.option("--clusters", "max_clusters", default=20, show_default=True,
              type=click.IntRange(1, 1024), help="With DATA, draw the largest N clusters.")
@model_data_options
def show(model_path, data, out, force, per_cluster, max_clusters, data_dir, resize, skip_bad):
    """Draw MODEL's centroids with their labels; with DATA, each cluster's nearest members."""
    from ..model_io import load_model
    from ..outputs import check_new_output, draw_model, output_file_folders
    from ..predict import reading_options

    console, err = consoles(False)
    check_new_output(out, force)
    with output_file_folders(out):
        model = load_model(model_path)
        source = None
        if data is not None:
            source = open_source(data, data_dir=data_dir, skip_bad=skip_bad,
                                 **reading_options(model, resize))
        draw_model(model, out, source=source, per_cluster=per_cluster, max_clusters=max_clusters)
    if source is not None:
        report_skipped(source.name, source.skipped, err)
    console.print(f"wrote {out}")


@click.command("label-sheet")
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--per-cluster", default=5, show_default=True, type=click.IntRange(1, 64),
              help="Images per cluster to label.")
@click.option("--out", default="label-sheet", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for labels.csv and the sheet-NNN.png contact sheets.")
@FORCE
@model_data_options
def label_sheet(model_path, data, per_cluster, out, force, data_dir, resize, skip_bad):
    """Export each cluster's most central images of DATA for a person to label.

    Fill the label column of labels.csv (any rows: one per cluster is enough), then
    `kmi name MODEL DATA --labels labels.csv --out named.kmi` names MODEL's clusters from those
    labels, or `kmi fit DATA --k K --labels labels.csv` fits again and names the new ones.
    """
    from ..label_sheets import write_label_sheet
    from ..model_io import load_model
    from ..outputs import check_new_output
    from ..predict import reading_options

    console, err = consoles(False)
    check_new_output(out, force)
    model = load_model(model_path)
    source = open_source(data, data_dir=data_dir, skip_bad=skip_bad,
                         **reading_options(model, resize))
    written = write_label_sheet(model, source, out, per_cluster=per_cluster)
    report_skipped(source.name, source.skipped, err)
    console.print(f"wrote {written['csv']} and {len(written) - 1} contact sheet(s) to {out}")


@click.command("name")
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--labels", "labels_csv", required=True,
              type=click.Path(dir_okay=False, path_type=str),
              help="The filled label sheet (kmi label-sheet MODEL DATA).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Model file to write (MODEL itself with --force).")
@FORCE
@model_data_options
def name(model_path, data, labels_csv, out, force, data_dir, resize, skip_bad):
    """Name MODEL's clusters from a filled label sheet of DATA, without fitting again.

    Each labelled image votes for its label in its cluster; a cluster without votes takes the
    name of the nearest named one. kmi predict then gives the names, and kmi organize makes a
    folder per name.
    """
    from ..label_sheets import name_from_sheet
    from ..model_io import load_model, save_model
    from ..outputs import check_new_output
    from ..predict import reading_options

    console, err = consoles(False)
    check_new_output(out, force)
    model = load_model(model_path)
    source = open_source(data, data_dir=data_dir, skip_bad=skip_bad,
                         **reading_options(model, resize))
    model, n_labelled = name_from_sheet(model, labels_csv, source)
    report_skipped(source.name, source.skipped, err)
    metadata = model.metadata_
    save_model(model, out, force=force, fit_metrics={"labels_used": n_labelled},
               training={**metadata.get("training", {}), "labelled": True},
               label_names=metadata.get("label_names"))
    names = ", ".join(f"{cluster}: {label}" for cluster, label in enumerate(model.cluster_labels_))
    console.print(f"named {len(model.cluster_labels_)} clusters as {len(model.classes_)} classes "
                  f"from {n_labelled} labelled images ({names}); saved {out}")
