"""Saving and loading fitted models as a documented, non-executable file.

A model file (``.kmi``) is a zip archive holding:

``kmi-model.json``
    UTF-8 JSON: ``format`` (``"kmeans-imagery-model"``), ``format_version``, the estimator parameters,
    the preprocessing (image shape, colour mode, scale), label display names, the training set's size
    and name, the metrics at fit time, and the feature pipeline's parameters when there is one.
``arrays/<name>.npy``
    NumPy arrays in ``.npy`` format: ``cluster_centers`` (K x d), ``classes`` (C,; integers or
    unicode strings), ``cluster_label_codes`` (K,; index into ``classes``), and ``features/...`` for a
    fitted feature pipeline.

Arrays are read with ``allow_pickle=False`` and the JSON with :mod:`json`, so loading a model file can
never run code. Nothing of the fitting machine (paths, user names) is stored.
"""

import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import KMIError, is_whole_number

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PIXEL_MODEL_KIND", "load_model", "read_model_file",
           "save_model"]

#: ``format`` in every model file's metadata.
FORMAT_NAME = "kmeans-imagery-model"
#: The format version this library writes; files of a newer version are refused.
FORMAT_VERSION = 1
#: ``kind`` in the metadata of pixel models written by ``kmi segment`` (kmeans_imagery.segment);
#: image models have no ``kind``.
PIXEL_MODEL_KIND = "pixels"
METADATA_MEMBER = "kmi-model.json"
ARRAY_PREFIX = "arrays/"
FEATURE_PREFIX = "features/"
# Refuse members whose declared size is absurd before reading them: a crafted archive must not be able
# to exhaust memory.
MAX_METADATA_BYTES = 16 * 2**20
MAX_ARRAY_BYTES = 8 * 2**30


def save_model(model, path, *, force=False, fit_metrics=None, training=None, label_names=None):
    """Write a fitted :class:`~kmeans_imagery.ClusterClassifier` to ``path`` atomically.

    Parameters
    ----------
    model : ClusterClassifier
        A fitted classifier.
    path : path-like
        Destination, conventionally ending in ``.kmi``.
    force : bool, default=False
        Replace an existing file. Without it an existing file is an error.
    fit_metrics : dict, optional
        Scores measured at fit time (JSON-able; NumPy scalars and arrays are written as numbers
        and lists), kept for ``kmi show``/``evaluate``.
    training : dict, optional
        Facts about the training data (JSON-able, as ``fit_metrics``), e.g.
        ``{"dataset": "mnist", "n_samples": 60000}``.
    label_names : sequence of str, optional
        Display names for integer labels.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    KMIError
        When the file exists without ``force``, cannot be written, or ``fit_metrics`` or
        ``training`` hold values JSON cannot store.

    See Also
    --------
    load_model : Reads the file back.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery import ClusterClassifier, load_dataset, load_model, save_model
    >>> data = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=16, random_state=0).fit(data.train_images,
    ...                                                               data.train_labels)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_model(model, Path(folder) / "digits.kmi", training={"dataset": "digits"})
    ...     again = load_model(path)
    >>> path.name, bool((again.predict(data.test_images) == model.predict(data.test_images)).all())
    ('digits.kmi', True)
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    path = Path(path)
    if path.exists() and not force:
        raise KMIError(f"{path} already exists; use force=True to replace it")
    if path.is_dir():
        raise KMIError(f"cannot write model file {path}: it is a folder")
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iub":
        classes = classes.astype(str)
    codes = np.searchsorted(classes, np.asarray(model.cluster_labels_).astype(classes.dtype))
    arrays = {
        "cluster_centers": np.asarray(model.cluster_centers_),
        "classes": classes,
        "cluster_label_codes": codes.astype(np.int64),
    }
    features = getattr(model, "features_", None)
    feature_meta = None
    if features is not None:
        arrays["cluster_images"] = np.asarray(model.cluster_images_)
        feature_meta, feature_arrays = features.get_state()
        arrays.update({FEATURE_PREFIX + name: value for name, value in feature_arrays.items()})
    image_shape = getattr(model, "image_shape_", None)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "params": {key: _jsonable_param(value) for key, value in model.get_params().items()},
        "preprocessing": {
            "image_shape": None if image_shape is None else list(image_shape),
            "color": _color_mode(image_shape),
            "scale": 255.0,
        },
        "label_names": None if label_names is None else [str(name) for name in label_names],
        "inertia": getattr(model, "inertia_", None),
        "fit_metrics": fit_metrics or {},
        "training": training or {},
        "features": feature_meta,
    }
    from . import __version__

    metadata["written_by"] = f"kmeans-imagery {__version__}"
    _atomic_zip(path, metadata, arrays)
    return path


def _jsonable_param(value):
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return value


def _json_value(value):
    """NumPy scalars and arrays in metrics and training facts (a score, a count) as plain JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _color_mode(image_shape):
    if image_shape is None:
        return None
    return "rgb" if len(image_shape) == 3 and image_shape[-1] == 3 else "gray"


