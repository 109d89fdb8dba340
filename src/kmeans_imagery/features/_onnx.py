"""The ``onnx:PATH`` feature step: image embeddings from any network exported to ONNX.

A pretrained network (a ResNet, a CLIP or DINO image encoder, ...) exported to ONNX turns
photos into feature vectors where K-means groups by content rather than by pixel colours. The
step runs it with onnxruntime (the ``embed`` extra) on batches of images:

- **input**: the network's one image input, ``(batch, C, H, W)`` (NCHW, as PyTorch exports) or
  ``(batch, H, W, C)`` (NHWC, as TensorFlow exports) with C = 1 or 3; images are converted to C
  channels and, where H and W are fixed, resized to H x W (Lanczos; where they are not, fed at
  the size they are read at). A fixed batch size (an export without dynamic axes) is run in
  chunks of exactly that size, the last one padded. The pixels are passed in the input's own
  element type: float32, float16 or float64 after normalisation, or uint8 as they are (0-255,
  no normalisation);
- **normalisation**: pixels are scaled to [0, 1], then ``(x - mean) / std`` per channel, with
  ``mean`` and ``std`` read from the ONNX file's metadata properties ``kmi.mean`` and
  ``kmi.std`` (comma-separated, one value or one per channel), or given to :class:`OnnxEmbedding`
  (ImageNet networks: mean 0.485,0.456,0.406, std 0.229,0.224,0.225); default 0 and 1;
- **output**: the output named by the metadata property ``kmi.output`` or the ``output``
  parameter, else the first; its first axis must be the batch; flattened to one row per image,
  which must be finite.

The model file stores the network's path and SHA-256 checksum (over the ``.onnx`` file and the
external data files its tensors name, for networks saved with their weights beside them), never
the network itself or a pickled session; loading the model and applying it checks that the
files are still the same.
"""

import hashlib
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import KMIError
from ._steps import _check_shape, _describe_shape, _Step

__all__ = ["OnnxEmbedding"]


class _Network(NamedTuple):
    """An opened network and what feeding it needs."""

    session: object
    name: str  # of the image input
    output: str
    channels: int
    size: tuple | None  # (H, W), None when the network takes any size
    layout: str  # "NCHW" or "NHWC"
    dtype: type  # of the input
    batch: int | None  # a fixed batch size, else None
    mean: np.ndarray
    std: np.ndarray
    sha256: str


def _sha256(path):
    """SHA-256 of an ONNX file and, after it, of each external data file its tensors name; and
    those files."""
    digest = hashlib.sha256()
    locations = []
    tail = b""
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                # The overlap finds a reference that straddles two blocks.
                locations += _external_locations(tail + block)
                tail = block[-_LOCATION_OVERLAP:]
        external = [Path(path).parent / location for location in dict.fromkeys(locations)]
        for data in external:
            with open(data, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except OSError as error:
        raise KMIError(f"cannot read ONNX model {path}: {error.strerror or error}") from None
    return digest.hexdigest(), external


#: A tensor stored outside the .onnx file names its file in an entry {key: "location", value:
#: FILE}: protobuf bytes 0x0a 0x08 "location" 0x12 <length> FILE.
_LOCATION = re.compile(rb"\x0a\x08location\x12([\x01-\x7f])")
_LOCATION_OVERLAP = 12 + 127


def _external_locations(data):
    """The external data files named in a piece of an ONNX file (relative to its folder)."""
    found = []
    for match in _LOCATION.finditer(data):
        start = match.end()
        name = data[start:start + match.group(1)[0]]
        if len(name) == match.group(1)[0]:
            found.append(name.decode("utf-8", "replace"))
    return found


#: The network last opened in this process, by the (path, size, modification time) of its file
#: and of its external data files: a command that asks it its input size and then fits with it
#: hashes and loads the files once.
_LAST_OPENED = {}


def _stamp(path):
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _open_network(path):
    """``(session, sha256)`` of the ONNX file at ``path``, reused while the file is unchanged."""
    try:
        import onnxruntime
    except ImportError:
        raise KMIError("the onnx feature step needs onnxruntime: pip install "
                       "'kmeans-imagery[embed]'") from None
    if path.is_dir():
        raise KMIError(f"ONNX model {path} is a folder, not an .onnx file")
    if not path.is_file():
        raise KMIError(f"ONNX model {path} does not exist")
    key = _stamp(path)
    opened = _LAST_OPENED.get(key)
    try:
        current = opened is not None and all(_stamp(f) == stamp for f, stamp in opened[2])
    except OSError:  # an external data file went away
        current = False
    if not current:
        checksum, external = _sha256(path)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: older exports warn of every initializer
        try:
            session = onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise KMIError(f"cannot load ONNX model {path}: {error}") from None
        _LAST_OPENED.clear()
        _LAST_OPENED[key] = session, checksum, [(f, _stamp(f)) for f in external]
    return _LAST_OPENED[key][:2]


#: Per-channel (mean, std) of the pixels in [0, 1] that common image networks were trained on,
#: for ``onnx:PATH:norm=NAME``.
NORMALISATIONS = {
    "imagenet": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # torchvision, timm, DINO
    "clip": ("0.48145466,0.4578275,0.40821073", "0.26862954,0.26130258,0.27577711"),
}
_SPEC_OPTIONS = ("mean", "std", "output", "norm")


#: onnxruntime's element types of an image input, and the arrays fed to them.
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64, "tensor(uint8)": np.uint8}


