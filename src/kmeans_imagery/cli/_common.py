"""What the commands share: consoles, progress bars, tables, option groups, opening data."""

from contextlib import contextmanager

import click

from ..errors import KMIError


def consoles(json_mode):
    """Human output goes to stdout, or to stderr when stdout carries JSON.

    Messages hold paths and names as given, so ``[...]`` and ``:name:`` in them are printed as
    they are, not read as rich markup or emoji codes.
    """
    from rich.console import Console

    err = Console(stderr=True, markup=False, emoji=False)
    return (err if json_mode else Console(markup=False, emoji=False)), err


@contextmanager
def progress_bar(console, total, description):
    """A progress bar on stderr; yields its :class:`_Bar`.

    Only a terminal gets a bar: piped or captured stderr stays clean for logs and error lines.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
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


def loading_progress(console):
    """The ``progress(total, description)`` factory that the datasets module accepts."""
    return lambda total, description: progress_bar(console, total, description)


def sweep_table(rows, title):
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


def budget_table(rows):
    from rich.table import Table

    table = Table(title="one label per cluster (most central image)")
    table.add_column("labels", justify="right")
    table.add_column("test accuracy", justify="right")
    for row in rows:
        table.add_row(str(row["labels"]), f"{row['test_accuracy']:.3f}")
    return table


def versions_table(versions):
    from rich.table import Table

    table = Table(title="versions")
    table.add_column("library")
    table.add_column("version")
    for name, version in versions.items():
        table.add_row(name, version)
    return table


def metrics_table(title, values):
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


def confusion_table(results):
    from rich.table import Table

    names = results["class_names"]
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, results["confusion_matrix"], strict=True):
        table.add_row(name, *map(str, row))
    return table



def parse_ks_option(_ctx, _param, value):
    from ..experiment import parse_ks

    if not value:
        return ()
    try:
        return parse_ks(value)
    except KMIError as error:
        raise click.BadParameter(str(error).removeprefix("--ks: ")) from None


def with_options(command, options):
    """Apply click options so that they show in the given order."""
    for option in reversed(options):
        command = option(command)
    return command


FORCE = click.option("--force", is_flag=True, help="Replace an existing output.")
DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
                        help="Folder with a named dataset's files (else $KMI_DATA_DIR, the cache, "
                             "download).")
SKIP_BAD = click.option("--skip-bad", is_flag=True,
                        help="Skip unreadable image files (counted) instead of stopping.")
RESIZE = click.option("--resize", is_flag=True,
                      help="Resize images to the model's size (always done for a model fitted on "
                           "resized images, such as kmi explore's).")
#: Seeds numpy and scikit-learn both accept.
SEED = click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
                    help="Random seed.")


_SIZE_HELP = ("Resize images to HxW, N for NxN, or auto: their median size, scaled down to at "
              "most 64 on its longer side, for images of mixed sizes")


def data_options(command=None, *, size=None, features=False):
    """How to read DATA: the same options, with the same meaning, on every command that reads it.

    ``size`` is the default of ``--size`` (None: the images' own size, which must agree); use as
    ``@data_options`` or ``@data_options(size="auto")``. With ``features``, the command reads
    DATA for a feature pipeline: ``--color`` is None unless given, for :func:`color_for_features`.
    """
    if command is None:
        return lambda command: data_options(command, size=size, features=features)
    default = "the images' own size, which must agree" if size is None else size
    # onnx features set the size, and only a command with a feature pipeline has them.
    size_help = _SIZE_HELP + (" (with onnx features: the network's input size)" if features else "")
    color_help = ("Read images as gray (the default, or rgb for an onnx: network that takes "
                  "colour) or keep colour." if features else "Read images as gray or keep colour.")
    return with_options(command, [
        DATA_DIR,
        click.option("--color", type=click.Choice(["gray", "rgb"]),
                     default=None if features else "gray", show_default=not features,
                     help=color_help),
        click.option("--size", default=size, help=f"{size_help} (default: {default})."),
        SKIP_BAD,
    ])


def model_data_options(command):
    """How to read DATA for a model: in the model's colour, at its size with --resize."""
    return with_options(command, [
        DATA_DIR,
        RESIZE,
        SKIP_BAD,
    ])


def algorithm_options(command):
    """Options that choose how K-means runs."""
    from ..engine import ALGORITHMS, ENGINES
    from ..features import FEATURE_PRESETS

    presets = "; ".join(f"{name} = {spec} ({text})" for name, (spec, text) in FEATURE_PRESETS.items())
    return with_options(command, [
        SEED,
        click.option("--algorithm", type=click.Choice(ALGORITHMS), default="minibatch",
                     show_default=True, help="Mini-batch K-means (the tutorial's) or full Lloyd."),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), default=None,
                     help="K-means engine [default: the project's own]."),
        click.option("--features", default="raw", show_default=True,
                     help="Feature pipeline before K-means: steps joined with + (deskew, l2, "
                          "hog[:cell], pca[:n], umap[:n], onnx:PATH[:norm=imagenet]), side by "
                          "side with |, or a "
                          "preset: "
                          + presets + "."),
        click.option("--n-init", type=click.IntRange(1), default=None,
                     help="Starts to run; the lowest inertia wins (no labels used)."),
    ])


def report_skipped(name, skipped, console):
    """Say which files a source passed over (hidden, non-image, unlabelled, bad)."""
    from ..datasets.folders import skipped_summary

    summary = skipped_summary(skipped)
    if summary:
        console.print(f"skipped files in {name}: {summary}")


def color_for_features(color, features):
    """``--color`` of a command with a feature pipeline: as given, else rgb for an onnx:
    network that takes colour, else gray."""
    from ..features import reading_color

    return reading_color(color, features) or "gray"
