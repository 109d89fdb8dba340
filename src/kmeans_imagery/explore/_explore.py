"""``kmi explore``: choose K, cluster, and write galleries, outliers, duplicates and a map.

:func:`explore` fits through the project's one fit path, :func:`kmeans_imagery.fit.fit`, and
reads the collection as few times as it can, in bounded memory:

1. a collection whose float32 rows fit in 256 MiB (and of at most ``fit_size`` images) is read
   once and kept: K is chosen on ``k_sample`` of its images (:func:`choose_k`), the model is
   fitted on all of it in ``"memory"`` mode, and every later step reuses the images in memory
   and the feature rows the fit computed (``fit(..., keep_rows=True)``);
2. a larger collection is streamed: K is chosen on a seeded sample, the fit runs in ``"stream"``
   mode (features and start on a sample, then exact passes over every image), and one more pass,
   batch by batch, gives every image its cluster, distance, margin, map position, outlier score,
   pixel hash and duplicate descriptor, a few hundred bytes per image kept;
3. outlier scores and duplicate groups are computed from those, the images the galleries show
   are read back by index, and every output is written atomically.
"""

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..datasets.convert import parse_size
from ..datasets.folders import skipped_summary
from ..errors import KMIError, is_whole_number
from ..preprocessing import image_rows
from ._choose_k import choose_k, k_bounds, plot_k_choice
from ._duplicates import DEFAULT_THRESHOLD, descriptors, find_duplicates, pixel_hashes
from ._html import Gallery, write_index
from ._map import MAP_METHODS, fit_map, grid_picks, plot_map
from ._outliers import REFERENCE_SIZE, OutlierScorer

__all__ = ["Exploration", "explore", "image_paths"]

#: Memory allowed for the float32 rows of a collection fitted in memory.
_FIT_BYTES = 256 * 2**20
#: K-means starts, the lowest inertia kept (no labels used). One start depends on the order of
#: the files: on MNIST test in class-folder order, one start at K=13 scored 0.618 one-to-one,
#: three 0.686 (inertia 2,840 against 2,821).
_N_INIT = 3
#: Exact passes of a streamed fit after its start on a sample (each pass reads every image).
_STREAM_PASSES = 1
#: Images per row of a cluster's gallery (central, random, borderline).
_PER_ROW = 12
#: Sample rows the map is fitted on.
_MAP_SAMPLE = 5000
#: Duplicate groups shown in the page.
_GROUPS_SHOWN = 100
OUTPUTS = ("index.html", "clusters.csv", "outliers.csv", "duplicates.csv", "results.json",
           "model.kmi", "k_choice.png", "map.png", "sizes.png")


