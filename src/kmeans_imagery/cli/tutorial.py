"""``kmi run`` and ``kmi sweep``: the tutorial end to end, or only its K sweep."""

import click

from ._common import (
    FORCE,
    algorithm_options,
    budget_table,
    color_for_features,
    consoles,
    data_options,
    loading_progress,
    parse_ks_option,
    progress_bar,
    report_skipped,
    sweep_table,
    versions_table,
    with_options,
)


def tutorial_options(command):
    """Options shared by ``run`` and ``sweep``; DATA (or its alias --dataset) is the input."""
    from ..experiment import DEFAULT_KS

    command = with_options(command, [
        click.argument("data", required=False),
        click.option("--dataset", help="Alias of DATA (default: mnist), kept for scripts that "
                                       "name it this way."),
        click.option("--ks", default=",".join(map(str, DEFAULT_KS)), show_default=True,
                     callback=parse_ks_option, help="Comma-separated cluster counts to sweep."),
        click.option("--transductive", is_flag=True,
                     help="Fit on the test set it scores, as the tutorial did (optimistic)."),
        click.option("--stability-seeds", type=click.IntRange(0), default=5, show_default=True,
                     help="Seeds refitted at K = number of classes to show how stable the "
                          "clustering is (0: skip)."),
        click.option("--label-budget", "label_budgets", default="", callback=parse_ks_option,
                     help="Simulate labelling one central image per cluster: comma-separated "
                          "numbers of labels, e.g. 10,100,256,1000."),
        click.option("--json", "json_mode", is_flag=True,
                     help="Print results.json to stdout and nothing else there."),
        FORCE,
    ])
    return data_options(algorithm_options(command), features=True)


def _data_name(data, dataset):
    if data is not None and dataset is not None and data != dataset:
        raise click.UsageError(f"DATA {data!r} and --dataset {dataset!r} disagree: give one")
    return data or dataset or "mnist"


def _experiment(data, out_console, err, *, ks, seed, algorithm, engine, transductive, features,
                n_init, stability_seeds, label_budgets, data_dir, color, size, skip_bad):
    from ..datasets import load_dataset
    from ..experiment import library_versions, run_experiment
    from ..features import reading_size

    out_console.print(versions_table(library_versions()))
    dataset = load_dataset(data, data_dir=data_dir, color=color_for_features(color, features),
                           size=reading_size(size, features), skip_bad=skip_bad,
                           progress=loading_progress(err))
    report_skipped(dataset.name, dataset.skipped, err)
    out_console.print(
        f"dataset {dataset.name}: train {dataset.train_images.shape}, "
        f"test {None if dataset.test_images is None else dataset.test_images.shape}"
    )
    steps = len(ks) + len(label_budgets)
    with progress_bar(err, steps, f"fitting K in {','.join(map(str, ks))}") as advance:
        return run_experiment(
            dataset, ks=ks, algorithm=algorithm, engine=engine, random_state=seed,
            transductive=transductive, features=features, n_init=n_init,
            stability_seeds=stability_seeds, label_budgets=label_budgets,
            log=out_console.print, on_fitted=advance,
        )


@click.command()
@tutorial_options
@click.option("--out", default="results", show_default=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for figures, results.json and report.html.")
def run(data, dataset, json_mode, out, force, **options):
    """The whole tutorial in one command: fit, name, sweep K, score the test set, draw, report.

    DATA is a dataset name (mnist, fashion-mnist, digits), an IDX folder, an image folder, a
    .npy/.npz file or a Zarr store. Models are fitted on the training images and scored on the
    held-out test images (--transductive fits on the test images instead, as the tutorial did).
    """
    from ..outputs import check_new_output, json_text, output_folder, write_outputs

    out_console, err = consoles(json_mode)
    check_new_output(out, force)
    with output_folder(out):
        experiment = _experiment(_data_name(data, dataset), out_console, err, **options)
        results = experiment.results
        out_console.print(sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
        test = results["test"]
        fitted_on = "test (transductive)" if options["transductive"] else "train"
        out_console.print(
            f"test accuracy at K={test['k']} (fitted on {fitted_on}): {test['accuracy']:.4f}"
        )
        if results["label_budget"]:
            out_console.print(budget_table(results["label_budget"]))
        with err.status("drawing figures and report"):
            written = write_outputs(experiment, out)
    out_console.print(f"wrote {len(written)} files to {out}: report {written['report']}")
    if json_mode:
        click.echo(json_text(results), nl=False)


@click.command()
@tutorial_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the sweep results as JSON to this file.")
def sweep(data, dataset, json_mode, out, force, **options):
    """Only the K sweep: inertia, homogeneity, accuracy and fit time per K."""
    from contextlib import nullcontext
    from pathlib import Path

    from ..outputs import check_new_output, json_text, output_folder, write_json

    out_console, err = consoles(json_mode)
    if out is not None:
        check_new_output(out, force)
    # The folder of --out is made first (a run should not fail at its end), and removed again
    # when the run fails.
    with nullcontext() if out is None else output_folder(Path(out).parent):
        experiment = _experiment(_data_name(data, dataset), out_console, err, **options)
    results = experiment.results
    out_console.print(sweep_table(results["sweep"], f"K sweep on {results['dataset']}"))
    if out is not None:
        write_json(results, out)
    if json_mode:
        click.echo(json_text(results), nl=False)
