"""Sphinx configuration of the kmeans-imagery documentation site (``make docs``).

Two parts of the site are generated here at every build, into git-ignored paths:

- ``reference/api/<module>.rst``: one page per public module (``kmeans_imagery._public_api``), each
  public object documented once, on the page of the shallowest public module that exports it;
- ``examples``: a link to the repository's ``examples/`` folder, so that every notebook there is a
  page of the site, executed at build time in its own folder (relative paths work as from a clone).
"""

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The API pages and the notebooks' kernels (which inherit PYTHONPATH) use this checkout's package,
# installed or not, so that they document the same code.
sys.path.insert(0, str(ROOT / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
# No display anywhere. The notebooks' kernels inherit this environment and draw with the inline
# backend, which puts each figure into the cell's outputs (a kernel started with MPLBACKEND=Agg,
# as the test suite sets it, would show none); this process, whose imports autodoc runs, uses Agg.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import kmeans_imagery  # noqa: E402
from kmeans_imagery._public_api import public_modules  # noqa: E402

project = "kmeans-imagery"
author = "the kmeans-imagery developers"
copyright = "the kmeans-imagery developers"
release = version = kmeans_imagery.__version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "sphinx_click",
    "myst_nb",
]

exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = f"kmeans-imagery {release}"
html_static_path = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links work for H1-H3

# numpydoc renders the docstrings; autodoc's own member lists document the methods (numpydoc's
# autosummary tables would need stub pages of their own).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # the docstrings give the types, with shapes

# Notebooks: executed at every build in their own folder; a cell error fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True


# -- The API reference --------------------------------------------------------------------------

def _directive(obj):
    if isinstance(obj, type):
        return "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def api_pages():
    """Page text per public module, and the other names of the documented objects.

    A page holds the module's docstring, then the objects its ``__all__`` names (none without
    ``__all__``). An object re-exported by a deeper module (the same function or class, or the
    same constant under the same name) is documented on the shallowest module's page, where users
    import it from, and listed with a link on the others.

    Returns
    -------
    pages : dict of str to str
        Module name -> reST text.
    aliases : dict of str to str
        Every other dotted name of a documented object (where a deeper module re-exports it, where
        a private module defines it) -> the name it is documented under.
    """
    home, pages, aliases = {}, {}, {}
    for name in public_modules():
        module = importlib.import_module(name)
        entries, elsewhere = [], []
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            key = id(obj) if callable(obj) else (id(obj), attr)
            if key in home:
                elsewhere.append(home[key])
                aliases[f"{name}.{attr}"] = home[key]
                continue
            home[key] = f"{name}.{attr}"
            defined = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
            if callable(obj) and defined != home[key]:
                aliases.setdefault(defined, home[key])
            entries.append(f".. {_directive(obj)}:: {attr}")
        lines = [name, "=" * len(name), "", f".. automodule:: {name}", "   :no-members:", "",
                 f".. currentmodule:: {name}", ""]
        for entry in entries:
            lines += [entry, ""]
        if elsewhere:
            lines += ["Also exported here (documented where users import them from):", ""]
            lines += [f"- :py:obj:`{target}`" for target in elsewhere]
            lines.append("")
        pages[name] = "\n".join(lines)
    return pages, aliases


#: Filled at every build by :func:`generate_api`; read by :func:`resolve_alias`.
ALIASES = {}


def _write_if_changed(path, text):
    # Unchanged pages keep their time stamps, so an incremental build re-reads only what changed.
    if not path.exists() or path.read_text("utf-8") != text:
        path.write_text(text, "utf-8")


def generate_api(app):
    folder = DOCS / "reference" / "api"
    folder.mkdir(parents=True, exist_ok=True)
    pages, aliases = api_pages()
    ALIASES.clear()
    ALIASES.update(aliases)
    for stale in folder.glob("*.rst"):
        if stale.stem not in pages:
            stale.unlink()
    for name, text in pages.items():
        _write_if_changed(folder / f"{name}.rst", text)


def link_examples():
    """``docs/examples`` -> ``../examples``: the notebooks run where they are, as from a clone.

    Returns the exclude patterns of everything in ``examples/`` that is not a notebook (data,
    outputs), which is not a page.
    """
    link = DOCS / "examples"
    if not link.is_symlink():
        link.symlink_to(Path("..") / "examples", target_is_directory=True)
    return [f"examples/{path.relative_to(ROOT / 'examples').as_posix()}"
            for path in sorted((ROOT / "examples").rglob("*"))
            if path.is_file() and path.suffix != ".ipynb"]


exclude_patterns += link_examples()


def resolve_alias(app, env, node, contnode):
    """A reference to another name of a documented object (``kmeans_imagery.datasets.load_dataset``,
    ``kmeans_imagery.explore._choose_k.KChoice``) links to where it is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    module = node.get("py:module")
    home = ALIASES.get(target) or (module and ALIASES.get(f"{module}.{target}"))
    if not home:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], home,
                                             node, contnode)


def skip_foreign_members(app, what, name, obj, skip, options):
    """Document only what this project defines, not methods a base class brings in.

    scikit-learn's metadata-routing methods (``set_fit_request``, ...) are attached to every
    estimator class and would otherwise show up, with docstrings that link into scikit-learn's site.
    """
    module = getattr(obj, "__module__", None)
    if what == "class" and isinstance(module, str) and not module.startswith("kmeans_imagery"):
        return True
    return None


def drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant's documentation is its ``#:`` comment, never its type's docstring (str's, dict's)."""
    type_doc = type(obj).__doc__
    if what == "data" and type_doc and "\n".join(lines).strip() == inspect.cleandoc(type_doc):
        lines.clear()


# -- The CLI reference ----------------------------------------------------------------------------

# Characters that start inline markup in reST; click's help texts are plain text for a terminal.
_INLINE_MARKUP = re.compile(r"([\\*`|])|(?<=\w)(_)(?!\w)")
# What sphinx-click itself writes around the help texts, kept as markup.
_SPHINX_CLICK_PREFIXES = ("**Required** ", "| ")


def escape_click_help(app, ctx, lines):
    """Show the commands' help texts as written (``*.kmi``, ``l2|hog``), not as reST markup."""
    for index, line in enumerate(lines):
        body = line.lstrip(" ")
        if body.startswith(".. ") or re.match(r":[\w-]+:", body):
            continue  # sphinx-click's directives and fields (:default:, :options:)
        indent = line[:len(line) - len(body)]
        prefix = next((p for p in _SPHINX_CLICK_PREFIXES if body.startswith(p)), "")
        text = _INLINE_MARKUP.sub(lambda m: "\\" + m.group(0), body[len(prefix):])
        lines[index] = indent + prefix + text


def setup(app):
    for event in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", escape_click_help)
    app.connect("builder-inited", generate_api)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-docstring", drop_type_docstrings, priority=100)  # before numpydoc
