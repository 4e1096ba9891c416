"""The documentation site builds with ``mkdocs build --strict`` (broken links, nav, API docs)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

import pytest

import vf_otel
import vf_otel.testing
import vf_otel.typing

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300
#: mkdocs, mkdocs-material, mkdocstrings and its Python handler (mkdocstrings[python]).
REQUIRED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")


#: The command README.md gives; the variable silences Material's end-of-life banner.
BUILD_COMMAND: Final = "pip install -e '.[docs]' && NO_MKDOCS_2_WARNING=1 mkdocs build --strict"


@dataclass(frozen=True)
class Build:
    """A finished ``mkdocs build --strict``: its status, its output, and the site."""

    returncode: int
    output: str
    site: Path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The site built once, as README.md says, for the tests of this module that read it."""
    if any(importlib.util.find_spec(name) is None for name in REQUIRED):
        pytest.skip(
            "mkdocs, mkdocs-material and mkdocstrings[python] are not installed "
            "(pip install -e '.[docs]')"
        )
    site = tmp_path_factory.mktemp("site")
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(  # noqa: S603 - our own interpreter, a fixed command
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    return Build(done.returncode, done.stdout + done.stderr, site)


@pytest.mark.slow
def test_mkdocs_build_strict(build: Build) -> None:
    """mkdocs.yml builds the site with no warning: every page, link and ::: target resolves."""
    assert build.returncode == 0, build.output
    assert "WARNING" not in build.output
    assert "end of life" not in build.output  # the build says nothing but its INFO lines
    reference = (build.site / "reference.html").read_text()
    assert "vf_otel.VibefollowHandler" in reference
    assert "vf_otel.testing.VibefollowServer" in reference
    # Sphinx roles (:class:`X`) are not Markdown: mkdocstrings would show them as text.
    assert re.findall(r":(?:class|func|meth|attr|data|mod|exc):", reference) == []
    # A bare `>>>` example renders as nested blockquotes; fenced, it is highlighted code.
    assert "<blockquote>" not in reference
    # The options every constructor takes as **options, each listed with its line.
    missing = [
        key
        for key in vf_otel.typing.Options.__annotations__
        if f'id="vf_otel.typing.Options.{key}"' not in reference
    ]
    assert missing == []


@pytest.mark.slow
def test_site_opened_from_disk_links_to_files(build: Build) -> None:
    """site/index.html works from file://: every relative link names a file, search included."""
    assert build.returncode == 0, build.output
    broken = []
    for page in build.site.rglob("*.html"):
        if page.name == "404.html":
            continue  # a web server's error page: its links are absolute on purpose
        for link in re.findall(r'(?:href|src)="([^"]*)"', page.read_text()):
            path = urllib.parse.unquote(link.split("#")[0].split("?")[0])
            if not path or re.match(r"^[a-z][a-z0-9+.-]*:", link):
                continue  # a fragment on the same page, or another site
            if not (page.parent / path).resolve().is_file():
                broken.append(f"{page.relative_to(build.site)} -> {link}")
    assert broken == []
    # The offline plugin: the search index as a script, so search needs no server.
    assert (build.site / "search" / "search_index.js").is_file()
    assert 'data-md-component="search"' in (build.site / "index.html").read_text()


@pytest.mark.parametrize("module", [vf_otel, vf_otel.testing, vf_otel.typing])
def test_reference_documents_every_public_name(module: ModuleType) -> None:
    """docs/reference.md has a ``:::`` entry for each name the module exports."""
    reference = (ROOT / "docs" / "reference.md").read_text()
    exported = set(module.__all__) - {"__version__"}
    missing = [name for name in exported if f"::: {module.__name__}.{name}\n" not in reference]
    assert missing == []


def test_readme_gives_the_docs_build_command() -> None:
    """README.md's Documentation section names the command test_mkdocs_build_strict runs."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Documentation") :]
    section = section[: section.index("\n## ", 1)]
    assert BUILD_COMMAND in section


@pytest.mark.parametrize("module", ["vf_otel.testing", "vf_otel.testing._server"])
def test_docstring_examples_run(module: str) -> None:
    """The ``>>>`` examples in the testing docstrings (fenced, so the reference renders them
    as code) give the output they show."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