@dataclass
class Exploration:
    """What :func:`explore` found and wrote; shows its key table and figures in Jupyter.

    Attributes
    ----------
    results : dict
        The content of ``results.json``: K and why, cluster sizes, the top outliers, duplicate
        counts, timings (and the accuracy against the labels when there are any: class folders,
        a dataset's own).
    out_dir : Path
        The folder the outputs are in.
    files : dict of str to Path
        Each output's path, by name (``"index.html"``, ``"clusters.csv"``, ``"model.kmi"``, ...).
    k : int
        The number of clusters.
    k_choice : KChoice or None
        The criterion K was chosen by; None when K was given.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bars = np.zeros((30, 8, 8), np.uint8)   # 30 images: a vertical bar in one of 3 places
    >>> for i, image in enumerate(bars):
    ...     image[:, 3 * (i % 3):3 * (i % 3) + 2] = rng.integers(200, 256, (8, 2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.save(Path(tmp) / "bars.npy", bars)
    ...     found = explore(Path(tmp) / "bars.npy", Path(tmp) / "out", k=3, features="raw")
    ...     print(found.k, found.results["cluster_sizes"], found.files["index.html"].name)
    ...     page = found._repr_html_()
    3 [10, 10, 10] index.html
    >>> "<table>" in page and "<img" in page
    True
    """

    results: dict
    out_dir: Path
    k_choice: object = field(default=None, repr=False)

    @property
    def k(self):
        """The number of clusters."""
        return self.results["k"]

    @property
    def files(self):
        """Each output's path, by name."""
        return {name: self.out_dir / name for name in _output_names(self.k_choice is not None)}

    def _key_table(self):
        r = self.results
        shape = "x".join(map(str, r["image_shape"]))
        top = r["outliers"]["top"][:5]
        rows = {"images": f"{r['n_images']:,} of {shape}", "features": r["features"],
                "K": f"{self.k} ({'chosen' if self.k_choice is not None else 'given'})"}
        if self.k_choice is not None:
            rows["why this K"] = self.k_choice.reason
        rows["top outliers"] = ", ".join(f"{Path(t['path']).name} ({t['score']:.2f})" for t in top)
        rows["duplicate groups"] = (f"{r['duplicates']['n_groups']:,} groups of "
                                    f"{r['duplicates']['n_images']:,} images")
        if "accuracy" in r:
            rows["accuracy (labels)"] = (f"majority {r['accuracy']['majority']:.3f}, "
                                         f"one-to-one {r['accuracy']['hungarian']:.3f}")
        rows["seconds"] = ", ".join(f"{name} {value:.2f}" for name, value in r["seconds"].items())
        return rows

    def __repr__(self):
        from ..display import result_repr

        return result_repr("Exploration", {
            "n_images": self.results["n_images"], "k": self.k,
            "features": self.results["features"],
            "duplicate_groups": self.results["duplicates"]["n_groups"],
            "out_dir": str(self.out_dir)})

    def _repr_html_(self):
        from ..display import html_table, image_html, result_html

        images = [image_html(self.files[name], alt=name)
                  for name in ("k_choice.png", "map.png", "sizes.png") if name in self.files]
        return result_html(f"Exploring {self.results['dataset']}", html_table(self._key_table()),
                           images, note=f"outputs in {self.out_dir}")


def _output_names(k_chosen):
    """The files explore writes: no K-selection figure when K was given."""
    return [name for name in OUTPUTS if k_chosen or name != "k_choice.png"]


def image_paths(source):
    """The name of every image of a source: its file for folders, else as ``kmi predict``
    names it (:meth:`~kmeans_imagery.datasets.ImageSource.image_names`)."""
    if source.paths is not None:
        return [str(p) for p in source.paths]
    return source.image_names(range(source.n_images))


