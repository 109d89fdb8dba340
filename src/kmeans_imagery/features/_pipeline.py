"""Feature pipelines built from a spec, fitted on training rows, saved and restored without pickle."""

import importlib.util

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import KMIError
from ._hog import HOG
from ._onnx import OnnxEmbedding
from ._pixels import Neighbourhood, _all_steps
from ._spec import (
    DEFAULT_PIXEL_FEATURES,
    FEATURE_PRESETS,
    KEEPS_IMAGES,
    NEEDS_SHAPE,
    PIXEL_ONLY,
    PIXEL_STEPS,
    STEP_USAGE,
    Parser,
    canonical,
    int_arg,
    naming_spec,
)
from ._steps import (
    PCA,
    Concat,
    Deskew,
    Identity,
    L2Normalize,
    Standardize,
    _check_rows,
    _check_shape,
    _describe_shape,
)
from ._umap import UMAP, _umap_missing

_STATE_FORMAT = 1

_STEPS = {
    "raw": Identity,
    "deskew": Deskew,
    "l2": L2Normalize,
    "std": Standardize,
    "hog": HOG,
    "pca": PCA,
    "umap": UMAP,
    "onnx": OnnxEmbedding,
    "nbr": Neighbourhood,
}
#: Components of a bare ``pca`` step of a pixel pipeline: spectra have tens to hundreds of bands.
PIXEL_PCA = 10

