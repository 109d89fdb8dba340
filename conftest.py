"""Pytest set-up shared by the test suite and the docstring examples, which run as doctests.

pyproject's pytest options collect ``src/kmeans_imagery`` with ``--doctest-modules``: only doctests
are kept from there, and an example that imports an optional package that is not installed is
skipped with the extra to install, so a partial install still collects every module.
"""

import importlib.util
import os
import re
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

pytest_plugins = ["pytester"]  # tests/test_docstrings.py runs this set-up on a package it writes

SRC = Path(__file__).resolve().parent / "src"
_IMPORT = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    """Keep tests and examples off the user's cache and data folders, and off the network."""
    from kmeans_imagery.datasets import registry

    def no_network(url, output_file, pooch):
        raise OSError(f"tests never download ({url})")

    monkeypatch.setattr(registry, "default_downloader", no_network)
    monkeypatch.delenv("KMI_DATA_DIR", raising=False)
    monkeypatch.setenv("KMI_CACHE_DIR", str(tmp_path_factory.mktemp("kmi-cache")))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        if isinstance(item, DoctestItem):
            missing = sorted({name for name in _IMPORT.findall(_example_source(item))
                              if importlib.util.find_spec(name) is None})
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"the example needs {', '.join(missing)}, "
                                                        f"from an extra that is not installed"))
        elif item.path.is_relative_to(SRC):
            dropped.append(item)
            continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _example_source(item):
    return "".join(example.source for example in item.dtest.examples)
