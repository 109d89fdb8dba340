"""Pixels as rows: a strip of a raster as feature-ready rows, and training pixels sampled across a scene.

The rows are what a pixel feature pipeline (:func:`kmeans_imagery.features.make_pixel_features`)
reads: the band values, then for each radius of its ``nbr`` steps their neighbourhood mean, which
needs the strip around the pixel and its nodata mask and so is computed here.
"""

import math

import numpy as np

from ..errors import KMIError

__all__ = ["DEFAULT_SAMPLE", "Block", "Sample", "neighbourhood_mean", "radius_columns", "read_blocks",
           "sample_pixels"]

#: Training pixels drawn by default: K-means centroids of a few dozen classes in a few hundred bands
#: settle long before that (the HSI scenes of the benchmarks, 7,000 to 10,000 pixels, are used whole).
DEFAULT_SAMPLE = 100_000
#: Pixels read per wanted training pixel, and the fewest strips read, when a scene is sampled from a
#: subset of its strips (each strip of a wide scene is millions of pixels: reading them is most of
#: the sampling's time).
_READ_PER_SAMPLE = 16
_MIN_STRIPS = 8


def neighbourhood_mean(planes, valid, radius, out=None):
    """Mean of each band over each pixel's (2r+1)^2 neighbourhood, counting valid pixels only.

    Box sums of slices added together (rows, then columns), divided by the number of valid
    neighbours; where whole rows are valid or not (no nodata, or nodata rows only) that number is
    a product of per-row and per-column counts, and no mask is filtered.

    Parameters
    ----------
    planes : ndarray of shape (bands, rows + 2 * radius, cols), float32
        Band planes with ``radius`` halo rows above and below, 0 wherever ``valid`` is False
        (invalid pixels, rows beyond the image).
    valid : ndarray of bool, shape (rows + 2 * radius, cols)
    radius : int
    out : ndarray of shape (bands, rows, cols), float32, optional

    Returns
    -------
    ndarray of shape (bands, rows, cols), float32
        The means of the inner rows; 0 where no neighbour is valid (an invalid pixel).
    """
    n_rows = planes.shape[1] - 2 * radius
    if out is None:
        out = np.empty((planes.shape[0], n_rows, planes.shape[2]), dtype=np.float32)
    full_rows = valid.all(axis=1)
    if (full_rows | ~valid.any(axis=1)).all():
        row_count = np.empty((1, n_rows, 1), dtype=np.float32)
        _box_sum(full_rows.astype(np.float32)[None, :, None], radius, row_count, 0)
        col_count = np.empty((1, 1, planes.shape[2]), dtype=np.float32)
        _box_sum(np.ones((1, 1, planes.shape[2]), dtype=np.float32), 0, col_count, radius)
        count = row_count * col_count
    else:
        count = np.empty((1, n_rows, planes.shape[2]), dtype=np.float32)
        _box_sum(valid.astype(np.float32)[None], radius, count)
    # Multiplied by the reciprocal, computed once per pixel rather than once per band.
    reciprocal = 1 / np.maximum(count, 1)
    # Band by band: the sums of one band stay in the core's cache between the passes.
    scratch = np.empty((1, n_rows, planes.shape[2]), dtype=np.float32)
    for band in range(len(planes)):
        _box_sum(planes[band : band + 1], radius, out[band : band + 1], scratch=scratch)
        out[band : band + 1] *= reciprocal
    return out


def _box_sum(planes, radius, out, col_radius=None, scratch=None):
    """Sums over ``2 * radius + 1`` rows (the rows of ``planes`` beyond ``out``'s are its halo) and
    ``2 * col_radius + 1`` columns (zero beyond the edges) of (bands, rows, cols) planes; ``scratch``
    is an array like ``out`` for the row sums."""
    col_radius = radius if col_radius is None else col_radius
    n_rows = out.shape[1]
    rows = out if col_radius == 0 else np.empty_like(out) if scratch is None else scratch
    if radius == 0:
        rows[...] = planes
    else:
        np.add(planes[:, :n_rows], planes[:, 1 : n_rows + 1], out=rows)
        for d in range(2, 2 * radius + 1):
            rows += planes[:, d : d + n_rows]
    if col_radius:
        np.add(rows[..., :-1], rows[..., 1:], out=out[..., 1:])
        out[..., 0] = rows[..., 0]
        out[..., :-1] += rows[..., 1:]
        for d in range(2, col_radius + 1):
            out[..., :-d] += rows[..., d:]
            out[..., d:] += rows[..., :-d]
    return out


