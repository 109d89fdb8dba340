"""``kmi segment`` as one library call: sample, fit, classify block by block, write, score."""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

import numpy as np

from ..datasets.rasters import open_raster
from ..engine._kernels import blas_threads
from ..errors import KMIError
from ..features import DEFAULT_BUDGET_FEATURES, DEFAULT_PIXEL_FEATURES, make_pixel_features
from ..features._pixels import input_radii
from ..outputs import staged_outputs
from ._classify import DEFAULT_N_INIT, classify_strip, fit_pixel_model
from ._model import load_pixel_model, save_pixel_model
from ._outputs import (
    OUTPUT_NAMES,
    ClassMapWriter,
    composite_bands,
    composite_image,
    write_preview,
    write_report_page,
    write_signatures,
)
from ._pixels import DEFAULT_SAMPLE, radius_columns, read_blocks, sample_pixels
from ._plots import class_colours
from ._result import Segmentation
from ._scoring import TruthCounts, budget_accuracy
from ._smoothing import smooth_strips

__all__ = ["segment"]

#: Longest side of the decimated class map and scene kept for preview.png and the report.
PREVIEW_SIDE = 1000


def segment(raster_path, out, *, n_clusters=None, force=False, bands=None, nodata=None, var=None,
            sample=DEFAULT_SAMPLE, features=None, smooth=0, truth=None, label_budgets=(),
            model=None, random_state=0, n_init=DEFAULT_N_INIT, dask=None, log=None):
    """Cluster the pixels of a raster and write the class map and its companions into ``out``.

    Training pixels are sampled across the scene (:func:`~._pixels.sample_pixels`), the feature
    pipeline and K-means are fitted on them (or ``model`` is reused), then every pixel is
    classified strip by strip (in this process, or on a dask cluster), optionally majority-filtered,
    and written. Everything is checked before the first file is written: on a user error nothing is.

    Parameters
    ----------
    raster_path : path-like
        Any raster :func:`~kmeans_imagery.datasets.rasters.open_raster` reads.
    out : path-like
        Output folder: classes.tif, preview.png, signatures.csv, results.json, report.html,
        model.kmi.
    n_clusters : int, optional
        K; required unless ``model`` is given.
    force : bool
        Replace existing outputs.
    bands : sequence of int, optional
        1-based band numbers; default all.
    nodata : float, optional
        Overrides the file's nodata value and masks.
    var : str, optional
        The array to read from a file holding several.
    sample : int
        Training pixels.
    features : str, optional
        Pixel feature pipeline (see :func:`~kmeans_imagery.features.make_pixel_features`), of the
        class map and of the label-budget models; by default
        :data:`~kmeans_imagery.features.DEFAULT_PIXEL_FEATURES` for the class map and
        :data:`~kmeans_imagery.features.DEFAULT_BUDGET_FEATURES` for the label-budget models (with
        ``model``, the model's own for both).
    smooth : int
        Radius of the majority filter of the class map; 0 = none.
    truth : path-like, optional
        Ground truth of the same rows x cols (0 = unlabelled): adds scores.
    label_budgets : sequence of int
        For each N, fit N clusters and name each from the truth of its most central labelled pixel.
    model : path-like, optional
        A pixel model from an earlier run to classify with instead of fitting.
    random_state : int
    n_init : int
        K-means runs; the lowest inertia wins.
    dask : str, optional
        "local" or a scheduler address: classify strips on a dask cluster.
    log : callable, optional
        Called with progress lines.

    Returns
    -------
    Segmentation
        The content of results.json, the output paths and the class signatures.

    Raises
    ------
    KMIError
        For a file that is not a raster, a band out of range, an all-nodata raster, a truth of
        another size, K larger than the number of valid pixels, an existing output without
        ``force``, a bad feature spec: before any file is written.

    Examples
    --------
    A tiny georeferenced scene of two fields, clustered into two classes:

    >>> import tempfile, numpy as np, rasterio
    >>> from pathlib import Path
    >>> from affine import Affine
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     scene, seg = Path(folder) / "scene.tif", Path(folder) / "seg"
    ...     bands = np.full((3, 16, 16), 20, dtype=np.uint8)
    ...     bands[:, :, 8:] = [[[200]], [[90]], [[30]]]  # the right half is another field
    ...     with rasterio.open(scene, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8",
    ...                        crs="EPSG:32618", transform=Affine(30, 0, 0, 0, -30, 0)) as dst:
    ...         dst.write(bands)
    ...     result = segment(scene, seg, n_clusters=2, n_init=1)
    ...     with rasterio.open(result.paths["classes.tif"]) as classes:
    ...         crs, counts = classes.crs.to_string(), np.bincount(classes.read(1).ravel())
    >>> result  # doctest: +ELLIPSIS
    Segmentation(dataset='scene.tif', n_clusters=2, pixels=256, out=...)
    >>> crs, counts.tolist()
    ('EPSG:32618', [0, 128, 128])
    """
    log = log or (lambda *_: None)
    timings = {}
    clock = time.perf_counter()
    out = Path(out)
    _check_out(out, force)
    if label_budgets and truth is None:
        raise KMIError("--label-budget needs --truth (the labels that name the clusters)")
    if model is not None and (n_clusters is not None or features is not None):
        raise KMIError("--model sets K and the features: drop --k and --features")
    if smooth < 0:
        raise KMIError(f"--smooth: the radius must be at least 0, got {smooth}")
    if any(size < 1 for size in label_budgets):
        raise KMIError(f"--label-budget: every N must be at least 1, got {list(label_budgets)}")
    with ExitStack() as stack:
        pixel_model = model_meta = None
        if model is not None:
            with _option("--model"):
                pixel_model, model_meta = load_pixel_model(model)
        raster = stack.enter_context(_open_for_model(raster_path, bands, nodata, var, pixel_model, model_meta,
                                                     model, log))
        truth_raster = None
        if truth is not None:
            with _option("--truth"):
                truth_raster = stack.enter_context(open_raster(truth, ndim=2))
            _check_truth(truth_raster, raster)
        k = pixel_model.n_clusters if pixel_model is not None else n_clusters
        if k is None or k < 1:
            raise KMIError("--k: give the number of classes (at least 1), or --model")
        if k > 65535:
            raise KMIError(f"--k: at most 65535 classes fit in classes.tif, got {k}")
        # The specs are parsed here, before anything is read or written: a bad one is a user error.
        spec = features or DEFAULT_PIXEL_FEATURES
        with _option("--features"):
            radii = pixel_model.radii if pixel_model is not None else input_radii(make_pixel_features(spec))
        # Budget models share the class map's features unless both are left to their defaults.
        budget_spec = None
        if label_budgets and features is None and model is None:
            budget_spec = DEFAULT_BUDGET_FEATURES
        budget_radii = radii if budget_spec is None else input_radii(make_pixel_features(budget_spec))
        sample_radii = radii + tuple(r for r in budget_radii if r not in radii)
        drawn = sample_pixels(raster, sample, radii=sample_radii, random_state=random_state,
                              min_valid=max((k, *label_budgets)))
        for option, size in [("--k", k)] + [("--label-budget", b) for b in label_budgets]:
            if size > drawn.n_valid:
                raise KMIError(f"{option}: {size} clusters but only {drawn.n_valid} valid pixels in "
                               f"{raster.name}")
        if len(drawn.rows) < max((k, *label_budgets)):
            raise KMIError(f"--sample: {len(drawn.rows)} training pixels for {max((k, *label_budgets))} "
                           f"clusters")
        timings["sample_seconds"] = time.perf_counter() - clock
        log(f"{raster.name}: {raster.height} x {raster.width} pixels, {raster.n_bands} band(s) "
            f"{raster.dtype}; {len(drawn.rows):,} training pixels")
        clock = time.perf_counter()
        inertia = None
        if pixel_model is None:
            pixel_model, inertia = fit_pixel_model(_columns(drawn.rows, sample_radii, radii), k,
                                                   features=spec, random_state=random_state, n_init=n_init)
        budget_rows = _columns(drawn.rows, sample_radii, budget_radii)
        budget_features = pixel_model.features
        if budget_spec is not None:  # one pipeline, fitted once, for every budget model
            budget_features = make_pixel_features(budget_spec, random_state=random_state).fit(budget_rows)
        budget_models = [fit_pixel_model(budget_rows, b, features=budget_features, random_state=random_state,
                                         n_init=n_init)[0] for b in label_budgets]
        timings["fit_seconds"] = time.perf_counter() - clock
        if inertia is None:
            log(f"classifying with the K={k} model {model}")
        else:
            log(f"fitted K={k} on {len(drawn.rows):,} pixels in {timings['fit_seconds']:.2f} s; classifying")
        clock = time.perf_counter()
        colours = class_colours(k)
        # Every file is written into a staging folder and moved into place once all are: an error or
        # an interruption leaves the outputs of an earlier run whole, not mixed with half of this one's.
        with staged_outputs(out, OUTPUT_NAMES) as staging:
            passed = _classify_all(raster, pixel_model, staging, colours, truth_raster, budget_models, smooth,
                                   dask, stack)
            timings["classify_write_seconds"] = time.perf_counter() - clock
            clock = time.perf_counter()
            results, means = _write_rest(raster, raster_path, staging, pixel_model, model_meta, passed,
                                         colours, drawn, inertia, label_budgets, budget_models,
                                         dict(k=k, features=pixel_model.features.spec, sample=sample,
                                              smooth=smooth, seed=random_state, n_init=n_init, dask=dask,
                                              truth=None if truth is None else str(truth),
                                              model=None if model is None else str(model)), timings, clock)
    return Segmentation(results=results, out=out, signatures=means, colours=colours)


