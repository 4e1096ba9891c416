"""Shared fixtures: a handler wired to the local server, and clean logging state."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import pytest

import vf_otel
from vf_otel._delivery import threads
from vf_otel._delivery.pipeline import Pipeline
from vf_otel._delivery.policy import Timing
from vf_otel.testing import VibefollowServer

HandlerFactory = Callable[..., vf_otel.VibefollowHandler]

# A pytest started as a background job of a shell without job control (`pytest &` in a
# script, some CI runners) inherits SIGINT ignored, and so would every process a test
# starts: a dev server or `vf-otel devserver` told to stop with SIGINT would then never
# stop. Python's own handler here gives them the default action back (a handler, unlike
# SIG_IGN, is not inherited across exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_vibefollow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real VIBEFOLLOW_* settings."""
    for name in list(__import__("os").environ):
        if name.startswith("VIBEFOLLOW_"):
            monkeypatch.delenv(name)


class SkipClock:
    """A monotonic clock that runs with real time and jumps forward when a test (or a
    retry's wait) says so."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self._lock = threading.Lock()  # sender threads skip their waits side by side

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass at once (a hold or cool-down the test does not wait out)."""
        with self._lock:
            self.skipped += seconds

    def retry_wait(self, stop: threads.Event, seconds: float) -> bool:
        """``Timing.retry_wait``: a retry's backoff or Retry-After passes at once, on this
        clock; True (the wait is cut short) once delivery is stopping."""
        if stop.is_set():
            return True
        self.advance(seconds)
        return False


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> SkipClock:
    """Every pipeline built in the test runs on fast backoff and cool-down and on a clock
    the test can move forward (the one Timing a Pipeline is given, injected here)."""
    clock = SkipClock()
    # Backoff and cool-down short enough that a retry or a probe follows at once, and a
    # retry's wait (a backoff, a Retry-After) passed by moving the clock. The holds a
    # retry does not wait out (a long Retry-After, a refused key, a redirect) keep their
    # length: a test skips them (advance()).
    timing = Timing(
        now=clock,
        backoff_base=0.002,
        backoff_cap=0.01,
        cooldown=0.01,
        cooldown_cap=0.04,
        retry_wait=clock.retry_wait,
    )
    real_init = Pipeline.__init__

    def init(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timing", timing)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "__init__", init)
    return clock


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Restore the root logger and the logger tree after a test reconfigures logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def server(vibefollow_server: VibefollowServer) -> VibefollowServer:
    """A local Vibefollow API for this test alone (the plugin's ``vibefollow_server``).

    A module that shares one across its tests defines its own, module-scoped.
    """
    return vibefollow_server


@pytest.fixture
def make_handler(vibefollow_server: VibefollowServer) -> Iterator[HandlerFactory]:
    """Build handlers pointed at the local server; all of them are closed afterwards."""
    made: list[vf_otel.VibefollowHandler] = []

    def factory(**options: Any) -> vf_otel.VibefollowHandler:
        options.setdefault("api_key", vibefollow_server.api_key)
        options.setdefault("base_url", vibefollow_server.base_url)
        options.setdefault("flush_interval", 60.0)  # tests flush explicitly
        handler = vf_otel.VibefollowHandler(**options)
        made.append(handler)
        return handler

    yield factory
    for handler in made:
        handler.close()


@pytest.fixture
def root_handler(vibefollow_server: VibefollowServer) -> Iterator[vf_otel.VibefollowHandler]:
    """A handler on the root logger (where vf_otel.event() records go), closed afterwards."""
    made = vf_otel.VibefollowHandler(
        api_key=vibefollow_server.api_key, base_url=vibefollow_server.base_url
    )
    root = logging.getLogger()
    root.addHandler(made)
    yield made
    root.removeHandler(made)
    made.close()


@pytest.fixture
def app_logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A fresh application logger at DEBUG that does not propagate to root."""
    logger = logging.getLogger(f"app.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)


#: For a child that must not send on a timer: only its flushes and its exit deliver
#: (nor at once when quiet: adaptive batching off).
NO_FLUSH_TIMER: Final[Mapping[str, str]] = MappingProxyType(
    {"VIBEFOLLOW_FLUSH_INTERVAL": "3600", "VIBEFOLLOW_ADAPTIVE_BATCHING": "false"}
)


def server_env(
    server: VibefollowServer,
    *,
    drop: tuple[str, ...] = (),
    app_env: Mapping[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """This process's environment for a child configured from VIBEFOLLOW_* for ``server``.

    Without the variables named VIBEFOLLOW_* or starting with a ``drop`` prefix; then
    ``app_env`` (the app's own settings, as a page writes them); then ``server``'s
    VIBEFOLLOW_API_KEY and VIBEFOLLOW_BASE_URL; then ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBEFOLLOW_", *drop))}
    env |= app_env or {}
    env |= {"VIBEFOLLOW_API_KEY": server.api_key, "VIBEFOLLOW_BASE_URL": server.base_url}
    return env | extra


#: A hang guard for a child process, not a timing assertion.
HANG_GUARD: Final = 120.0
#: How long ``wait_until`` waits for a condition: a hang guard, not a timing assertion.
CONDITION_GUARD: Final = 30.0


def wait_until(
    condition: Callable[[], object], timeout: float = CONDITION_GUARD, poll: float = 0.005
) -> bool:
    """Whether ``condition()`` became true within ``timeout`` (checked every ``poll`` s).

    For a test that waits for something to happen rather than sleeping a fixed time:
    it goes on as soon as it holds. ``timeout`` is a hang guard, not a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def run_script(
    server: VibefollowServer, tmp_path: Path, source: str, *args: str, timeout: float = HANG_GUARD
) -> subprocess.CompletedProcess[str]:
    """Write ``source`` (dedented) to ``tmp_path/app.py`` and run it with ``args`` as
    ``run_python`` does, configured from VIBEFOLLOW_* for ``server``."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source))
    return run_python(server, [str(script), *args], timeout=timeout)


def run_python(
    server: VibefollowServer,
    args: list[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    drop: tuple[str, ...] = (),
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args``, configured from VIBEFOLLOW_* for ``server``
    (``drop`` and ``extra`` as for ``server_env``); ``timeout`` is a hang guard, not a
    timing assertion."""
    return subprocess.run(  # noqa: S603 - our own interpreter and scripts
        [sys.executable, *args],
        env=server_env(server, drop=drop, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Captured output with lone surrogates (tests of hostile input log them) written as
    escapes, so a report can be encoded: pytest-xdist sends reports as UTF-8."""
    report = yield
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for title, text in report.sections
    ]
    return report
