"""The public API is documented: every public module defines ``__all__``, and every public function
and class in it has a numpydoc docstring with an Examples section (run as doctests by ``make test``).

Public modules are found by walking the package: every module or package whose dotted name has no
part starting with ``_``, except ``kmeans_imagery.cli`` (documented by the CLI reference). Tests are
parametrised by module, so ``-k datasets`` checks one area.
"""

import importlib
import inspect
import warnings
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString

import kmeans_imagery
from kmeans_imagery._public_api import CLI_PACKAGE, PACKAGE, public_modules

ROOT = Path(__file__).resolve().parents[1]
MODULES = public_modules()


def public_callables(module):
    """``(name, object)`` for every function and class in the module's ``__all__``."""
    return [(name, getattr(module, name)) for name in module.__all__
            if inspect.isclass(getattr(module, name)) or inspect.isroutine(getattr(module, name))]


def documented_names(doc):
    """Parameter names as a docstring lists them (``a, b : int`` names two; ``**params`` is params)."""
    return [name.strip().lstrip("*") for param in doc["Parameters"] for name in param.name.split(",")]


def signature_names(obj):
    """The parameters a docstring must document (``*args``/``**kwargs`` by their bare names)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    return [name for name in signature.parameters if name not in ("self", "cls")]


def test_walk_finds_the_package_and_skips_private_and_cli_modules():
    assert PACKAGE in MODULES and "kmeans_imagery.engine.kmeans" in MODULES
    assert not [name for name in MODULES if "._" in name or name.startswith(CLI_PACKAGE)]


@pytest.mark.parametrize("module_name", MODULES)
def test_module_defines_all(module_name):
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), list | tuple), f"{module_name} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_callables_have_numpydoc_examples(module_name):
    module = importlib.import_module(module_name)
    problems = []
    for name, obj in public_callables(module):
        text = inspect.getdoc(obj)
        if not text:
            problems.append(f"{name}: no docstring")
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            doc = NumpyDocString(text)
        problems += [f"{name}: {warning.message}" for warning in caught]
        if not "".join(doc["Examples"]).strip():
            problems.append(f"{name}: no Examples section")
        elif ">>>" not in "\n".join(doc["Examples"]):
            problems.append(f"{name}: the Examples section has no doctest")
        in_signature = signature_names(obj)
        documented = documented_names(doc)
        if in_signature is None:
            continue
        unknown = [p for p in documented if p not in in_signature]
        # Records (named tuples, dataclasses) document their fields as Attributes instead.
        undocumented = [] if doc["Attributes"] and not documented else \
            [p for p in in_signature if p not in documented]
        if unknown:
            problems.append(f"{name}: documents parameters not in its signature: {unknown}")
        if undocumented:
            problems.append(f"{name}: leaves parameters undocumented: {undocumented}")
        if not unknown and not undocumented and \
                documented != sorted(documented, key=in_signature.index):
            problems.append(f"{name}: parameters not in the signature's order: {documented}")
    assert not problems, f"{module_name}:\n  " + "\n  ".join(problems)


def test_module_docstring_lists_where_lazy_names_live():
    for name, home in kmeans_imagery._LAZY.items():
        assert f"{name}" in kmeans_imagery.__doc__ and home.lstrip(".") in kmeans_imagery.__doc__


def test_only_doctests_are_collected_under_src_and_missing_extras_skip(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    package = pytester.path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_helpers.py").write_text(
        "def test_not_a_doctest():\n    assert False\n\n\n"
        "def needs_extra():\n    \"\"\"\n    >>> import no_such_extra_package\n    \"\"\"\n\n\n"
        "def runs():\n    \"\"\"\n    >>> 1 + 1\n    2\n    \"\"\"\n")
    result = pytester.runpytest("--doctest-modules", "src", "-rs")
    result.assert_outcomes(passed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["*needs no_such_extra_package, from an extra*"])
