"""Histograms of oriented gradients for a batch of images at once (scikit-image's HOG, batched)."""

import numpy as np

from ..errors import KMIError
from ._steps import _check_shape, _describe_shape, _n_pixels, _Step


class HOG(_Step):
    """Histograms of oriented gradients, the descriptor of :func:`skimage.feature.hog`.

    Computes, for a whole batch at once, what ``skimage.feature.hog(image, orientations,
    pixels_per_cell=(cell_size, cell_size), cells_per_block=(block_size, block_size),
    block_norm="L2-Hys")`` computes for one image (``channel_axis=-1`` for colour images): central
    differences, one unsmoothed orientation histogram per cell (unsigned, 0-180 degrees, hard
    binning, divided by the cell area), then L2-Hys normalisation of every overlapping block.
    The tests check the output equals scikit-image's; the batch form avoids its per-image Python
    loop, which costs ~0.7 ms per 28x28 image at 4x4 cells.

    Parameters
    ----------
    image_shape : tuple of int
        (H, W) or (H, W, C) of the images whose flattened rows are passed in.
    cell_size : int, default=7
        Side of a square cell, in pixels. Pixels past the last whole cell are ignored.
    orientations : int, default=9
        Number of orientation bins.
    block_size : int, default=3
        Side of a square block, in cells; reduced to the number of cells when the image holds
        fewer, so small images still get a descriptor.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.feature import hog
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.features import HOG
    >>> images = (load_digits().images / 16).astype(np.float32)  # (1797, 8, 8)
    >>> step = HOG((8, 8), cell_size=2)
    >>> descriptors = step.fit_transform(images.reshape(len(images), -1))
    >>> descriptors.shape  # 2x2 blocks of 3x3 cells of 9 orientations
    (1797, 324)
    >>> one = hog(images[0], 9, pixels_per_cell=(2, 2), cells_per_block=(3, 3), block_norm="L2-Hys")
    >>> bool(np.allclose(descriptors[0], one, atol=1e-5))
    True
    """

    def __init__(self, image_shape, cell_size=7, orientations=9, block_size=3):
        self.image_shape = image_shape
        self.cell_size = cell_size
        self.orientations = orientations
        self.block_size = block_size

    def _expected_width(self):
        return _n_pixels(_check_shape(self.image_shape))

    def _fit(self, X):
        shape = _check_shape(self.image_shape)
        for name in ("cell_size", "orientations", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise KMIError(f"hog {name} must be a positive integer, got {value!r}")
        if self.cell_size > min(shape[:2]):
            raise KMIError(
                f"hog cells of {self.cell_size} pixels do not fit {_describe_shape(shape)} images; "
                f"use at most hog:{min(shape[:2])}"
            )

    def _geometry(self):
        shape = _check_shape(self.image_shape)
        cells = (shape[0] // self.cell_size, shape[1] // self.cell_size)
        block = min(self.block_size, *cells)
        return shape, cells, block

    def _transform(self, X):
        shape, cells, block = self._geometry()
        n_blocks = (cells[0] - block + 1) * (cells[1] - block + 1)
        out = np.empty((len(X), n_blocks * block * block * self.orientations), dtype=np.float32)
        for start in range(0, len(X), 2048):
            chunk = X[start : start + 2048].reshape((-1, *shape))
            out[start : start + 2048] = self._hog(chunk, cells, block)
        return out

    def _hog(self, images, cells, block):
        g_row = np.zeros_like(images)
        g_col = np.zeros_like(images)
        g_row[:, 1:-1] = images[:, 2:] - images[:, :-2]
        g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
        if images.ndim == 4:
            # per pixel, the channel with the strongest gradient, as scikit-image does
            strongest = np.hypot(g_row, g_col).argmax(axis=3)[..., None]
            g_row = np.take_along_axis(g_row, strongest, axis=3)[..., 0]
            g_col = np.take_along_axis(g_col, strongest, axis=3)[..., 0]
        g_row = g_row.astype(np.float64)
        g_col = g_col.astype(np.float64)
        magnitude = np.hypot(g_col, g_row)
        orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
        n, c, n_bins = len(images), self.cell_size, self.orientations
        height, width = cells[0] * c, cells[1] * c
        bins = np.floor(orientation[:, :height, :width] / (180.0 / n_bins)).astype(np.intp)
        # one histogram slot per (image, cell row, cell column, bin), filled by one bincount
        cell_r = np.arange(height) // c
        cell_c = np.arange(width) // c
        slot = (
            (np.arange(n)[:, None, None] * cells[0] + cell_r[None, :, None]) * cells[1]
            + cell_c[None, None, :]
        ) * n_bins + bins
        # an angle that rounds to 180 after the modulo falls in no bin, as in scikit-image
        counted = bins < n_bins
        hist = np.bincount(
            slot[counted],
            weights=magnitude[:, :height, :width][counted],
            minlength=n * cells[0] * cells[1] * n_bins,
        ).reshape(n, cells[0], cells[1], n_bins)
        hist /= c * c
        windows = np.lib.stride_tricks.sliding_window_view(hist, (block, block), axis=(1, 2))
        # (n, blocks_r, blocks_c, orientations, block, block) -> scikit-image's cell order
        blocks = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, -1, block * block * n_bins)
        eps = 1e-5
        blocks = blocks / np.sqrt((blocks**2).sum(axis=2, keepdims=True) + eps**2)
        blocks = np.minimum(blocks, 0.2)
        blocks = blocks / np.sqrt((blocks**2).sum(axis=2, keepdims=True) + eps**2)
        return blocks.reshape(n, -1)