def _open_for_model(path, bands, nodata, var, model, meta, model_path, log):
    """The raster, with the bands ``model`` was fitted on (see :func:`segment`).

    Without ``bands``, a scene with another number of bands than a model fitted on chosen bands
    is read with the model's band numbers (a model fitted with ``--bands 2,3,4,8`` on a Landsat
    scene classifies another scene's bands 2, 3, 4 and 8) where it has them; a model fitted on its
    scene's first bands (all of them, most often) is not guessed at. The values' type and the pixel
    size are compared with the model's scene: another type is likely another scale of values,
    another pixel size changes what the neighbourhood steps see; either is logged.
    """
    raster = open_raster(path, bands=bands, nodata=nodata, var=var)
    if model is None:
        return raster
    fitted = meta.get("bands", {})
    numbers = tuple(fitted.get("numbers") or ())
    chosen = len(numbers) == model.n_bands and numbers != tuple(range(1, model.n_bands + 1))
    if model.n_bands != raster.n_bands and bands is None and chosen:
        raster.close()  # first: GDAL's environments (one per open file) must close in reverse order
        try:
            raster = open_raster(path, bands=numbers, nodata=nodata, var=var)
            log(f"bands {','.join(map(str, numbers))} of {raster.name}, as {model_path} was fitted on")
        except KMIError:  # the scene lacks some of them: the error below says so
            raster = open_raster(path, bands=bands, nodata=nodata, var=var)
    if model.n_bands != raster.n_bands:
        raster.close()
        raise KMIError(f"--model: {model_path} was fitted on {model.n_bands} bands; {raster.name} "
                       f"has {raster.n_bands} (choose them with --bands)")
    training = meta.get("training", {})
    if fitted.get("dtype") not in (None, str(raster.dtype)):
        log(f"note: {model_path} was fitted on {fitted['dtype']} values, {raster.name} holds "
            f"{raster.dtype}: check that they are on one scale")
    pixel_size = _pixel_size(raster)
    if max(model.radii) > 0 and None not in (pixel_size, training.get("pixel_size")) \
            and not np.allclose(pixel_size, training["pixel_size"]):
        log(f"note: {model_path} was fitted on pixels of {training['pixel_size']}, {raster.name} has "
            f"{list(pixel_size)}: its neighbourhood features (nbr) cover another ground extent")
    return raster


