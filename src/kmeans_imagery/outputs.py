"""What the commands write: output folders, JSON, the figures and report of a run or an evaluation,
and drawings of a model's clusters.

Every file is written to a temporary file and renamed (:mod:`~kmeans_imagery.atomic`), so an
interrupted command never leaves a half-written output.
"""

import json
import math
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import KMIError
from .experiment import library_versions
from .labeling import nearest_members
from .predict import display_names

__all__ = [
    "RUN_FIGURES",
    "atomic_text_file",
    "centroid_images",
    "check_new_output",
    "draw_model",
    "evaluation_outputs",
    "json_text",
    "member_images",
    "output_folder",
    "prepare_out_dir",
    "write_json",
    "write_outputs",
]


def atomic_text_file(path):
    """Open ``path`` for writing UTF-8 text that appears only complete.

    Parameters
    ----------
    path : path-like
        The destination; its folder must exist.

    Returns
    -------
    context manager
        Yields a text file; ``path`` is replaced when the block ends without error and left as it
        was otherwise (see :func:`~kmeans_imagery.atomic.atomic_write`).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import atomic_text_file
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp, "labels.csv")
    ...     with atomic_text_file(path) as handle:
    ...         _ = handle.write("path,label\\n")
    ...     try:
    ...         with atomic_text_file(path) as handle:  # interrupted: the old file stays
    ...             _ = handle.write("half a row")
    ...             raise KeyboardInterrupt
    ...     except KeyboardInterrupt:
    ...         pass
    ...     print(path.read_text(), end="")
    path,label
    """
    return atomic_write(path, "w", encoding="utf-8", newline="")


def check_new_output(path, force):
    """Refuse to replace an existing file, or a folder with files in it, unless ``force`` is set.

    Parameters
    ----------
    path : path-like
        The output about to be written: a file or a folder.
    force : bool
        Whether replacing it is allowed (``--force``).

    Raises
    ------
    KMIError
        When ``path`` exists (an empty folder does not count) and ``force`` is false.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import check_new_output
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     check_new_output(tmp, force=False)  # an empty folder is fine
    ...     Path(tmp, "model.kmi").touch()
    ...     check_new_output(Path(tmp, "model.kmi"), force=True)
    ...     check_new_output(tmp, force=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    kmeans_imagery.errors.KMIError: ... already exists; use force=True to replace it
    """
    path = Path(path)
    if force or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    raise KMIError(f"{path} already exists; use force=True to replace it")


def _plain(value):
    """``value`` with NumPy values as Python ones and NaN or infinite floats as None."""
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(data):
    """Indented JSON text of results that every JSON parser reads.

    :func:`json.dumps` writes NaN and infinities as bare ``NaN`` and ``Infinity`` tokens, which
    are not JSON, and refuses NumPy values; here they become ``null`` and plain numbers.

    Parameters
    ----------
    data : object
        Dicts, lists, tuples, arrays, numbers (Python or NumPy), strings, booleans and None.

    Returns
    -------
    str
        Ending with a newline.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_imagery.outputs import json_text
    >>> print(json_text({"k": np.int64(10), "homogeneity": float("nan")}), end="")
    {
      "k": 10,
      "homogeneity": null
    }
    """
    return json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"


def write_json(data, path):
    """Write ``data`` as indented JSON, atomically.

    Parameters
    ----------
    data : object
        What :func:`json_text` accepts; NaN and infinities are written as ``null``.
    path : path-like
        The file to write; its folder must exist.

    Examples
    --------
    >>> import json
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import write_json
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json({"k": 36, "accuracy": 0.89}, Path(tmp, "results.json"))
    ...     json.loads(Path(tmp, "results.json").read_text())
    {'k': 36, 'accuracy': 0.89}
    """
    with atomic_text_file(path) as handle:
        handle.write(json_text(data))


