"""scikit-learn's own k-means tests, run against the project's KMeans and MiniBatchKMeans.

The suite is read at test time from the installed scikit-learn
(``sklearn/cluster/tests/test_k_means.py``): its source is parsed, every ``from sklearn.cluster
import ...`` is followed by a rebinding of ``KMeans`` and ``MiniBatchKMeans`` to ours (so the
parametrizations, evaluated as the module is defined, already hold our classes), and its tests are
collected from here. Sparse cases run as scikit-learn parametrizes them (CSR matrices and arrays).

Tests of scikit-learn's private helpers and of its functions (``k_means``, ``kmeans_plusplus``) say
nothing about our estimators: they are set aside in :data:`SET_ASIDE` with the reason. The few
tests our engine does not pass by design are expected failures in :data:`KNOWN_FAILURES`, each with
its reason (the README lists them too); ``strict`` makes one that starts passing fail the run.
"""

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import kmeans_imagery

SUITE = "sklearn.cluster.tests.test_k_means"

#: Tests of scikit-learn internals: set aside, with the reason.
SET_ASIDE = {
    "test_relocate_empty_clusters": "calls scikit-learn's private _relocate_empty_clusters_* helpers",
    "test_minibatch_update_consistency": "calls scikit-learn's private _mini_batch_step and _labels_inertia",
    "test_minibatch_reassign": "calls scikit-learn's private _mini_batch_step and _labels_inertia",
    "test_euclidean_distance": "calls scikit-learn's private _euclidean_*_wrapper helpers",
    "test_inertia": "calls scikit-learn's private _inertia_dense and _inertia_sparse",
    "test_is_same_clustering": "calls scikit-learn's private _is_same_clustering",
    "test_k_means_function": "tests scikit-learn's k_means function, not an estimator",
    "test_kmeans_plusplus_wrong_params": "tests scikit-learn's kmeans_plusplus function",
    "test_kmeans_plusplus_output": "tests scikit-learn's kmeans_plusplus function",
    "test_kmeans_plusplus_norms": "tests scikit-learn's kmeans_plusplus function",
    "test_kmeans_plusplus_dataorder": "tests scikit-learn's kmeans_plusplus function",
    "test_sample_weight_init": "calls scikit-learn's private _init_centroids method "
    "(tests/test_engine.py checks weighted seeding)",
    "test_sample_weight_zero": "calls scikit-learn's private _init_centroids method "
    "(tests/test_engine.py checks that zero-weight rows are never seeds)",
}

#: Tests our engine fails by design: test name -> reason (listed in the README).
KNOWN_FAILURES = {}


def _load_suite():
    """The suite's module namespace, with KMeans and MiniBatchKMeans bound to ours."""
    origin = Path(importlib.util.find_spec(SUITE).origin)
    tree = ast.parse(origin.read_text(), filename=str(origin))
    rebind = ast.parse("KMeans, MiniBatchKMeans = _kmi.KMeans, _kmi.MiniBatchKMeans").body
    body = []
    for node in tree.body:
        body.append(node)
        if isinstance(node, ast.ImportFrom) and node.module == "sklearn.cluster":
            body.extend(rebind)
    tree.body = body
    namespace = {"__name__": SUITE, "__file__": str(origin), "_kmi": kmeans_imagery}
    exec(compile(tree, str(origin), "exec"), namespace)
    assert namespace["KMeans"] is kmeans_imagery.KMeans
    return namespace


def _collect():
    tests = {}
    for name, obj in _load_suite().items():
        if not (name.startswith("test_") and callable(obj)):
            continue
        if name in SET_ASIDE:
            obj = pytest.mark.skip(reason=f"scikit-learn internals: {SET_ASIDE[name]}")(obj)
        elif name in KNOWN_FAILURES:
            obj = pytest.mark.xfail(reason=KNOWN_FAILURES[name], strict=True)(obj)
        tests[name] = obj
    return tests


globals().update(_collect())


@pytest.fixture
def global_random_seed():
    """scikit-learn's default seed for the tests that take one."""
    return 42


@pytest.fixture(params=[np.float64, np.float32])
def global_dtype(request):
    return request.param
