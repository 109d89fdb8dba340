"""A pixel model (feature pipeline + centroids), its fit on training pixels, and classifying a strip.

:func:`classify_strip` is the unit of work of the block-by-block pass: it reads one strip, turns its
valid pixels into features a bounded number at a time, finds each one's nearest centroid with the
engine's fused assignment kernel, and returns the strip's labels with the small per-strip
accumulators (per-class band sums for the signatures, truth statistics). The same function runs in
this process or, with ``--dask``, on a cluster's workers.
"""

import threading

import numpy as np

from ..engine import make_kmeans
from ..engine._kernels import Centers, Workers, _sum_by_label, assign, blas_threads, row_sq_norms
from ..features import make_pixel_features
from ..features._pixels import input_radii, linear_form
from ._pixels import Block

__all__ = ["PixelModel", "classify_strip", "fit_pixel_model"]

#: Pixels turned into features and assigned at once: bounds the temporary memory of a strip to a
#: few times this many rows of features, whatever the strip's size.
CHUNK_PIXELS = 2**17
#: Pixels scored at once (see :meth:`_LinearScores.classify`), fewer for many classes so that a
#: piece's scores stay within SCORE_ELEMENTS values; pixels per product with their one-hot classes.
PIECE_PIXELS = 2**15
SCORE_ELEMENTS = 2**20
_THIN = 4096
#: Independent K-means runs per fit; the lowest inertia wins. On the HSI scenes one run's accuracy
#: varies by up to 0.19 with the seed; the best of 10 varies by under 0.01 (README).
DEFAULT_N_INIT = 10
#: Training pixels the ``n_init`` runs compete on when there are more (the scenes of the accuracy
#: benchmark, 7,000 to 10,000 pixels, run every init on every pixel).
SEARCH_ROWS = 20_000


