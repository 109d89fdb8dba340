"""The public API of kmeans_imagery: one definition for the documentation site and the docstring tests.

Public modules are ``kmeans_imagery`` and every module or package below it whose dotted name has
no part starting with ``_``, except ``kmeans_imagery.cli`` and below (the command-line reference
documents it); their public names are those of their ``__all__`` (none without one).
Importing this file has no side effects.
"""

import importlib
import pkgutil

__all__ = ["CLI_PACKAGE", "PACKAGE", "public_modules"]

PACKAGE = "kmeans_imagery"
#: Documented by the CLI reference (sphinx-click) instead.
CLI_PACKAGE = "kmeans_imagery.cli"


def public_modules():
    """Dotted names of the public modules, shallowest first (packages are imported to list them)."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name == CLI_PACKAGE or info.name.startswith(f"{CLI_PACKAGE}."):
            continue
        names.append(info.name)
    return sorted(names, key=lambda name: (name.count("."), name))