def _floats(text, what):
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise KMIError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not np.isfinite(values).all():
        raise KMIError(f"{what} must be finite numbers, got {text!r}")
    return values


def _image_input(path, first):
    """``(layout, channels, size)`` of a network's image input: NCHW or NHWC, 1 or 3 channels,
    (H, W) or None when they are not fixed."""
    shape = first.shape
    if len(shape) == 4 and shape[1] in (1, 3):
        layout, channels, hw = "NCHW", shape[1], shape[2:]
    elif len(shape) == 4 and shape[3] in (1, 3):
        layout, channels, hw = "NHWC", shape[3], shape[1:3]
    else:
        raise KMIError(f"ONNX model {path}: its input {first.name!r} has shape {shape}; expected "
                       f"(batch, 1 or 3, H, W) or (batch, H, W, 1 or 3)")
    fixed = all(isinstance(v, int) and v > 0 for v in hw)
    return layout, channels, tuple(hw) if fixed else None


def _normalisation(given, meta, what, default, path):
    """Per-channel ``mean`` or ``std``: given, else the file's ``kmi.<what>``, else ``default``."""
    if given is not None:
        return _floats(given, f"ONNX {what}")
    return _floats(meta.get(f"kmi.{what}", default), f"the kmi.{what} metadata of {path}")


