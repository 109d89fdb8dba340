"""Pixels as rows: a strip of a raster as feature-ready rows, and training pixels sampled across a scene.

The rows are what a pixel feature pipeline (:func:`kmeans_imagery.features.make_pixel_features`)
reads: the band values, then for each radius of its ``nbr`` steps their neighbourhood mean, which
needs the strip around the pixel and its nodata mask and so is computed here.
"""

import math

import numpy as np

from ..errors import KMIError

__all__ = ["DEFAULT_SAMPLE", "Block", "Sample", "neighbourhood_mean", "radius_columns", "sample_pixels"]

#: Training pixels drawn by default: K-means centroids of a few dozen classes in a few hundred bands
#: settle long before that (the HSI scenes of the benchmarks, 7,000 to 10,000 pixels, are used whole).
DEFAULT_SAMPLE = 100_000
#: Pixels read per wanted training pixel, and the fewest strips read, when a scene is sampled from a
#: subset of its strips (each strip of a wide scene is millions of pixels: reading them is most of
#: the sampling's time).
_READ_PER_SAMPLE = 16
_MIN_STRIPS = 8


def neighbourhood_mean(values, valid, radius):
    """Mean of each band over each pixel's (2r+1)^2 neighbourhood, counting valid pixels only.

    Parameters
    ----------
    values : ndarray of shape (rows, cols, bands)
    valid : ndarray of bool, shape (rows, cols)
    radius : int

    Returns
    -------
    ndarray of shape (rows, cols, bands), float32
        Pixels with no valid neighbour get 0 (they are invalid themselves).
    """
    from scipy.ndimage import uniform_filter

    size = (2 * radius + 1, 2 * radius + 1)
    weight = uniform_filter(valid.astype(np.float32), size=size, mode="constant")
    # One float32 copy of the values, filtered and divided in place: this runs on every pixel of a
    # scene, and most strips have no nodata to zero.
    total = (values.astype(np.float32) if valid.all()
             else np.where(valid[..., None], values, 0).astype(np.float32))
    uniform_filter(total, size=(*size, 1), mode="constant", output=total)
    total /= np.maximum(weight, 1e-12)[..., None]
    return total


class Block:
    """Rows ``start:stop`` of a raster read with the halo its spatial steps need, as pixel rows.

    Parameters
    ----------
    raster : Raster
    start, stop : int
    radii : sequence of int
        0 for the band values themselves, r > 0 for their mean over (2r+1)^2 neighbourhoods; the
        rows are read with max(radii) rows above and below so that neighbourhoods cross strip edges.

    Attributes
    ----------
    values : ndarray of shape (rows, width, n_bands)
        With the halo.
    valid : ndarray of bool, shape (stop - start, width)
        Without the halo.
    """

    def __init__(self, raster, start, stop, radii=(0,)):
        self.radii, self.start, self.stop = tuple(radii), start, stop
        self.offset = max(0, start - max(radii))
        self.values, self._valid = raster.read(self.offset, min(raster.height, stop + max(radii)))
        self.valid = self._valid[start - self.offset : stop - self.offset]

    def rows(self, start, stop):
        """Image rows ``start:stop`` (within the block) as pixel rows.

        Returns
        -------
        ndarray of shape ((stop - start) * width, n_bands * len(radii))
            float32 with spatial steps, else the file's dtype; nodata pixels hold arbitrary values.
        """
        halo = max(self.radii)
        lo = max(0, start - halo - self.offset)
        hi = min(len(self.values), stop + halo - self.offset)
        inner = slice(start - self.offset - lo, stop - self.offset - lo)
        values, valid = self.values[lo:hi], self._valid[lo:hi]
        parts = [values[inner] if r == 0 else neighbourhood_mean(values, valid, r)[inner] for r in self.radii]
        cube = parts[0] if len(parts) == 1 else np.concatenate([p.astype(np.float32) for p in parts], axis=-1)
        return cube.reshape(-1, cube.shape[-1])

    def pixels(self, flat, radii=None):
        """The pixel rows at flat indices (row * width + col, from the block's first row), computed
        for those pixels only, for ``radii`` (default the block's; none larger than its halo)."""
        width = self.values.shape[1]
        r, c = np.divmod(flat, width)
        r = r + (self.start - self.offset)
        parts = [self.values[r, c] if radius == 0 else _mean_at(self.values, self._valid, r, c, radius)
                 for radius in (self.radii if radii is None else radii)]
        return parts[0] if len(parts) == 1 else np.concatenate([p.astype(np.float32) for p in parts], axis=-1)


def radius_columns(radii, wanted, n_bands):
    """Columns of the rows of ``radii`` (as :meth:`Block.rows` lays them out) that hold ``wanted``."""
    return np.concatenate([np.arange(n_bands) + radii.index(r) * n_bands for r in wanted])


