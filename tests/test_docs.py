"""The documentation site: it builds with warnings as errors, its links resolve, its pages load.

The site is built once per session (notebooks of examples/ included, executed) into a temporary
folder; ``-m "not docs"`` leaves these tests out.
"""

import importlib
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from kmeans_imagery._public_api import public_modules

pytestmark = pytest.mark.docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXTENSIONS = ("sphinx", "numpydoc", "sphinx_click", "myst_nb", "furo")


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The built site's folder; the build's output is in the failure message."""
    for name in EXTENSIONS:
        pytest.importorskip(name, reason=f"{name} not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, KMI_CACHE_DIR=str(out / "kmi-cache"))  # conf.py sets MPLBACKEND
    env.pop("KMI_DATA_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return out / "html"


@pytest.fixture(scope="session")
def pages(site):
    return sorted(site.rglob("*.html"))


class _Page(HTMLParser):
    """The ids of a page and the href/src of its tags."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in ("href", "src") and value is not None:
                self.links.append(value)


def _parse(path):
    parser = _Page()
    parser.feed(path.read_text("utf-8"))
    return parser


def broken_links(site, pages):
    """``page: link`` for every internal href/src that names no file, or no id in its page."""
    parsed = {}

    def page(path):
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    root = site.resolve()
    broken = []
    for source in (path.resolve() for path in pages):
        for link in page(source).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:  # http(s), mailto, data: never fetched
                continue
            target = (source.parent / unquote(parts.path)).resolve() if parts.path else source
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or root not in target.parents:
                broken.append(f"{source.relative_to(root)}: {link}")
            elif (parts.fragment and target.suffix == ".html"
                  and unquote(parts.fragment) not in page(target).ids):
                broken.append(f"{source.relative_to(root)}: {link} (no such id)")
    return broken


def test_the_site_has_every_part(site):
    for page in ("index", "getting-started", "guide/tutorial", "guide/own-images", "guide/rasters",
                 "guide/collections", "guide/few-labels", "guide/scale", "guide/python", "engine",
                 "reference/api", "reference/cli", "reference/model-files", "reference/results-json",
                 "examples"):
        assert (site / f"{page}.html").is_file(), page
    notebooks = sorted(path.stem for path in (DOCS.parent / "examples").glob("*.ipynb"))
    assert sorted(path.stem for path in (site / "examples").glob("*.html")) == notebooks
    # The notebooks are stored without outputs: outputs on their pages come from the build's run.
    assert [name for name in notebooks
            if 'class="cell_output' not in (site / "examples" / f"{name}.html").read_text("utf-8")] == []


def test_every_command_and_option_is_in_the_cli_reference(site):
    import click

    from kmeans_imagery.cli import COMMANDS, cli

    ids = _parse(site / "reference" / "cli.html").ids
    context = click.Context(cli, info_name="kmi")
    missing = []
    for name in COMMANDS:  # the group lists its commands lazily: each must still have a section
        if f"kmi-{name}" not in ids:
            missing.append(name)
        for option in cli.get_command(context, name).params:
            if isinstance(option, click.Option) and not option.hidden and not any(
                    f"cmdoption-kmi-{name}-{flag.lstrip('-')}" in ids
                    for flag in option.opts + option.secondary_opts):
                missing.append(f"{name} {option.opts[0]}")
    assert missing == []


def test_every_public_name_is_documented_where_users_import_it(site):
    # Sphinx's own duplicate-object warnings (errors here) ensure that nothing is documented twice.
    modules = public_modules()
    api = site / "reference" / "api"
    assert sorted(page.stem for page in api.glob("*.html")) == sorted(modules)
    documented = set().union(*(_parse(page).ids for page in api.glob("*.html")))
    missing = [f"{module}.{name}" for module in modules
               for name in getattr(importlib.import_module(module), "__all__", ())
               if not any(f"{home}.{name}" in documented for home in modules)]
    assert missing == []
    assert {"kmeans_imagery.KMeans", "kmeans_imagery.segment.segment"} <= documented
    assert not {"kmeans_imagery.engine.kmeans.KMeans", "kmeans_imagery.segment.api.segment"} & documented
    # A reference to another name of an object (reference/api.md names
    # kmeans_imagery.datasets.load_dataset) links to where it is documented.
    assert 'href="api/kmeans_imagery.html#kmeans_imagery.load_dataset"' in (
        site / "reference" / "api.html").read_text("utf-8")


def test_internal_links_resolve(site, pages):
    assert broken_links(site, pages) == []


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "a.html").write_text('<a id="top" href="b.html#x">b</a><a href="#top">up</a>'
                                     '<img src="missing.png"><a href="https://example.org/x">out</a>')
    (tmp_path / "b.html").write_text('<p id="y">no x here</p>')
    assert broken_links(tmp_path, [tmp_path / "a.html", tmp_path / "b.html"]) == [
        "a.html: b.html#x (no such id)", "a.html: missing.png"]


def load_in_frames(pages, probe, load_in_chromium):
    """Load every page in a frame of one probe page, in one browser run.

    Returns the PageLoad and how many frames hold a complete document with a title once all
    have loaded.
    """
    frames = "".join(f'<iframe src="{page.resolve().as_uri()}"></iframe>' for page in pages)
    script = ("<script>window.addEventListener('load', function () {"
              "var ok = Array.prototype.filter.call(document.querySelectorAll('iframe'), function (f) {"
              "var d = f.contentDocument; return d && d.readyState === 'complete' && d.title !== ''; });"
              "document.body.dataset.loaded = String(ok.length); });</script>")
    probe.write_text(f"<!DOCTYPE html><html><head><title>probe</title></head><body>{frames}{script}"
                     "</body></html>", "utf-8")
    done = load_in_chromium(probe, timeout=300)
    loaded = re.search(r'data-loaded="(\d+)"', done.dom)
    return done, int(loaded.group(1)) if loaded else 0


@pytest.mark.browser
def test_every_page_loads_in_chromium_without_console_messages(site, pages, tmp_path, load_in_chromium):
    done, loaded = load_in_frames(pages, tmp_path / "probe.html", load_in_chromium)
    assert loaded == len(pages)
    assert done.console == []


@pytest.mark.browser
def test_frames_report_their_console_errors(tmp_path, load_in_chromium):
    good, bad = tmp_path / "good.html", tmp_path / "bad.html"
    good.write_text("<title>good</title><p>fine</p>")
    bad.write_text("<title>bad</title><script>undefinedFunction()</script>")
    done, loaded = load_in_frames([good, bad], tmp_path / "probe.html", load_in_chromium)
    assert loaded == 2
    assert len(done.console) == 1 and "undefinedFunction" in done.console[0]