def _atomic_zip(path, metadata, arrays):
    try:
        text = json.dumps(metadata, indent=2, default=_json_value)
    except TypeError as error:
        raise KMIError(f"fit_metrics and training must be JSON-able: {error}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KMIError(f"cannot write model file {path}: {error.strerror or error}") from None
    with atomic_write(path) as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_member(METADATA_MEMBER), text)
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                archive.writestr(_member(f"{ARRAY_PREFIX}{name}.npy"), buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _member(name):
    """A zip member stamped with a fixed date: the same model is the same file, byte for byte
    (a plain ``writestr`` stamps the current time)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # rw-r--r-- when unzipped
    return info


def read_model_file(path):
    """Read and check a model file's metadata and arrays without building a model.

    Parameters
    ----------
    path : path-like
        The model file.

    Returns
    -------
    metadata : dict
        The JSON metadata (format, parameters, preprocessing, metrics, ...).
    arrays : dict of str to ndarray
        The arrays by name (``cluster_centers``, ``classes``, ...), read without pickle.

    Raises
    ------
    KMIError
        When the file is missing, not a model, truncated, from a newer format version, or holds
        anything that would need pickle to load.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery import ClusterClassifier, load_dataset, save_model
    >>> from kmeans_imagery.model_io import read_model_file
    >>> data = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=16, random_state=0).fit(data.train_images,
    ...                                                               data.train_labels)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     metadata, arrays = read_model_file(save_model(model, Path(folder) / "digits.kmi"))
    >>> metadata["format"], metadata["preprocessing"]
    ('kmeans-imagery-model', {'image_shape': [8, 8], 'color': 'gray', 'scale': 255.0})
    >>> {name: array.shape for name, array in arrays.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'cluster_centers': (16, 64), 'classes': (10,), 'cluster_label_codes': (16,)}
    """
    path = Path(path)
    if path.is_dir():
        raise KMIError(f"model file {path} is a folder, not a model file")
    if not path.is_file():
        raise KMIError(f"model file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if METADATA_MEMBER not in members:
                raise KMIError(f"{path} is not a kmeans-imagery model (no {METADATA_MEMBER})")
            metadata = _read_metadata(archive, members[METADATA_MEMBER], path)
            arrays = {
                name[len(ARRAY_PREFIX) : -len(".npy")]: _read_array(archive, info, path)
                for name, info in members.items()
                if name.startswith(ARRAY_PREFIX) and name.endswith(".npy")
            }
    except KMIError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as error:
        # zipfile raises many kinds of errors on damaged archives (bad CRC, truncation, odd flags).
        raise KMIError(f"{path} is not a readable model file (truncated or corrupt: {error})") from None
    return metadata, arrays


def _read_metadata(archive, info, path):
    if info.file_size > MAX_METADATA_BYTES:
        raise KMIError(f"{path}: model metadata is implausibly large")
    try:
        metadata = json.loads(archive.read(info).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KMIError(f"{path}: model metadata is not valid JSON") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise KMIError(f"{path} is not a kmeans-imagery model")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise KMIError(f"{path}: unknown model format version {version!r}")
    if version > FORMAT_VERSION:
        raise KMIError(
            f"{path} was written in model format {version} by a newer kmeans-imagery; this version "
            f"reads format {FORMAT_VERSION} and older: upgrade kmeans-imagery"
        )
    return metadata


def _read_array(archive, info, path):
    if info.file_size > MAX_ARRAY_BYTES:
        raise KMIError(f"{path}: array {info.filename} is implausibly large")
    data = archive.read(info)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise KMIError(
                f"{path}: {info.filename} holds pickled objects, which are never loaded"
            ) from None
        raise KMIError(f"{path}: {info.filename} is not a valid .npy array ({error})") from None


def _check_image_metadata(metadata, n_clusters, path):
    """Refuse an image model's metadata whose fields are not of the documented types.

    A hand-edited or damaged file must be a clear error, not a crash while the model is built.
    """

    preprocessing = metadata.get("preprocessing") or {}
    image_shape = preprocessing.get("image_shape") if isinstance(preprocessing, dict) else None
    params = metadata.get("params") or {}
    label_names = metadata.get("label_names")
    inertia = metadata.get("inertia")
    malformed = [
        name for name, ok in (
            ("preprocessing", isinstance(preprocessing, dict)),
            ("image_shape", image_shape is None or (
                isinstance(image_shape, list) and len(image_shape) in (2, 3)
                and all(is_whole_number(side) and side > 0 for side in image_shape))),
            ("params", isinstance(params, dict)
             and params.get("n_clusters", n_clusters) == n_clusters),
            ("label_names", label_names is None or (
                isinstance(label_names, list) and all(isinstance(n, str) for n in label_names))),
            ("inertia", inertia is None or (isinstance(inertia, int | float)
                                            and not isinstance(inertia, bool))),
            *((name, isinstance(metadata.get(name) or {}, dict))
              for name in ("fit_metrics", "training", "features")),
        ) if not ok
    ]
    if malformed:
        raise KMIError(f"{path}: model metadata field {malformed[0]!r} is malformed (corrupt model "
                       f"file)")


def load_model(path):
    """Load a model file written by :func:`save_model`.

    Parameters
    ----------
    path : path-like
        A ``.kmi`` file.

    Returns
    -------
    ClusterClassifier
        A fitted classifier (``cluster_centers_``, ``cluster_labels_``, ``classes_``, ``predict``) with
        its preprocessing attached: ``predict`` takes raw images of the model's ``image_shape_``. Also
        sets ``metadata_``, the file's JSON metadata (label names, fit metrics, training facts).

    Raises
    ------
    KMIError
        When the file is not a valid model (see :func:`read_model_file`) or its arrays disagree.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery import ClusterClassifier, load_dataset, load_model, save_model
    >>> data = load_dataset("digits")
    >>> model = ClusterClassifier(n_clusters=32, random_state=0).fit(data.train_images,
    ...                                                               data.train_labels)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = save_model(model, Path(folder) / "digits.kmi", fit_metrics={"accuracy": 0.9})
    ...     loaded = load_model(Path(folder) / "digits.kmi")
    >>> loaded.image_shape_, loaded.metadata_["fit_metrics"]
    ((8, 8), {'accuracy': 0.9})
    >>> loaded.predict(data.test_images[:5]), data.test_labels[:5]  # raw uint8 images in
    (array([7, 6, 9, 7, 9]), array([7, 6, 3, 7, 7]))
    """
    from .labeling import fitted_classifier

    metadata, arrays = read_model_file(path)
    if metadata.get("kind") == PIXEL_MODEL_KIND:
        raise KMIError(f"{path} is a pixel model: use it with `kmi segment RASTER --model {path}`")
    missing = {"cluster_centers", "classes", "cluster_label_codes"} - set(arrays)
    if missing:
        raise KMIError(f"{path}: model file lacks {', '.join(sorted(missing))}")
    centers, classes, codes = (
        arrays["cluster_centers"], arrays["classes"], arrays["cluster_label_codes"]
    )
    if (
        centers.ndim != 2
        or centers.dtype.kind != "f"
        or not np.isfinite(centers).all()
        or codes.shape != (len(centers),)
        or codes.dtype.kind not in "iu"
        or classes.ndim != 1
        or len(classes) == 0
        or codes.min(initial=0) < 0
        or codes.max(initial=0) >= len(classes)
    ):
        raise KMIError(f"{path}: model arrays are inconsistent (corrupt model file)")
    _check_image_metadata(metadata, len(centers), path)
    image_shape = (metadata.get("preprocessing") or {}).get("image_shape")
    image_shape = None if image_shape is None else tuple(image_shape)
    features, cluster_images = None, centers
    feature_meta = metadata.get("features")
    if feature_meta is not None:
        from .features import FeaturePipeline

        feature_arrays = {
            name[len(FEATURE_PREFIX) :]: value
            for name, value in arrays.items()
            if name.startswith(FEATURE_PREFIX)
        }
        features = FeaturePipeline.from_state(feature_meta, feature_arrays)
        cluster_images = arrays.get("cluster_images")
        if cluster_images is None or len(cluster_images) != len(centers):
            raise KMIError(f"{path}: model file lacks the cluster images of its features")
    elif image_shape is not None and int(np.prod(image_shape)) != centers.shape[1]:
        raise KMIError(f"{path}: centroid length does not match the image shape (corrupt model)")
    model = fitted_classifier(centers, classes, classes[codes], image_shape=image_shape,
                              features=features, cluster_images=cluster_images,
                              inertia=metadata.get("inertia"), params=metadata.get("params"))
    model.metadata_ = metadata
    return model
