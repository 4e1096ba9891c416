"""A real Celery worker (prefork pool) runs the example's tasks, then stops on SIGTERM.

The worker and the sender are subprocesses that import ``examples/integrations/celery_tasks.py``
unchanged, through a small module that only points its app at a broker and a result backend
that need no server: kombu's filesystem transport and Celery's ``file://`` backend, in
``tmp_path``. The Vibefollow handlers never send on a timer (``VIBEFOLLOW_FLUSH_INTERVAL=3600``
and fewer events than a batch), so whatever arrives was sent by a flush at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, run_python, server_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "integrations"
#: Tasks sent; every third one outside any ``vf_otel.user(...)``.
TASKS = 12
SEND_TIMEOUT = 90.0
EXIT_TIMEOUT = 60.0
KILL_TIMEOUT = 10.0

#: How Celery's own console handler shows the example task's log record.
_TASK_LOG_LINE = "] export\n"

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available")

# The example's app, pointed at a broker and a backend in the test's directory.
# WITHOUT_CHILD_FLUSH removes the example's worker_process_shutdown flush.
_WORKER_APP = """\
import os

from celery.signals import worker_process_shutdown

from celery_tasks import app, export_report, flush_vibefollow

app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={{
        "data_folder_in": {queue!r},
        "data_folder_out": {queue!r},
        "processed_folder": {processed!r},
        "polling_interval": 0.1,
    }},
    result_backend={results!r},
)
if os.environ.get("WITHOUT_CHILD_FLUSH"):
    worker_process_shutdown.disconnect(flush_vibefollow)
"""

# The sender: some tasks inside vf_otel.user(...), some outside; waits for every result.
_SEND_TASKS = """\
import json
import sys

import vf_otel
from worker_app import export_report

sent = []
for n in range(int(sys.argv[1])):
    if n % 3 == 2:
        sent.append(export_report.apply_async((f"r{n}",)))
        continue
    with vf_otel.user(f"usr_{n}"):
        sent.append(export_report.apply_async((f"r{n}",)))
print(json.dumps([result.get(timeout=float(sys.argv[2])) for result in sent]))
"""


#: Every child: none of this run's OTEL_* settings.
_DROP = ("OTEL_",)


def _child_settings(**extra: str) -> dict[str, str]:
    """What the worker and the sender get beside the server's key and URL: no flush timer
    (only flushes deliver), the examples importable, and ``extra``."""
    paths = [str(EXAMPLES), os.environ.get("PYTHONPATH")]
    return {**NO_FLUSH_TIMER, "PYTHONPATH": os.pathsep.join(filter(None, paths)), **extra}


def _write_app(tmp_path: Path) -> None:
    folders = {name: tmp_path / name for name in ("queue", "processed", "results")}
    for folder in folders.values():
        folder.mkdir()
    (tmp_path / "worker_app.py").write_text(
        _WORKER_APP.format(
            queue=str(folders["queue"]),
            processed=str(folders["processed"]),
            results=folders["results"].as_uri(),
        )
    )
    (tmp_path / "send_tasks.py").write_text(textwrap.dedent(_SEND_TASKS))


@contextlib.contextmanager
def _celery_worker(
    env: dict[str, str], tmp_path: Path, loglevel: str | None, pool: str = "prefork"
) -> Iterator[subprocess.Popen[bytes]]:
    """``celery worker`` with ``pool`` and a concurrency of 2; SIGKILLed if still running."""
    log_path = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "worker_app", "worker"]
    command += ["--pool", pool, "--concurrency", "2"]
    if loglevel is not None:
        command += ["--loglevel", loglevel]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the finally reaches the pool too
        )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=KILL_TIMEOUT)


def _send_tasks(server: VibefollowServer, settings: dict[str, str], tmp_path: Path) -> list[str]:
    """Send TASKS tasks from a fresh interpreter; return their results, once all have run."""
    done = run_python(
        server,
        ["send_tasks.py", str(TASKS), str(SEND_TIMEOUT)],
        timeout=SEND_TIMEOUT + 30,
        cwd=tmp_path,
        drop=_DROP,
        **settings,
    )
    worker_log = (tmp_path / "worker.log").read_text()
    assert done.returncode == 0, f"{done.stderr}\n--- worker log ---\n{worker_log}"
    results: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def _run_and_stop(
    server: VibefollowServer,
    tmp_path: Path,
    loglevel: str | None = "INFO",
    pool: str = "prefork",
    **extra: str,
) -> str:
    """Run TASKS tasks on a worker, check none was sent yet, stop it with SIGTERM; its log."""
    pytest.importorskip("celery")
    _write_app(tmp_path)
    settings = _child_settings(**extra)
    env = server_env(server, drop=_DROP, **settings)
    with _celery_worker(env, tmp_path, loglevel, pool) as worker:
        results = _send_tasks(server, settings, tmp_path)
        assert results == [f"r{n}.pdf" for n in range(TASKS)]
        assert server.events == []  # every event is still queued in a pool process
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        exit_code = worker.wait(timeout=EXIT_TIMEOUT)
    worker_log = (tmp_path / "worker.log").read_text()
    assert exit_code == 0, worker_log
    assert "worker: Warm shutdown" in worker_log
    return worker_log


@pytest.mark.slow
@needs_fork
def test_worker_sends_each_task_event_once_with_the_senders_user(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Prefork worker, SIGTERM: each task sent in vf_otel.user(...) sends one event as that user."""
    worker_log = _run_and_stop(vibefollow_server, tmp_path)
    assert worker_log.count(_TASK_LOG_LINE) == TASKS
    events = vibefollow_server.events
    users = [f"usr_{n}" for n in range(TASKS) if n % 3 != 2]
    # Tasks sent without a user are dropped (missing_user): no event, and no user leaks
    # into them from the task a pool process ran before.
    assert Counter(e["external_user_id"] for e in events) == Counter(users)
    assert {e["name"] for e in events} == {"feature_used"}
    assert all(e["properties"] == {"feature": "pdf"} for e in events)
    assert vibefollow_server.replayed == 0


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["threads", "solo", "gevent"])
def test_other_pools_send_each_task_event_once(
    vibefollow_server: VibefollowServer, tmp_path: Path, pool: str
) -> None:
    """threads, solo and gevent pools, SIGTERM: each task event arrives once, as its user."""
    if pool == "gevent":
        pytest.importorskip("gevent", reason="gevent is not installed (celery -P gevent)")
    started = time.monotonic()
    worker_log = _run_and_stop(vibefollow_server, tmp_path, pool=pool)
    assert worker_log.count(_TASK_LOG_LINE) == TASKS
    users = [f"usr_{n}" for n in range(TASKS) if n % 3 != 2]
    assert Counter(e["external_user_id"] for e in vibefollow_server.events) == Counter(users)
    assert vibefollow_server.replayed == 0
    assert time.monotonic() - started < SEND_TIMEOUT, worker_log  # no hang at the warm shutdown


@pytest.mark.slow
@needs_fork
def test_without_the_child_flush_pool_events_are_lost(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Without the worker_process_shutdown flush, events queued in pool processes never arrive."""
    worker_log = _run_and_stop(vibefollow_server, tmp_path, WITHOUT_CHILD_FLUSH="1")
    assert worker_log.count(_TASK_LOG_LINE) == TASKS  # each task logged its INFO record
    assert vibefollow_server.events == []
    assert vibefollow_server.requests == []


@pytest.mark.slow
@needs_fork
def test_at_celerys_default_log_level_task_info_records_are_filtered(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """A worker started without --loglevel (WARNING) filters the tasks' INFO records: no event."""
    worker_log = _run_and_stop(vibefollow_server, tmp_path, loglevel=None)
    assert worker_log.count(_TASK_LOG_LINE) == 0
    assert vibefollow_server.events == []