class PixelModel:
    """Fitted features and centroids: classifies pixel rows.

    Attributes
    ----------
    features : FeaturePipeline
        Fitted pixel features (:func:`~kmeans_imagery.features.make_pixel_features`).
    centers : ndarray of shape (n_clusters, n_features), float32
    n_bands : int
        Bands of the pixels it was fitted on (the features read them once per radius).
    """

    def __init__(self, features, centers):
        self.features = features
        self.centers = np.ascontiguousarray(centers, dtype=np.float32)
        self.radii = input_radii(features)
        self.n_bands = features.n_features_in_ // len(self.radii)
        self._prepared = Centers(self.centers)
        self._linear = self._fold()

    def _fold(self):
        """Scores ``g(x) @ W + w`` whose argmax is the nearest centroid, from the band values directly.

        When every pipeline is ``g(x) @ A + b`` (see
        :func:`~kmeans_imagery.features._pixels.linear_form`), the nearest centroid
        maximises ``f . c - ||c||^2 / 2 = sum of g(x) @ (A @ c_part) + b . c_part - ||c||^2 / 2``:
        one small product per pipeline input replaces building the features, which makes
        classifying a scene several times cheaper. A :class:`_LinearScores`, or None when the
        features are not of that form.
        """
        forms = linear_form(self.features)
        if forms is None:
            return None
        centers = self.centers.astype(np.float64)
        offset, weights = 0, {}
        constant = -0.5 * (centers**2).sum(axis=1)
        for columns, unit, A, b in forms:
            part = centers[:, offset : offset + A.shape[1]]
            offset += A.shape[1]
            key = (columns.start // self.n_bands, unit)
            weights[key] = weights.get(key, 0) + A @ part.T
            constant += part @ b
        return _LinearScores(weights, constant, self.n_bands, self.radii)

    def labels(self, rows):
        """Nearest centroid (int32) of pixel rows (band values, as the reader gives them)."""
        if self._linear is None:
            return self.assign(self.features.transform(rows))[0]
        work = self._linear.workspace(1, len(rows))
        for index, part in enumerate(work.parts):
            part[:, 0] = rows[:, index * self.n_bands : (index + 1) * self.n_bands].T
        return self._linear.classify(work)[0]

    @property
    def n_clusters(self):
        return len(self.centers)

    def assign(self, X):
        """Nearest centroid (int32) and squared distance of each feature row of ``X``."""
        with Workers(blas_threads()) as workers:
            result = assign(workers, X, row_sq_norms(X), self._prepared)
        return result["labels"], result["d1"]

    def __getstate__(self):  # sent to dask workers: the prepared centroids are rebuilt there
        return {"features": self.features, "centers": self.centers}

    def __setstate__(self, state):
        self.__init__(**state)


class _LinearScores:
    """The folded scores of a linear pixel model, computed on band planes (one row per band).

    The workspace (see :meth:`workspace`) holds, one row per pixel column: the parts of radius > 0
    (``n_bands`` rows each), the unit-length copies of the parts that are l2-normalised, a row
    that is 1 on valid pixels, then the band values (radius 0). The scores are one product
    ``W @ rows`` of shape (K, pixels); the bands are few (fewer than K), so dividing by the norm
    is done on them rather than on the scores, and the constant rides on the row of ones. That
    row and the band values also give, in one more product with the one-hot labels, the pixels
    and band sums of each class.

    Parameters
    ----------
    weights : dict of (int, bool) to ndarray of shape (n_bands, K)
        Per (part, unit length): its term.
    constant : ndarray of shape (K,)
    n_bands : int
    radii : sequence of int
        Those of the parts (see :class:`~._pixels.Block`).
    """

    def __init__(self, weights, constant, n_bands, radii):
        n_parts, self.n_bands, self.halo = len(radii), n_bands, max(radii)
        # Part p > 0 is at rows (p - 1) * n_bands; part 0 after the row of ones; unit copies between.
        self.part_rows = [None] * n_parts
        for part in range(1, n_parts):
            self.part_rows[part] = (part - 1) * n_bands
        self.unit_rows = {}
        row = (n_parts - 1) * n_bands
        for part, unit in sorted(weights):
            if unit:
                self.unit_rows[part] = row
                row += n_bands
        self.ones = row
        self.part_rows[0] = row + 1
        self.n_rows = row + 1 + n_bands
        # The band values enter the scores only when a part uses them as they are.
        self.n_score = self.n_rows if (0, False) in weights else self.ones + 1
        W = np.zeros((len(constant), self.n_score))
        for (part, unit), term in weights.items():
            first = self.unit_rows[part] if unit else self.part_rows[part]
            W[:, first : first + n_bands] += term.T
        W[:, self.ones] = constant
        self.W = W.astype(np.float32)
        self.k = len(constant)
        self.piece = max(256, min(PIECE_PIXELS, SCORE_ELEMENTS // self.k))
        self.thin = min(_THIN, self.piece)
        # Labels and hits (how many classes reach the best score) from the one-hot scores.
        self._decode = np.stack([np.arange(self.k), np.ones(self.k)]).astype(np.float32)
        self._threads = threading.local()

    def workspace(self, n_lines, width):
        """Buffers for up to ``n_lines`` image rows of ``width`` pixels: the same ones again on a
        thread that asks for them again (fresh memory costs a page fault per 4 KiB)."""
        work = getattr(self._threads, "work", None)
        if work is None or work.planes.shape[1:] != (n_lines + 2 * self.halo, width):
            planes = np.empty((self.n_rows, n_lines + 2 * self.halo, width), np.float32)
            work = _Workspace(self, planes, np.empty((2, self.k, self.piece), np.float32),
                              np.empty((2, self.piece), np.float32),
                              np.empty((-(-self.piece // self.thin), self.k, 1 + self.n_bands), np.float32))
            self._threads.work = work
        return work

    def classify(self, work, valid=None, out=None):
        """Nearest centroid of the workspace's pixels, and per class their count and band sums.

        Parameters
        ----------
        work : _Workspace
            With its ``parts`` filled.
        valid : ndarray of bool, shape (n_pixels,), optional
            Default all; the band values of invalid pixels must be 0 (they enter no sum).
        out : ndarray of shape (n_pixels,), int32, optional
            Where to write the labels.

        Returns
        -------
        labels : ndarray of shape (n_pixels,), int32
            -1 where not valid.
        sums : ndarray of shape (K, n_bands), float64
        counts : ndarray of shape (K,), int64
        """
        rows = work.rows
        rows[self.ones] = 1 if valid is None else valid
        for part, first in self.unit_rows.items():
            x = rows[self.part_rows[part] : self.part_rows[part] + self.n_bands]
            norm = np.einsum("bn,bn->n", x, x)
            np.sqrt(norm, out=norm)
            np.maximum(norm, np.finfo(np.float32).tiny, out=norm)
            np.multiply(x, np.divide(1, norm, out=norm), out=rows[first : first + self.n_bands])
        labels = np.empty(rows.shape[1], dtype=np.int32) if out is None else out
        totals = np.zeros((self.k, 1 + self.n_bands))  # per class: pixels, band sums
        # The exact argmax (lowest class on ties) without numpy's slow one across rows: the best
        # score of each pixel, the classes that reach it (one-hot), read back with products. Pieces
        # of up to PIECE_PIXELS: long enough for two threads not to queue for the GIL (few numpy calls per
        # pixel), short enough to stay in the core's cache; the thin products in parts of _THIN
        # pixels (OpenBLAS is 2-3x faster on those than on long ones), written into buffers.
        thin = self.thin
        for first in range(0, rows.shape[1], self.piece):
            piece = rows[:, first : first + self.piece]
            n = piece.shape[1]
            scores = np.matmul(self.W, piece[: self.n_score], out=work.scores[:, :n])
            onehot = np.equal(scores, scores.max(axis=0), out=work.onehot[:, :n])
            parts = range(0, n, thin)
            decoded = work.decoded[:, :n]
            for part in parts:
                np.matmul(self._decode, onehot[:, part : part + thin], out=decoded[:, part : part + thin])
            ties = np.flatnonzero(decoded[1] != 1)  # several classes at the best score, or NaN
            if len(ties):
                decoded[0, ties] = scores[:, ties].argmax(axis=0)
                onehot[:, ties] = 0
                onehot[decoded[0, ties].astype(np.intp), ties] = 1
            labels[first : first + n] = decoded[0]
            values = piece[self.ones : self.ones + 1 + self.n_bands].T
            for index, part in enumerate(parts):
                np.matmul(onehot[:, part : part + thin], values[part : part + thin], out=work.sums[index])
            totals += work.sums[: len(parts)].sum(axis=0, dtype=np.float64)
        if valid is not None:
            labels[~valid] = -1
        return labels, totals[:, 1:], totals[:, 0].astype(np.int64)


class _Workspace:
    """The rows (see :class:`_LinearScores`), scores and one-hot buffers of a chunk of image rows.

    ``planes`` (n_rows, lines + 2 * halo, width): the band values take their halo lines with them
    (``values``, which the neighbourhood means are computed from), the other parts leave theirs
    unused; ``parts[p]`` is part p's (n_bands, lines, width) view; ``rows`` the (n_rows, pixels)
    view of the lines between the halos, that the scores are computed from.
    """

    def __init__(self, scores, planes, score_buffers, decoded, sums):
        self.planes, self._owner = planes, scores
        (self.scores, self.onehot), self._buffers = score_buffers, (score_buffers, decoded, sums)
        self.decoded, self.sums = decoded, sums
        halo, n_bands = scores.halo, scores.n_bands
        inner = planes[:, halo : planes.shape[1] - halo]
        self.rows = inner.reshape(len(planes), -1)  # a view: the lines of each plane are contiguous
        self.parts = [inner[first : first + n_bands] for first in scores.part_rows]
        self.values = planes[scores.part_rows[0] : scores.part_rows[0] + n_bands]

    def head(self, n_lines):
        """The workspace of the first ``n_lines`` lines (a shorter last chunk)."""
        if n_lines + 2 * self._owner.halo == self.planes.shape[1]:
            return self
        return _Workspace(self._owner, self.planes[:, : n_lines + 2 * self._owner.halo], *self._buffers)


def fit_pixel_model(rows, n_clusters, *, features, random_state=0, n_init=DEFAULT_N_INIT):
    """Fit the feature pipeline and K-means on training pixels.

    Parameters
    ----------
    rows : ndarray of shape (n_pixels, n_bands * len(radii))
        As :func:`~._pixels.sample_pixels` returns them.
    n_clusters : int
    features : str or FeaturePipeline
        A pipeline spec, or a fitted pipeline to reuse as it is.
    random_state : int
    n_init : int

    Returns
    -------
    model : PixelModel
    inertia : float
        Of the training pixels, in feature space.
    """
    if isinstance(features, str):
        features = make_pixel_features(features, random_state=random_state)
        X = features.fit_transform(rows)
    else:
        X = features.transform(rows)
    init = "k-means++"
    if n_init > 1 and len(X) > SEARCH_ROWS:
        # The runs compete on a subsample; only the best one goes on over every training pixel.
        subsample = X[np.random.default_rng(random_state).choice(len(X), SEARCH_ROWS, replace=False)]
        init = make_kmeans(n_clusters, algorithm="full", random_state=random_state,
                           n_init=n_init).fit(subsample).cluster_centers_
        n_init = 1
    kmeans = make_kmeans(n_clusters, algorithm="full", random_state=random_state, n_init=n_init,
                         init=init).fit(X)
    return PixelModel(features, kmeans.cluster_centers_), float(kmeans.inertia_)


def classify_strip(raster, start, stop, model, *, truth=None, budget_models=(), thumb_step=None,
                   thumb_bands=None, block=None):
    """Classify the pixels of rows ``start:stop``.

    Parameters
    ----------
    raster : Raster
    start, stop : int
    model : PixelModel
    truth : Raster, optional
        Single-band ground truth of the same size; 0 (and the truth's nodata) = unlabelled.
    budget_models : sequence of PixelModel
        Models (sharing one feature pipeline, whose radii are ``model``'s or 0) whose clusters are
        to be named from the truth of their most central labelled pixel: for each, the strip's
        per-cluster nearest labelled pixel and its (cluster, class) pair counts are returned.
    thumb_step : int, optional
        Also return every ``thumb_step``-th row and column of the bands ``thumb_bands`` (0-based),
        counting rows from the top of the raster, for the previews.
    thumb_bands : sequence of int, optional
    block : Block, optional
        The strip already read (with the halo of ``model.radii``); by default it is read here.

    Returns
    -------
    dict
        ``labels`` (rows, width) int32, -1 where nodata; ``sums`` (K, n_bands) float64 band sums per
        cluster; ``counts`` (K,) int64; with ``truth``: ``truth`` (rows, width) and per budget model
        ``budget`` entries ``(best_distance, best_class, pair_codes, pair_counts)``; with
        ``thumb_step``: ``thumb`` and ``thumb_valid``.
    """
    if block is None:
        block = Block(raster, start, stop, model.radii)
    valid = block.valid
    k, n_bands, width = model.n_clusters, model.n_bands, raster.width
    scores = model._linear
    # The chunks of a linear model write every label; the others write those of valid pixels only.
    labels = np.full(valid.shape, -1, dtype=np.int32) if scores is None else np.empty(valid.shape, np.int32)
    sums, counts = np.zeros((k, n_bands)), np.zeros(k, dtype=np.int64)
    out = {}
    if truth is not None:
        classes, labelled = truth.read(start, stop)
        out["truth"] = np.where(labelled, classes[:, :, 0], 0)  # the truth's nodata is unlabelled
    budgets = [_BudgetStats(m.n_clusters) for m in budget_models]
    # A few image rows at a time: features (and neighbourhood means) of a bounded number of pixels.
    step = max(1, CHUNK_PIXELS // width)
    work = None if scores is None else scores.workspace(min(step, stop - start), width)
    for top in range(start, stop, step):
        bottom = min(stop, top + step)
        part = slice(top - start, bottom - start)
        chunk_valid = valid[part].ravel()
        # Where every pixel is valid, the chunk is taken whole: no index array, no gathered copy.
        index = slice(None) if chunk_valid.all() else np.flatnonzero(chunk_valid)
        if scores is None:
            pixels = block.rows(top, bottom)[index]
            chunk_labels = model.labels(pixels)
            labels[part].reshape(-1)[index] = chunk_labels
            sums += _sum_by_label(pixels[:, :n_bands], chunk_labels, k)
            counts += np.bincount(chunk_labels, minlength=k)
        else:
            chunk = work.head(bottom - top)
            block.planes_of(top, bottom, chunk.values, chunk.parts[1:])
            _, chunk_sums, chunk_counts = scores.classify(
                chunk, None if isinstance(index, slice) else chunk_valid, out=labels[part].reshape(-1))
            sums += chunk_sums
            counts += chunk_counts
        if budgets:
            classes = out["truth"][part].ravel()[index]
            labelled = classes > 0
            if not labelled.any():  # ground truth is often sparse: whole chunks have none
                continue
            flat = np.arange(part.start * width, part.stop * width)[index][labelled]
            X = budget_models[0].features.transform(block.pixels(flat, radii=budget_models[0].radii))
            for stats, budget_model in zip(budgets, budget_models, strict=True):
                stats.add(*budget_model.assign(X), classes[labelled])
    out.update(labels=labels, sums=sums, counts=counts)
    if budgets:
        out["budget"] = [stats.result() for stats in budgets]
    if thumb_step:
        first = (-start) % thumb_step
        values = block.values[start - block.offset : stop - block.offset]
        out["thumb"] = values[first::thumb_step, ::thumb_step][..., list(thumb_bands)]
        out["thumb_valid"] = valid[first::thumb_step, ::thumb_step].copy()  # the block is read into again
    return out


class _BudgetStats:
    """Per cluster: the nearest labelled pixel's distance and class; (cluster, class) pair counts."""

    def __init__(self, n_clusters):
        self.best = np.full(n_clusters, np.inf)
        self.best_class = np.zeros(n_clusters, dtype=np.int64)
        self.pairs = []

    def add(self, clusters, distances, classes):
        order = np.lexsort((distances, clusters))
        first = order[np.r_[True, clusters[order][1:] != clusters[order][:-1]]] if len(order) else order
        better = distances[first] < self.best[clusters[first]]
        self.best[clusters[first][better]] = distances[first][better]
        self.best_class[clusters[first][better]] = classes[first][better]
        self.pairs.append(clusters.astype(np.int64) << 32 | classes.astype(np.int64))

    def result(self):
        codes, counts = np.unique(np.concatenate(self.pairs) if self.pairs else np.zeros(0, np.int64),
                                  return_counts=True)
        return self.best, self.best_class, codes, counts
