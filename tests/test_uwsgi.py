"""uWSGI (the pyuwsgi wheel): every event delivered once, from master-loaded or lazy apps."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vf_otel._delivery.runtime import NO_THREADS_WARNING, threads_enabled, watch_uwsgi
from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, server_env

pytest.importorskip("pyuwsgi", reason="the uWSGI tests need the pyuwsgi package")

REQUESTS = 20
BOOT_TIMEOUT = 30.0
#: shutdown_timeout is 2 s below: a stop that used to hang (uWSGI's mercy is 60 s) ends well inside.
EXIT_BOUND = 15.0
#: The ``uwsgi`` entry point's code: the wheel has no ``python -m pyuwsgi``.
_RUN = "import sys, pyuwsgi; sys.exit(pyuwsgi.run())"
_BOUND = re.compile(r"bound to TCP address 127\.0\.0\.1:(\d+)")

_APP = """\
import logging
import os

import vf_otel

logging.getLogger().addHandler(vf_otel.VibefollowHandler(shutdown_timeout=2))
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("shop")


def application(environ, start_response):
    n = environ["PATH_INFO"].strip("/")
    log.info("viewed", extra={"vf_user": "usr_1", "vf_properties": {"n": n, "pid": os.getpid()}})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


@contextlib.contextmanager
def _uwsgi(
    server: VibefollowServer, tmp_path: Path, *options: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """uWSGI with a master and two workers serving ``_APP`` on a port the system picks."""
    (tmp_path / "shop_app.py").write_text(textwrap.dedent(_APP))
    log_path = tmp_path / "uwsgi.log"
    command = [sys.executable, "-c", _RUN, "--master", "--processes", "2"]
    command += ["--http-socket", "127.0.0.1:0", "--chdir", str(tmp_path), "--module", "shop_app"]
    command += ["--binary-path", sys.executable]  # a reload runs this again, in this venv
    with log_path.open("wb") as log:
        master = subprocess.Popen(  # noqa: S603 - our own interpreter and app
            [*command, *options],
            env=server_env(server, drop=("OTEL_",), app_env=NO_FLUSH_TIMER),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the finally reaches every worker
        )
    try:
        yield master, _wait_until_serving(master, log_path), log_path
    finally:
        if master.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(master.pid, signal.SIGKILL)
            master.wait(timeout=10)


def _wait_until_serving(
    master: subprocess.Popen[bytes], log_path: Path, *, spawned: int = 2, ready: int = 1
) -> int:
    """The port, once ``spawned`` workers were forked and ``ready`` apps loaded (so far)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and master.poll() is None:
        log = log_path.read_text()
        found = _BOUND.findall(log)  # a binary reload binds port 0 again: the last one
        if (
            found
            and log.count("spawned uWSGI worker") >= spawned
            and log.count(" ready in ") >= ready
        ):
            return int(found[-1])
        time.sleep(0.05)
    pytest.fail(f"uWSGI did not start:\n{log_path.read_text()}")


def _get(port: int, numbers: range) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for n in numbers:
            assert client.get(f"/{n}").status_code == 200


def _stop(master: subprocess.Popen[bytes], signum: int, log_path: Path) -> float:
    started = time.monotonic()
    master.send_signal(signum)
    try:
        master.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uWSGI did not stop:\n{log_path.read_text()}")
    return time.monotonic() - started


def _assert_each_once(server: VibefollowServer, expected: int) -> None:
    numbers = Counter(event["properties"]["n"] for event in server.events)
    assert numbers == Counter(str(n) for n in range(expected))


@pytest.mark.slow
@pytest.mark.parametrize("lazy", [False, True], ids=["preloaded", "lazy-apps"])
@pytest.mark.parametrize("threads", [True, False], ids=["enable-threads", "no-threads"])
def test_every_event_once_and_a_prompt_stop(
    vibefollow_server: VibefollowServer, tmp_path: Path, lazy: bool, threads: bool
) -> None:
    """Workers forked in C deliver each event once at SIGINT; without threads it says so."""
    options = ["--enable-threads"] if threads else []
    options += ["--lazy-apps"] if lazy else []
    with _uwsgi(vibefollow_server, tmp_path, *options) as (master, port, log_path):
        _wait_until_serving(master, log_path, ready=2 if lazy else 1)  # a lazy app loads per worker
        _get(port, range(REQUESTS))
        took = _stop(master, signal.SIGINT, log_path)
    log = log_path.read_text()
    _assert_each_once(vibefollow_server, REQUESTS)
    assert took < EXIT_BOUND, log
    assert (NO_THREADS_WARNING in log) is not threads, log
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_reload_then_die_on_term(vibefollow_server: VibefollowServer, tmp_path: Path) -> None:
    """A SIGHUP reload delivers the old workers' events, the new workers theirs; SIGTERM stops."""
    with _uwsgi(vibefollow_server, tmp_path, "--enable-threads", "--die-on-term") as (
        master,
        first_port,
        log_path,
    ):
        _get(first_port, range(REQUESTS))
        master.send_signal(signal.SIGHUP)
        port = _wait_until_serving(master, log_path, spawned=4, ready=2)  # the app loaded again
        _get(port, range(REQUESTS, 2 * REQUESTS))
        took = _stop(master, signal.SIGTERM, log_path)
    _assert_each_once(vibefollow_server, 2 * REQUESTS)
    assert took < EXIT_BOUND, log_path.read_text()


@pytest.mark.parametrize(
    ("opt", "expected"),
    [
        ({}, False),
        ({"enable-threads": True}, True),
        ({"threads": b"4"}, True),
        ({"threads": [b"1", b"8"]}, True),
        ({"threads": b"0"}, False),
        ({"master": True, "lazy-apps": True}, False),
    ],
)
def test_threads_enabled_reads_uwsgi_opt(opt: dict[str, object], expected: bool) -> None:
    """enable-threads or any threads option lets the delivery thread run; nothing else does."""
    assert threads_enabled(opt) is expected


def _fake_uwsgi(monkeypatch: pytest.MonkeyPatch, hook: object, opt: dict[str, object]) -> object:
    module = types.ModuleType("uwsgi")
    module.post_fork_hook = hook  # type: ignore[attr-defined]
    module.opt = opt  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    return module


def test_post_fork_hook_keeps_the_apps_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """vf-otel's post-fork hook is chained once and still calls the hook the app had set."""
    calls: list[str] = []
    module = _fake_uwsgi(monkeypatch, lambda: calls.append("app"), {"enable-threads": True})
    watch_uwsgi()
    hook = module.post_fork_hook  # type: ignore[attr-defined]
    watch_uwsgi()  # a second handler: not chained again
    assert module.post_fork_hook is hook  # type: ignore[attr-defined]
    hook()
    assert calls == ["app"]


def test_post_fork_joins_uwsgidecorators_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """With uwsgidecorators loaded, vf-otel joins its chain (its import would replace a hook)."""
    chain: list[object] = []
    decorators = types.ModuleType("uwsgidecorators")
    decorators.postfork_chain = chain  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgidecorators", decorators)
    module = _fake_uwsgi(monkeypatch, lambda: None, {"threads": b"2"})
    before = module.post_fork_hook  # type: ignore[attr-defined]
    watch_uwsgi()
    assert module.post_fork_hook is before  # type: ignore[attr-defined]
    assert len(chain) == 1
    assert callable(chain[0])


def test_no_threads_warns_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without enable-threads or threads, watching uWSGI warns, naming enable-threads."""
    _fake_uwsgi(monkeypatch, None, {"master": True})
    with pytest.warns(RuntimeWarning, match="enable-threads = true"):
        watch_uwsgi()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_c_fork_without_hooks_is_noticed_at_flush(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """A child forked by libc's fork (no at-fork hooks) delivers its events at flush and exits."""
    script = tmp_path / "c_fork.py"
    script.write_text(
        textwrap.dedent(
            """\
            import ctypes, logging, os, sys

            import vf_otel

            handler = vf_otel.VibefollowHandler(shutdown_timeout=2)
            log = logging.getLogger("job")
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            pid = ctypes.CDLL(None).fork()  # as uWSGI forks: Python's at-fork hooks do not run
            if pid == 0:
                log.info("child", extra={"vf_user": "usr_1", "vf_properties": {"n": "child"}})
                ok = handler.flush(10)
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            log.info("parent", extra={"vf_user": "usr_1", "vf_properties": {"n": "parent"}})
            sys.exit(os.waitstatus_to_exitcode(status))
            """
        )
    )
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env=server_env(vibefollow_server, drop=("OTEL_",), app_env=NO_FLUSH_TIMER),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < EXIT_BOUND, done.stderr
    assert Counter(event["properties"]["n"] for event in vibefollow_server.events) == Counter(
        ["child", "parent"]
    )
