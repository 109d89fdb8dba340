"""Feature steps for pixels: what each pixel's spectrum becomes before K-means.

A pipeline is written as steps joined with ``+``, applied left to right; ``|`` puts pipelines side by
side (their features are concatenated). Steps:

``raw``
    The band values as they are.
``std``
    Per-band standardisation: zero mean and unit variance on the training pixels, so that bright,
    high-variance bands do not outweigh the others.
``l2``
    Unit-length spectra: each pixel divided by its norm, so that K-means compares spectral shapes
    (the spectral angle) and not brightness (shade, slope, mixing with dark water).
``pca[:n]``
    The top ``n`` principal components of the training pixels (default 10, at most the width).
``nbr[:r]``
    The spatial step: each band replaced by its mean over the pixel's (2r+1) x (2r+1)
    neighbourhood (valid pixels only; default r = 1). It acts on the band values, so it can only be
    the first step of a pipeline; ``raw|nbr:1`` puts a pixel's spectrum and its neighbourhood's side
    by side.

The fitted state (means, scales, components) is plain arrays, saved in the model file.
"""

import numpy as np

from ..errors import KMIError

__all__ = ["DEFAULT_FEATURES", "PixelFeatures", "neighbourhood_mean"]

#: The default pipeline, chosen with ``benchmarks/bench_segment_accuracy.py`` (see the README): the
#: standardised spectral shape (unit-length spectra) beside the standardised mean spectrum of the
#: pixel's 3 x 3 neighbourhood. The only one measured that beats plain K-means on all three scenes.
DEFAULT_FEATURES = "l2+std|nbr:1+std"

_DEFAULT_PCA = 10
_DEFAULT_RADIUS = 1


def _parse_step(text):
    name, _, arg = text.strip().partition(":")
    if name in ("raw", "std", "l2") and not arg:
        return (name, None)
    if name in ("pca", "nbr"):
        try:
            value = int(arg) if arg else (_DEFAULT_PCA if name == "pca" else _DEFAULT_RADIUS)
        except ValueError:
            value = -1
        if value >= (1 if name == "pca" else 0):
            return (name, value)
    raise KMIError(f"--features: unknown step {text.strip()!r}; steps are raw, std, l2, pca[:n], nbr[:r] "
                   "joined with + and |")


def parse_features(spec):
    """``"std+pca:10|nbr:1+l2"`` -> ``[[("std", None), ("pca", 10)], [("nbr", 1), ("l2", None)]]``."""
    branches = []
    for part in str(spec).split("|"):
        steps = [_parse_step(step) for step in part.split("+")]
        if any(name == "nbr" for name, _ in steps[1:]):
            raise KMIError(f"--features: nbr acts on the band values and must come first in {part!r}")
        branches.append(steps)
    return branches


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
    total = uniform_filter(np.where(valid[..., None], values, 0).astype(np.float32),
                           size=(*size, 1), mode="constant")
    return total / np.maximum(weight, 1e-12)[..., None]


