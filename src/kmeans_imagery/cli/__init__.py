"""The ``kmi`` command line: a thin layer over the library.

Each command parses its options, calls library functions, and prints. Commands live in modules of
this package by theme and are imported only when run (:class:`LazyGroup`), so ``kmi --help`` and
``kmi --version`` load neither numpy nor scikit-learn. Errors a user can cause
(:class:`~kmeans_imagery.errors.KMIError`, bad options, a path the file system refuses) are printed
as one line on stderr with exit code 2, the library's parameter names mapped to the command's flags;
``--debug`` shows the traceback instead.
"""

import os
import re
import sys
from functools import partial
from importlib import import_module

import click

from ..errors import KMIError

DEBUG_ENV = "KMI_DEBUG"

#: Command name -> (module, function, one-line help shown by ``kmi --help``).
COMMANDS = {
    "run": ("tutorial", "run", "The whole tutorial in one command: fit, name, sweep K, score, "
                               "draw, report."),
    "sweep": ("tutorial", "sweep", "Only the K sweep: inertia, homogeneity, accuracy and fit time "
                                   "per K."),
    "fit": ("models", "fit", "Fit a model on DATA (in memory, streamed, or on Dask) and save it."),
    "predict": ("models", "predict", "Classify images with MODEL; write CSV."),
    "evaluate": ("models", "evaluate", "Score MODEL on labelled DATA: metrics, confusion matrix, "
                                       "figures."),
    "show": ("models", "show", "Draw MODEL's centroids; with DATA, each cluster's nearest "
                               "members."),
    "label-sheet": ("models", "label_sheet", "Export each cluster's most central images of DATA "
                                             "for a person to label."),
    "name": ("models", "name", "Name MODEL's clusters from a filled label sheet, without fitting "
                               "again."),
    "segment": ("segment", "segment", "Cluster the pixels of a raster (GeoTIFF, hyperspectral "
                                      "cube, photo) into a georeferenced class map."),
    "explore": ("explore", "explore", "Explore an unlabelled collection: choose K, galleries, "
                                      "outliers, duplicates, a 2-D map."),
    "organize": ("explore", "organize", "Sort the image files of DATA into a folder per cluster "
                                        "of MODEL."),
    "similar": ("explore", "similar", "The images of DATA nearest to each query image."),
    "convert": ("data", "convert", "Write DATA as a chunked Zarr store DEST for streaming and "
                                   "Dask fits."),
}

#: Library parameter names, as errors name them, and the flags that set them.
PARAM_FLAGS = {
    "force=True": "--force",
    "resize=True": "--resize",
    "n_clusters": "--k",
    "n_init": "--n-init",
    "max_iter": "--max-iter",
    "batch_size": "--batch-size",
    "per_cluster": "--per-cluster",
    "skip_bad": "--skip-bad",
    "data_dir=FOLDER": "--data-dir FOLDER",
    "data_dir": "--data-dir",
    "chunk_size": "--chunk-size",
    "random_state": "--seed",
    "k=": "--k=",
    "size=": "--size=",
    "k_range": "--k-range",
    "fit_size": "--fit-size",
    "duplicate_threshold": "--duplicate-threshold",
    "map_method": "--map",
    "features=": "--features=",
    "out=": "--out=",
    "sheet=": "--sheet=",
    "ks": "--ks",
    "label_budgets": "--label-budget",
}


class _Interrupted(BaseException):
    """Ctrl-C during a command, carried past click, which would print a blank line before it."""


class LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMANDS` only when they run."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, function, _ = COMMANDS[name]
        return getattr(import_module(f".{module}", __name__), function)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmeans-imagery", prog_name="kmi")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cli(debug):
    """kmeans-imagery: turn unlabeled images into classes with K-means."""


#: Advice in a library error, for the commands that set it by another flag: the commands that
#: read images for a model resize them to the model's size with --resize.
OTHER_FLAGS = {"size=HxW or size=auto": ("--size", "--resize")}


def flag_names(message, options=None):
    """A library error's message with its parameter names replaced by the CLI's flags.

    ``options`` are the flags of the command that failed, when known: advice it cannot take is
    given with the flag it has instead (:data:`OTHER_FLAGS`).
    """
    for advice, (flag, other) in OTHER_FLAGS.items():
        if options is not None and flag not in options and other in options:
            message = message.replace(advice, other)
    for param, flag in PARAM_FLAGS.items():
        # A name ending in "=" is followed by its value, so only a name's start is delimited.
        end = "" if param.endswith("=") else r"(?!\w)"
        message = re.sub(rf"(?<![\w-]){re.escape(param)}{end}", flag, message)
    return message


def _command(argv):
    """The click command ``argv`` runs, or None when it names none."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    return cli.get_command(None, name) if name else None


def _options(argv):
    """The flags of the command ``argv`` runs, or None when it names none."""
    command = _command(argv)
    if command is None:
        return None
    return {opt for param in command.params for opt in getattr(param, "opts", ())}


def _path_flag(argv, path):
    """The option of ``argv`` whose value is ``path`` or a folder above it, or None."""
    command = _command(argv)
    takes_value = {opt for param in getattr(command, "params", ())
                   if isinstance(param, click.Option) and not param.is_flag for opt in param.opts}
    target = os.path.abspath(path)
    for i, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if flag not in takes_value or not (equals or i + 1 < len(argv)):
            continue
        value = os.path.abspath(value if equals else argv[i + 1])
        if target == value or target.startswith(value.rstrip(os.sep) + os.sep):
            return flag
    return None


def _os_error_message(error, argv):
    """A file system error about a path (too long a name, no permission, disk full) in one line,
    naming the flag that gave the path."""
    flag = _path_flag(argv, os.fsdecode(error.filename))
    text = f"cannot use {os.fsdecode(error.filename)}: {error.strerror or error}"
    return text if flag is None else f"{flag}: {text}"


def main(argv=None):
    """Entry point of ``kmi``: runs the command, turning user errors into one line and exit code 2,
    and Ctrl-C into one line and exit code 130.

    Warnings are one line each too (``kmi: warning: ...``); ``--debug`` shows them as Python does.
    """
    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:
        # --debug belongs to kmi itself, but is often typed after the command: take it anywhere.
        argv = ["--debug", *(arg for arg in argv if arg != "--debug")]
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV) == "1"
    python_warnings = warnings.showwarning
    if not debug:
        warnings.showwarning = partial(_one_line_warning, argv)
    try:
        return _run(argv, debug)
    finally:
        warnings.showwarning = python_warnings


def _run(argv, debug):
    try:
        cli.main(args=argv, prog_name="kmi", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.NoArgsIsHelpError as error:
        error.show()  # the whole help, as click shows it for a bare ``kmi``
        return 2
    except _Interrupted:
        # On a terminal, the line closes the ``^C`` that the terminal echoed.
        click.echo("\nkmi: interrupted" if sys.stderr.isatty() else "kmi: interrupted", err=True)
        return 130
    except click.Abort:
        click.echo("kmi: interrupted", err=True)
        return 130
    except (KMIError, click.ClickException) as error:
        if debug:
            raise
        if isinstance(error, click.ClickException):
            message = error.format_message()
        else:
            message = flag_names(str(error), _options(argv))
        click.echo(f"kmi: error: {' '.join(str(message).split())}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("kmi: interrupted", err=True)
        return 130
    except OSError as error:
        if debug or error.filename is None:
            raise
        click.echo(f"kmi: error: {' '.join(_os_error_message(error, argv).split())}", err=True)
        return 2
    return 0


def _one_line_warning(argv, message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` for the CLI: the message alone, with the command's flags."""
    text = " ".join(flag_names(str(message), _options(argv)).split())
    click.echo(f"kmi: warning: {text}", err=True)


if __name__ == "__main__":
    sys.exit(main())