def prepare_out_dir(out_dir):
    """Create ``out_dir`` if needed and check that it is writable.

    Parameters
    ----------
    out_dir : path-like
        The output folder; missing parent folders are created too.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    KMIError
        When the folder cannot be created or written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import prepare_out_dir
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = prepare_out_dir(Path(tmp, "runs", "digits"))
    ...     out.is_dir(), list(out.iterdir())
    (True, [])
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".kmi-write-test-")
        probe.close()
    except OSError as error:
        raise KMIError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    return out


@contextmanager
def output_folder(out_dir):
    """:func:`prepare_out_dir` for the length of a job that may fail: the folders it created are
    removed again, while still empty, when the job raises, so a user error leaves nothing behind.

    Parameters
    ----------
    out_dir : path-like

    Yields
    ------
    pathlib.Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import output_folder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         with output_folder(Path(tmp, "runs", "digits")) as out:
    ...             raise ValueError("a bad parameter")
    ...     except ValueError:
    ...         pass
    ...     sorted(p.name for p in Path(tmp).iterdir())
    []
    """
    out = Path(out_dir)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    folder = prepare_out_dir(out)
    try:
        yield folder
    except BaseException:
        for path in created:
            try:
                path.rmdir()
            except OSError:  # not empty: something was written there after all
                break
        raise




@contextmanager
def output_file_folders(*paths):
    """The folders of the output files ``paths`` (None: not written), made before a job as
    :func:`output_folder` makes them, and removed again, while empty, if it fails.

    Parameters
    ----------
    *paths : path-like or None

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import output_file_folders
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with output_file_folders(Path(tmp, "new", "p.csv"), None):
    ...         print(Path(tmp, "new").is_dir())
    True
    """
    with ExitStack() as stack:
        for path in paths:
            if path is not None:
                stack.enter_context(output_folder(Path(path).parent))
        yield

@contextmanager
def staged_outputs(out_dir, names):
    """A hidden folder inside ``out_dir`` (made as :func:`output_folder` makes it) to write a
    job's outputs into; when the job succeeds, each of ``names`` it wrote is moved into
    ``out_dir`` and each it did not write is removed there (an earlier run's). A job that fails
    or is interrupted leaves the earlier outputs whole and not mixed with half of its own.

    Parameters
    ----------
    out_dir : path-like
    names : sequence of str
        The job's output files.

    Yields
    ------
    pathlib.Path
        The staging folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.outputs import staged_outputs
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with staged_outputs(Path(tmp, "out"), ["a.txt", "b.txt"]) as staging:
    ...         _ = (staging / "a.txt").write_text("new")
    ...     sorted(p.name for p in Path(tmp, "out").iterdir())
    ['a.txt']
    """
    with output_folder(out_dir) as out:
        staging = Path(tempfile.mkdtemp(prefix=".kmi-staging-", dir=out))
        try:
            yield staging
            for name in names:
                if (staging / name).exists():
                    os.replace(staging / name, out / name)
                else:
                    (out / name).unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

#: The figures a run may draw (see ``Experiment.figure_drawers``), each saved as ``NAME.png``.
RUN_FIGURES = ("samples", "inertia", "scores", "centroids", "confusion", "label_budget")


def write_outputs(experiment, out_dir):
    """Save every figure, ``results.json`` and a self-contained ``report.html`` into ``out_dir``.

    Parameters
    ----------
    experiment : Experiment
        From :func:`~kmeans_imagery.experiment.run_experiment`; its ``results`` gain a
        ``"figures"`` entry.
    out_dir : path-like
        The results folder; created if needed. Files already there are replaced, and figures of
        an earlier run (:data:`RUN_FIGURES`) that this run does not draw are removed.

    Returns
    -------
    dict of str to Path
        The written files by name (figure names, ``"results"``, ``"report"``).

    Examples
    --------
    What ``kmi run scans/ --ks 3,6 --out results/`` writes, for a folder of labelled scans (one
    sub-folder per class; a fifth of the images is held out as the test set):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.experiment import run_experiment
    >>> from kmeans_imagery.outputs import write_outputs
    >>> digits = load_dataset("digits")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for label, name in enumerate(["zero", "one", "two"]):
    ...         Path(tmp, "scans", name).mkdir(parents=True)
    ...         for i, image in enumerate(digits.train_images[digits.train_labels == label][:20]):
    ...             Image.fromarray(image).save(Path(tmp, "scans", name, f"{i}.png"))
    ...     experiment = run_experiment(load_dataset(Path(tmp, "scans")), ks=(3, 6), algorithm="full",
    ...                                 stability_seeds=0)
    ...     written = write_outputs(experiment, Path(tmp, "results"))
    ...     sorted(path.name for path in written.values())  # doctest: +NORMALIZE_WHITESPACE
    ['centroids.png', 'confusion.png', 'inertia.png', 'report.html', 'results.json',
     'samples.png', 'scores.png']
    >>> experiment.results["test"]["class_names"], experiment.results["n_test"]
    (['one', 'two', 'zero'], 12)
    """
    from . import plots
    from .report import write_report

    out = prepare_out_dir(out_dir)
    results = experiment.results
    figures = {name: plots.save_png(draw(), out / f"{name}.png")
               for name, draw in experiment.figure_drawers().items()}
    results["figures"] = {name: path.name for name, path in figures.items()}
    written = dict(figures)
    written["results"] = out / "results.json"
    write_json(results, written["results"])
    written["report"] = write_report(results, figures, out / "report.html")
    # A figure of an earlier run into this folder (a label budget, say) would pass for this run's.
    for name in RUN_FIGURES:
        if name not in figures:
            (out / f"{name}.png").unlink(missing_ok=True)
    return written


def centroid_images(model):
    """Cluster centres as images, in pixel space even with features.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted model with an ``image_shape_``.

    Returns
    -------
    ndarray of shape (n_clusters, H, W) or (n_clusters, H, W, C)
        Each cluster's mean image, in [0, 1].

    Examples
    --------
    Clustered on HOG descriptors, the centres are not images, but each cluster's mean image is:

    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import load_dataset
    >>> from kmeans_imagery.outputs import centroid_images
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(10, features="hog", random_state=0).fit(digits.train_images, None)
    >>> model.cluster_centers_.shape, centroid_images(model).shape
    ((10, 36), (10, 8, 8))
    """
    return np.asarray(model.cluster_images_).reshape((-1, *model.image_shape_))


def member_images(members, clusters):
    """Images of the given clusters' members, for drawing.

    Parameters
    ----------
    members : Members
        From :func:`~kmeans_imagery.labeling.nearest_members`.
    clusters : sequence of int
        The clusters to take.

    Returns
    -------
    ndarray of shape (len(clusters), per_cluster, H, W) or (len(clusters), per_cluster, H, W, C)
        Float32 values in [0, 1]; NaN (drawn blank) where a cluster has fewer members.

    Examples
    --------
    Cluster 8 of this model has 27 members, so the last 3 of 30 images are blank:

    >>> import numpy as np
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.labeling import nearest_members
    >>> from kmeans_imagery.outputs import member_images
    >>> source = open_source("digits")
    >>> digits = source.read_all()
    >>> model = ClusterClassifier(10, algorithm="full", random_state=0).fit(digits.images, digits.labels)
    >>> images = member_images(nearest_members(model, source, per_cluster=30), [8, 6])
    >>> images.shape, np.isnan(images[:, :, 0, 0]).sum(axis=1)
    ((2, 30, 8, 8), array([3, 0]))
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
    pathlib.Path
        The PNG written.

    Raises
    ------
    KMIError
        When the model was fitted on feature rows (it has no images to draw).

    Examples
    --------
    What ``kmi show MODEL digits --out clusters.png`` draws: each cluster's centroid and the
    images nearest it.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.outputs import draw_model
    >>> source = open_source("digits")
    >>> model = ClusterClassifier(10, algorithm="full", random_state=0)
    >>> model = model.fit(source.read_all().images, None)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     png = draw_model(model, Path(tmp, "clusters.png"), source=source, per_cluster=4)
    ...     png.name, png.read_bytes()[1:4]
    ('clusters.png', b'PNG')
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
        The model scored.
    source : ImageSource
        The images scored (the first nine are drawn).
    results : dict
        The ``results`` of :func:`kmeans_imagery.predict.evaluate`'s Evaluation.
    out_dir : path-like
        The results folder; created if needed. Files already there are replaced.

    Returns
    -------
    dict of str to Path
        The written files by name (figure names, ``"results"``, ``"report"``).

    Examples
    --------
    What ``kmi evaluate MODEL digits --out DIR`` writes:

    >>> import tempfile
    >>> from kmeans_imagery import ClusterClassifier, load_dataset
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.outputs import evaluation_outputs
    >>> from kmeans_imagery.predict import evaluate
    >>> digits = load_dataset("digits")
    >>> model = ClusterClassifier(10, algorithm="full", random_state=0)
    >>> model = model.fit(digits.train_images, digits.train_labels)
    >>> test = open_source("digits", split="test")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = evaluation_outputs(model, test, evaluate(model, test).results, tmp)
    ...     sorted(path.name for path in written.values())
    ['centroids.png', 'confusion.png', 'report.html', 'results.json', 'samples.png']
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


