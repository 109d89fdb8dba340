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
    """A progress bar on stderr; yields a callable that advances it by one step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda *_: progress.advance(task)


def _load(dataset, data_dir, console):
    from .datasets import load_dataset

    with console.status(f"loading {dataset}"):
        return load_dataset(dataset, data_dir=data_dir)


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


def _common_options(command):
    """Options shared by ``run`` and ``sweep``."""
    from .engine import ALGORITHMS, ENGINES
    from .pipeline import DEFAULT_KS

    options = [
        click.option("--dataset", default="mnist", show_default=True,
                     help="mnist, fashion-mnist, digits (bundled, offline), or a folder path."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
                     help="Folder with the dataset's files (else $KMI_DATA_DIR, the cache, download)."),
        click.option("--ks", default=",".join(map(str, DEFAULT_KS)), show_default=True,
                     callback=_parse_ks, help="Comma-separated cluster counts to sweep."),
        click.option("--seed", default=0, show_default=True, type=int, help="Random seed."),
        click.option("--algorithm", type=click.Choice(ALGORITHMS), default="minibatch",
                     show_default=True, help="Mini-batch K-means (the tutorial's) or full Lloyd."),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), default=None,
                     help="K-means engine [default: the project's own]."),
        click.option("--transductive", is_flag=True,
                     help="Fit on the test set it scores, as the tutorial did (optimistic)."),
        click.option("--json", "json_mode", is_flag=True,
                     help="Print results.json to stdout and nothing else there."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kmi")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cli(debug):
    """kmeans-imagery: turn unlabeled images into classes with K-means."""


def _experiment(dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err):
    from .pipeline import library_versions, run_experiment

    out_console.print(_versions_table(library_versions()))
    data = _load(dataset, data_dir, err)
    out_console.print(
        f"dataset {data.name}: train {data.train_images.shape}, "
        f"test {None if data.test_images is None else data.test_images.shape}"
    )
    with _progress(err, len(ks), f"fitting K in {','.join(map(str, ks))}") as advance:
        return run_experiment(
            data, ks=ks, algorithm=algorithm, engine=engine, random_state=seed,
            transductive=transductive, log=out_console.print, on_fitted=advance,
        )


@cli.command()
@_common_options
@click.option("--out", default="results", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for figures, results.json and report.html.")
def run(dataset, data_dir, ks, seed, algorithm, engine, transductive, json_mode, out):
    """The whole tutorial in one command: fit, name, sweep K, score the test set, draw, report.

    Models are fitted on the training images and scored on the held-out test images
    (--transductive fits on the test images instead, as the tutorial did).
    """
    from .pipeline import prepare_out_dir, write_outputs

    out_console, err = _consoles(json_mode)
    prepare_out_dir(out)
    experiment = _experiment(
        dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err
    )
    results = experiment.results
    out_console.print(_sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
    test = results["test"]
    fitted_on = "test (transductive)" if transductive else "train"
    out_console.print(
        f"test accuracy at K={test['k']} (fitted on {fitted_on}): {test['accuracy']:.4f}"
    )
    with err.status("drawing figures and report"):
        written = write_outputs(experiment, out)
    out_console.print(f"wrote {len(written)} files to {out}: report {written['report']}")
    if json_mode:
        click.echo(json.dumps(results, indent=2))


@cli.command()
@_common_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the sweep results as JSON to this file.")
def sweep(dataset, data_dir, ks, seed, algorithm, engine, transductive, json_mode, out):
    """Only the K sweep: inertia, homogeneity, accuracy and fit time per K."""
    from pathlib import Path

    from .pipeline import prepare_out_dir, write_json

    out_console, err = _consoles(json_mode)
    if out is not None:
        prepare_out_dir(Path(out).parent)
    experiment = _experiment(
        dataset, data_dir, ks, seed, algorithm, engine, transductive, out_console, err
    )
    results = experiment.results
    out_console.print(_sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
    if out is not None:
        write_json(results, out)
    if json_mode:
        click.echo(json.dumps(results, indent=2))


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
