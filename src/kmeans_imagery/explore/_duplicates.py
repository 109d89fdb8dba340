"""Exact and near-duplicate images: a pixel hash and a small perceptual descriptor.

- **Exact duplicates** have the same decoded pixels: equal BLAKE2b digests of the pixel bytes.
- **Near-duplicates** (re-encoded, resized, slightly changed copies) have close *descriptors*:
  the image in gray, resized to 16 x 16 (Lanczos), values in [0, 1]; a low-contrast image
  (standard deviation under 0.15) has its values stretched about their mean towards that
  contrast, at most 5 times, so that dark or faint images are told apart by what they show, not
  all taken for copies because their intensities are close. Two images are near duplicates when
  the root-mean-square difference of their descriptors is at most ``threshold`` (default 0.025,
  i.e. 2.5% of the full intensity range on average). The search is
  exact: descriptors are projected on their top principal axes, where distances can only
  shrink, every pair within the threshold there is found tile by tile, and each candidate is
  checked on the full descriptor.

Pairs become groups in order of the images: an image that is in no group yet starts one with
every later ungrouped image within the threshold of it. So every member lies within the
threshold of its group's first member (its distance, reported), however long a chain of near
pairs runs: a burst of slowly changing frames is not one group.
"""

import hashlib

import numpy as np

from ..datasets.convert import resize_images
from ._neighbours import pairs_within

__all__ = ["DESCRIPTOR_SIDE", "DuplicateGroups", "descriptors", "find_duplicates", "pixel_hashes"]

#: Side of the square gray descriptor.
DESCRIPTOR_SIDE = 16
#: Default RMS descriptor difference (in [0, 1] units) below which two images are near duplicates.
DEFAULT_THRESHOLD = 0.025
#: Principal axes the candidate search runs on.
_SEARCH_DIMS = 32
#: Descriptors of less contrast (standard deviation) are stretched towards it, by at most
#: _CONTRAST / _CONTRAST_FLOOR: on 2,000 MNIST digits (contrast 0.13-0.29) nothing moves, while
#: 30 distinct frames of 0-15 gray levels go from 0.016 apart (one false group) to 0.077.
_CONTRAST = 0.15
_CONTRAST_FLOOR = 0.03


def pixel_hashes(images):
    """A 64-bit BLAKE2b digest of each image's pixels (shape and bytes).

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W[, 3])

    Returns
    -------
    hashes : ndarray of uint64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((3, 4, 4), np.uint8)
    >>> images[2, 0, 0] = 1
    >>> h = pixel_hashes(images)
    >>> h.dtype, bool(h[0] == h[1]), bool(h[0] == h[2])
    (dtype('uint64'), True, False)
    """
    shape = repr(images.shape[1:]).encode()
    return np.array([int.from_bytes(hashlib.blake2b(shape + image.tobytes(), digest_size=8).digest(),
                                    "little") for image in images], dtype=np.uint64)


def descriptors(images):
    """The perceptual descriptor of each image: gray, 16 x 16, in [0, 1], low contrast stretched.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W[, 3])

    Returns
    -------
    ndarray of float16, shape (n, 256)
        float16 keeps 100,000 descriptors in 51 MB; its 3-digit precision is far below the
        threshold.

    Examples
    --------
    >>> import numpy as np
    >>> d = descriptors(np.full((2, 28, 28), 255, np.uint8))
    >>> d.shape, d.dtype, float(d.max())
    ((2, 256), dtype('float16'), 1.0)
    """
    gray = images if images.ndim == 3 else np.round(images.mean(axis=3)).astype(np.uint8)
    small = resize_images(np.ascontiguousarray(gray), (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE))
    values = small.reshape(len(images), -1) / np.float32(255)
    mean = values.mean(axis=1, keepdims=True)
    spread = values.std(axis=1, keepdims=True)
    stretch = np.maximum(1, _CONTRAST / np.maximum(spread, _CONTRAST_FLOOR))
    return (mean + (values - mean) * stretch).astype(np.float16)


class DuplicateGroups:
    """Groups of duplicate images.

    Attributes
    ----------
    group : ndarray of int64, shape (n,)
        Group number of each image (0, 1, ... in order of their first member), -1 when unique.
    distance : ndarray of float32, shape (n,)
        RMS descriptor difference to the group's first member (0 for exact copies); NaN when
        unique.
    exact : ndarray of bool, shape (n,)
        Whether the image has the same pixels as its group's first member.
    pairs : ndarray of int64, shape (m, 2)
        The pairs found (before grouping), ``i < j``: each exact copy with the first image of
        its pixels, and near pairs of images whose pixels differ (among first occurrences:
        k copies of one image are k - 1 pairs, not k (k - 1) / 2).
    n_groups : int
        Number of groups.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    >>> images[3] = images[1]                       # an exact copy
    >>> groups = find_duplicates(pixel_hashes(images), descriptors(images))
    >>> groups.n_groups, groups.group.tolist(), groups.members(0).tolist()
    (1, [-1, 0, -1, 0], [1, 3])
    """

    def __init__(self, group, distance, exact, pairs):
        self.group, self.distance, self.exact, self.pairs = group, distance, exact, pairs

    @property
    def n_groups(self):
        return int(self.group.max()) + 1 if len(self.group) else 0

    def members(self, g):
        """Indices of group ``g``, first member first."""
        return np.flatnonzero(self.group == g)


