"""The documentation site builds with ``mkdocs build --strict`` (broken links, nav, API docs)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