class PixelFeatures:
    """A pixel feature pipeline: parse, fit on training pixels, transform any pixels.

    The rows it takes are the pixel's band values followed by, for each radius in :attr:`radii`
    (beyond 0), its neighbourhood mean (see :func:`neighbourhood_mean`): the reader builds them,
    this class picks the columns each pipeline starts from.

    Parameters
    ----------
    spec : str
        The pipeline (see the module docstring).
    """

    def __init__(self, spec=DEFAULT_FEATURES):
        self.spec = spec
        self.branches = parse_features(spec)
        self.radii = sorted({0} | {steps[0][1] for steps in self.branches if steps[0][0] == "nbr"})
        self.state_ = None

    def fit(self, rows):
        """Fit the steps' state on training rows.

        Parameters
        ----------
        rows : ndarray of shape (n_pixels, n_bands * len(radii))

        Returns
        -------
        self
        """
        self.n_bands_ = rows.shape[1] // len(self.radii)
        self.state_ = []
        for steps in self.branches:
            x = self._input(rows, steps)
            branch_state = []
            for name, arg in steps:
                state = _fit_step(name, arg, x)
                branch_state.append(state)
                x = _apply_step(name, state, x)
            self.state_.append(branch_state)
        return self._compile()

    def _compile(self):
        """Each pipeline as few operations as possible: runs of affine steps become one matrix product.

        ``std`` then ``pca`` is ``x @ A + b`` for one (bands x components) ``A``: classifying a scene
        then costs one small GEMM per pipeline (and a norm for ``l2``) instead of a pass per step.
        """
        self.n_features_ = sum(_width(b, self.n_bands_) for b in self.state_)
        self._plan = []
        for steps, branch_state in zip(self.branches, self.state_, strict=True):
            ops, affine = [], None
            for (name, _), state in zip(steps, branch_state, strict=True):
                if name in ("std", "pca"):
                    A, b = _affine(name, state)
                    affine = (A, b) if affine is None else (affine[0] @ A, affine[1] @ A + b)
                elif name == "l2":
                    if affine is not None:
                        ops.append(_affine_op(*affine))
                        affine = None
                    ops.append(("l2",))
            if affine is not None:
                ops.append(_affine_op(*affine))
            self._plan.append(ops)
        return self

    def linear_form(self):
        """Each pipeline as ``(input columns, unit_length, A, b)``: features ``g(x) @ A + b``.

        ``g`` is the identity or the division by the norm (``l2`` as the first operation). None when
        some pipeline is not of that form (``l2`` after an affine step): then only
        :meth:`transform` applies it.
        """
        forms = []
        for steps, ops in zip(self.branches, self._plan, strict=True):
            unit = bool(ops) and ops[0][0] == "l2"
            rest = ops[1:] if unit else ops
            if any(op[0] == "l2" for op in rest):
                return None
            first = self.radii.index(steps[0][1] if steps[0][0] == "nbr" else 0) * self.n_bands_
            columns = slice(first, first + self.n_bands_)
            if rest:
                A, b = rest[0][1].astype(np.float64), rest[0][2].astype(np.float64)
            else:
                A, b = np.eye(self.n_bands_), np.zeros(self.n_bands_)
            forms.append((columns, unit, A, b))
        return forms

    def transform(self, rows):
        """Features of pixel rows, float32 of shape (n_pixels, ``n_features_``)."""
        parts = []
        for steps, ops in zip(self.branches, self._plan, strict=True):
            x = self._input(rows, steps)
            for op in ops:
                if op[0] == "l2":
                    x = _apply_step("l2", None, x)
                else:
                    x = x @ op[1]
                    x += op[2]
            parts.append(x)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _input(self, rows, steps):
        radius = steps[0][1] if steps[0][0] == "nbr" else 0
        i = self.radii.index(radius)
        b = rows.shape[1] // len(self.radii)
        return np.asarray(rows[:, i * b : (i + 1) * b], dtype=np.float32)

    def get_state(self):
        """``(metadata, arrays)`` for the model file: JSON-able and plain arrays."""
        arrays = {}
        for i, branch_state in enumerate(self.state_):
            for j, state in enumerate(branch_state):
                for key, value in state.items():
                    arrays[f"{i}/{j}/{key}"] = value
        return {"spec": self.spec, "n_bands": self.n_bands_}, arrays

    @classmethod
    def from_state(cls, metadata, arrays):
        """Rebuild a fitted pipeline from :meth:`get_state`'s output."""
        features = cls(metadata["spec"])
        features.n_bands_ = int(metadata["n_bands"])
        features.state_ = []
        for i, steps in enumerate(features.branches):
            features.state_.append([
                {key.rsplit("/", 1)[1]: value for key, value in arrays.items()
                 if key.startswith(f"{i}/{j}/")}
                for j in range(len(steps))
            ])
        for steps, branch_state in zip(features.branches, features.state_, strict=True):
            for (name, _), state in zip(steps, branch_state, strict=True):
                if set(state) != set(_STATE_KEYS[name]):
                    raise KMIError("the model file's pixel features are incomplete (corrupt model)")
        return features._compile()


_STATE_KEYS = {"raw": (), "nbr": (), "l2": (), "std": ("mean", "scale"), "pca": ("mean", "components")}


def _fit_step(name, arg, x):
    if name == "std":
        std = x.std(axis=0, dtype=np.float64)
        # A constant band carries no information: leave it at 0 rather than divide by 0.
        return {"mean": x.mean(axis=0, dtype=np.float64).astype(np.float32),
                "scale": np.where(std > 0, 1 / np.where(std > 0, std, 1), 0).astype(np.float32)}
    if name == "pca":
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        # Eigenvectors of the (bands x bands) covariance: cheaper than an SVD of the pixels.
        values, vectors = np.linalg.eigh(centred.T @ centred)
        vt = vectors[:, np.argsort(values)[::-1][: min(arg, x.shape[1])]].T
        # Fix each axis' sign (largest loading positive) so that a fit is reproducible.
        vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]
        return {"mean": mean.astype(np.float32), "components": vt.T.astype(np.float32)}
    return {}


def _affine(name, state):
    """A step as ``x @ A + b``, in float64."""
    mean = state["mean"].astype(np.float64)
    if name == "std":
        scale = state["scale"].astype(np.float64)
        return np.diag(scale), -mean * scale
    components = state["components"].astype(np.float64)
    return components, -mean @ components


def _affine_op(A, b):
    return ("affine", np.ascontiguousarray(A, dtype=np.float32), b.astype(np.float32))


def _apply_step(name, state, x):
    if name == "std":
        return (x - state["mean"]) * state["scale"]
    if name == "l2":
        norm = np.sqrt(np.einsum("ij,ij->i", x, x))
        return x / np.maximum(norm, np.finfo(np.float32).tiny)[:, None]
    if name == "pca":
        return (x - state["mean"]) @ state["components"]
    return x


def _width(branch_state, n_bands):
    for state in reversed(branch_state):
        if "components" in state:
            return state["components"].shape[1]
    return n_bands
