"""Exact nearest-neighbour searches in tiles, so that no n x n distance matrix is ever held."""

import numpy as np

__all__ = ["pairs_within", "top_k"]

#: Rows per tile side: a tile of squared distances is 2048 x 2048 float32 (16 MiB).
_TILE = 2048


def _sq_norms(rows):
    return np.einsum("ij,ij->i", rows, rows)


def pairs_within(rows, radius, *, keep=None, tile=_TILE):
    """Every pair of rows closer than ``radius`` (Euclidean), each pair once.

    Parameters
    ----------
    rows : ndarray of shape (n, d), float32
    radius : float
    keep : callable or None
        ``keep(i, j) -> bool array``: a further test applied tile by tile, so that candidates
        never pile up beyond one tile's worth.
    tile : int
        Rows per tile side.

    Returns
    -------
    i, j : ndarray of int64, shape (m,)
        Row indices with ``i < j``.
    d : ndarray of float32, shape (m,)
        Their distances.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    norms = _sq_norms(rows)
    found_i, found_j, found_d = [], [], []
    limit = np.float32(radius) ** 2
    for s in range(0, len(rows), tile):
        a = rows[s:s + tile]
        for t in range(s, len(rows), tile):
            sq = norms[s:s + tile, None] + norms[None, t:t + tile] - 2 * (a @ rows[t:t + tile].T)
            ii, jj = np.nonzero(sq <= limit)
            upper = ii + s < jj + t
            ii, jj = ii[upper], jj[upper]
            if keep is not None:
                kept = keep(ii + s, jj + t)
                ii, jj = ii[kept], jj[kept]
            found_i.append(ii + s)
            found_j.append(jj + t)
            found_d.append(np.sqrt(np.maximum(sq[ii, jj], 0)))
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64),
            np.concatenate(found_d).astype(np.float32))


def top_k(queries, rows, k, *, offset=0, best=None):
    """The ``k`` nearest rows to each query, merged with an earlier result.

    Used over a stream: call once per block of ``rows``, passing the previous result as
    ``best`` and the block's position as ``offset``.

    Parameters
    ----------
    queries : ndarray of shape (q, d), float32
    rows : ndarray of shape (m, d), float32
    k : int
    offset : int
        Index of ``rows[0]`` in the caller's numbering.
    best : (distances, indices) or None
        Earlier ``(q, k')`` results to merge with.

    Returns
    -------
    distances : ndarray of shape (q, min(k, total)), float32, ascending
    indices : ndarray of shape (q, min(k, total)), int64, in the caller's numbering
    """
    # norms + norms - 2 * products, in place (doubling is exact: the same numbers).
    sq = _sq_norms(queries)[:, None] + _sq_norms(rows)[None, :]
    products = queries @ rows.T
    products *= 2
    sq -= products
    del products
    np.maximum(sq, 0, out=sq)
    # The square root is monotonic: select on squares, and take the roots of the kept only.
    keep = min(k, sq.shape[1])
    part = np.argpartition(sq, keep - 1, axis=1)[:, :keep]
    dist = np.sqrt(np.take_along_axis(sq, part, axis=1)).astype(np.float32)
    index = part + np.int64(offset)
    if best is not None:
        dist = np.hstack([best[0], dist])
        index = np.hstack([best[1], index])
        keep = min(k, dist.shape[1])
        part = np.argpartition(dist, keep - 1, axis=1)[:, :keep]
        dist = np.take_along_axis(dist, part, axis=1)
        index = np.take_along_axis(index, part, axis=1)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(index, order, axis=1)
