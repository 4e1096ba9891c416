"""The documentation site builds with ``mkdocs build --strict`` (broken links, nav, API docs)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import vf_otel
import vf_otel.testing
import vf_otel.typing

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300
#: mkdocs, mkdocs-material, mkdocstrings and its Python handler (mkdocstrings[python]).
REQUIRED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """mkdocs.yml builds the site with no warning: every page, link and ::: target resolves."""
    if any(importlib.util.find_spec(name) is None for name in REQUIRED):
        pytest.skip(
            "mkdocs, mkdocs-material and mkdocstrings[python] are not installed "
            "(pip install -e '.[docs]')"
        )
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(  # noqa: S603 - our own interpreter, a fixed command
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reference" / "index.html").is_file()
    reference = (tmp_path / "reference" / "index.html").read_text()
    assert "vf_otel.VibefollowHandler" in reference
    assert "vf_otel.testing.VibefollowServer" in reference
    # Sphinx roles (:class:`X`) are not Markdown: mkdocstrings would show them as text.
    assert re.findall(r":(?:class|func|meth|attr|data|mod|exc):", reference) == []


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
    assert "pip install -e '.[docs]' && mkdocs build --strict" in section
