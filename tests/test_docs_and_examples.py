"""Docs and examples are code: the quickstart runs, documented tables match the code."""

from __future__ import annotations
import __future__

import os
import pickle
import re
import subprocess
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import vf_otel
import vf_otel.testing
from vf_otel._config import DEFAULTS, ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_quickstart_runs_against_the_embedded_server() -> None:
    """examples/quickstart.py with no API key delivers to the local server and says so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "flushed: all delivered" in done.stdout
    assert done.stdout.count("  event ") == 3
    assert "user  {'external_user_id': 'usr_42'" in done.stdout
    # The output docs/quickstart.md shows is this run's: its stats line has the same fields
    # (it had gone stale once Stats grew users_in_flight and users_parked).
    shown = re.search(r"^stats: +(Stats\(.*\))$", (DOCS / "quickstart.md").read_text(), re.M)
    real = re.search(r"^stats: +(Stats\(.*\))$", done.stdout, re.M)
    assert shown is not None
    assert real is not None
    assert re.findall(r"(\w+)=", shown.group(1)) == re.findall(r"(\w+)=", real.group(1))


def test_configuration_doc_lists_every_option() -> None:
    """docs/configuration.md has a row per option and no other, with its env var and default."""
    table = (DOCS / "configuration.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `?(?:VIBEFOLLOW_\w+|—)`? \|", table, flags=re.MULTILINE)
    assert sorted(rows) == sorted([*ENV_VARS, "on_error", "before_send", "transport"])
    for name, env in ENV_VARS.items():
        row = next((line for line in table.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, name
        assert f"`{env}`" in row, name
        default = DEFAULTS[name]
        shown = "—" if default is None else str(default).lower()
        assert f"| `{shown}` |" in row.lower() or f"| {shown} |" in row.lower(), (name, row)


def test_lifecycle_table_matches_the_code() -> None:
    """docs/logging.md's lifecycle table is exactly vf_otel.CANONICAL_EVENTS."""
    text = (DOCS / "logging.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", text, flags=re.MULTILINE))
    documented = {
        name: tuple(re.findall(r"`(\w+)`", required))
        for name, required in rows.items()
        if name in vf_otel.CANONICAL_EVENTS
    }
    assert documented == dict(vf_otel.CANONICAL_EVENTS)


def test_testing_doc_example_runs() -> None:
    """The first example of docs/testing.md runs as written."""
    (block, *_) = _python_blocks(DOCS / "testing.md")
    exec(compile(block, "docs/testing.md", "exec"), {})  # noqa: S102 - our own documentation


@pytest.mark.parametrize("module", [vf_otel, vf_otel.testing], ids=lambda m: m.__name__)
def test_all_matches_the_public_names(module: object) -> None:
    """__all__ is sorted and names exactly the public attributes of the package."""
    exported = module.__all__  # type: ignore[attr-defined]
    public = {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), type(sys) | __future__._Feature)
    }
    assert list(exported) == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert set(exported) - {"__version__"} == public


def test_public_names_say_vf_otel() -> None:
    """What vf_otel exports names vf_otel as its module (reprs, pickles, tracebacks), and the
    type hints of its classes still resolve."""
    private = {
        name: getattr(vf_otel, name).__module__
        for name in vf_otel.__all__
        if callable(getattr(vf_otel, name)) and getattr(vf_otel, name).__module__ != "vf_otel"
    }
    assert private == {}
    assert repr(vf_otel.VibefollowHandler) == "<class 'vf_otel.VibefollowHandler'>"
    error = pickle.loads(pickle.dumps(vf_otel.AuthError("no key")))  # noqa: S301 - our own bytes
    assert type(error) is vf_otel.AuthError
    assert str(error) == "no key"
    hints = {cls.__name__: typing.get_type_hints(cls) for cls in (vf_otel.Event, vf_otel.Stats)}
    assert hints["Stats"]["dropped"] == Mapping[str, int]
    assert hints["Event"]["properties"] == Mapping[str, Any]