class Block:
    """Rows ``start:stop`` of a raster with the halo rows its spatial steps need, as band planes.

    Parameters
    ----------
    raster : Raster
    start, stop : int
    radii : sequence of int
        0 for the band values themselves, r > 0 for their mean over (2r+1)^2 neighbourhoods; the
        rows are read with max(radii) rows above and below so that neighbourhoods cross strip edges.
    read : bool
        False leaves the buffers empty for :func:`read_blocks` to fill.
    reuse : Block, optional
        A block done with, whose buffers this one takes when they are large enough (fresh memory
        costs the kernel a page fault per 4 KiB: on a large scene, seconds).

    Attributes
    ----------
    planes : ndarray of shape (n_bands, rows, width)
        With the halo, in the file's dtype.
    values : ndarray of shape (rows, width, n_bands)
        The same, pixel-interleaved (a view).
    valid : ndarray of bool, shape (stop - start, width)
        Without the halo.
    """

    def __init__(self, raster, start, stop, radii=(0,), *, read=True, reuse=None):
        self.radii, self.start, self.stop = tuple(radii), start, stop
        self.halo = max(self.radii)
        self.offset = max(0, start - self.halo)
        end = min(raster.height, stop + self.halo)
        shape = (raster.n_bands, end - self.offset, raster.width)
        old = None if reuse is None else reuse._buffers[0]
        if old is not None and (old.dtype, old.shape[::2]) == (raster.dtype, shape[::2]) \
                and old.shape[1] >= shape[1]:
            self._buffers, self._scratch = reuse._buffers, reuse._scratch
        else:
            self._buffers = (np.empty(shape, raster.dtype), np.empty(shape[1:], bool))
            self._scratch = None
        self.planes, self._valid = self._buffers[0][:, : shape[1]], self._buffers[1][: shape[1]]
        self.values = np.moveaxis(self.planes, 0, -1)
        self.valid = self._valid[start - self.offset : stop - self.offset]
        if read:
            self.read(raster, self.offset, end)

    def read(self, raster, start, stop):
        """Read image rows ``start:stop`` of the raster into the block."""
        rows = slice(start - self.offset, stop - self.offset)
        self._valid[rows] = raster.read(start, stop, out=self.planes[:, rows])[1]

    def planes_of(self, start, stop, values, means):
        """The band planes of image rows ``start:stop`` (within the block), and their means.

        Parameters
        ----------
        start, stop : int
        values : ndarray of shape (n_bands, stop - start + 2 * halo, width), float32
            Filled with the band values of rows ``start - halo:stop + halo``, 0 at nodata pixels
            and beyond the image (``halo`` = max(radii)).
        means : sequence of ndarray of shape (n_bands, stop - start, width), float32
            One per radius > 0 (None to skip one), filled with the neighbourhood means; at nodata
            pixels, their valid neighbours' mean.

        Returns
        -------
        ndarray of bool, shape (stop - start, width)
            Valid pixels.
        """
        halo, n_rows = self.halo, stop - start
        if self._scratch is None or len(self._scratch) < n_rows + 2 * halo:
            self._scratch = np.empty((n_rows + 2 * halo, self.planes.shape[2]), bool)
        valid = self._scratch[: n_rows + 2 * halo]
        # Rows beyond the image (only at its top and bottom: the block holds the halo) count as
        # invalid pixels holding 0.
        lo, hi = start - halo - self.offset, stop + halo - self.offset
        first, last = max(lo, 0) - lo, min(hi, len(self._valid)) - lo
        values[:, :first], values[:, last:], valid[:first], valid[last:] = 0, 0, False, False
        np.copyto(values[:, first:last], self.planes[:, lo + first : lo + last])
        valid[first:last] = self._valid[lo + first : lo + last]
        if not valid[first:last].all():  # invalid pixels may hold anything, NaN included
            np.copyto(values, 0, where=~valid)
        for radius, target in zip(self.radii[1:], means, strict=True):
            if target is not None:
                inner = slice(halo - radius, halo + n_rows + radius)
                neighbourhood_mean(values[:, inner], valid[inner], radius, out=target)
        return valid[halo : halo + n_rows]

    def rows(self, start, stop):
        """Image rows ``start:stop`` (within the block) as pixel rows.

        Returns
        -------
        ndarray of shape ((stop - start) * width, n_bands * len(radii)), float32
            Nodata pixels hold 0 or their valid neighbours' mean.
        """
        n_bands, n_rows, width = len(self.planes), stop - start, self.planes.shape[2]
        cube = np.empty((len(self.radii) * n_bands, n_rows, width), dtype=np.float32)
        values = np.empty((n_bands, n_rows + 2 * self.halo, width), dtype=np.float32)
        self.planes_of(start, stop, values,
                       [cube[i * n_bands : (i + 1) * n_bands] for i in range(1, len(self.radii))])
        cube[:n_bands] = values[:, self.halo : self.halo + n_rows]
        return cube.reshape(len(cube), -1).T

    def pixels(self, flat, radii=None):
        """The pixel rows at flat indices (row * width + col, from the block's first row), computed
        for those pixels only, for ``radii`` (default the block's; none larger than its halo)."""
        width = self.values.shape[1]
        r, c = np.divmod(flat, width)
        r = r + (self.start - self.offset)
        planes = self.planes.reshape(len(self.planes), -1)  # gathered from band planes, by flat index
        parts = [np.take(planes, r * width + c, axis=1).T if radius == 0
                 else _mean_at(planes, self._valid, r, c, radius)
                 for radius in (self.radii if radii is None else radii)]
        return parts[0] if len(parts) == 1 else np.concatenate([p.astype(np.float32) for p in parts], axis=-1)


