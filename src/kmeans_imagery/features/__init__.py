"""Feature pipelines: fitted-on-train transforms applied to image rows before K-means.

Every transform follows the scikit-learn transformer API (``fit``, ``transform``,
``fit_transform``). Its input is a float32 array of shape (n_samples, n_features) whose rows are
flattened images scaled to [0, 1] (or the output of the previous step); its output is float32.

A pipeline is written as a *spec*, a short string:

- ``+`` chains steps: ``"deskew+hog"`` deskews the images, then takes HOG descriptors of them;
- ``|`` puts pipelines side by side and concatenates their outputs: ``"deskew+l2|deskew+hog"``;
- parentheses group: ``"deskew+(l2|hog)"`` is the same as the line above, deskewing once;
- ``name:value`` sets a step's main parameter: ``"hog:4"`` (4x4-pixel cells), ``"pca:50"``,
  ``"umap:10"``; ``"pca:50:whiten"`` whitens; ``"onnx:PATH"`` runs a network exported to ONNX,
  with options such as ``"onnx:PATH:norm=imagenet"`` (:class:`OnnxEmbedding`);
- names are read in any case (``"PCA:20"`` is ``"pca:20"``), an ``onnx:`` path as written.

An error in a spec starts with ``features=SPEC``, the parameter (``--features`` on the command
line), and says what is valid.

A spec that is only a preset name (see :data:`FEATURE_PRESETS`) expands to that preset: ``"umap"``
alone means ``"deskew+pca:50+umap:10"``, while the ``umap`` inside ``"pca:50+umap"`` is the single
step. Steps that need images (``deskew``, ``hog``) must come before any step that leaves pixel space
(``hog``, ``pca``, ``umap``, a concatenation).

A fitted pipeline is stored without pickle: :meth:`FeaturePipeline.get_state` returns a JSON-able
dict and a dict of numpy arrays, and :meth:`FeaturePipeline.from_state` rebuilds it.

The pixels of a raster (``kmi segment``) use the same language through
:func:`make_pixel_features`, with the steps that make sense for a spectrum (``raw``, ``std``,
``l2``, ``pca``, ``umap``) and the spatial step ``nbr[:r]`` (each band's mean over the pixel's
neighbourhood); its default is :data:`DEFAULT_PIXEL_FEATURES`, and
:data:`DEFAULT_BUDGET_FEATURES` for the many small clusters of a label budget.

One concern per module: ``_spec`` (the language and presets; no numpy, so the CLI's help stays
fast), ``_steps`` (row steps and the step base class), ``_pixels`` (the neighbourhood step and the
linear form of a pixel pipeline), ``_hog``, ``_umap``, ``_onnx``, ``_pipeline`` (the pipeline, its
saved state, :func:`make_features` and :func:`make_pixel_features`). The steps load on first use.

Examples
--------
>>> import numpy as np
>>> from sklearn.datasets import load_digits
>>> from kmeans_imagery.features import FEATURE_PRESETS, make_features
>>> sorted(FEATURE_PRESETS)
['hog', 'l2', 'pixhog', 'raw', 'umap']
>>> X = (load_digits().data / 16).astype(np.float32)
>>> features = make_features("deskew+hog:4", (8, 8)).fit(X)
>>> features.transform(X[:3]).shape
(3, 36)
"""

from importlib import import_module

from ._spec import DEFAULT_BUDGET_FEATURES, DEFAULT_PIXEL_FEATURES, FEATURE_PRESETS

_LAZY = {
    "HOG": "._hog",
    "UMAP": "._umap",
    "OnnxEmbedding": "._onnx",
    "PCA": "._steps",
    "Concat": "._steps",
    "Deskew": "._steps",
    "Identity": "._steps",
    "L2Normalize": "._steps",
    "Standardize": "._steps",
    "Neighbourhood": "._pixels",
    "FeaturePipeline": "._pipeline",
    "make_features": "._pipeline",
    "make_pixel_features": "._pipeline",
    "reading_color": "._pipeline",
    "reading_size": "._pipeline",
}

__all__ = ["DEFAULT_BUDGET_FEATURES", "DEFAULT_PIXEL_FEATURES", "FEATURE_PRESETS", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