def explore(data, out_dir, *, k="auto", k_range=(2, 50), features="l2", color=None, size="auto",
            data_dir=None, skip_bad=False, fit_size=60000, k_sample=2000,
            duplicate_threshold=DEFAULT_THRESHOLD,
            n_outliers=100, map_method="pca", batch_size=4096, random_state=0, force=False,
            progress=None, client=None):
    """Explore an image collection and write the results into ``out_dir``.

    Parameters
    ----------
    data : str or path-like
        Anything :func:`~kmeans_imagery.datasets.open_source` accepts (an image folder, a Zarr
        store, IDX files, ``.npy``, a dataset name). A dataset with a test split is explored
        whole, train then test. A folder's sub-folder names are labels (for the label mix and
        the accuracy) when every image lies in one; images beside them make it one unlabelled
        collection.
    out_dir : path-like
        Folder for ``index.html``, ``clusters.csv``, ``outliers.csv``, ``duplicates.csv``,
        ``results.json``, ``model.kmi`` and the figures.
    k : "auto" or int
        Number of clusters, or "auto" to choose it by :func:`choose_k`.
    k_range : (int, int)
        Range of K for ``k="auto"``.
    features : str, default="l2"
        Feature pipeline spec (see :mod:`kmeans_imagery.features`); the default, shear-corrected
        L2-normalised pixels, clusters shapes rather than ink.
    color : {"gray", "rgb"} or None
        As for :func:`~kmeans_imagery.datasets.open_source`; with an ``onnx:`` network that
        takes three channels, None reads colour (:func:`~kmeans_imagery.features.reading_color`).
    size : "auto", None, "HxW", int or (H, W), default="auto"
        As for :func:`~kmeans_imagery.datasets.open_source`; "auto" reads a collection of mixed
        sizes at their median size, scaled down to at most 64 pixels on its longer side
        (photos), or, with an ``onnx:`` feature step, at the network's input size
        (:func:`~kmeans_imagery.features.reading_size`).
    data_dir, skip_bad
        As for :func:`~kmeans_imagery.datasets.open_source`.
    fit_size : int
        Collections of at most this many images (whose float32 rows fit in 256 MiB) are read
        once and fitted in memory; larger ones are streamed.
    k_sample : int
        Images the K criterion is computed on.
    duplicate_threshold : float
        RMS descriptor difference of near duplicates (see :func:`find_duplicates`); 0: exact only.
    n_outliers : int
        Images listed in ``outliers.csv`` and shown, highest score first.
    map_method : {"pca", "umap"}
    batch_size : int
        Images read and processed at once.
    random_state : int
    force : bool
        Replace earlier outputs in ``out_dir``.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.
    client : distributed.Client or None
        Fit on this Dask cluster (``mode="dask"`` of :func:`~kmeans_imagery.fit.fit`), whatever
        the collection's size; the pass that scores every image then reads it batch by batch
        here, as a streamed fit does.

    Returns
    -------
    Exploration
        ``results`` is the content of ``results.json``.

    Raises
    ------
    KMIError
        For a bad parameter (named), earlier outputs without ``force``, or unreadable data.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for i in range(40):
    ...         image = np.zeros((8, 8), np.uint8)
    ...         image[(i % 4) * 2:(i % 4) * 2 + 2] = rng.integers(200, 256, (2, 8))
    ...         Image.fromarray(image).save(Path(tmp) / f"{i:02d}.png")
    ...     found = explore(tmp, Path(tmp) / "out", k_range=(2, 8), features="raw")
    ...     print(found.k, sorted(p.name for p in found.out_dir.iterdir())[:4])
    4 ['clusters.csv', 'duplicates.csv', 'index.html', 'k_choice.png']
    """
    from threadpoolctl import threadpool_limits

    from ..engine._kernels import blas_threads

    # Outside the K-means fit, the products are small (a batch against K centroids, a 256-wide
    # descriptor tile): one BLAS thread each; on a busy 2-core machine BLAS threads made them
    # several times slower. The fit runs its own workers with the threads BLAS had.
    settings = _Settings(k, k_range, features, color, size, data_dir, skip_bad, fit_size,
                         k_sample, duplicate_threshold, n_outliers, map_method, batch_size,
                         random_state, force, progress, client, fit_threads=blas_threads())
    settings.check()
    with threadpool_limits(1, user_api="blas"):
        return _explore(data, out_dir, settings)


@dataclass(frozen=True)
class _Settings:
    """:func:`explore`'s parameters, passed on as one (see its docstring)."""

    k: object
    k_range: tuple
    features: str
    color: object
    size: object
    data_dir: object
    skip_bad: bool
    fit_size: int
    k_sample: int
    duplicate_threshold: float
    n_outliers: int
    map_method: str
    batch_size: int
    random_state: int
    force: bool
    progress: object
    client: object
    #: BLAS threads for the K-means fit (the other steps run with one).
    fit_threads: int = 1

    def check(self):
        """Raise KMIError naming the first parameter out of its range."""
        if self.map_method not in MAP_METHODS:
            raise KMIError(f"map_method must be one of {', '.join(MAP_METHODS)}, "
                           f"got {self.map_method!r}")
        if not (self.k == "auto" or (is_whole_number(self.k) and self.k >= 1)):
            raise KMIError(f"k={self.k!r} must be 'auto' or a positive integer")
        if self.k == "auto":
            k_bounds(self.k_range)  # before the collection is read
        for name, low in (("fit_size", 2), ("k_sample", 10), ("n_outliers", 0),
                          ("batch_size", 1)):
            value = getattr(self, name)
            if not is_whole_number(value) or value < low:
                raise KMIError(f"{name} must be an integer >= {low}, got {value!r}")
        threshold = self.duplicate_threshold
        if not (isinstance(threshold, int | float | np.number) and 0 <= threshold < math.inf):
            raise KMIError(f"duplicate_threshold must be a finite number >= 0, got {threshold!r}")
        # Seeds numpy and scikit-learn accept alike.
        if not (is_whole_number(self.random_state) and 0 <= self.random_state < 2**32):
            raise KMIError("random_state must be an integer in [0, 2**32 - 1], "
                           f"got {self.random_state!r}")