def find_duplicates(hashes, descs, *, threshold=DEFAULT_THRESHOLD):
    """Group exact and near-duplicate images.

    Parameters
    ----------
    hashes : ndarray of uint64, shape (n,)
        From :func:`pixel_hashes`.
    descs : ndarray, shape (n, 256)
        From :func:`descriptors`.
    threshold : float, default=0.025
        Largest RMS descriptor difference of near duplicates; 0 finds exact duplicates only.

    Returns
    -------
    DuplicateGroups

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, (5, 16, 16), dtype=np.uint8)
    >>> images[4] = np.clip(images[2].astype(int) + 2, 0, 255)  # a slightly brighter copy
    >>> groups = find_duplicates(pixel_hashes(images), descriptors(images))
    >>> groups.group.tolist(), groups.exact.tolist()
    ([-1, -1, 0, -1, 0], [False, False, True, False, False])
    >>> round(float(groups.distance[4]), 3)
    0.008
    """
    n = len(hashes)
    width = descs.shape[1]
    pairs = [_exact_pairs(hashes)]
    # The near search runs on the first image of each pixel content: copies share its
    # descriptor and its group, and 6,000 blank frames would be 18 million pairs (80 s, 2 GB).
    _, first_of, content = np.unique(hashes, return_index=True, return_inverse=True)
    first = np.sort(first_of)
    if threshold > 0 and len(first) > 1:
        distinct = descs[first]
        radius = threshold * np.sqrt(width)
        # Top axes of a sample's covariance; projections are contractions, so no pair is lost.
        # Rows are widened to float32 a chunk at a time: the descriptors stay float16.
        sample = distinct[:: max(1, len(first) // 20000)].astype(np.float32)
        mean = sample.mean(axis=0)
        _, vecs = np.linalg.eigh((sample - mean).T @ (sample - mean))
        axes = vecs[:, -_SEARCH_DIMS:].astype(np.float32)
        projected = np.concatenate([(distinct[s:s + 8192].astype(np.float32) - mean) @ axes
                                    for s in range(0, len(first), 8192)])
        i, j, _ = pairs_within(projected, radius,
                               keep=lambda i, j: _rms(distinct, i, j) <= threshold)
        pairs.append(np.column_stack([first[i], first[j]]))
    pairs = np.unique(np.concatenate(pairs), axis=0)  # sorted by first member
    group = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan, dtype=np.float32)
    exact = np.zeros(n, dtype=bool)
    # Each group is an image and every later, ungrouped image within the threshold of it, in
    # order: every member is near its group's first, however long a chain of near pairs runs
    # (connected components would join a whole burst of slowly changing frames).
    bounds = np.searchsorted(pairs[:, 0], np.arange(n + 1)) if len(pairs) else np.zeros(n + 1, int)
    n_groups = 0
    for head in np.flatnonzero(np.diff(bounds)):
        if group[head] >= 0:
            continue
        members = pairs[bounds[head]:bounds[head + 1], 1]
        members = members[group[members] < 0]
        if len(members):
            group[head] = group[members] = n_groups
            n_groups += 1
    # Copies of an image another head took are in no pair with that head: they join its group.
    group = group[first_of[content.ravel()]]
    linked = np.flatnonzero(group >= 0)
    if len(linked):
        heads = np.flatnonzero(np.r_[True, np.diff(np.sort(group[linked])) > 0])
        head_of = linked[np.argsort(group[linked], kind="stable")][heads]
        distance[linked] = _rms(descs, linked, head_of[group[linked]])
        exact[linked] = hashes[linked] == hashes[head_of[group[linked]]]
    return DuplicateGroups(group, distance, exact, pairs)


def _rms(descs, i, j):
    """Root-mean-square difference of descriptors ``i`` and ``j`` (pairwise), in float32."""
    diff = descs[i].astype(np.float32) - descs[j].astype(np.float32)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff) / descs.shape[1])


def _exact_pairs(hashes):
    """Pairs (first, other) of equal hashes: each copy linked to its first occurrence."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    starts = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
    head = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    copies = ~starts
    return np.column_stack([head[copies], order[copies]]).astype(np.int64)