def _pixel_size(raster):
    """Width and height of a pixel in map units, or None without a transform."""
    if raster.transform is None:
        return None
    t = raster.transform
    return [math.hypot(t.a, t.d), math.hypot(t.b, t.e)]


def _columns(rows, radii, wanted):
    """The columns of sampled ``rows`` (laid out for ``radii``) that a pipeline reading ``wanted`` takes."""
    if wanted == radii:
        return rows
    return rows[:, radius_columns(radii, wanted, rows.shape[1] // len(radii))]


def _check_out(out, force):
    existing = [name for name in OUTPUT_NAMES if (out / name).exists()]
    if existing and not force:
        raise KMIError(f"{out} already holds {', '.join(existing)}; use --force to replace")
    if out.exists() and not out.is_dir():
        raise KMIError(f"--out: {out} exists and is not a folder")


@contextmanager
def _option(flag):
    """Errors of the block name ``flag`` (the option whose value caused them), unless they name it
    already, as the option or as the parameter (``features='...'``, which the CLI maps to it)."""
    try:
        yield
    except KMIError as error:
        text = str(error)
        named = text.startswith((flag, f"{flag.lstrip('-')}="))
        raise KMIError(text if named else f"{flag}: {text}") from None


def _check_truth(truth, raster):
    if (truth.height, truth.width) != (raster.height, raster.width):
        raise KMIError(f"--truth: {truth.name} is {truth.height} x {truth.width} pixels, the raster "
                       f"{raster.height} x {raster.width}")
    # Of the same size but georeferenced elsewhere (another resolution or origin), it is another grid.
    if truth.transform is not None and raster.transform is not None \
            and not truth.transform.almost_equals(raster.transform):
        raise KMIError(f"--truth: {truth.name} is not on the raster's grid (transform "
                       f"{tuple(truth.transform)[:6]}, the raster's {tuple(raster.transform)[:6]})")
    if truth.crs and raster.crs and truth.crs != raster.crs:
        raise KMIError(f"--truth: {truth.name} is in {truth.crs.to_string()}, the raster in "
                       f"{raster.crs.to_string()}")
    if truth.n_bands != 1:
        raise KMIError(f"--truth: {truth.name} has {truth.n_bands} bands; a truth is a single band of "
                       f"class numbers")
    if truth.dtype.kind not in "iu":
        raise KMIError(f"--truth: {truth.name} holds {truth.dtype} values; expected integer class numbers")


class _Pass:
    """What the block-by-block pass gathered: per-class sums and counts, the decimated maps, scores."""


def _ordered(submit, items, ahead):
    """Submit ``items`` keeping at most ``ahead`` pending; yield their results in order."""
    pending = []
    for item in items:
        pending.append(submit(item))
        if len(pending) > ahead:
            yield pending.pop(0).result()
    while pending:
        yield pending.pop(0).result()


def _strip_task(spec, truth_spec, start, stop, model, budget_models, step, shown):
    """One strip on a dask worker: reopen the rasters there, classify."""
    with open_raster(**spec) as raster, (open_raster(**truth_spec) if truth_spec else nullcontext()) as truth:
        return classify_strip(raster, start, stop, model, truth=truth, budget_models=budget_models,
                              thumb_step=step, thumb_bands=shown)


def _classify_all(raster, model, out, colours, truth, budget_models, smooth, dask, stack):
    k = model.n_clusters
    step = max(1, math.ceil(max(raster.height, raster.width) / PREVIEW_SIDE))
    shown = composite_bands(raster.n_bands)
    strips = raster.strips()
    live, finished = {}, []  # blocks being classified in this process, and those done with
    if dask:
        from ..engine.dask import connect

        client = stack.enter_context(connect(dask))
        spec = raster.open_args
        truth_spec = None if truth is None else truth.open_args

        def submit(bounds):
            return client.submit(_strip_task, spec, truth_spec, *bounds, model, budget_models, step, shown,
                                 pure=False)

        ahead = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        tasks = strips  # each worker reads its strips itself, with their halo
    else:
        # Strips are classified on one thread per core, each strip's products on one BLAS thread:
        # on rows of a few features BLAS's own threads cost far more than they save. Rasters are
        # read under a lock (one GDAL dataset is not safe to share between threads).
        from threadpoolctl import threadpool_limits

        threads = max(1, blas_threads())
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        executor = stack.enter_context(ThreadPoolExecutor(threads))

        def submit(block):
            live[block.start] = block
            return executor.submit(classify_strip, raster, block.start, block.stop, model, block=block,
                                   truth=truth, budget_models=budget_models, thumb_step=step,
                                   thumb_bands=shown)

        ahead = threads
        # This thread reads the strips in order, each once: a strip's halo rows are its neighbours'.
        # The blocks of strips classified are read into again (see labelled_strips).
        tasks = read_blocks(raster, strips, model.radii, reuse=finished)
    passed = _Pass()
    passed.sums, passed.counts = np.zeros((k, raster.n_bands)), np.zeros(k, dtype=np.int64)
    passed.kmeans_counts = np.zeros(k, dtype=np.int64)
    passed.budget = [[] for _ in budget_models]
    passed.truth = TruthCounts(k) if truth is not None else None
    thumbs, thumb_valid, classes, truths = [], [], [], {}

    def labelled_strips():
        for (start, _), result in zip(strips, _ordered(submit, tasks, ahead), strict=True):
            if start in live:
                finished.append(live.pop(start))
            passed.sums += result["sums"]
            passed.kmeans_counts += result["counts"]
            for parts, part in zip(passed.budget, result.get("budget", ()), strict=False):
                parts.append(part)
            thumbs.append(result["thumb"])
            thumb_valid.append(result["thumb_valid"])
            if "truth" in result:
                truths[start] = result["truth"]
            yield start, result["labels"]

    with ClassMapWriter(out / "classes.tif", raster, colours) as writer:
        for start, labels in smooth_strips(labelled_strips(), smooth, k):
            writer.write(start, labels)
            if smooth:  # unsmoothed, the counts are K-means' own
                passed.counts += np.bincount(labels.ravel() + 1, minlength=k + 1)[1:]
            if passed.truth is not None:
                passed.truth.add(labels, truths.pop(start))
            classes.append(labels[(-start) % step :: step, ::step].copy())  # not a view of the whole strip
        writer.commit()
    if not smooth:
        passed.counts = passed.kmeans_counts
    passed.thumb = np.concatenate(thumbs)
    passed.thumb_valid = np.concatenate(thumb_valid)
    passed.classes = np.concatenate(classes)
    return passed


def _write_rest(raster, raster_path, out, model, model_meta, passed, colours, drawn, inertia, label_budgets,
                budget_models, params, timings, clock):
    """Signatures, preview, model, results.json and the report, once classes.tif is written."""
    from ..experiment import library_versions
    from ..outputs import write_json

    k = model.n_clusters
    # Signatures are the means of the pixels K-means put in each class (before any majority filter).
    means = passed.sums / np.maximum(passed.kmeans_counts, 1)[:, None]
    pixel_area, area_unit = _pixel_area(raster)
    band_names = [f"band{b}" for b in raster.bands]
    write_signatures(out / "signatures.csv", passed.counts, means, pixel_area=pixel_area, area_unit=area_unit,
                     band_names=band_names)
    write_preview(out / "preview.png", passed.classes, colours)
    training = {"scene": raster.name, "n_sample": len(drawn.rows), "seed": params["seed"],
                "inertia": inertia, "crs": None if raster.crs is None else raster.crs.to_string(),
                "pixel_size": _pixel_size(raster)}
    if model_meta is not None:
        training = model_meta.get("training", {})
    save_pixel_model(model, out / "model.kmi", bands={"count": raster.n_bands, "numbers": list(raster.bands),
                                                      "dtype": str(raster.dtype)}, training=training)
    results = {
        "dataset": raster.name,
        "input": {"path": str(raster_path), "rows": raster.height, "cols": raster.width,
                  "bands": list(raster.bands), "dtype": str(raster.dtype),
                  **({"wavelengths": list(raster.wavelengths), "wavelength_unit": raster.wavelength_unit}
                     if raster.wavelengths is not None else {}),
                  "crs": None if raster.crs is None else raster.crs.to_string(),
                  "transform": None if raster.transform is None else list(raster.transform)[:6],
                  "nodata": _recorded(raster.nodata if raster.nodata is not None else raster.file_nodata),
                  "valid_pixels": int(passed.kmeans_counts.sum())},
        "features": params["features"],
        "seed": params["seed"],
        "parameters": params,
        "n_sample": len(drawn.rows),
        "inertia": inertia,
        "classes": [{"class": c + 1, "pixels": int(passed.counts[c]),
                     **({"area": float(passed.counts[c] * pixel_area)} if pixel_area else {})}
                    for c in range(k)],
        "outputs": list(OUTPUT_NAMES),
        "versions": library_versions(),
    }
    confusion = names = None
    if passed.truth is not None:
        scores = passed.truth.scores()
        names = [str(c) for c in scores["classes"]]
        matrix = np.asarray(scores["confusion_matrix"])
        confusion = matrix if matrix.shape[0] == matrix.shape[1] else None
        scalars = {key: scores[key]
                   for key in ("hungarian_accuracy", "majority_accuracy", "kappa", "nmi", "ari")}
        results["test"] = {"k": k, "accuracy": scores["hungarian_accuracy"],
                           "metrics": {**scalars, "labelled_pixels": scores["n_labelled"]}, **scores}
        results["label_budget"] = [{**budget_accuracy(parts, m.n_clusters), "features": m.features.spec}
                                   for parts, m in zip(passed.budget, budget_models, strict=True)]
    timings["outputs_seconds"] = time.perf_counter() - clock
    results["timings"] = timings
    write_json(results, out / "results.json")
    composite = composite_image(passed.thumb, passed.thumb_valid)
    write_report_page(results, out / "report.html", composite=composite,
                      classes=passed.classes, colours=colours, means=means, counts=passed.counts,
                      confusion=confusion, class_names=names, pixel_area=pixel_area, area_unit=area_unit,
                      bands=raster.bands, wavelengths=raster.wavelengths,
                      wavelength_unit=raster.wavelength_unit)
    return results, means


def _recorded(nodata):
    """A nodata value (or a tuple of them) as JSON can hold it: NaN and infinities as text."""
    if isinstance(nodata, tuple):
        return [_recorded(value) for value in nodata]
    if nodata is None or math.isfinite(nodata):
        return nodata
    return "NaN" if math.isnan(nodata) else "Infinity" if nodata > 0 else "-Infinity"


def _pixel_area(raster):
    """Area of one pixel and its unit when the CRS is projected (map units), else (None, None)."""
    if raster.crs is None or raster.transform is None or not raster.crs.is_projected:
        return None, None
    t = raster.transform
    unit = raster.crs.linear_units or "unit"
    return abs(t.a * t.e - t.b * t.d), {"metre": "m", "meter": "m"}.get(unit, unit)
