"""gevent and eventlet: every event delivered once and a prompt exit, patched before or after
the handler was made (gunicorn's gevent and eventlet workers, Celery's gevent pool, scripts)."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vf_otel._delivery import threads
from vf_otel.testing import VibefollowServer

from .conftest import run_script
from .test_prefork import EXAMPLES, EXIT_TIMEOUT, REQUESTS, _gunicorn, _view_reports, needs_fork

#: The script's shutdown_timeout: an exit that used to hang for good must come well within.
SHUTDOWN_TIMEOUT = 2.0
#: A generous bound on the script's whole run (it delivers on loopback in well under 1 s).
PROMPT_EXIT = 15.0
GREENLETS = 20
#: A pause before SIGTERM. gunicorn 27's gevent worker sometimes ignores a SIGTERM that
#: comes within about a second of its boot and is SIGKILLed after graceful_timeout: seen
#: with a hello-world app and no vf-otel at all, never after this pause (12 of 12 runs).
WORKERS_SETTLE = 2.0

# Logs from GREENLETS greenlets; the handler made before or after the patch (argv).
_SCRIPT = """\
import logging
import sys

import vf_otel

library, order = sys.argv[1], sys.argv[2]


def patch():
    if library == "gevent":
        from gevent import monkey

        monkey.patch_all()
    else:
        import eventlet

        eventlet.monkey_patch()


if order == "before":
    patch()
handler = vf_otel.VibefollowHandler(shutdown_timeout={timeout})
log = logging.getLogger("shop")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.info("booted", extra={{"vf_user": "usr_boot", "vf_event": "app_booted"}})
if order == "after":
    patch()


def work(n):
    log.info("did", extra={{"vf_user": f"usr_{{n}}", "vf_event": "report_viewed"}})


if library == "gevent":
    import gevent

    gevent.joinall([gevent.spawn(work, n) for n in range({greenlets})])
else:
    import eventlet

    pool = eventlet.GreenPool()
    for n in range({greenlets}):
        pool.spawn(work, n)
    pool.waitall()
# No flush: the exit (logging.shutdown) delivers.
"""


@pytest.mark.slow
@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_script_patched_before_or_after_the_handler_delivers_and_exits(
    vibefollow_server: VibefollowServer, tmp_path: Path, library: str, order: str
) -> None:
    """Monkey-patched before or after the handler was made: each event arrives once, prompt exit."""
    _skip_unless_installed(library)
    source = _SCRIPT.format(timeout=SHUTDOWN_TIMEOUT, greenlets=GREENLETS)
    started = time.monotonic()
    done = run_script(vibefollow_server, tmp_path, source, library, order)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert took < PROMPT_EXIT, (took, done.stderr)
    users = Counter(e["external_user_id"] for e in vibefollow_server.events)
    assert users == Counter(["usr_boot", *(f"usr_{n}" for n in range(GREENLETS))])


# The example's settings, without --preload (a gunicorn option cannot be unset from the CLI).
_NO_PRELOAD_CONFIG = """\
exec(compile(open({path!r}).read(), {path!r}, "exec"))
preload_app = False
"""


@pytest.mark.slow
@needs_fork
@pytest.mark.parametrize(
    ("worker_class", "preload"), [("gevent", True), ("gevent", False), ("eventlet", True)]
)
def test_gunicorn_green_workers_send_each_request_once(
    vibefollow_server: VibefollowServer, tmp_path: Path, worker_class: str, preload: bool
) -> None:
    """gunicorn -k gevent (preload or not) or -k eventlet, SIGTERM: each request's event, once."""
    gunicorn = pytest.importorskip("gunicorn")
    _skip_unless_installed(worker_class)
    if importlib.util.find_spec(f"gunicorn.workers.g{worker_class}") is None:
        pytest.skip(f"this gunicorn has no {worker_class} worker (gunicorn 27 removed eventlet's)")
    config = EXAMPLES / "gunicorn.conf.py"
    if not preload:
        config = tmp_path / "no_preload.conf.py"
        config.write_text(_NO_PRELOAD_CONFIG.format(path=str(EXAMPLES / "gunicorn.conf.py")))
    options = ("-k", worker_class)
    with _gunicorn(vibefollow_server, tmp_path, gunicorn.version_info, *options, config=config) as (
        master,
        port,
        log_path,
    ):
        request_ids = _view_reports(port)
        time.sleep(WORKERS_SETTLE)
        started = time.monotonic()
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=EXIT_TIMEOUT) == 0, log_path.read_text()
        took = time.monotonic() - started
    log = log_path.read_text()
    # The master SIGKILLs a worker still running after graceful_timeout (30 s).
    assert took < 20, log
    assert "SIGKILL" not in log, log
    viewed = [e for e in vibefollow_server.events if e["name"] == "report_viewed"]
    assert Counter(e["properties"]["request_id"] for e in viewed) == Counter(request_ids)
    assert len(set(request_ids)) == REQUESTS
    booted = [e["properties"]["pid"] for e in vibefollow_server.events if e["name"] == "app_booted"]
    # Preloaded: logged once, in the master; else in each of the 4 workers, as it imports the app.
    assert booted == [master.pid] if preload else len(set(booted)) == len(booted) == 4
    assert vibefollow_server.replayed == 0


