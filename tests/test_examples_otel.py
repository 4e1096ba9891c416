"""The configure and track examples run standalone against the embedded server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60.0


def run_example(name: str) -> str:
    """Run examples/<name> with no VIBEFOLLOW_API_KEY (embedded server) and return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-W", "error", str(ROOT / "examples" / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_configure_example_sends_a_log_event_and_a_span_event() -> None:
    """configure_example.py delivers its tagged record, its traits and its tagged span."""
    lines = sorted(run_example("configure_example.py").splitlines())
    assert lines == [
        "event: subscription_changed usr_42 {'to': 'pro'}",
        "event: user_signed_up usr_42 {}",
        "user: {'external_user_id': 'usr_42', 'email': 'ada@example.com', "
        "'traits': {'plan': 'trial'}}",
    ]


@pytest.mark.slow
def test_track_example_sends_only_successful_calls() -> None:
    """track_example.py sends the successful method call and the async step, not the failure."""
    lines = sorted(run_example("track_example.py").splitlines())
    assert lines == [
        "event: feature_used usr_42 {'feature': 'export_csv'}",
        "event: onboarding_step usr_7 {'step': 2}",
    ]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("doc", ["spans.md"])
def test_doc_example_runs(doc: str) -> None:
    """The first Python example of the doc runs as written (its asserts included)."""
    (block, *_) = _python_blocks(ROOT / "docs" / doc)
    exec(compile(block, f"docs/{doc}", "exec"), {})  # noqa: S102 - our own documentation
