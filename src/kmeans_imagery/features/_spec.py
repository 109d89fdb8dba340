"""The feature spec language and its presets (pure Python: the CLI reads them without numpy).

The grammar is described in :mod:`kmeans_imagery.features`: ``+`` chains steps, ``|`` puts
pipelines side by side, parentheses group, ``name:value`` sets a step's main parameter, and a
spec that is only a preset name expands to that preset.
"""

import re
from contextlib import contextmanager

from ..errors import KMIError

#: The step names a spec may use, in the order the help lists them.
STEP_NAMES = ("raw", "deskew", "l2", "std", "hog", "pca", "umap", "onnx", "nbr")
#: Steps that need images (an ``image_shape``), and those whose output is still an image.
NEEDS_SHAPE = ("deskew", "hog", "onnx")
#: Steps that only pixels of a raster have (``kmi segment``): the neighbourhood of each pixel.
PIXEL_ONLY = ("nbr",)
#: The default pixel pipeline of ``kmi segment``, chosen with benchmarks/bench_segment_accuracy.py
#: (docs/guide/rasters.md): the standardised spectral shape (unit-length spectra) beside the
#: standardised mean spectrum of the pixel's 3 x 3 neighbourhood; the only pipeline measured that
#: beats plain K-means on all three hyperspectral scenes.
DEFAULT_PIXEL_FEATURES = "l2+std|nbr:1+std"
#: The default pixel pipeline of the models ``kmi segment --label-budget`` fits (many small
#: clusters, each named from one labelled pixel): the standardised spectral shape beside one
#: brightness feature (the first principal component of the standardised bands, scaled to unit
#: variance). Such clusters must each hold one class: the neighbourhood mean and a full-weight
#: brightness merge the mixed pixels at class edges into them, while the single brightness feature
#: still separates classes of one shape (it weighs 1 against the shape's one per band). On the same
#: benchmark it meets the label-budget targets on all three scenes.
DEFAULT_BUDGET_FEATURES = "l2+std|std+pca:1+std"
KEEPS_IMAGES = ("raw", "deskew", "l2")
#: How each step is written, for the errors that say what a step takes.
STEP_USAGE = {
    "raw": "raw",
    "deskew": "deskew",
    "l2": "l2",
    "std": "std",
    "hog": "hog[:cell]",
    "pca": "pca[:n][:whiten]",
    "umap": "umap[:n]",
    "onnx": "onnx:PATH[:norm=imagenet]",
    "nbr": "nbr[:r]",
}
#: The steps of a pixel pipeline (``kmi segment``).
PIXEL_STEPS = ("raw", "std", "l2", "pca", "umap", "nbr")

#: Named pipelines: name -> (spec, one-line help). A spec that is only one of these names means
#: the best measured pipeline ending in that step. Figures: MNIST, fit on the 60k training
#: images, scored on the 10k test images (benchmarks/bench_features.py).
FEATURE_PRESETS = {
    "raw": ("raw", "the pixels themselves, as in the tutorial (K=256: 0.92)"),
    "l2": ("deskew+l2", "shear-corrected, centred, L2-normalised pixels (K=256: 0.962)"),
    "hog": (
        "deskew+hog:4",
        "HOG descriptors, 4x4-pixel cells, of deskewed images: most accurate, slow (K=256: 0.979)",
    ),
    "pixhog": (
        "deskew+(l2|hog:7)+pca:100",
        "deskewed L2-normalised pixels beside their 7x7-cell HOG, PCA to 100: fast "
        "(K=256: 0.971-0.975)",
    ),
    "umap": (
        "deskew+pca:50+umap:10",
        "deskew, PCA-50, UMAP to 10 dims: best for K = number of classes (K=10: 0.979, "
        "K=256: 0.970-0.976); needs umap-learn",
    ),
}


# A word is anything but spaces and the operators + | ( ): paths (onnx:PATH, any characters a
# file name has but those) and options (onnx:PATH:mean=0.5,0.5,0.5).
_TOKEN = re.compile(r"\s*(?:([^\s+|()]+)|([+|()]))")


def _valid_names(pixels=False):
    """What a spec may hold, for error messages: the steps (and, for images, the presets)."""
    if pixels:
        return f"steps {', '.join(STEP_USAGE[name] for name in PIXEL_STEPS)} {_OPERATORS}"
    steps = ", ".join(STEP_USAGE[name] for name in STEP_NAMES if name not in PIXEL_ONLY)
    return f"steps {steps} {_OPERATORS}; presets {', '.join(FEATURE_PRESETS)}"


_OPERATORS = "(joined with '+', side by side with '|', grouped with parentheses)"


def _tokenize(spec):
    tokens, pos = [], 0
    spec = spec.strip()
    while pos < len(spec):
        match = _TOKEN.match(spec, pos)
        if match is None:
            raise KMIError(f"bad feature spec at {spec[pos:]!r}")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    return tokens


class Parser:
    """Recursive descent over ``alt := seq ('|' seq)*``, ``seq := term ('+' term)*``,
    ``term := step | '(' alt ')'``. Nodes: ``("step", name, args)``, ``("seq", [...])``,
    ``("alt", [...])``. Step names and their flags are read in any case (``PCA:20:Whiten``);
    an ``onnx`` step's argument, a path, as written. Errors do not name the spec: the callers
    say ``features=SPEC`` (see :func:`naming_spec`); ``pixels`` lists the pixel steps as valid.
    """

    def __init__(self, spec, pixels=False):
        self.spec = spec
        self.pixels = pixels
        self.tokens = _tokenize(spec)
        self.pos = 0

    def error(self, what):
        return KMIError(f"bad feature spec: {what}; valid: {_valid_names(self.pixels)}")

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self):
        if not self.tokens:
            raise self.error("it is empty")
        node = self.alt()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def alt(self):
        items = [self.seq()]
        while self.peek() == "|":
            self.pos += 1
            items.append(self.seq())
        return items[0] if len(items) == 1 else ("alt", items)

    def seq(self):
        items = [self.term()]
        while self.peek() == "+":
            self.pos += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else ("seq", items)

    def term(self):
        token = self.peek()
        if token is None or token in "+|)":
            raise self.error("a step is missing" if token is None else f"unexpected {token!r}")
        self.pos += 1
        if token == "(":
            node = self.alt()
            if self.peek() != ")":
                raise self.error("a ')' is missing")
            self.pos += 1
            return node
        name, *args = token.split(":")
        name = name.lower()
        if name not in STEP_NAMES:
            raise self.error(f"unknown step {name!r}")
        return ("step", name, args if name == "onnx" else [arg.lower() for arg in args])


def int_arg(name, value):
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < 1:
        raise KMIError(f"'{name}:{value}': {name} takes a whole number of at least 1 "
                       f"({STEP_USAGE[name]})")
    return number


@contextmanager
def naming_spec(spec):
    """Errors of the block, about the spec ``spec``, start with ``features=SPEC``: the parameter
    (``--features`` on the command line) and the value that caused them."""
    try:
        yield
    except KMIError as error:
        raise KMIError(f"features={spec!r}: {error}") from None


def canonical(node, top=True):
    if node[0] == "step":
        return ":".join([node[1], *node[2]])
    if node[0] == "seq":
        return "+".join(canonical(item, False) for item in node[1])
    text = "|".join(canonical(item, False) for item in node[1])
    return text if top else f"({text})"