def test_event_waits_until_set_or_timeout() -> None:
    """threads.Event: wait() times out unset, returns at once when set, and set() wakes a waiter."""
    event = threads.Event()
    assert event.wait(0.01) is False
    woken: list[bool] = []
    waiter = threads.Thread(lambda: woken.append(event.wait(30)), "waiter")
    waiter.start()
    time.sleep(0.05)
    event.set()
    waiter.join(30)
    assert woken == [True]
    assert event.wait(0) is True
    event.clear()
    assert not event.is_set()


def test_semaphore_hands_a_released_unit_to_a_waiter() -> None:
    """threads.Semaphore: acquire() times out with no unit; release() gives one to a waiter."""
    slots = threads.Semaphore(1)
    assert slots.acquire(timeout=0)
    assert slots.acquire(timeout=0.01) is False
    assert slots.acquire(blocking=False) is False
    got: list[bool] = []
    waiter = threads.Thread(lambda: got.append(slots.acquire(timeout=30)), "waiter")
    waiter.start()
    time.sleep(0.05)
    slots.release()
    waiter.join(30)
    assert got == [True]
    assert not waiter.is_alive()
    assert slots.acquire(timeout=0) is False  # the unit went to the waiter, not back


def test_thread_knows_whether_it_is_the_caller() -> None:
    """threads.Thread.is_current(): True only on the thread itself."""
    seen: list[bool] = []
    thread = threads.Thread(lambda: seen.append(thread.is_current()), "probe")
    thread.start()
    thread.join(30)
    assert seen == [True]
    assert not thread.is_current()


def _skip_unless_installed(library: str) -> None:
    """Skip when ``library`` is missing, without importing it here: eventlet's import
    registers a fork hook that warns in every later test that forks."""
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")


@pytest.mark.parametrize("module", ["gevent.monkey", "eventlet.patcher"])
def test_a_patcher_module_half_imported_reads_as_not_patched(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's thread importing gevent or eventlet while a delivery thread asks: the
    module is in sys.modules without its test yet (it has patched nothing). Once an
    AttributeError that cost the batch (internal_error, eventlet patched after the handler)."""
    import types

    monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    assert threads.green_patched() is False


def test_the_idna_codec_is_loaded_before_any_sender_connects() -> None:
    """Importing vf-otel loads the codec a first getaddrinfo() would import on a sender
    thread (httpx alone does not): that import deadlocked with eventlet.monkey_patch()
    importing its resolver on the app's thread, and the process hung at exit."""
    code = "import sys, vf_otel; print('encodings.idna' in sys.modules)"
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "True", done.stderr
