"""The ``onnx:PATH`` feature step: image embeddings from any network exported to ONNX.

A pretrained network (a ResNet, a CLIP or DINO image encoder, ...) exported to ONNX turns
photos into feature vectors where K-means groups by content rather than by pixel colours. The
step runs it with onnxruntime (the ``embed`` extra) on batches of images:

- **input size and channels** come from the network's first input, which must be
  ``(batch, C, H, W)`` with C = 1 or 3 and fixed H and W (NCHW, as exported by PyTorch);
  images are converted to C channels and resized to H x W (Lanczos);
- **normalisation**: pixels are scaled to [0, 1], then ``(x - mean) / std`` per channel, with
  ``mean`` and ``std`` read from the ONNX file's metadata properties ``kmi.mean`` and
  ``kmi.std`` (comma-separated, one value or one per channel), or given to :class:`OnnxEmbedding`
  (ImageNet networks: mean 0.485,0.456,0.406, std 0.229,0.224,0.225); default 0 and 1;
- **output**: the output named by the metadata property ``kmi.output`` or the ``output``
  parameter, else the first; flattened to one row per image.

The model file stores the network's path and SHA-256 checksum, never the network itself or a
pickled session; loading the model and applying it checks that the file is still the same.
"""

import hashlib
from pathlib import Path

import numpy as np

from ..errors import KMIError
from ._steps import _check_shape, _Step

__all__ = ["OnnxEmbedding"]


def _sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise KMIError(f"cannot read ONNX model {path}: {error.strerror or error}") from None
    return digest.hexdigest()


#: The network last opened in this process, by (path, size, modification time): a command that
#: asks it its input size and then fits with it hashes and loads the file once.
_LAST_OPENED = {}


def _open_network(path):
    """``(session, sha256)`` of the ONNX file at ``path``, reused while the file is unchanged."""
    try:
        import onnxruntime
    except ImportError:
        raise KMIError("the onnx feature step needs onnxruntime: pip install "
                       "'kmeans-imagery[embed]'") from None
    if not path.is_file():
        raise KMIError(f"ONNX model {path} does not exist")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LAST_OPENED:
        checksum = _sha256(path)
        try:
            session = onnxruntime.InferenceSession(str(path),
                                                   providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise KMIError(f"cannot load ONNX model {path}: {error}") from None
        _LAST_OPENED.clear()
        _LAST_OPENED[key] = session, checksum
    return _LAST_OPENED[key]


#: Per-channel (mean, std) of the pixels in [0, 1] that common image networks were trained on,
#: for ``onnx:PATH:norm=NAME``.
NORMALISATIONS = {
    "imagenet": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # torchvision, timm, DINO
    "clip": ("0.48145466,0.4578275,0.40821073", "0.26862954,0.26130258,0.27577711"),
}
_SPEC_OPTIONS = ("mean", "std", "output", "norm")


def _floats(text, what):
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise KMIError(f"ONNX {what} must be comma-separated numbers, got {text!r}") from None


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
        first = session.get_inputs()[0]
        shape = first.shape
        if len(shape) != 4 or shape[1] not in (1, 3) or not all(
                isinstance(s, int) for s in shape[2:]):
            raise KMIError(f"ONNX model {path}: its input {first.name!r} has shape {shape}; "
                           f"expected (batch, 1 or 3, H, W) with fixed H and W")
        meta = session.get_modelmeta().custom_metadata_map
        channels = shape[1]
        mean = _floats(self.mean if self.mean is not None else meta.get("kmi.mean", "0"), "mean")
        std = _floats(self.std if self.std is not None else meta.get("kmi.std", "1"), "std")
        if len(mean) not in (1, channels) or len(std) not in (1, channels) or min(std) <= 0:
            raise KMIError(f"ONNX model {path}: mean and std need 1 or {channels} values and a "
                           f"positive std, got mean {mean}, std {std}")
        names = [o.name for o in session.get_outputs()]
        output = self.output or meta.get("kmi.output") or names[0]
        if output not in names:
            raise KMIError(f"ONNX model {path} has no output {output!r}; it has {names}")
        self._cache = (session, first.name, output, channels, tuple(shape[2:]),
                       np.array(mean, np.float32).reshape(1, -1, 1, 1),
                       np.array(std, np.float32).reshape(1, -1, 1, 1), checksum)
        return self._cache

    def input_size(self):
        """(H, W) of the network's input: images of another size are resized to it."""
        return self._session()[4]

    def input_channels(self):
        """Channels of the network's input: 3 for a network that sees colour, else 1."""
        return self._session()[3]

    def _fit(self, X):
        if not isinstance(self.batch_size, int | np.integer) or self.batch_size < 1:
            raise KMIError(f"onnx batch_size must be a positive integer, got {self.batch_size!r}")
        self._cache = None
        self.sha256_ = None
        self.sha256_ = self._session()[-1]
        self.n_features_out_ = self._embed(X[:1]).shape[1]

    def _transform(self, X):
        return self._embed(X)

    def _embed(self, X):
        from ..datasets.convert import resize_images

        session, name, output, channels, size, mean, std, _ = self._session()
        shape = _check_shape(self.image_shape)
        out = []
        for s in range(0, len(X), self.batch_size):
            images = X[s:s + self.batch_size].reshape(-1, *shape)
            if tuple(shape[:2]) != size:
                as_bytes = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
                images = resize_images(as_bytes, size).astype(np.float32) / 255
            images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
            if images.shape[1] != channels:
                images = (np.repeat(images, 3, axis=1) if channels == 3
                          else images.mean(axis=1, keepdims=True))
            batch = ((images - mean) / std).astype(np.float32)
            result = session.run([output], {name: batch})[0]
            out.append(np.asarray(result, np.float32).reshape(len(batch), -1))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

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
        ``norm=`` a name of :data:`NORMALISATIONS` for both, ``output=`` a name."""
        # Parts with "=" are options; the others, joined again, the path (C:/... keeps its ":").
        parts = (argument or "").split(":")
        path = ":".join(part for part in parts if "=" not in part)
        options = dict(part.split("=", 1) for part in parts if "=" in part)
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
