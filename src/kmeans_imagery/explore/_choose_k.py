"""Choosing the number of clusters K on a sample: the elbow of the within-cluster sum of squares.

The criterion: ``W(K)``, the within-cluster sum of squared distances of the best partition into K
groups, falls as K grows, fast while K splits real groups and slowly once it only cuts groups
apart. The pick is the *elbow* by the Kneedle rule (Satopaa et al., 2011): with K and ``W(K)``
both rescaled to [0, 1], the K of the range whose point lies farthest below the straight line
joining the two ends of the curve. The curve starts one K below the range (K=1 for the default
2-50): the drop into the range's first K is what lets that K be the elbow; a curve starting at
it has it on the chord, so two obvious groups would never give K=2.

``W(K)`` for every K comes from one Ward hierarchical clustering of a sample (``sample_size``
rows, at most 50 principal components): each Ward merge adds exactly its height squared over two
to the sum of squares, so the curve for K = 2..50 costs one O(n^2) tree instead of 49 K-means
fits. Ward minimises the same quantity as K-means, greedily, so its curve has the same shape as
K-means' and the elbow lands at the same K.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import KMIError, is_whole_number

__all__ = ["KChoice", "choose_k", "plot_k_choice"]

#: Principal components kept for the Ward tree: distances in fewer dimensions, same elbow.
_TREE_DIMS = 50


@dataclass
class KChoice:
    """The result of :func:`choose_k`.

    Attributes
    ----------
    k : int
        The chosen number of clusters.
    ks : ndarray of int, shape (m,)
        The K tried.
    wss : ndarray of float, shape (m,)
        Within-cluster sum of squares at each K (on the sample).
    gap : ndarray of float, shape (m,)
        Distance of each rescaled point below the chord; ``k`` is where it is largest.
    n_sample : int
        Rows the curve was computed on.
    reason : str
        One sentence saying why ``k`` was picked.
    start_wss : float
        The sum of squares one K below the range (:attr:`start_k`), where the curve and its
        chord start.

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.repeat(np.eye(5), 20, axis=0) + np.random.default_rng(0).normal(0, .05, (100, 5))
    >>> choice = choose_k(rows, (2, 12), random_state=0)
    >>> choice.k, choice.ks.shape, choice.to_json()["criterion"]
    (5, (11,), 'elbow (Kneedle) of the within-cluster sum of squares')
    """

    k: int
    ks: np.ndarray
    wss: np.ndarray
    gap: np.ndarray
    n_sample: int
    reason: str
    start_wss: float

    @property
    def start_k(self):
        """The K one below the range, where the curve and its chord start."""
        return int(self.ks[0]) - 1

    def to_json(self):
        """The choice as JSON-able data (for results.json)."""
        return {"k": self.k, "criterion": "elbow (Kneedle) of the within-cluster sum of squares",
                "ks": self.ks.tolist(), "wss": [float(v) for v in self.wss],
                "start": {"k": self.start_k, "wss": self.start_wss},
                "n_sample": self.n_sample, "reason": self.reason}


def k_bounds(k_range):
    """Validate ``(k_min, k_max)``: two integers, at least three values of K >= 2."""
    try:
        k_min, k_max = k_range
    except (TypeError, ValueError):
        k_min = k_max = None
    # Whole numbers only: int() would read (2.7, 10) as 2-10 without a word.
    if not all(is_whole_number(v) for v in (k_min, k_max)):
        raise KMIError(f"k_range must be two integers (min, max), got {k_range!r}")
    k_min, k_max = int(k_min), int(k_max)
    if k_min < 2 or k_max - k_min < 2:
        raise KMIError(f"k_range must span at least 3 values of K >= 2, got {k_min}-{k_max}")
    return k_min, k_max


def check_k_range(k_range, n_rows):
    """Validate ``(k_min, k_max)`` and clip ``k_max`` to ``n_rows - 1``."""
    k_min, k_max = k_bounds(k_range)
    if n_rows - 1 - k_min < 2:
        raise KMIError(f"{_plural(n_rows, 'image')} {'is' if n_rows == 1 else 'are'} too few "
                       f"to choose K over k_range {k_min}-{k_max}: "
                       f"that takes at least {k_min + 3} (three values of K below their number); "
                       f"give k=N instead")
    return k_min, min(k_max, n_rows - 1)


def choose_k(rows, k_range=(2, 50), *, sample_size=2000, random_state=None):
    """Pick K by the elbow of the within-cluster sum of squares, on a sample.

    Parameters
    ----------
    rows : ndarray of shape (n, d), float
        Flattened images scaled to [0, 1], or their features.
    k_range : (int, int), default=(2, 50)
        Smallest and largest K to consider (inclusive).
    sample_size : int, default=2000
        Rows the curve is computed on (all rows when there are fewer).
    random_state : int or None
        Seed of the sample.

    Returns
    -------
    KChoice

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centres = [(0, 0), (10, 0), (0, 10), (10, 10)]
    >>> rows = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres])
    >>> choice = choose_k(rows, (2, 10), random_state=0)
    >>> choice.k
    4
    >>> print(choice.reason[:42])
    K=4 is the elbow of the within-cluster sum
    """
    from scipy.cluster.hierarchy import ClusterWarning, linkage

    rows = np.asarray(rows, dtype=np.float64)
    k_min, k_max = check_k_range(k_range, len(rows))
    rng = np.random.default_rng(random_state)
    if len(rows) > sample_size:
        rows = rows[np.sort(rng.choice(len(rows), sample_size, replace=False))]
    centred = rows - rows.mean(axis=0)
    if centred.shape[1] > _TREE_DIMS:
        from sklearn.utils.extmath import randomized_svd
        from threadpoolctl import threadpool_limits

        # The top axes by a randomised SVD, on one BLAS thread: for a product this small, BLAS
        # threads cost more than they save (a full SVD with them took 40 s on a busy 2-core
        # machine, this 0.5 s). The sum of squares outside the axes is the same for every K.
        with threadpool_limits(1, user_api="blas"):
            _, _, vt = randomized_svd(centred.astype(np.float32), _TREE_DIMS,
                                      random_state=random_state)
        centred = centred @ vt.T.astype(np.float64)
    with warnings.catch_warnings():
        # Rows all alike look to scipy like a square distance matrix; these are observations.
        warnings.simplefilter("ignore", ClusterWarning)
        heights = linkage(centred, method="ward")[:, 2]
    # Merge i (of n - 1) takes the partition from n - i to n - i - 1 groups and adds h^2 / 2.
    added = np.cumsum(heights**2 / 2)
    n = len(centred)
    start_k = k_min - 1
    curve_ks = np.arange(start_k, k_max + 1)
    curve = added[n - curve_ks - 1]
    ks, wss = curve_ks[1:], curve[1:]
    x = (ks - start_k) / (k_max - start_k)
    y = (wss - curve.min()) / max(curve.max() - curve.min(), np.finfo(float).tiny)
    gap = (1 - x) - y
    if not wss[0] > 0:
        # At most k_min distinct rows: no K of the range lowers the sum of squares, no elbow.
        distinct = len(np.unique(centred, axis=0))
        k = min(k_min, distinct)
        return KChoice(k, ks, wss, gap, n,
                       f"K={k}: the {n} sampled images have {'only ' * (distinct == 1)}"
                       f"{_plural(distinct, 'distinct feature vector')}, so no larger K lowers "
                       f"the within-cluster sum of squares", float(curve[0]))
    best = int(np.argmax(gap))
    k = int(ks[best])
    drop_before = 1 - wss[best] / curve[0]
    reason = (f"K={k} is the elbow of the within-cluster sum of squares over K={k_min}-{k_max} "
              f"(on {n} sampled images): going from K={start_k} to K={k} removes "
              f"{drop_before:.0%} of the sum of squares, and each K beyond it removes less than "
              f"the average over K={start_k}-{k_max}")
    return KChoice(k, ks, wss, gap, n, reason, float(curve[0]))


def _plural(n, noun):
    return f"{n:,} {noun}{'s' * (n != 1)}"


def plot_k_choice(choice, ax=None):
    """Draw the criterion against K with the pick marked.

    Parameters
    ----------
    choice : KChoice
    ax : matplotlib Axes or None

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.repeat(np.eye(3), 10, axis=0) + np.random.default_rng(0).normal(0, .05, (30, 3))
    >>> ax = plot_k_choice(choose_k(rows, (2, 8), random_state=0))
    >>> ax.get_xlabel(), ax.get_title()
    ('K', 'choosing K: elbow of the sum of squares')
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(6, 3.5)).add_subplot()
    ax.plot(choice.ks, choice.wss, marker=".", color="C0", label="within-cluster sum of squares")
    ax.plot([choice.start_k, choice.ks[0]], [choice.start_wss, choice.wss[0]], color="C0", ls=":",
            marker="o", mfc="none", label=f"from K={choice.start_k}")
    ax.plot([choice.start_k, choice.ks[-1]], [choice.start_wss, choice.wss[-1]], color="0.6",
            ls="--", label="chord")
    ax.axvline(choice.k, color="C3", lw=1)
    # The pick may lie below the range (fewer distinct images than its smallest K): there the
    # sum of squares is 0.
    at = dict(zip([choice.start_k, *choice.ks.tolist()], [choice.start_wss, *choice.wss],
                  strict=True))
    ax.annotate(f"K={choice.k}", (choice.k, at.get(choice.k, 0.0)),
                textcoords="offset points", xytext=(6, 6), color="C3")
    ax.set_xlabel("K")
    ax.set_ylabel("sum of squares (sample)")
    ax.set_title("choosing K: elbow of the sum of squares")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax
