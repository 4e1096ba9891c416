"""The runtime ``vf-otel doctor`` finds in its process, and what vf-otel does in each.

Each finding is one short line plus the section of docs/runtimes.md that says more.
Detection only reads what is already there: modules the process imported (gevent,
eventlet, uWSGI's ``uwsgi``, gunicorn), environment variables (Lambda, gunicorn's
``SERVER_SOFTWARE``) and the interpreter. It imports nothing that could change the
process (no monkey-patching, no fixing of the multiprocessing start method). Run from a
shell, the doctor sees the shell's runtime; run inside the app's process
(``python -c "import myapp; from vf_otel._cli import main; main(['doctor'])"``, or
with the same launcher), it sees the app's.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from ._exit import docs_url

__all__ = ["DOCS", "Finding", "detect"]

DOCS: Final = docs_url("runtimes.md")
PRODUCTION: Final = docs_url("production.md")
#: What a child of each start method that starts without the parent's handler needs.
#: A spawned child ends through sys.exit() (atexit drains) or, under a Pool's
#: terminate(), SIGTERM (the handler's hook drains); a forkserver child ends in
#: os._exit(), which skips both: only a flush in the task delivers.
_FRESH_CHILDREN: Final[Mapping[str, str]] = {
    "spawn": "build the handler in the Pool initializer; children drain at exit and at "
    "terminate()'s SIGTERM",
    "forkserver": "build the handler in the Pool initializer and flush at the end of each "
    "task (children end in os._exit())",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One runtime found: what it is, what vf-otel does there, the page (and section)
    that says more; ``warn`` when events are lost unless the app does something."""

    runtime: str
    does: str
    docs: str
    warn: bool = False


def detect(environ: Mapping[str, str] | None = None) -> list[Finding]:
    """What this process runs in; never raises (a probe that fails finds nothing)."""
    env = os.environ if environ is None else environ
    found: list[Finding] = []
    probes: tuple[Callable[[Mapping[str, str]], Finding | None], ...] = (
        _gevent,
        _eventlet,
        _uwsgi,
        _lambda,
        _prefork,
        _start_method,
        _free_threaded,
    )
    for probe in probes:
        try:
            finding = probe(env)
        except Exception:  # noqa: BLE001, S112 - a runtime's odd state must not break the doctor
            continue
        if finding is not None:
            found.append(finding)
    return found


def _gevent(_: Mapping[str, str]) -> Finding | None:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    return Finding(
        "gevent: threading is monkey-patched",
        "delivery runs on real OS threads, patched or not: it sends while greenlets run or "
        "compute; a flush() from a greenlet blocks its hub for at most its timeout",
        f"{DOCS}#gevent-and-eventlet",
    )


def _eventlet(_: Mapping[str, str]) -> Finding | None:
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is None or not patcher.is_monkey_patched("thread"):
        return None
    return Finding(
        "eventlet: thread is monkey-patched",
        "delivery runs on real OS threads, patched or not: it sends while green threads "
        "run or compute; a flush() from one blocks its hub for at most its timeout",
        f"{DOCS}#gevent-and-eventlet",
    )


def _uwsgi(_: Mapping[str, str]) -> Finding | None:
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return None
    options: Mapping[object, object] = getattr(uwsgi, "opt", {}) or {}

    def enabled(name: str) -> bool:
        value = options.get(name, options.get(name.encode()))
        return value not in (None, False, b"false", "false", b"0", "0")

    threads = enabled("enable-threads") or enabled("threads")
    lazy = enabled("lazy-apps") or enabled("lazy")
    shown = (
        f"uWSGI (enable-threads {'on' if threads else 'off'}, lazy-apps {'on' if lazy else 'off'})"
    )
    if not threads:
        return Finding(
            shown,
            "no thread runs between requests, so events wait: set enable-threads = true",
            f"{DOCS}#uwsgi",
            warn=True,
        )
    does = "each worker delivers its own events" + (
        "" if lazy else " (loaded before the fork: restarted in each worker)"
    )
    return Finding(shown, does, f"{DOCS}#uwsgi")


def _lambda(env: Mapping[str, str]) -> Finding | None:
    name = env.get("AWS_LAMBDA_FUNCTION_NAME")
    if not name and not env.get("AWS_LAMBDA_RUNTIME_API"):
        return None
    return Finding(
        f"AWS Lambda (function {name})" if name else "AWS Lambda",
        "frozen between invocations: vf-otel delivers an invocation's events before its "
        "result is posted (awslambdaric wrapped; elsewhere @vf_otel.flush_after)",
        f"{DOCS}#aws-lambda",
    )


def _prefork(env: Mapping[str, str]) -> Finding | None:
    if env.get("SERVER_SOFTWARE", "").startswith("gunicorn/") or "gunicorn.arbiter" in sys.modules:
        return Finding(
            "gunicorn (prefork)",
            "each worker delivers its own events (restarted after --preload's fork) and "
            "drains at its graceful exit",
            f"{PRODUCTION}#gunicorn",
        )
    parent = multiprocessing.parent_process()
    if parent is not None:
        return Finding(
            f"a multiprocessing child (parent pid {parent.pid})",
            "delivers its own events: flush at the end of each task (see the start method)",
            f"{DOCS}#multiprocessing",
        )
    return None


def _start_method(_: Mapping[str, str]) -> Finding | None:
    # allow_none: asking must not fix the start method for the app.
    method = multiprocessing.get_start_method(allow_none=True)
    how = "set" if method is not None else "default"
    method = method or multiprocessing.get_all_start_methods()[0]  # the platform default
    if method not in _FRESH_CHILDREN:
        return None
    return Finding(
        f"multiprocessing start method {method!r} ({how})",
        _FRESH_CHILDREN[method],
        f"{DOCS}#multiprocessing",
    )


def _free_threaded(_: Mapping[str, str]) -> Finding | None:
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None  # the default build (sys._is_gil_enabled exists there too, from 3.13)
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    gil = "on" if callable(is_gil_enabled) and is_gil_enabled() else "off"
    return Finding(
        f"free-threaded Python build (GIL {gil})",
        "no lock on the logging thread; delivery runs in parallel with the app",
        f"{PRODUCTION}#production-checklist",
    )