class FeaturePipeline(TransformerMixin, BaseEstimator):
    """A chain of feature steps, fitted on training rows and applied to any later rows.

    Build one with :func:`make_features`.

    Parameters
    ----------
    steps : list of transformers
        Steps from this module (or :class:`Concat` nodes), applied in order.
    spec : str or None
        The canonical spec the pipeline was built from, kept for reports and the model file.

    Attributes
    ----------
    n_features_in_ : int
        Width of the input rows.
    n_features_out_ : int
        Width of the output rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.features import FeaturePipeline, make_features
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> pipeline = make_features("deskew+l2+pca:16", (8, 8), random_state=0).fit(X)
    >>> pipeline.n_features_in_, pipeline.n_features_out_
    (64, 16)

    Stored as plain data and arrays (what the model file holds), then rebuilt:

    >>> meta, arrays = pipeline.get_state()
    >>> [step["name"] for step in meta["steps"]], sorted(arrays)
    (['deskew', 'l2', 'pca'], ['2.components_', '2.mean_', '2.scale_'])
    >>> again = FeaturePipeline.from_state(meta, arrays)
    >>> bool(np.array_equal(again.transform(X), pipeline.transform(X)))
    True
    """

    def __init__(self, steps, spec=None):
        self.steps = steps
        self.spec = spec

    def fit(self, X, y=None):
        """Fit every step on the training rows, each on the previous step's output.

        Returns self.
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit the pipeline and return the training rows' features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        Xt : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        Xt = _check_rows(X)
        self.n_features_in_ = Xt.shape[1]
        for step in self.steps:
            try:
                Xt = step.fit_transform(Xt)
            except KMIError as error:
                # A preset's steps are not the user's words: say which features failed.
                if self.spec is None:
                    raise
                raise KMIError(f"features={self.spec!r}: {error}") from None
        self.n_features_out_ = Xt.shape[1]
        return Xt

    def transform(self, X):
        """Apply the fitted steps to new rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ``n_features_in_``)

        Returns
        -------
        Xt : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self, "n_features_in_")
        try:
            Xt = _check_rows(X, self.n_features_in_, _rows_of(self.steps))
        except KMIError as error:
            # rows of images of another size than the pipeline was fitted on, most often
            if self.spec is None:
                raise
            raise KMIError(f"features={self.spec!r}: {error}") from None
        for step in self.steps:
            Xt = step.transform(Xt)
        return Xt

    def get_state(self):
        """The fitted pipeline as plain data, for the model file (no pickle).

        Returns
        -------
        meta : dict
            JSON-able: the format version, spec, widths and every step's name and parameters.
        arrays : dict of str to ndarray
            Fitted arrays, keyed ``"<step path>.<attribute>"`` (e.g. ``"2.components_"``,
            ``"1.0.1.train_X_"`` inside a concatenation).
        """
        check_is_fitted(self, "n_features_in_")
        arrays = {}
        meta = {
            "format": _STATE_FORMAT,
            "spec": self.spec,
            "n_features_in": int(self.n_features_in_),
            "n_features_out": int(self.n_features_out_),
            "steps": _steps_state(self.steps, "", arrays),
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta, arrays):
        """Rebuild a fitted pipeline from :meth:`get_state`'s output.

        Parameters
        ----------
        meta : dict
        arrays : mapping of str to ndarray

        Returns
        -------
        FeaturePipeline
            Fitted; its ``transform`` equals the original's.

        Raises
        ------
        KMIError
            If the state is not one this version wrote (unknown format or step, missing array).
        """
        try:
            if meta.get("format") != _STATE_FORMAT:
                raise KMIError(
                    f"feature pipeline state has format {meta.get('format')!r}; this version "
                    f"reads format {_STATE_FORMAT}"
                )
            pipeline = cls(_steps_from_state(meta["steps"], "", arrays), spec=meta.get("spec"))
            pipeline.n_features_in_ = int(meta["n_features_in"])
            pipeline.n_features_out_ = int(meta["n_features_out"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise KMIError(f"feature pipeline state is incomplete or corrupt ({exc!r})") from None
        return pipeline


def _rows_of(steps):
    """What a pipeline's input rows are, for errors: rows of images of its size when one of its
    steps knows it (all of a pipeline's image steps read the same images)."""
    shapes = (getattr(step, "image_shape", None) for step in _all_steps(steps))
    shape = next((shape for shape in shapes if shape is not None), None)
    return "rows" if shape is None else f"rows ({_describe_shape(shape)} images)"


def _steps_state(steps, prefix, arrays):
    out = []
    for i, step in enumerate(steps):
        path = f"{prefix}{i}"
        if isinstance(step, Concat):
            branches = [
                _steps_state(branch.steps, f"{path}.{b}.", arrays)
                for b, branch in enumerate(step.branches)
            ]
            out.append(
                {"name": "concat", "n_features_in": int(step.n_features_in_), "branches": branches}
            )
            continue
        name = next(key for key, cls in _STEPS.items() if type(step) is cls)
        meta, step_arrays = step._state()
        arrays.update({f"{path}.{key}": np.asarray(value) for key, value in step_arrays.items()})
        out.append({"name": name, **meta})
    return out


def _steps_from_state(metas, prefix, arrays):
    steps = []
    for i, meta in enumerate(metas):
        path = f"{prefix}{i}"
        name = meta["name"]
        if name == "concat":
            node = Concat(
                [
                    FeaturePipeline(_steps_from_state(branch, f"{path}.{b}.", arrays))
                    for b, branch in enumerate(meta["branches"])
                ]
            )
            for branch in node.branches:
                branch.n_features_in_ = int(meta["n_features_in"])
            node.n_features_in_ = int(meta["n_features_in"])
            steps.append(node)
            continue
        if name not in _STEPS:
            raise KMIError(f"feature pipeline state has an unknown step {name!r}")
        cls = _STEPS[name]
        step_arrays = {key: np.asarray(arrays[f"{path}.{key}"]) for key in cls._ARRAYS}
        steps.append(cls._from_state(meta, step_arrays))
    return steps



def _build_step(name, args, image_shape, random_state):
    """A step from its spec name and ':' arguments."""
    if name == "onnx":
        return _STEPS["onnx"].from_spec(":".join(args), image_shape)
    # "-1" is a number too small, not an unknown flag
    is_number = [arg.removeprefix("-").isdigit() for arg in args]
    flags = {arg for arg, number in zip(args, is_number, strict=True) if not number}
    numbers = [int_arg(name, arg) for arg, number in zip(args, is_number, strict=True) if number]
    allowed_flags = {"pca": {"whiten"}}.get(name, set())
    if flags - allowed_flags or len(numbers) > (0 if name in ("raw", "deskew", "l2", "std") else 1):
        extra = sorted(flags - allowed_flags) or args
        raise KMIError(f"'{':'.join([name, *args])}': {name} does not take {':'.join(extra)!r} "
                       f"({STEP_USAGE[name]})")
    if name == "hog":
        return HOG(image_shape, **({"cell_size": numbers[0]} if numbers else {}))
    if name == "pca":
        n = {"n_components": numbers[0]} if numbers else {}
        return PCA(**n, whiten="whiten" in flags, random_state=random_state)
    if name == "umap" and importlib.util.find_spec("umap") is None:
        # find_spec, not import: importing umap-learn takes seconds (numba), and fit imports it
        raise _umap_missing()
    if name == "umap":
        n = {"n_components": numbers[0]} if numbers else {}
        return UMAP(**n, random_state=random_state)
    if name == "deskew":
        return Deskew(image_shape)
    return _STEPS[name]()


def _build(node, image_shape, random_state, is_image, radii=None):
    """Turn a parse node into a list of steps; returns (steps, output is still an image).

    For pixel pipelines ``radii`` are those of the input rows (see :class:`Neighbourhood`), and
    ``is_image`` says that the rows are still the input.
    """
    if node[0] == "step":
        _, name, args = node
        if radii is not None:
            return _pixel_steps(name, args, random_state, is_image, radii), False
        if name in PIXEL_ONLY:
            raise KMIError(f"'{name}' needs the pixels of a raster: it is a step of kmi segment's --features")
        if name in NEEDS_SHAPE and not is_image:
            raise KMIError(f"'{name}' needs image rows; put it before any step that leaves pixels")
        return [_build_step(name, args, image_shape, random_state)], is_image and (
            name in KEEPS_IMAGES
        )
    if node[0] == "seq":
        steps = []
        for item in node[1]:
            more, is_image = _build(item, image_shape, random_state, is_image, radii)
            steps += more
        return steps, is_image
    branches = [
        FeaturePipeline(_build(item, image_shape, random_state, is_image, radii)[0]) for item in node[1]
    ]
    return [Concat(branches)], False



def reading_size(size, spec):
    """The size to read images at for a pipeline: ``size``, except that ``"auto"`` becomes the
    input size of the pipeline's ``onnx:`` network (the largest, if several), which resizes its
    input to that size anyway: reading at it keeps the detail the network can see.

    Parameters
    ----------
    size : None, "auto", "HxW", int or (H, W)
        As for :func:`~kmeans_imagery.datasets.open_source`.
    spec : str
        A feature spec (see :func:`make_features`).

    Returns
    -------
    size : None, "auto", "HxW", int or tuple (H, W)
        ``size`` unchanged, or the network's (H, W).

    Examples
    --------
    >>> from kmeans_imagery.features import reading_size
    >>> reading_size("auto", "l2"), reading_size("32x32", "onnx:resnet.onnx")
    ('auto', '32x32')
    """
    from ..datasets.convert import parse_size

    if parse_size(size) != "auto" or not isinstance(spec, str):
        return size
    # A network that takes any size (None) leaves "auto" to the images.
    sizes = [hw for hw, _ in _network_inputs(spec) if hw is not None]
    return max(sizes, key=lambda hw: hw[0] * hw[1]) if sizes else size


def reading_color(color, spec):
    """The colour mode to read images in for a pipeline: ``color``, except that None becomes
    "rgb" when one of the pipeline's ``onnx:`` networks takes three channels: a network trained
    on photos sees their colour.

    Parameters
    ----------
    color : {"gray", "rgb"} or None
        As for :func:`~kmeans_imagery.datasets.open_source`; None: the source's default.
    spec : str
        A feature spec (see :func:`make_features`).

    Returns
    -------
    color : {"gray", "rgb"} or None

    Examples
    --------
    >>> from kmeans_imagery.features import reading_color
    >>> reading_color(None, "l2"), reading_color("gray", "onnx:resnet.onnx")
    (None, 'gray')
    """
    if color is not None or not isinstance(spec, str):
        return color
    return "rgb" if any(channels == 3 for _, channels in _network_inputs(spec)) else None


def _parse(spec):
    """The parse tree of an image feature spec, a lone preset name expanded."""
    return Parser(FEATURE_PRESETS.get(spec.strip().lower(), (spec,))[0]).parse()


def _network_inputs(spec):
    """``(size, channels)`` of the input of each ``onnx:`` network of a spec (see
    :meth:`OnnxEmbedding.input_size`, :meth:`OnnxEmbedding.input_channels`)."""
    with naming_spec(spec):
        networks = [OnnxEmbedding.from_spec(argument, (1, 1)) for argument in _onnx_arguments(_parse(spec))]
        return [(network.input_size(), network.input_channels()) for network in networks]


def _onnx_arguments(node):
    """The arguments (path and options) of a parsed spec's ``onnx:`` steps."""
    if node[0] == "step":
        return [":".join(node[2])] if node[1] == "onnx" else []
    return [argument for item in node[1] for argument in _onnx_arguments(item)]


def make_features(spec, image_shape, random_state=None):
    """Build an unfitted feature pipeline from a spec string.

    Parameters
    ----------
    spec : str
        Steps joined with ``+``, pipelines side by side with ``|``, grouped with parentheses,
        main parameters after ``:`` (see the module docstring), or a name from
        :data:`FEATURE_PRESETS`.
    image_shape : tuple of int
        (H, W) or (H, W, C) of the images whose flattened rows the pipeline will receive.
    random_state : int or None
        Seed for the randomised steps (PCA's solver, UMAP).

    Returns
    -------
    FeaturePipeline
        Unfitted; ``spec`` holds the expanded, canonical spec.

    Raises
    ------
    KMIError
        For a spec that does not parse, names an unknown step, misplaces an image step, or uses
        ``umap`` without umap-learn installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from kmeans_imagery.features import make_features
    >>> X = (load_digits().data / 16).astype(np.float32)
    >>> pipeline = make_features("pixhog", (8, 8), random_state=0)
    >>> pipeline.spec  # the preset, expanded
    'deskew+(l2|hog:7)+pca:100'
    >>> make_features("deskew+(l2|hog:4)+pca:30", (8, 8), random_state=0).fit_transform(X).shape
    (1797, 30)
    >>> make_features("pca+deskew", (8, 8))
    Traceback (most recent call last):
    ...
    kmeans_imagery.errors.KMIError: features='pca+deskew': 'deskew' needs image rows; put it before ...
    """
    if not isinstance(spec, str):
        raise KMIError(f"features={spec!r}: a feature spec must be a string")
    image_shape = _check_shape(image_shape)
    with naming_spec(spec):
        node = _parse(spec)
        steps, _ = _build(node, image_shape, random_state, is_image=True)
    return FeaturePipeline(steps, spec=canonical(node))


def make_pixel_features(spec=DEFAULT_PIXEL_FEATURES, random_state=None):
    """Build an unfitted feature pipeline for the pixels of a raster from a spec string.

    The language is :func:`make_features`'s, with the steps that make sense for a pixel's
    spectrum: ``raw``, ``std`` (per-band standardisation), ``l2`` (unit-length spectra: the
    spectral angle), ``pca[:n]`` (default 10 components), ``umap[:n]``, and ``nbr[:r]``, the mean
    of every band over the pixel's (2r+1) x (2r+1) neighbourhood (default r = 1; first in its
    pipeline). Image presets do not apply. The pipeline reads rows of the band values followed by
    one neighbourhood mean per radius of its ``nbr`` steps, in increasing order.

    Parameters
    ----------
    spec : str, default=DEFAULT_PIXEL_FEATURES
    random_state : int or None
        Seed for the randomised steps (PCA's solver, UMAP).

    Returns
    -------
    FeaturePipeline
        Unfitted; ``spec`` holds the canonical spec.

    Raises
    ------
    KMIError
        For a spec that does not parse, names an unknown or image-only step, or puts ``nbr``
        after another step.

    Examples
    --------
    >>> import numpy as np
    >>> pipeline = make_pixel_features("l2+std | nbr:1+std")
    >>> pipeline.spec
    'l2+std|nbr:1+std'
    >>> rows = np.random.default_rng(0).random((100, 2 * 4))  # 4 bands, then their 3 x 3 means
    >>> pipeline.fit_transform(rows).shape
    (100, 8)
    """
    if not isinstance(spec, str):
        raise KMIError(f"features={spec!r}: a feature spec must be a string")
    with naming_spec(spec):
        node = Parser(spec, pixels=True).parse()
        radii = tuple(sorted({0} | {_nbr_radius(args) for args in _nbr_args(node)}))
        steps, _ = _build(node, None, random_state, is_image=True, radii=radii)
    return FeaturePipeline(steps, spec=canonical(node))


def _nbr_args(node):
    if node[0] == "step":
        return [node[2]] if node[1] == "nbr" else []
    return [args for item in node[1] for args in _nbr_args(item)]


def _nbr_radius(args):
    if len(args) > 1:
        raise KMIError(f"'nbr:{':'.join(args)}': nbr takes one radius")
    return int_arg("nbr", args[0]) if args else 1


def _pixel_steps(name, args, random_state, at_input, radii):
    """The steps of one spec step in a pixel pipeline; at the input, the pipeline's columns first."""
    if name in NEEDS_SHAPE:
        raise KMIError(f"'{name}' needs images; the pixels of a raster take {', '.join(PIXEL_STEPS)}")
    if name == "nbr":
        if not at_input:
            raise KMIError("'nbr' averages the band values: it must come first in its pipeline")
        return [Neighbourhood(_nbr_radius(args), radii)]
    if name == "pca" and not any(arg.isdigit() for arg in args):
        args = [*args, str(PIXEL_PCA)]
    pick = [Neighbourhood(0, radii)] if at_input and len(radii) > 1 else []
    return pick + [_build_step(name, args, None, random_state)]
