"""Outlier scores: how far an image lies from the rest of the collection.

An image is looked at in two views of the image itself, whatever ``features`` the clustering
uses: its gray pixels (reduced to at most 32 x 32) and the HOG descriptor of those pixels
(gradient orientations in a 4 x 4 grid of cells). In each view its distance to its 10th-nearest
neighbour among a fixed random reference sample of the collection (2,000 images) is divided by
the median of that distance over the collection, so a typical image scores about 1 in both;
the score is the larger of the two.

Why these choices: foreign images often come in small groups (a few blank frames, a few scans of
something else) that form a cluster of their own or pull a centroid towards themselves, so the
distance to the nearest centroid hides them; the 10th neighbour is far for any group of fewer
than 10. The pixel view finds images of unusual intensity (blank, noisy, inverted frames); the
HOG view finds unusual shapes and textures whose pixels resemble the collection's (rendered
letters, stripes). Feature spaces made for clustering often discard exactly that: L2-normalised
pixels make every blank frame the same vector.
"""

import numpy as np

from ._neighbours import top_k

__all__ = ["N_NEIGHBOURS", "REFERENCE_SIZE", "OutlierScorer"]

#: The neighbour whose distance is the score.
N_NEIGHBOURS = 10
#: Images in the reference sample.
REFERENCE_SIZE = 2000
#: Largest side of the gray view the scores are computed on.
_VIEW_SIDE = 32
#: Cells per side of the HOG view.
_HOG_CELLS = 4
#: Images scored per task: their distances to the reference (8 MiB at 1,024 x 2,000) stay in
#: cache; on MNIST test one thread scored 1,024 at a time in 0.78 of the time 4,096 took.
_CHUNK = 1024


def _views(images):
    """The two views of a batch: gray pixels in [0, 1] and their HOG, float32 rows each."""
    from ..datasets.convert import resize_images
    from ..features import HOG
    from ..preprocessing import flatten_scale

    gray = images if images.ndim == 3 else np.round(images.mean(axis=3)).astype(np.uint8)
    h, w = gray.shape[1:]
    if max(h, w) > _VIEW_SIDE:
        scale = _VIEW_SIDE / max(h, w)
        gray = resize_images(np.ascontiguousarray(gray),
                             (max(1, round(h * scale)), max(1, round(w * scale))))
    pixels = flatten_scale(gray)
    cell = max(1, min(gray.shape[1:]) // _HOG_CELLS)
    hog = HOG(gray.shape[1:], cell_size=cell).fit(pixels[:1]).transform(pixels)
    return pixels, np.asarray(hog, dtype=np.float32)


class OutlierScorer:
    """Distance to the 10th-nearest reference image in two views, for images seen batch by batch.

    Parameters
    ----------
    reference : ndarray of uint8, shape (m, H, W) or (m, H, W, 3)
        The reference sample's images.
    reference_index : ndarray of int, shape (m,)
        Their positions in the collection, sorted, so that an image never counts itself.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = np.zeros((40, 8, 8), np.uint8)
    >>> images[:, 2:6, 3:5] = rng.integers(200, 256, (40, 4, 2))  # bars, nearly alike
    >>> images[7] = 128                                             # a gray frame
    >>> scorer = OutlierScorer(images, np.arange(40))
    >>> scores = OutlierScorer.scale(scorer.raw_scores(images, 0))
    >>> int(np.argmax(scores)), scores.shape
    (7, (40,))
    """

    def __init__(self, reference, reference_index):
        self.reference = [np.ascontiguousarray(view) for view in _views(np.asarray(reference))]
        self.reference_index = np.asarray(reference_index)
        self.k = min(N_NEIGHBOURS, len(reference_index) - 1)

    def raw_scores(self, images, start):
        """Unscaled scores of images ``start, start + 1, ...`` of the collection, one per view.

        Parameters
        ----------
        images : ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
        start : int
            Position of ``images[0]`` in the collection.

        Returns
        -------
        ndarray of float32, shape (n, 2)
        """
        from ..datasets.convert import n_workers
        from ..engine._kernels import Workers

        out = np.empty((len(images), len(self.reference)), np.float32)

        def score(s, e):
            # Chunks are independent (numpy releases the GIL): one per thread, same numbers.
            chunk = images[s:e]
            positions = np.arange(start + s, start + e)
            for v, (rows, reference) in enumerate(zip(_views(chunk), self.reference, strict=True)):
                dist, index = top_k(rows, reference, self.k + 1)
                # Where the nearest reference image is the image itself, skip it.
                is_self = self.reference_index[index[:, 0]] == positions
                out[s:e, v] = np.where(is_self, dist[:, self.k], dist[:, self.k - 1])

        with Workers(n_workers()) as workers:
            workers.map(score, len(images), chunk=_CHUNK)
        return out

    @staticmethod
    def scale(raw):
        """Each view's raw scores over their median, then the larger of the two per image.

        Parameters
        ----------
        raw : ndarray of shape (n, 2)

        Returns
        -------
        ndarray of float32, shape (n,)
            About 1 for a typical image.
        """
        raw = np.asarray(raw, dtype=np.float32)
        median = np.maximum(np.median(raw, axis=0), np.finfo(np.float32).tiny)
        return (raw / median).max(axis=1).astype(np.float32)
