"""What the commands write: output folders, JSON, the figures and report of a run or an evaluation,
and drawings of a model's clusters.

Every file is written to a temporary file and renamed (:mod:`.atomic`), so an interrupted command
never leaves a half-written output.
"""

import json
import tempfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import KMIError
from .experiment import library_versions
from .labeling import nearest_members
from .predict import display_names

__all__ = [
    "atomic_text_file",
    "check_new_output",
    "draw_model",
    "evaluation_outputs",
    "prepare_out_dir",
    "write_json",
    "write_outputs",
]


def atomic_text_file(path):
    """Open ``path`` for writing UTF-8 text that appears only complete (see :func:`atomic_write`)."""
    return atomic_write(path, "w", encoding="utf-8", newline="")


def check_new_output(path, force):
    """Refuse to replace an existing file, or a folder with files in it, unless ``force`` is set.

    Raises
    ------
    KMIError
        When ``path`` exists (an empty folder does not count) and ``force`` is false.
    """
    path = Path(path)
    if force or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    raise KMIError(f"{path} already exists; use force=True to replace it")


def write_json(data, path):
    """Write ``data`` as indented JSON, atomically."""
    with atomic_text_file(path) as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def prepare_out_dir(out_dir):
    """Create ``out_dir`` if needed and check that it is writable.

    Raises
    ------
    KMIError
        When the folder cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".kmi-write-test-")
        probe.close()
    except OSError as error:
        raise KMIError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    return out


def write_outputs(experiment, out_dir):
    """Save every figure, ``results.json`` and a self-contained ``report.html`` into ``out_dir``.

    Parameters
    ----------
    experiment : Experiment
    out_dir : path-like

    Returns
    -------
    dict of str to Path
        The written files by name (figure names, ``"results"``, ``"report"``).
    """
    from . import plots
    from .report import write_report

    out = prepare_out_dir(out_dir)
    results = experiment.results
    sweep = results["sweep"]
    ks = [row["k"] for row in sweep]
    label_names = experiment.label_names
    figures = {}
    if experiment.sample_images is not None:
        figures["samples"] = plots.save_png(
            plots.plot_samples(
                experiment.sample_images, experiment.sample_labels, label_names=label_names
            ),
            out / "samples.png",
        )
    figures["inertia"] = plots.save_png(
        plots.plot_inertia(ks, [row["inertia"] for row in sweep]), out / "inertia.png"
    )
    figures["scores"] = plots.save_png(
        plots.plot_scores(
            ks,
            [row["homogeneity"] for row in sweep],
            [row["accuracy"] for row in sweep],
            test_accuracy=[row["test_accuracy"] for row in sweep],
        ),
        out / "scores.png",
    )
    if experiment.centroid_images is not None:
        figures["centroids"] = plots.save_png(
            plots.plot_centroids(
                experiment.centroid_images,
                tuple(results["image_shape"]),
                experiment.centroid_labels,
                label_names=label_names,
            ),
            out / "centroids.png",
        )
    test = results.get("test")
    if test is not None:
        figures["confusion"] = plots.save_png(
            plots.plot_confusion(np.array(test["confusion_matrix"]), test["class_names"]),
            out / "confusion.png",
        )
    if results.get("label_budget"):
        figures["label_budget"] = plots.save_png(
            plots.plot_label_budget(
                [row["labels"] for row in results["label_budget"]],
                [row["test_accuracy"] for row in results["label_budget"]],
            ),
            out / "label_budget.png",
        )
    results["figures"] = {name: path.name for name, path in figures.items()}
    written = dict(figures)
    written["results"] = out / "results.json"
    write_json(results, written["results"])
    written["report"] = write_report(results, figures, out / "report.html")
    return written


def centroid_images(model):
    """Cluster centres as images (n_clusters, H, W[, C]) in [0, 1], in pixel space even with features."""
    return np.asarray(model.cluster_images_).reshape((-1, *model.image_shape_))


def member_images(members, clusters):
    """Images of the given clusters' members, (len(clusters), per_cluster, H, W[, C]) in [0, 1].

    NaN (drawn blank) where a cluster has fewer members.
    """
    images = members.images[clusters].astype(np.float32) / np.float32(255)
    for row, cluster in enumerate(clusters):
        images[row, len(members.indices[cluster]):] = np.nan
    return images


def draw_model(model, path, *, source=None, per_cluster=8, max_clusters=20):
    """Draw a model's centroids with their labels, or with ``source`` its clusters' nearest members.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model with an ``image_shape_`` (e.g. from :func:`~kmeans_imagery.load_model`).
    path : path-like
        PNG file to write.
    source : ImageSource, optional
        Images to pick members from, in the model's size and colour (read in one pass).
    per_cluster : int, default=8
        Members shown per cluster.
    max_clusters : int, default=20
        With ``source``, only the largest clusters are drawn, one row each, so that the figure
        stays readable at K=256.

    Returns
    -------
    Path
    """
    from . import plots

    if model.image_shape_ is None:
        raise KMIError("this model was fitted on feature rows, not images; nothing to draw")
    labels = np.array(
        display_names(model.cluster_labels_, getattr(model, "metadata_", {}).get("label_names"))
    )
    if source is None:
        ax = plots.plot_centroids(model.cluster_images_, tuple(model.image_shape_), labels)
    else:
        members = nearest_members(model, source, per_cluster)
        shown = np.sort(np.argsort(-members.sizes, kind="stable")[:max_clusters])
        ax = plots.plot_cluster_members(
            centroid_images(model)[shown], member_images(members, shown), labels[shown],
            cluster_ids=shown,
        )
    return plots.save_png(ax, path)


def evaluation_outputs(model, source, results, out_dir):
    """Save the figures, ``results.json`` and ``report.html`` of ``kmi evaluate``.

    Parameters
    ----------
    model : ClusterClassifier
    source : ImageSource
        The images scored (the first nine are drawn).
    results : dict
        The ``results`` of :func:`kmeans_imagery.predict.evaluate`'s Evaluation.
    out_dir : path-like

    Returns
    -------
    dict of str to Path
    """
    from . import plots
    from .report import write_report

    out = prepare_out_dir(out_dir)
    label_names = getattr(model, "metadata_", {}).get("label_names")
    first = source.take(np.arange(min(9, source.n_images)))
    figures = {
        "samples": plots.save_png(
            plots.plot_samples(first.images, first.labels, label_names=label_names),
            out / "samples.png",
        ),
        "confusion": plots.save_png(
            plots.plot_confusion(np.array(results["confusion_matrix"]), results["class_names"]),
            out / "confusion.png",
        ),
    }
    if model.image_shape_ is not None:
        figures["centroids"] = draw_model(model, out / "centroids.png")
    report = {
        "dataset": results["dataset"],
        "n_test": results["n_images"],
        "n_classes": len(results["class_names"]),
        "image_shape": list(source.image_shape),
        "versions": library_versions(),
        "test": {"k": len(model.cluster_centers_), **results},
        "figures": {name: path.name for name, path in figures.items()},
    }
    written = dict(figures)
    written["results"] = out / "results.json"
    write_json(report, written["results"])
    written["report"] = write_report(report, figures, out / "report.html",
                                     title=f"Evaluation on {results['dataset']}")
    return written