class OnnxEmbedding(_Step):
    """Rows of images -> the embedding an ONNX network computes for them.

    Parameters
    ----------
    path : str
        The ``.onnx`` file.
    image_shape : tuple of int
        (H, W) or (H, W, 3) of the images whose flattened rows are passed in.
    mean, std : str or None
        Comma-separated per-channel normalisation; None reads the file's ``kmi.mean`` /
        ``kmi.std`` metadata, else 0 and 1.
    output : str or None
        Output to use; None reads ``kmi.output``, else the first output.
    batch_size : int, default=64
        Images per network call.

    Attributes
    ----------
    sha256_ : str
        Checksum of the file when fitted; a different file is refused.
    n_features_out_ : int
        Width of the embedding.

    Examples
    --------
    A one-node network, written with onnx's helper API, whose embedding of an image is its
    mean colour (a real one would be a ResNet or a CLIP image encoder exported to ONNX):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import onnx
    >>> import onnxruntime  # the embed extra: it runs the network
    >>> from onnx import TensorProto, helper
    >>> from kmeans_imagery.features import OnnxEmbedding
    >>> graph = helper.make_graph(
    ...     [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
    ...      helper.make_node("Flatten", ["pooled"], ["y"])], "mean-colour",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    >>> network = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    >>> network.ir_version = 8
    >>> images = np.zeros((2, 32, 32, 3), np.float32)
    >>> images[0, ..., 0] = images[1, ..., 2] = 1.0  # one red image, one blue
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     onnx.save(network, str(Path(folder) / "net.onnx"))
    ...     step = OnnxEmbedding(str(Path(folder) / "net.onnx"), (32, 32, 3))
    ...     print(step.fit_transform(images.reshape(2, -1)).round(3), step.n_features_out_)
    [[1. 0. 0.]
     [0. 0. 1.]] 3
    """

    def __init__(self, path, image_shape, mean=None, std=None, output=None, batch_size=64):
        self.path = path
        self.image_shape = image_shape
        self.mean = mean
        self.std = std
        self.output = output
        self.batch_size = batch_size

    def _expected_width(self):
        return int(np.prod(_check_shape(self.image_shape)))

    def _session(self):
        """The onnxruntime session and its input facts, opened once per process."""
        if getattr(self, "_cache", None) is not None:
            return self._cache
        path = Path(self.path)
        session, checksum = _open_network(path)
        expected = getattr(self, "sha256_", None)
        if expected is not None and checksum != expected:
            raise KMIError(f"ONNX model {path} has changed since the model was fitted (SHA-256 "
                           f"{checksum[:12]}..., expected {expected[:12]}...)")
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise KMIError(f"ONNX model {path} has {len(inputs)} inputs "
                           f"({', '.join(i.name for i in inputs)}); the onnx step feeds it one: "
                           f"the images")
        first = inputs[0]
        layout, channels, size = _image_input(path, first)
        dtype = _INPUT_TYPES.get(first.type)
        if dtype is None:
            raise KMIError(f"ONNX model {path}: its input {first.name!r} takes {first.type}; "
                           f"the onnx step feeds {', '.join(_INPUT_TYPES)}")
        meta = session.get_modelmeta().custom_metadata_map
        mean = _normalisation(self.mean, meta, "mean", "0", path)
        std = _normalisation(self.std, meta, "std", "1", path)
        if len(mean) not in (1, channels) or len(std) not in (1, channels) or min(std) <= 0:
            raise KMIError(f"ONNX model {path} takes {channels} channel(s): mean and std need one "
                           f"value or one per channel, and a positive std; got mean {mean}, "
                           f"std {std}")
        if dtype == np.uint8 and (mean != [0] or std != [1]):
            raise KMIError(f"ONNX model {path} takes uint8 pixels (0-255, as they are): it "
                           f"normalises them itself, so mean and std do not apply")
        names = [o.name for o in session.get_outputs()]
        output = self.output or meta.get("kmi.output") or names[0]
        if output not in names:
            raise KMIError(f"ONNX model {path} has no output {output!r}; it has {names}")
        batch = first.shape[0] if isinstance(first.shape[0], int) and first.shape[0] > 0 else None
        self._cache = _Network(session, first.name, output, channels, size, layout, dtype, batch,
                               np.array(mean, np.float32).reshape(1, -1, 1, 1),
                               np.array(std, np.float32).reshape(1, -1, 1, 1), checksum)
        return self._cache

    def input_size(self):
        """(H, W) of the network's input, which images of another size are resized to; None
        when the network takes any size."""
        return self._session().size

    def input_channels(self):
        """Channels of the network's input: 3 for a network that sees colour, else 1."""
        return self._session().channels

    def _fit(self, X):
        if not isinstance(self.batch_size, int | np.integer) or self.batch_size < 1:
            raise KMIError(f"onnx batch_size must be a positive integer, got {self.batch_size!r}")
        self._cache = None
        self.sha256_ = None
        net = self._session()
        self.sha256_ = net.sha256
        shape = _check_shape(self.image_shape)
        channels = shape[2] if len(shape) == 3 else 1
        # a network of 1 channel gets the channels' mean; one of 3, gray repeated or RGB as it is
        if net.channels == 3 and channels not in (1, 3):
            raise KMIError(f"ONNX model {self.path} takes RGB images; images of {channels} "
                           f"channels ({_describe_shape(shape)}) are neither gray nor RGB: read "
                           f"them as one or the other")
        self.n_features_out_ = self._embed(X[:1]).shape[1]

    def _transform(self, X):
        return self._embed(X)

    def _embed(self, X):
        from ..datasets.convert import resize_images

        net = self._session()
        shape = _check_shape(self.image_shape)
        # A network exported with a fixed batch size takes exactly that many images a call.
        step = net.batch or self.batch_size
        out = []
        for s in range(0, len(X), step):
            images = X[s:s + step].reshape(-1, *shape)
            n = len(images)
            if net.size is not None and tuple(shape[:2]) != net.size:
                as_bytes = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
                images = resize_images(as_bytes, net.size).astype(np.float32) / 255
            images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
            if images.shape[1] != net.channels:
                images = (np.repeat(images, 3, axis=1) if net.channels == 3
                          else images.mean(axis=1, keepdims=True))
            if net.batch is not None and n < net.batch:  # the last chunk, padded
                images = np.concatenate([images, np.repeat(images[-1:], net.batch - n, axis=0)])
            if net.dtype == np.uint8:
                batch = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
            else:
                batch = ((images - net.mean) / net.std).astype(net.dtype)
            if net.layout == "NHWC":
                batch = batch.transpose(0, 2, 3, 1)
            result = np.asarray(net.session.run([net.output], {net.name: batch})[0])
            if result.ndim == 0 or result.shape[0] != len(batch):
                raise KMIError(f"ONNX model {self.path}: output {net.output!r} has shape "
                               f"{result.shape} for {len(batch)} images; its first axis must be "
                               f"the batch, one embedding per image")
            rows = result.reshape(len(batch), -1)[:n].astype(np.float32)
            if not np.isfinite(rows).all():
                raise KMIError(f"ONNX model {self.path}: output {net.output!r} is not finite "
                               f"(NaN or infinite) for {int((~np.isfinite(rows)).any(axis=1).sum())} "
                               f"of {n} images")
            out.append(rows)
        if not out:
            return np.zeros((0, getattr(self, "n_features_out_", 0)), np.float32)
        return np.concatenate(out)

    def _state(self):
        meta, arrays = super()._state()
        meta["sha256"] = self.sha256_
        meta["n_features_out"] = int(self.n_features_out_)
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        step = super()._from_state(meta, arrays)
        step.sha256_ = meta["sha256"]
        step.n_features_out_ = int(meta["n_features_out"])
        return step

    def __getstate__(self):
        # An onnxruntime session cannot be copied; it is reopened where it is needed.
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    @classmethod
    def from_spec(cls, argument, image_shape):
        """The step for ``onnx:PATH[:OPTION=VALUE...]`` (PATH made absolute, so the model works
        from any folder). Options: ``mean=`` and ``std=`` (comma-separated, per channel),
        ``norm=`` a name of :data:`NORMALISATIONS` for both, ``output=`` a name, last: all
        after it is the name, ``:`` and ``/`` included (``output=dense/BiasAdd:0``)."""
        argument, _, output = (argument or "").partition(":output=")
        # Parts with "=" are options; the others, joined again, the path (C:/... keeps its ":").
        parts = argument.split(":")
        path = ":".join(part for part in parts if "=" not in part)
        options = dict(part.split("=", 1) for part in parts if "=" in part)
        if output:
            options["output"] = output
        if not path:
            raise KMIError("'onnx' needs a path: onnx:PATH/TO/MODEL.onnx")
        unknown = sorted(set(options) - set(_SPEC_OPTIONS))
        if unknown:
            raise KMIError(f"onnx option {unknown[0]!r} is not one of {', '.join(_SPEC_OPTIONS)} "
                           f"(onnx:PATH:norm=imagenet, onnx:PATH:mean=M,M,M:std=S,S,S:output=NAME)")
        if "norm" in options:
            if "mean" in options or "std" in options:
                raise KMIError("onnx: give norm= or mean= and std=, not both")
            if options["norm"] not in NORMALISATIONS:
                raise KMIError(f"onnx norm={options['norm']!r} is not one of "
                               f"{', '.join(NORMALISATIONS)}")
            options["mean"], options["std"] = NORMALISATIONS[options.pop("norm")]
        return cls(str(Path(path).expanduser().resolve()), image_shape, **options)