def read_blocks(raster, bounds, radii, reuse=None):
    """The :class:`Block` of each strip of ``bounds``, in order, reading every row once.

    A strip's halo rows are copied from the strip beside it when that one is in ``bounds`` too
    (on a tiled file, reading a strip with its halo decodes a whole row of tiles more on each side).
    Each block is yielded once the next one is read.

    Parameters
    ----------
    raster : Raster
    bounds : sequence of (int, int)
        Row ranges in increasing order.
    radii : sequence of int
    reuse : list of Block, optional
        Where the caller puts the blocks it is done with: their buffers are read into again.

    Yields
    ------
    Block
    """
    halo = max(radii)
    previous = None
    for index, (start, stop) in enumerate(bounds):
        block = Block(raster, start, stop, radii, read=False, reuse=reuse.pop() if reuse else None)
        after = bounds[index + 1] if index + 1 < len(bounds) else None
        above = previous is not None and _adjacent((previous.start, previous.stop), (start, stop), halo)
        below = after is not None and _adjacent((start, stop), after, halo)
        block.read(raster, start if above else block.offset,
                   stop if below else block.offset + len(block._valid))
        if above:
            block.planes[:, :halo] = previous.planes[:, -2 * halo : -halo]
            block._valid[:halo] = previous._valid[-2 * halo : -halo]
            previous.planes[:, -halo:] = block.planes[:, halo : 2 * halo]
            previous._valid[-halo:] = block._valid[halo : 2 * halo]
        if previous is not None:
            yield previous
        previous = block
    if previous is not None:
        yield previous


def radius_columns(radii, wanted, n_bands):
    """Columns of the rows of ``radii`` (as :meth:`Block.rows` lays them out) that hold ``wanted``."""
    return np.concatenate([np.arange(n_bands) + radii.index(r) * n_bands for r in wanted])


def _adjacent(upper, lower, halo):
    """Whether the strip ``lower`` starts where ``upper`` stops and each holds the other's halo."""
    return upper[1] == lower[0] and 0 < halo <= min(upper[1] - upper[0], lower[1] - lower[0])


def _mean_at(planes, valid, r, c, radius):
    """:func:`neighbourhood_mean` at the pixels (r, c) only (gathering their neighbours from the
    (bands, rows * cols) ``planes``); (pixels, bands)."""
    n_rows, width = valid.shape
    flat_valid = valid.reshape(-1)
    total = np.zeros((len(planes), len(r)), dtype=np.float32)
    count = np.zeros(len(r), dtype=np.float32)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            rr, cc = r + dr, c + dc
            inside = (rr >= 0) & (rr < n_rows) & (cc >= 0) & (cc < width)
            index = np.where(inside, rr * width + cc, 0)
            weight = inside & flat_valid[index]
            # Selected, not multiplied by a zero weight: an invalid neighbour may hold NaN.
            total += np.where(weight, np.take(planes, index, axis=1), 0)
            count += weight
    return (total / np.maximum(count, 1e-12)).T


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
    done = []  # blocks sampled: the next strips are read into their buffers
    for index, block in zip(chosen, read_blocks(raster, [strips[i] for i in chosen], radii, reuse=done),
                            strict=True):
        start = block.start
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
        done.append(block)
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
