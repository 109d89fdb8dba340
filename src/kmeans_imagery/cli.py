"""The ``kmi`` command line: a thin layer over the library.

Each command parses its options, calls one library function, and prints. Errors a user can cause
(:class:`~kmeans_imagery.errors.KMIError`, bad options) are printed as one line on stderr with exit
code 2; ``--debug`` shows the traceback instead.
"""

import json
import sys
from contextlib import contextmanager

import click

from . import __version__
from .errors import KMIError

DEBUG_ENV = "KMI_DEBUG"


def _consoles(json_mode):
    """Human output goes to stdout, or to stderr when stdout carries JSON."""
    from rich.console import Console

    err = Console(stderr=True)
    return (err if json_mode else Console()), err


@contextmanager
def _progress(console, total, description):
    """A progress bar on stderr; yields its :class:`_Bar`.

    Only a terminal gets a bar: piped or captured stderr stays clean for logs and error lines.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))


class _Bar:
    """One task of a rich progress bar: ``advance(n)``, or call it (as a callback) to add one."""

    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    def advance(self, n=1):
        self._progress.advance(self._task, n)

    def __call__(self, *_):
        self.advance()


def _loading_progress(console):
    """The ``progress(total, description)`` factory that the datasets module accepts."""
    return lambda total, description: _progress(console, total, description)


def _load(dataset, console, *, data_dir=None, color="gray", size=None, skip_bad=False):
    """Load a dataset with a progress bar on stderr, and say what was skipped."""
    from .datasets import load_dataset

    data = load_dataset(
        dataset, data_dir=data_dir, color=color, size=size, skip_bad=skip_bad,
        progress=_loading_progress(console),
    )
    skipped = {reason: count for reason, count in data.skipped.items() if count}
    if skipped:
        listed = ", ".join(f"{count} {reason.replace('_', '-')}" for reason, count in skipped.items())
        console.print(f"skipped files in {data.name}: {listed}")
    return data


def _sweep_table(rows, title):
    from rich.table import Table

    table = Table(title=title)
    for column in ("K", "inertia", "homogeneity", "accuracy", "test accuracy", "fit s"):
        table.add_column(column, justify="right")
    for row in rows:
        test = row.get("test_accuracy")
        table.add_row(
            str(row["k"]),
            f"{row['inertia']:,.0f}",
            f"{row['homogeneity']:.3f}",
            f"{row['accuracy']:.3f}",
            "—" if test is None else f"{test:.3f}",
            f"{row['fit_seconds']:.2f}",
        )
    return table


def _budget_table(rows):
    from rich.table import Table

    table = Table(title="one label per cluster (most central image)")
    table.add_column("labels", justify="right")
    table.add_column("test accuracy", justify="right")
    for row in rows:
        table.add_row(str(row["labels"]), f"{row['test_accuracy']:.3f}")
    return table


def _versions_table(versions):
    from rich.table import Table

    table = Table(title="versions")
    table.add_column("library")
    table.add_column("version")
    for name, version in versions.items():
        table.add_row(name, version)
    return table


def _parse_ks(_ctx, _param, value):
    from .pipeline import parse_ks

    try:
        return parse_ks(value)
    except KMIError as error:
        raise click.BadParameter(str(error).removeprefix("--ks: ")) from None


def _parse_budgets(_ctx, _param, value):
    from .pipeline import parse_ks

    if not value:
        return ()
    try:
        return parse_ks(value)
    except KMIError as error:
        raise click.BadParameter(str(error).removeprefix("--ks: ")) from None


def _features_option():
    from .features import FEATURE_PRESETS

    presets = "; ".join(f"{name} = {spec} ({text})" for name, (spec, text) in FEATURE_PRESETS.items())
    return click.option(
        "--features", default="raw", show_default=True,
        help="Feature pipeline before K-means: steps joined with + (deskew, l2, hog[:cell], onnx:PATH, "
             "pca[:n], umap[:n]), side by side with |, or a preset: " + presets + ".",
    )


def _with_options(command, options):
    """Apply click options so that they show in the given order."""
    for option in reversed(options):
        command = option(command)
    return command


def _data_options(command):
    """Options that say how to read a dataset given by name or path."""
    return _with_options(command, [
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
                     help="Folder with a named dataset's files (else $KMI_DATA_DIR, the cache, "
                          "download)."),
        click.option("--color", type=click.Choice(["gray", "rgb"]), default="gray",
                     show_default=True, help="Read images as gray or keep colour."),
        click.option("--size", help="Resize images to HxW (default: the first image's size)."),
        click.option("--skip-bad", is_flag=True,
                     help="Skip unreadable image files (counted) instead of stopping."),
    ])


def _algorithm_options(command):
    """Options that choose how K-means runs."""
    from .engine import ALGORITHMS, ENGINES

    return _with_options(command, [
        click.option("--seed", default=0, show_default=True, type=int, help="Random seed."),
        click.option("--algorithm", type=click.Choice(ALGORITHMS), default="minibatch",
                     show_default=True, help="Mini-batch K-means (the tutorial's) or full Lloyd."),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), default=None,
                     help="K-means engine [default: the project's own]."),
        _features_option(),
    ])


def _common_options(command):
    """Options shared by ``run`` and ``sweep``."""
    from .pipeline import DEFAULT_KS

    command = _with_options(command, [
        click.option("--ks", default=",".join(map(str, DEFAULT_KS)), show_default=True,
                     callback=_parse_ks, help="Comma-separated cluster counts to sweep."),
        click.option("--transductive", is_flag=True,
                     help="Fit on the test set it scores, as the tutorial did (optimistic)."),
        click.option("--n-init", type=click.IntRange(1), default=None,
                     help="Inits per fit at K = number of classes; the lowest inertia wins "
                          "(no labels used)."),
        click.option("--stability-seeds", type=click.IntRange(0), default=5, show_default=True,
                     help="Seeds refitted at K = number of classes to show how stable the "
                          "clustering is (0: skip)."),
        click.option("--label-budget", "label_budgets", default="", callback=_parse_budgets,
                     help="Simulate labelling one central image per cluster: comma-separated "
                          "numbers of labels, e.g. 10,100,256,1000."),
        click.option("--json", "json_mode", is_flag=True,
                     help="Print results.json to stdout and nothing else there."),
    ])
    command = _algorithm_options(command)
    command = _data_options(command)
    return click.option("--dataset", default="mnist", show_default=True,
                        help="mnist, fashion-mnist, digits (bundled, offline), or a path: an IDX "
                             "or image folder, a .npy/.npz file.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kmi")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cli(debug):
    """kmeans-imagery: turn unlabeled images into classes with K-means."""


def _experiment(dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err,
                *, features, n_init, stability_seeds, label_budgets, color, size, skip_bad):
    from .pipeline import library_versions, run_experiment

    out_console.print(_versions_table(library_versions()))
    data = _load(dataset, err, data_dir=data_dir, color=color, size=size, skip_bad=skip_bad)
    out_console.print(
        f"dataset {data.name}: train {data.train_images.shape}, "
        f"test {None if data.test_images is None else data.test_images.shape}"
    )
    steps = len(ks) + len(label_budgets)
    with _progress(err, steps, f"fitting K in {','.join(map(str, ks))}") as advance:
        return run_experiment(
            data, ks=ks, algorithm=algorithm, engine=engine, random_state=seed,
            transductive=transductive, features=features, n_init=n_init,
            stability_seeds=stability_seeds, label_budgets=label_budgets,
            log=out_console.print, on_fitted=advance,
        )


@cli.command()
@_common_options
@click.option("--out", default="results", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for figures, results.json and report.html.")
def run(dataset, data_dir, ks, seed, algorithm, engine, transductive, json_mode, out, **extra):
    """The whole tutorial in one command: fit, name, sweep K, score the test set, draw, report.

    Models are fitted on the training images and scored on the held-out test images
    (--transductive fits on the test images instead, as the tutorial did).
    """
    from .pipeline import prepare_out_dir, write_outputs

    out_console, err = _consoles(json_mode)
    prepare_out_dir(out)
    experiment = _experiment(
        dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err, **extra
    )
    results = experiment.results
    out_console.print(_sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
    test = results["test"]
    fitted_on = "test (transductive)" if transductive else "train"
    out_console.print(
        f"test accuracy at K={test['k']} (fitted on {fitted_on}): {test['accuracy']:.4f}"
    )
    if results["label_budget"]:
        out_console.print(_budget_table(results["label_budget"]))
    with err.status("drawing figures and report"):
        written = write_outputs(experiment, out)
    out_console.print(f"wrote {len(written)} files to {out}: report {written['report']}")
    if json_mode:
        click.echo(json.dumps(results, indent=2))


@cli.command()
@_common_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the sweep results as JSON to this file.")
def sweep(dataset, data_dir, ks, seed, algorithm, engine, transductive, json_mode, out, **extra):
    """Only the K sweep: inertia, homogeneity, accuracy and fit time per K."""
    from pathlib import Path

    from .pipeline import prepare_out_dir, write_json

    out_console, err = _consoles(json_mode)
    if out is not None:
        prepare_out_dir(Path(out).parent)
    experiment = _experiment(
        dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err, **extra
    )
    results = experiment.results
    out_console.print(_sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
    if out is not None:
        write_json(results, out)
    if json_mode:
        click.echo(json.dumps(results, indent=2))


def _metrics_table(title, values):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in values.items():
        if isinstance(value, float):
            table.add_row(name, f"{value:,.4f}" if abs(value) < 1e4 else f"{value:,.0f}")
        elif isinstance(value, int):
            table.add_row(name, str(value))
    return table


@cli.command()
@click.argument("data")
@click.option("--k", "n_clusters", required=True, type=int, help="Number of clusters.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Model file to write (conventionally *.kmi).")
@click.option("--force", is_flag=True, help="Replace an existing model file.")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False, path_type=str),
              help="Name the clusters from this filled label sheet alone (see label-sheet).")
@click.option("--n-init", type=click.IntRange(1), default=None,
              help="Inits to run; the lowest inertia wins (no labels used).")
@click.option("--stream", is_flag=True,
              help="Read DATA in batches (memory independent of its size): mini-batch passes, "
                   "then exact Lloyd passes.")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Fit on a dask cluster: 'local' (this machine's cores) or a scheduler address "
                   "such as tcp://scheduler:8786.")
@_algorithm_options
@_data_options
def fit(data, n_clusters, out, force, labels_csv, n_init, stream, dask_address, features, seed,
        algorithm, engine, data_dir, color, size, skip_bad):
    """Fit a model on DATA and save it.

    DATA is a dataset name (mnist, fashion-mnist, digits), an IDX folder, an image folder
    (one sub-folder per class, or flat and unlabelled) or a .npy/.npz file. With labels the
    clusters are named after them; without, each cluster is its own class.
    """
    from pathlib import Path

    from .model_io import save_model
    from .pipeline import fit_model, read_label_sheet

    console, err = _consoles(False)
    if Path(out).exists() and not force:
        raise KMIError(f"{out} already exists; use --force to replace it")
    if stream or dask_address:
        if stream and dask_address:
            raise KMIError("choose one of --stream and --dask")
        if features != "raw" or labels_csv or n_init:
            raise KMIError("--stream and --dask fit raw pixels: drop --features, --labels, --n-init")
        _fit_chunked(data, n_clusters, out, force, seed, dask_address, data_dir, color, size,
                     console, err)
        return
    dataset = _load(data, err, data_dir=data_dir, color=color, size=size, skip_bad=skip_bad)
    console.print(f"fitting K={n_clusters} on {dataset.name}: {dataset.train_images.shape}")
    examples = None
    if labels_csv is not None:
        examples = read_label_sheet(labels_csv, len(dataset.train_images))
    with err.status(f"fitting K={n_clusters}"):
        model, metrics, training = fit_model(
            dataset, n_clusters, algorithm=algorithm, engine=engine, random_state=seed,
            features=features, n_init=n_init, examples=examples,
        )
    save_model(model, out, force=force, fit_metrics=metrics, training=training,
               label_names=dataset.label_names)
    console.print(_metrics_table(f"model K={n_clusters} on {dataset.name}", {
        **{k: v for k, v in metrics.items() if k != "test_metrics"}}))
    console.print(f"saved model to {out}")


def _fit_chunked(data, n_clusters, out, force, seed, dask_address, data_dir, color, size,
                 console, err):
    """``kmi fit --stream`` / ``--dask``: fit from a chunked source, then save."""
    from .model_io import save_model
    from .sources import open_source
    from .streaming import dask_fit_classifier, stream_fit_classifier

    source = open_source(data, data_dir=data_dir, color=color, size=size)
    console.print(f"fitting K={n_clusters} on {source.name}: {source.n_images} images of "
                  f"{'x'.join(map(str, source.image_shape))}, read in batches")
    if dask_address:
        from .engine.dask_engine import connect

        with connect(dask_address) as client:
            model = dask_fit_classifier(source, n_clusters, client=client, random_state=seed)
    else:
        model = stream_fit_classifier(source, n_clusters, random_state=seed,
                                      progress=_loading_progress(err))
    metrics = {"inertia": model.inertia_}
    save_model(model, out, force=force, fit_metrics=metrics,
               training={"dataset": source.name, "n_samples": source.n_images,
                         "labelled": source.labels is not None},
               label_names=source.label_names)
    console.print(f"inertia {model.inertia_:,.0f}; saved model to {out}")


@cli.command()
@click.argument("src")
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Split of an IDX folder, named dataset or .npz file to convert.")
@click.option("--chunk-size", default=8192, show_default=True, type=click.IntRange(1),
              help="Images per Zarr chunk.")
@click.option("--force", is_flag=True, help="Replace an existing store.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Folder with a named dataset's files.")
@click.option("--color", type=click.Choice(["gray", "rgb"]), default=None,
              help="Convert images to gray or rgb (default: keep).")
@click.option("--size", help="Resize images to HxW.")
def convert(src, dest, split, chunk_size, force, data_dir, color, size):
    """Write SRC (any supported input) as a chunked Zarr store DEST for streaming and Dask fits."""
    from .sources import convert_to_zarr

    console, err = _consoles(False)
    store = convert_to_zarr(src, dest, chunk_size=chunk_size, split=split, data_dir=data_dir,
                            color=color, size=size, force=force, progress=_loading_progress(err))
    console.print(f"wrote {store.n_images} images of {'x'.join(map(str, store.image_shape))} "
                  f"to {dest}")


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="CSV file to write (default: stdout).")
@click.option("--batch-size", default=1024, show_default=True, type=int,
              help="Images read and predicted at once.")
@click.option("--resize", is_flag=True, help="Resize images to the model's size.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable image files (counted).")
def predict(model_path, paths, out, batch_size, resize, skip_bad):
    """Classify image files, folders or array files with MODEL; write CSV.

    Columns: path, cluster, label, distance (to the nearest centroid) and margin (to the
    second-nearest centroid: small means unsure). Images are streamed in batches.
    """
    from .model_io import load_model
    from .pipeline import atomic_text_file
    from .predict import predict_paths, write_predictions

    model = load_model(model_path)
    skipped = {}
    rows = predict_paths(model, paths, batch_size=batch_size, resize=resize, skip_bad=skip_bad,
                         skipped=skipped)
    if out is None:
        count = write_predictions(rows, sys.stdout)
    else:
        with atomic_text_file(out) as handle:
            count = write_predictions(rows, handle)
    _, err = _consoles(True)
    listed = ", ".join(f"{n} {reason.replace('_', '-')}" for reason, n in skipped.items() if n)
    err.print(f"predicted {count} images" + (f" (skipped: {listed})" if listed else ""))


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--split", type=click.Choice(["auto", "train", "test", "all"]), default="auto",
              show_default=True, help="Images to score; auto = the test split if any, else all.")
@click.option("--resize", is_flag=True, help="Resize images to the model's size.")
@click.option("--json", "json_mode", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str),
              help="Folder for figures, results.json and report.html.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Folder with a named dataset's files.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable image files (counted).")
def evaluate(model_path, data, split, resize, json_mode, out, data_dir, skip_bad):
    """Score MODEL on the labelled dataset DATA: metrics, confusion matrix, figures."""
    from .model_io import load_model
    from .pipeline import evaluation_outputs, prepare_out_dir
    from .predict import evaluate as evaluate_model
    from .predict import model_color, model_size

    console, err = _consoles(json_mode)
    if out is not None:
        prepare_out_dir(out)
    model = load_model(model_path)
    if _is_zarr_store(data):
        from .sources import open_source
        from .streaming import stream_evaluate

        if out is not None:
            raise KMIError("--out (figures and report) needs data that fits in memory, not a "
                           "Zarr store")
        source = open_source(data, color=model_color(model),
                             size=model_size(model) if resize else None)
        results = {**stream_evaluate(model, source), "split": "all"}
        dataset = None
    else:
        dataset = _load(data, err, data_dir=data_dir, color=model_color(model),
                        size=model_size(model) if resize else None, skip_bad=skip_bad)
        results = evaluate_model(model, dataset, split=split, resize=resize)
    console.print(_metrics_table(
        f"{model_path} on {results['dataset']} ({results['split']}, {results['n_images']} images)",
        results["metrics"]))
    console.print(_confusion_table(results))
    if out is not None:
        written = evaluation_outputs(model, dataset, results, out)
        console.print(f"wrote {len(written)} files to {out}: report {written['report']}")
    if json_mode:
        click.echo(json.dumps(results, indent=2))


def _is_zarr_store(data):
    from pathlib import Path

    from .sources import is_zarr_store

    return Path(data).is_dir() and is_zarr_store(Path(data))


def _confusion_table(results):
    from rich.table import Table

    names = results["class_names"]
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, results["confusion_matrix"], strict=True):
        table.add_row(name, *map(str, row))
    return table


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--out", default="centroids.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=str), help="PNG file to write.")
@click.option("--data", help="Dataset whose nearest members to show under each centroid.")
@click.option("--per-cluster", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Members shown per cluster with --data.")
@click.option("--clusters", "max_clusters", default=20, show_default=True,
              type=click.IntRange(1, 1024), help="With --data, draw the largest N clusters.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Folder with a named dataset's files.")
def show(model_path, out, data, per_cluster, max_clusters, data_dir):
    """Draw MODEL's centroids with their labels; with --data, each cluster's nearest members."""
    from .model_io import load_model
    from .pipeline import draw_model
    from .predict import model_color, model_size

    console, err = _consoles(False)
    model = load_model(model_path)
    dataset = None
    if data is not None:
        dataset = _load(data, err, data_dir=data_dir, color=model_color(model),
                        size=model_size(model))
    draw_model(model, out, dataset=dataset, per_cluster=per_cluster, max_clusters=max_clusters)
    console.print(f"wrote {out}")


@cli.command("label-sheet")
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--per-cluster", default=5, show_default=True, type=click.IntRange(1, 64),
              help="Images per cluster to label.")
@click.option("--out", default="label-sheet", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for labels.csv and the sheet-NNN.png contact sheets.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Folder with a named dataset's files.")
def label_sheet(model_path, data, per_cluster, out, data_dir):
    """Export each cluster's most central images of DATA for a person to label.

    Fill the label column of labels.csv (any rows: one per cluster is enough), then
    `kmi fit DATA --k K --labels labels.csv` names the clusters from those labels alone.
    """
    from .model_io import load_model
    from .pipeline import write_label_sheet
    from .predict import model_color, model_size

    console, err = _consoles(False)
    model = load_model(model_path)
    dataset = _load(data, err, data_dir=data_dir, color=model_color(model), size=model_size(model))
    written = write_label_sheet(model, dataset, out, per_cluster=per_cluster)
    console.print(f"wrote {written['csv']} and {len(written) - 1} contact sheet(s) to {out}")



def _parse_k(_ctx, _param, value):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a whole number, got {value!r}") from None


def _parse_k_range(_ctx, _param, value):
    low, sep, high = value.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise click.BadParameter(f"expected MIN-MAX such as 2-50, got {value!r}") from None


@cli.command()
@click.argument("data")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for index.html, the CSV files, results.json, model.kmi and figures.")
@click.option("--k", default="auto", show_default=True, callback=_parse_k,
              help="Number of clusters, or auto: the elbow of the sum of squares over --k-range.")
@click.option("--k-range", default="2-50", show_default=True, callback=_parse_k_range,
              help="Range of K that --k auto considers, MIN-MAX.")
@click.option("--map", "map_method", type=click.Choice(["pca", "umap"]), default="pca",
              show_default=True, help="2-D map: principal axes, or UMAP (the umap extra).")
@click.option("--duplicate-threshold", default=0.025, show_default=True, type=click.FloatRange(0),
              help="Largest RMS difference of 16x16 gray descriptors of near duplicates (0: exact "
                   "copies only).")
@click.option("--fit-size", default=20000, show_default=True, type=click.IntRange(2),
              help="Most images the clustering is fitted on (all images are then assigned).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--force", is_flag=True, help="Replace earlier outputs in --out.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Folder with a named dataset's files.")
@click.option("--color", type=click.Choice(["gray", "rgb"]), default=None,
              help="Read images as gray or keep colour [default: gray for folders].")
@click.option("--size", help="Resize images to HxW (default: the first image's size).")
@_features_option()
def explore(data, out, k, k_range, map_method, duplicate_threshold, fit_size, seed, force,
            data_dir, color, size, features):
    """Explore DATA without labels: choose K, galleries, outliers, duplicates, a 2-D map.

    Writes OUT/index.html (opens offline), clusters.csv, outliers.csv, duplicates.csv,
    results.json and model.kmi (usable with kmi predict).
    """
    from .explore import explore as run_explore

    console, err = _consoles(False)
    results = run_explore(data, out, k=k, k_range=k_range, features=features, color=color,
                          size=size, data_dir=data_dir, fit_size=fit_size,
                          duplicate_threshold=duplicate_threshold, map_method=map_method,
                          random_state=seed, force=force, progress=_loading_progress(err))
    console.print(f"{results['n_images']:,} images, K={results['k']}, "
                  f"{results['duplicates']['n_groups']:,} duplicate groups; wrote {out}/index.html")


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--into", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to sort into, one sub-folder per cluster (named by label if any).")
@click.option("--mode", type=click.Choice(["link", "copy", "move"]), default="link",
              show_default=True, help="Hard-link, copy or move the files.")
@click.option("--dry-run", is_flag=True, help="Print the manifest CSV and touch nothing.")
def organize(model_path, data, into, mode, dry_run):
    """Sort the image files of DATA into a folder per cluster of MODEL; never overwrites.

    Writes INTO/manifest.csv (old and new place of every file); an interrupted run finishes
    when run again.
    """
    from .explore import organize as run_organize

    console, err = _consoles(dry_run)
    done = run_organize(model_path, data, into, mode=mode, dry_run=dry_run,
                        progress=_loading_progress(err))
    if dry_run:
        import csv

        writer = csv.DictWriter(sys.stdout, ["old_path", "new_path", "cluster", "label"])
        writer.writeheader()
        writer.writerows(done["rows"])
        return
    console.print(f"{mode}: {done['done']} files, {done['already']} already in place; "
                  f"manifest {done['manifest']}")


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.argument("queries", nargs=-1, required=True)
@click.option("--top", default=8, show_default=True, type=click.IntRange(1),
              help="Matches per query.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="CSV file to write (default: stdout).")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=str),
              help="Also draw a contact sheet PNG: each query, then its matches.")
def similar(model_path, data, queries, top, out, sheet):
    """The images of DATA nearest to each QUERY image, in MODEL's space."""
    from .explore import find_similar

    _, err = _consoles(out is None)
    rows = find_similar(model_path, data, list(queries), top=top, out=out, sheet=sheet,
                        progress=_loading_progress(err))
    if out is None:
        import csv

        writer = csv.DictWriter(sys.stdout, ["query", "rank", "path", "distance"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None):
    """Entry point of ``kmi``: runs the command, turning user errors into one line and exit code 2."""
    import os

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV) == "1"
    try:
        cli.main(args=argv, prog_name="kmi", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("kmi: interrupted", err=True)
        return 130
    except (KMIError, click.ClickException) as error:
        if debug:
            raise
        message = error.format_message() if isinstance(error, click.ClickException) else error
        click.echo(f"kmi: error: {' '.join(str(message).split())}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("kmi: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
