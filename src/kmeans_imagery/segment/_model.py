"""Pixel models in the ``.kmi`` model format.

A pixel model is a ``.kmi`` zip archive like an image model (see :mod:`kmeans_imagery.model_io`),
with ``"kind": "pixels"`` in its metadata, the fitted pixel feature pipeline stored as image models
store theirs (its state under ``features`` and its arrays under ``features/``, see
:meth:`kmeans_imagery.features.FeaturePipeline.get_state`), facts about the bands it was fitted on
under ``bands``, and the centroids ``cluster_centers`` (K x d float32). Nothing is pickled;
:func:`kmeans_imagery.load_model` refuses a pixel model with a message pointing to
``kmi segment --model``.
"""

from pathlib import Path

from ..errors import KMIError
from ..features import FeaturePipeline
from ..model_io import (
    FEATURE_PREFIX,
    FORMAT_NAME,
    FORMAT_VERSION,
    PIXEL_MODEL_KIND,
    _atomic_zip,
    read_model_file,
)
from ._classify import PixelModel

__all__ = ["load_pixel_model", "save_pixel_model"]

def save_pixel_model(model, path, *, bands, training):
    """Write a :class:`~._classify.PixelModel` atomically.

    Parameters
    ----------
    model : PixelModel
    path : path-like
    bands : dict
        JSON-able facts about the bands: ``count``, ``numbers``, ``dtype``.
    training : dict
        JSON-able facts about the training: scene name, sample size, seed, inertia.
    """
    from .. import __version__

    feature_meta, feature_arrays = model.features.get_state()
    arrays = {"cluster_centers": model.centers}
    arrays.update({FEATURE_PREFIX + name: value for name, value in feature_arrays.items()})
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": PIXEL_MODEL_KIND,
        "features": feature_meta,
        "bands": bands,
        "training": training,
        "written_by": f"kmeans-imagery {__version__}",
    }
    _atomic_zip(Path(path), metadata, arrays)


def load_pixel_model(path):
    """Read a pixel model written by :func:`save_pixel_model`.

    Returns
    -------
    model : PixelModel
    metadata : dict

    Raises
    ------
    KMIError
        When the file is not a pixel model or is corrupt.
    """
    metadata, arrays = read_model_file(path)
    if metadata.get("kind") != PIXEL_MODEL_KIND:
        raise KMIError(f"{path} is an image model, not a pixel model from kmi segment")
    centers = arrays.get("cluster_centers")
    meta = metadata.get("features")
    if centers is None or centers.ndim != 2 or centers.dtype.kind != "f" or not isinstance(meta, dict):
        raise KMIError(f"{path}: the pixel model's arrays are inconsistent (corrupt model file)")
    try:
        state = {name[len(FEATURE_PREFIX):]: value for name, value in arrays.items()
                 if name.startswith(FEATURE_PREFIX)}
        features = FeaturePipeline.from_state(meta, state)
    except KMIError as error:
        raise KMIError(f"{path}: the pixel model's features are unreadable ({error})") from None
    except (KeyError, TypeError, ValueError) as error:
        raise KMIError(f"{path}: the pixel model's features are unreadable ({error!r})") from None
    if features.n_features_out_ != centers.shape[1]:
        raise KMIError(f"{path}: centroid width does not match the features (corrupt model file)")
    return PixelModel(features, centers), metadata