def _mean_at(values, valid, r, c, radius):
    """:func:`neighbourhood_mean` at the pixels (r, c) only (gathering their neighbours)."""
    total = np.zeros((len(r), values.shape[2]), dtype=np.float32)
    count = np.zeros(len(r), dtype=np.float32)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            rr, cc = r + dr, c + dc
            inside = (rr >= 0) & (rr < values.shape[0]) & (cc >= 0) & (cc < values.shape[1])
            rr, cc = np.where(inside, rr, 0), np.where(inside, cc, 0)
            weight = inside & valid[rr, cc]
            # Selected, not multiplied by a zero weight: an invalid neighbour may hold NaN.
            total += np.where(weight[:, None], values[rr, cc], 0)
            count += weight
    return total / np.maximum(count, 1e-12)[:, None]


class Sample:
    """Training pixels drawn across a scene.

    Attributes
    ----------
    rows : ndarray of shape (n_sample, n_bands * len(radii)), float32
        As :meth:`Block.rows` gives them.
    positions : ndarray of shape (n_sample,), int64
        Flat pixel index (row * width + col) of each training pixel, in increasing order.
    n_valid : int
        Valid pixels in the strips read: the whole scene's when it is under ``min_valid``.
    """

    def __init__(self, rows, positions, n_valid):
        self.rows, self.positions, self.n_valid = rows, positions, n_valid


def sample_pixels(raster, n_sample, *, radii=(0,), random_state=0, min_valid=1, _all_strips=False):
    """Draw up to ``n_sample`` valid pixels across the whole scene.

    A large scene is not read whole for its sample: a seeded random subset of its strips (full
    rows, from top to bottom of the scene; at least 8 strips, or enough to hold 16 pixels per
    wanted one) is, and when those hold fewer than ``min_valid`` valid pixels, every strip is.
    Every valid pixel read gets a random key from its strip's own seeded generator
    (``(random_state, strip)``), and the ``n_sample`` of smallest key are kept: a uniform sample of
    the valid pixels read, whatever their share of nodata, that depends on the seed and the strips
    only (a scene with fewer valid pixels is used whole).

    Parameters
    ----------
    raster : Raster
    n_sample : int
    radii : sequence of int
        As for :class:`Block`.
    random_state : int
    min_valid : int
        Valid pixels needed (K): fewer in the strips read makes it read them all, so that
        ``n_valid`` is then exact.

    Returns
    -------
    Sample

    Raises
    ------
    KMIError
        When the raster has no valid pixel.
    """
    if n_sample < 1:
        raise KMIError(f"--sample must be at least 1, got {n_sample}")
    strips = raster.strips()
    chosen = (range(len(strips)) if _all_strips
              else _chosen_strips(len(strips), n_sample * _READ_PER_SAMPLE / raster.n_pixels, random_state))
    keys, rows, positions, n_valid = np.zeros(0, np.float32), None, np.zeros(0, np.int64), 0
    for index in chosen:
        start, stop = strips[index]
        block = Block(raster, start, stop, radii)
        picked = np.flatnonzero(block.valid.ravel())
        n_valid += len(picked)
        strip_keys = np.random.default_rng([random_state, index]).random(len(picked), dtype=np.float32)
        if len(keys) >= n_sample:  # only keys below the current n_sample-th can enter the sample
            below = strip_keys < keys.max()
            picked, strip_keys = picked[below], strip_keys[below]
        if len(strip_keys) > n_sample:  # no more than n_sample of one strip can be kept
            first = np.argpartition(strip_keys, n_sample - 1)[:n_sample]
            picked, strip_keys = picked[first], strip_keys[first]
        kept = np.asarray(block.pixels(picked), dtype=np.float32)
        keys = np.concatenate([keys, strip_keys])
        rows = kept if rows is None else np.concatenate([rows, kept])
        positions = np.concatenate([positions, picked + start * raster.width])
        if len(keys) > n_sample:
            keep = np.argpartition(keys, n_sample - 1)[:n_sample]
            keys, rows, positions = keys[keep], rows[keep], positions[keep]
    if n_valid < min_valid and len(chosen) < len(strips):  # too few where we looked: look everywhere
        return sample_pixels(raster, n_sample, radii=radii, random_state=random_state,
                             min_valid=min_valid, _all_strips=True)
    if n_valid == 0:
        raise KMIError(f"{raster.name} has no valid pixel: every pixel is nodata")
    order = np.argsort(positions)
    return Sample(rows[order], positions[order], n_valid)


def _chosen_strips(n_strips, fraction, random_state):
    """Indices of the strips to draw from: a seeded random subset of at least :data:`_MIN_STRIPS`."""
    count = max(_MIN_STRIPS, math.ceil(fraction * n_strips))
    if count >= n_strips:
        return list(range(n_strips))
    chosen = np.random.default_rng([random_state, n_strips]).choice(n_strips, count, replace=False)
    return sorted(chosen.tolist())
