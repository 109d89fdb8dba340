"""``kmi similar``: the images of a collection nearest to each query image.

Nearness is the Euclidean distance in the model's space (its scaled pixels, or its feature
pipeline's output: with ``onnx:`` features, a pretrained network's embedding). The collection
is read batch by batch and only the best ``top`` matches per query are kept, so its size does
not matter.
"""

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError
from ..outputs import output_file_folders
from ..preprocessing import image_rows
from ._explore import image_paths
from ._neighbours import top_k

__all__ = ["find_similar", "plot_similar"]

CSV_COLUMNS = ("query", "rank", "path", "distance")


def find_similar(model, data, queries, *, top=8, out=None, sheet=None, data_dir=None,
                 resize=False, skip_bad=False, batch_size=1024, progress=None):
    """The ``top`` nearest images in ``data`` to each query image.

    Parameters
    ----------
    model : ClusterClassifier or path-like
        A fitted model (or ``.kmi`` file) whose space defines nearness.
    data : str or path-like
        Anything :func:`~kmeans_imagery.datasets.open_source` accepts; both splits of a dataset
        that has two are searched.
    queries : path-like or sequence of path-like
        Image files; read as ``data`` is.
    top : int
        Matches per query.
    out : path-like or None
        CSV file to write (query, rank, path, distance).
    sheet : path-like or None
        PNG contact sheet to write: one row per query, the query then its matches.
    data_dir : path-like or None
        As for :func:`~kmeans_imagery.datasets.open_source`: where a named dataset's files are.
    resize : bool
        Read images at the model's size (as :func:`~kmeans_imagery.predict.reading_options`:
        always for a model fitted on resized images); else they must have its size.
    skip_bad : bool
        Pass over unreadable files of ``data`` instead of stopping (the queries must be readable).
    batch_size : int
    progress : callable or None

    Returns
    -------
    list of dict
        One per (query, rank): query, rank (1 = nearest), path, distance.

    Raises
    ------
    KMIError
        For a bad ``top``, no query, an unreadable image, or an output that cannot be written
        (its folder missing, ``sheet`` not a ``.png``, ``out`` and ``sheet`` the same file).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kmeans_imagery import ClusterClassifier
    >>> images = np.zeros((5, 8, 8), np.uint8)
    >>> for i, image in enumerate(images):
    ...     image[:, i:i + 3] = 255                 # a bar moving right
    >>> model = ClusterClassifier(2, random_state=0).fit(images, None)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for i, image in enumerate(images):
    ...         Image.fromarray(image).save(Path(tmp) / f"bar{i}.png")
    ...     rows = find_similar(model, tmp, [Path(tmp) / "bar1.png"], top=3)
    >>> [(r["rank"], Path(r["path"]).name, round(r["distance"], 2)) for r in rows]
    [(1, 'bar1.png', 0.0), (2, 'bar0.png', 4.0), (3, 'bar2.png', 4.0)]
    """
    from ..datasets import open_source
    from ..model_io import load_model
    from ..predict import check_model_shape, reading_options
    from ..progress import open_progress

    if not isinstance(top, int | np.integer) or top < 1:
        raise KMIError(f"top must be a positive integer, got {top!r}")
    queries = [queries] if isinstance(queries, str | os.PathLike) else list(queries)
    if not queries:
        raise KMIError("give at least one query image")
    _check_outputs(out, sheet)
    # The outputs' folders are made first, and removed again if the search fails.
    with output_file_folders(out, sheet):
        if not hasattr(model, "cluster_centers_"):
            model = load_model(model)
        reading = reading_options(model, resize)
        query_images = np.stack([_read_query(q, reading, model) for q in queries])
        query_rows = image_rows(model.features_, query_images)
        # Every image below a folder, as explore reads it: loose images beside sub-folders too.
        source = open_source(data, split="all", data_dir=data_dir, **reading, skip_bad=skip_bad,
                             loose_images="read")
        check_model_shape(model, source)
        best = None
        positions = []  # of the images searched, in the source: unreadable files leave gaps
        searched = 0
        with open_progress(progress, source.n_images, "searching") as bar:
            for batch in source.iter_batches(batch_size):
                best = top_k(query_rows, image_rows(model.features_, batch.images), top, offset=searched,
                             best=best, exact=True)
                positions.append(source.positions(batch))
                searched += len(batch.images)
                bar.advance(len(batch.images))
        if source.skipped.get("bad"):
            warnings.warn(f"skipped {source.skipped['bad']} unreadable file(s) of {data}",
                          stacklevel=2)
        dist, index = best
        index = np.concatenate(positions)[index]
        paths = image_paths(source)
        rows = [{"query": str(q), "rank": r + 1, "path": paths[index[i, r]],
                 "distance": float(dist[i, r])}
                for i, q in enumerate(queries) for r in range(index.shape[1])]
        if out is not None:
            with atomic_write(out, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        if sheet is not None:
            from ..plots import save_png

            matches = source.take(np.unique(index), batch_size=batch_size).images
            lookup = {int(j): image for j, image in zip(np.unique(index), matches, strict=True)}
            stacked = np.stack([[lookup[int(j)] for j in row] for row in index])
            save_png(plot_similar(query_images, stacked, [Path(q).name for q in queries], dist), sheet)
        return rows


def _read_query(query, reading, model):
    """One query image, read as the collection is; an unreadable one is always an error (skip_bad
    is about the collection)."""
    from ..datasets import load_images

    if Path(query).is_dir():
        raise KMIError(f"query {query} is a folder; give image files")
    if not Path(query).is_file():
        raise KMIError(f"query image {query} does not exist")
    try:
        image = load_images([Path(query)], **reading, skip_bad=True).images[0]
    except KMIError:  # its one file could not be read
        raise KMIError(f"query image {query} cannot be read as an image") from None
    expected = model.image_shape_
    if expected is not None and image.shape != tuple(expected):
        raise KMIError(f"query image {query} is {'x'.join(map(str, image.shape))} but the model "
                       f"expects {'x'.join(map(str, expected))}; pass resize=True to resize it")
    return image


def _check_outputs(out, sheet):
    """Before any work: both outputs can be written, and not over each other."""
    if sheet is not None and Path(sheet).suffix.lower() != ".png":
        raise KMIError(f"sheet={str(sheet)!r} must be a .png file")
    if out is not None and sheet is not None and (
            os.path.abspath(out) == os.path.abspath(sheet)):
        raise KMIError(f"out={str(out)!r} and sheet={str(sheet)!r} are the same file")


def plot_similar(query_images, match_images, query_names, distances, ax=None):
    """A contact sheet: one row per query, the query image then its matches.

    Parameters
    ----------
    query_images : ndarray of shape (q, H, W[, 3])
    match_images : ndarray of shape (q, m, H, W[, 3])
    query_names : sequence of str
    distances : ndarray of shape (q, m)
    ax : matplotlib Axes or None

    Returns
    -------
    ax : matplotlib Axes
    """
    from ..plots import _montage_plot

    n_cols = 1 + match_images.shape[1]
    cells = np.concatenate([query_images[:, None], match_images], axis=1)
    titles = []
    for name, row in zip(query_names, distances, strict=True):
        titles += [str(name)] + [f"{d:.3g}" for d in row]
    return _montage_plot(cells.reshape(-1, *cells.shape[2:]), titles, n_cols, ax)