def _explore(data, out_dir, settings):
    from ..outputs import staged_outputs

    out = Path(out_dir)
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not settings.force:
        raise KMIError(f"{out} already holds {', '.join(existing)}; use --force to replace them")
    # A run that fails half-way leaves the earlier outputs (or none) as they were; one that
    # succeeds removes an earlier output it has none of (K given: no K-selection figure).
    with staged_outputs(out, OUTPUTS) as stage:
        found = _explore_into(stage, out, data, settings)
    return Exploration(found.results, out, found.k_choice)


def _explore_into(out, out_dir, data, settings):
    """Explore ``data``, writing every output into ``out``: the staging folder in ``out_dir``."""
    from sklearn.metrics.pairwise import euclidean_distances
    from threadpoolctl import threadpool_limits

    from ..datasets import ArraySource, open_source
    from ..features import reading_color, reading_size
    from ..fit import FitSpec, drop_unreadable, fit
    from ..metrics import hungarian_accuracy, purity
    from ..model_io import save_model
    from ..outputs import write_json
    from ..predict import nearest_and_margin
    from ..progress import open_progress

    k, features, batch_size, progress = (settings.k, settings.features, settings.batch_size,
                                         settings.progress)
    random_state, client = settings.random_state, settings.client
    timings = {}
    clock = time.perf_counter()
    size = reading_size(settings.size, features)
    color = reading_color(settings.color, features)
    # A collection to explore is every image in it: both splits of a dataset that has two,
    # loose images beside sub-folders too.
    # The output folder may lie inside the folder explored: its files are not images of it.
    source = open_source(data, split="all", data_dir=settings.data_dir, color=color, size=size,
                         skip_bad=settings.skip_bad, loose_images="read", exclude=[out_dir])
    source = _without_one_label(source)
    row_bytes = 4 * int(np.prod(source.image_shape))
    rng = np.random.default_rng(random_state)
    in_memory = (client is None and source.n_images <= settings.fit_size
                 and source.n_images * row_bytes <= _FIT_BYTES)
    mode = "memory" if in_memory else "stream" if client is None else "dask"
    if in_memory:
        # Read once: the fit, the pass over every image and the galleries use these images.
        whole = source.read_all(batch_size=batch_size, progress=progress)
        paths = [str(p) for p in whole.paths] if whole.paths is not None else image_paths(source)
        data = ArraySource(whole.images, whole.labels, name=source.name,
                           label_names=source.label_names)
        sample_idx = np.arange(data.n_images)
        sample = whole.images
        del whole
    else:
        if source.skips_bad:
            # The passes below fill per-image arrays by position: a file skipped inside a batch
            # would shift the rest, so the unreadable ones go first.
            source, _ = drop_unreadable(source)
        data, paths = source, image_paths(source)
        sample_idx = np.sort(rng.choice(source.n_images, min(source.n_images, _MAP_SAMPLE),
                                        replace=False))
        sample = source.take(sample_idx, batch_size=batch_size).images
    n, labels = data.n_images, data.labels
    timings["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    choice = None
    if k == "auto":
        from ..features import make_features
        from ..preprocessing import flatten_scale

        pick = np.sort(rng.choice(len(sample), min(len(sample), settings.k_sample), replace=False))
        rows = flatten_scale(sample[pick])
        if features not in (None, "raw"):
            rows = make_features(features, source.image_shape, random_state).fit_transform(rows)
        choice = choose_k(rows, settings.k_range, sample_size=settings.k_sample,
                          random_state=random_state)
        n_clusters = choice.k
    else:
        n_clusters = int(k)
    if n_clusters > n:
        raise KMIError(f"k={n_clusters} is more than the {n} images to cluster")
    timings["choose_k"] = time.perf_counter() - clock

    clock = time.perf_counter()
    spec = FitSpec(n_clusters, algorithm="full", features=features, n_init=_N_INIT,
                   random_state=random_state, max_iter=None if in_memory else _STREAM_PASSES)
    with threadpool_limits(settings.fit_threads, user_api="blas"):
        # In memory, the fit hands back every image's features: the passes below reuse them.
        fitted = fit(data, spec, mode=mode, client=client, progress=progress, keep_rows=True)
    model, fit_rows = fitted.model, fitted.rows
    timings["fit"] = time.perf_counter() - clock

    def rows_of(index, images):
        """Feature rows of the images at ``index`` (fitted ones where the fit kept them)."""
        return image_rows(model.features_, images) if fit_rows is None else fit_rows[index]

    clock = time.perf_counter()
    pick = np.sort(rng.choice(len(sample), min(len(sample), _MAP_SAMPLE), replace=False))
    map_rows = rows_of(sample_idx[pick], sample[pick])
    projection = fit_map(map_rows, settings.map_method, random_state=random_state)
    reference = np.sort(rng.choice(len(sample), min(len(sample), REFERENCE_SIZE), replace=False))
    scorer = OutlierScorer(sample[reference], sample_idx[reference])
    del sample, map_rows
    clusters = np.empty(n, np.int32)
    distance = np.empty(n, np.float32)
    margin = np.empty(n, np.float32)
    raw_scores = np.empty((n, 2), np.float32)
    xy = np.empty((n, 2), np.float32)
    hashes = np.empty(n, np.uint64)
    descs = None
    with open_progress(progress, n, "assigning every image") as bar:
        for batch in data.iter_batches(batch_size):
            s = slice(batch.start, batch.start + len(batch.images))
            rows = rows_of(s, batch.images)
            distances = euclidean_distances(rows, model.cluster_centers_)
            clusters[s], distance[s], margin[s] = nearest_and_margin(distances)
            xy[s] = projection.transform(rows)  # a (n, 1) map broadcasts to both axes
            raw_scores[s] = scorer.raw_scores(batch.images, batch.start)
            hashes[s] = pixel_hashes(batch.images)
            d = descriptors(batch.images)
            if descs is None:
                descs = np.empty((n, d.shape[1]), d.dtype)
            descs[s] = d
            bar.advance(len(batch.images))
    fit_rows = None  # what follows needs no feature rows
    timings["assign"] = time.perf_counter() - clock

    clock = time.perf_counter()
    scores = OutlierScorer.scale(raw_scores)
    dups = find_duplicates(hashes, descs, threshold=settings.duplicate_threshold)
    del descs, raw_scores
    timings["outliers_duplicates"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sizes = np.bincount(clusters, minlength=n_clusters)
    top = np.argsort(-scores, kind="stable")[:settings.n_outliers]
    picks = _cluster_picks(clusters, distance, margin, n_clusters, rng)
    shown_groups = np.arange(min(dups.n_groups, _GROUPS_SHOWN))
    group_members = [dups.members(g) for g in shown_groups]
    map_picks = grid_picks(xy)
    wanted = np.unique(np.concatenate([top, map_picks, *[np.concatenate(p) for p in picks],
                                       *group_members]).astype(np.int64))
    images = dict(zip(wanted.tolist(), data.take(wanted, batch_size=batch_size).images, strict=True))

    def stack(indices):
        return np.stack([images[i] for i in indices]) if len(indices) else np.zeros(0)

    timings["galleries"] = time.perf_counter() - clock
    clock = time.perf_counter()
    figures = _figures(out, choice, sizes, xy, clusters, xy[map_picks], stack(map_picks),
                       settings.map_method)
    timings["figures"] = time.perf_counter() - clock
    clock = time.perf_counter()
    _write_csvs(out, paths, clusters, distance, margin, scores, dups, top)
    # Fitted on images read at a size: `kmi predict` reads new ones at the model's size too.
    save_model(model, out / "model.kmi", force=True,
               training={**fitted.training, "resized": source.resizes},
               label_names=source.label_names)
    results = {
        "dataset": source.name, "n_images": n, "image_shape": list(source.image_shape),
        # The size asked for ("auto", "HxW" or None for the images' own).
        "size": _size_text(size),
        # Files passed over: hidden, non-image, or unreadable (with skip_bad).
        "skipped": {reason: count for reason, count in source.skipped.items() if count},
        "features": features, "k": n_clusters, "seed": random_state,
        "k_choice": None if choice is None else choice.to_json(),
        "fit": {"mode": fitted.metrics["mode"], "inertia": fitted.metrics["inertia"]},
        "cluster_sizes": sizes.tolist(),
        "cluster_labels": None if labels is None else [str(v) for v in model.cluster_labels_],
        "outliers": {"score": "distance to the 10th-nearest of 2,000 sampled images, in gray "
                              "pixels and in their HOG, each over its median; the larger",
                     "top": [{"path": paths[i], "score": float(scores[i])} for i in top[:20]]},
        "duplicates": {"threshold": settings.duplicate_threshold, "n_groups": dups.n_groups,
                       "n_images": int((dups.group >= 0).sum()), "n_pairs": int(len(dups.pairs)),
                       # Images whose pixels repeat an earlier image's, in any group.
                       "n_exact_copies": int(n - len(np.unique(hashes)))},
        "map": settings.map_method,
        "files": {name: name for name in _output_names(choice is not None)},
    }
    if labels is not None:
        results["accuracy"] = {"majority": purity(labels, clusters),
                               "hungarian": hungarian_accuracy(labels, clusters)}
    results["seconds"] = timings
    label_mix = _label_mix(labels, clusters, n_clusters)
    write_index(out / "index.html", title=f"Exploring {source.name}",
                facts=_facts(results, choice),
                figures=[(caption, png) for caption, png in (
                    (f"The K criterion: {choice.reason}." if choice else None, figures[0]),
                    ("Images per cluster.", figures[1]),
                    (f"Every image on a 2-D map ({settings.map_method}), with thumbnails.", figures[2]),
                ) if png is not None],
                sections=_sections(paths, picks, stack, sizes, label_mix, model, labels,
                                   top, scores, group_members, dups, distance, margin))
    timings["files_page"] = time.perf_counter() - clock
    write_json(results, out / "results.json")
    return Exploration(results, out, choice)


def _without_one_label(source):
    """The source without labels when every image has the same one.

    One label is no class: a folder whose photos all lie in one sub-folder (an album) would
    have every cluster named after it, a label mix of 100% and an accuracy of 1, and
    ``kmi organize`` would put every cluster into that one folder.
    """
    labels = source.labels
    if labels is None or len(np.unique(labels)) > 1:
        return source
    return source.without_labels()


def _cluster_picks(clusters, distance, margin, n_clusters, rng):
    """Per cluster: its most central members, a random sample, and its borderline members."""
    order = np.argsort(clusters, kind="stable")
    bounds = np.searchsorted(clusters[order], np.arange(n_clusters + 1))
    picks = []
    for c in range(n_clusters):
        members = order[bounds[c]:bounds[c + 1]]
        central = members[np.argsort(distance[members], kind="stable")[:_PER_ROW]]
        sample = np.sort(rng.choice(members, min(len(members), _PER_ROW), replace=False))
        border = members[np.argsort(margin[members], kind="stable")[:_PER_ROW]]
        picks.append((central, sample, border))
    return picks


def _label_mix(labels, clusters, n_clusters):
    """Per cluster, its labels and counts, most frequent first (None without labels)."""
    if labels is None:
        return None
    classes, codes = np.unique(labels, return_inverse=True)
    table = np.zeros((n_clusters, len(classes)), np.int64)
    np.add.at(table, (clusters, codes.ravel()), 1)
    return [[(str(classes[j]), int(row[j])) for j in np.argsort(-row, kind="stable") if row[j]]
            for row in table]


def _figures(out, choice, sizes, xy, clusters, thumb_xy, thumbs, map_method):
    from ..plots import save_png

    k_png = None
    if choice is not None:
        k_png = save_png(plot_k_choice(choice), out / "k_choice.png", dpi=90)
    sizes_png = save_png(_plot_sizes(sizes), out / "sizes.png", dpi=90)
    map_png = save_png(plot_map(xy, clusters, thumb_xy, thumbs, method=map_method),
                       out / "map.png", dpi=90)
    return k_png, sizes_png, map_png


def _plot_sizes(sizes, ax=None):
    """Bar chart of the number of images per cluster."""
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(8, 2.8)).add_subplot()
    ax.bar(np.arange(len(sizes)), sizes, color="C0")
    ax.set_xlabel("cluster")
    ax.set_ylabel("images")
    ax.set_title("cluster sizes")
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def _write_csvs(out, paths, clusters, distance, margin, scores, dups, top):
    with atomic_write(out / "clusters.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "cluster", "distance", "margin", "outlier_score",
                         "duplicate_group"])
        for i, path in enumerate(paths):
            # One cluster has no second-nearest centroid: no margin.
            writer.writerow([path, int(clusters[i]), f"{distance[i]:.6g}",
                             f"{margin[i]:.6g}" if np.isfinite(margin[i]) else "",
                             f"{scores[i]:.6g}", "" if dups.group[i] < 0 else int(dups.group[i])])
    with atomic_write(out / "outliers.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        writer.writerows([paths[i], f"{scores[i]:.6g}"] for i in top)
    with atomic_write(out / "duplicates.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "path", "distance", "exact"])
        for g in range(dups.n_groups):
            for i in dups.members(g):
                writer.writerow([g, paths[i], f"{dups.distance[i]:.6g}", int(dups.exact[i])])


def _size_text(size):
    """The size asked for, as results.json gives it: None, "auto" or "HxW"."""
    asked = parse_size(size)
    return asked if asked is None or asked == "auto" else "x".join(map(str, asked))


def _facts(results, choice):
    facts = {"images": f"{results['n_images']:,} of {'x'.join(map(str, results['image_shape']))}"
                       + ("" if results["size"] is None else f" (size={results['size']})"),
             "features": results["features"],
             "clusters": f"K={results['k']}" + (" (chosen)" if choice else " (given)"),
             "outliers": "score = " + results["outliers"]["score"],
             "duplicates": f"{results['duplicates']['n_groups']:,} groups, "
                           f"{results['duplicates']['n_images']:,} images",
             "files": "clusters.csv, outliers.csv, duplicates.csv, results.json, model.kmi"}
    if results["skipped"]:
        facts["skipped files"] = skipped_summary(results["skipped"])
    if choice is not None:
        facts["why this K"] = choice.reason
    if "accuracy" in results:
        facts["accuracy against the labels"] = (
            f"majority {results['accuracy']['majority']:.3f}, "
            f"one-to-one {results['accuracy']['hungarian']:.3f}")
    return facts


def _sections(paths, picks, stack, sizes, label_mix, model, labels, top, scores, group_members,
              dups, distance, margin):
    def tips(indices, extra):
        return [f"{paths[i]} ({extra(i)})" for i in indices]

    clusters = []
    for c, (central, sample, border) in enumerate(picks):
        note = ""
        if label_mix is not None:
            total = max(1, sizes[c])
            note = "labels: " + ", ".join(f"{name} {count / total:.0%}"
                                          for name, count in label_mix[c][:5])
        name = f" \u2014 {model.cluster_labels_[c]}" if labels is not None else ""
        rows = [
            ("most central", stack(central), tips(central, lambda i: f"distance {distance[i]:.3g}")),
            ("random", stack(sample), tips(sample, lambda i: f"distance {distance[i]:.3g}")),
            ("borderline", stack(border), tips(border, lambda i: f"margin {margin[i]:.3g}")),
        ]
        # With one cluster no image lies near another cluster: no borderline row.
        clusters.append(Gallery(f"c{c}", f"cluster {c}{name}: {sizes[c]:,} images",
                                rows if len(picks) > 1 else rows[:2], note=note))
    outliers = Gallery("outliers", f"the {len(top)} highest outlier scores", [
        (f"{r + 1}-{min(r + _PER_ROW, len(top))}", stack(top[r:r + _PER_ROW]),
         tips(top[r:r + _PER_ROW], lambda i: f"score {scores[i]:.3g}"))
        for r in range(0, len(top), _PER_ROW)], open=True)
    groups = Gallery("duplicates", f"{dups.n_groups:,} duplicate groups "
                                   f"(first {len(group_members)} shown)", [
        (f"group {g}", stack(members[:_PER_ROW]),
         tips(members[:_PER_ROW], lambda i: "exact copy" if dups.exact[i]
              else f"distance {dups.distance[i]:.3g}"))
        for g, members in enumerate(group_members)], open=True)
    return [("Clusters", clusters), ("Outliers", [outliers]), ("Duplicates", [groups])]
