"""Pre-fork servers and process pools: every event is sent once, by the process that logged it."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, run_python, server_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REQUESTS = 200
#: Concurrent clients: sync workers take one request at a time, so the others get some.
CLIENTS = 8
BOOT_TIMEOUT = 30.0
EXIT_TIMEOUT = 60.0
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available")

# Imported by gunicorn in the master (--preload): the example app configures logging,
# then one event is logged there, before any worker is forked, and stays queued
# (VIBEFOLLOW_FLUSH_INTERVAL=3600) until the master exits.
_MASTER_APP = """\
import logging
import os

from gunicorn_app import app

logging.getLogger("shop.boot").info(
    "booted",
    extra={"vf_user": "usr_ops", "vf_event": "app_booted", "vf_properties": {"pid": os.getpid()}},
)
"""


#: Every child: none of this run's OTEL_* settings, and no flush timer.
_DROP = ("OTEL_",)


def _wait_for_port(master: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and master.poll() is None:
        found = _LISTENING.search(log_path.read_text())
        if found:
            return int(found[1])
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not start listening:\n{log_path.read_text()}")


def _wait_until_answering(port: int, log_path: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not answer /health:\n{log_path.read_text()}")


@contextlib.contextmanager
def _gunicorn(
    server: VibefollowServer,
    tmp_path: Path,
    version: tuple[int, ...],
    *options: str,
    config: Path = EXAMPLES / "gunicorn.conf.py",
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The example config (or ``config``) and app, preloaded in the master, on a port the
    system picks; ``options`` added to gunicorn's command line."""
    (tmp_path / "master_app.py").write_text(_MASTER_APP)
    log_path = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), *options]
    command += ["--chdir", str(EXAMPLES), "--pythonpath", str(tmp_path)]
    if version >= (25, 1):
        command.append("--no-control-socket")  # else it creates one under $HOME
    with log_path.open("wb") as log:
        master = subprocess.Popen(  # noqa: S603 - our own interpreter and example
            [*command, "master_app:app"],
            env=server_env(server, drop=_DROP, **NO_FLUSH_TIMER, PORT="0"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the finally reaches every worker
        )
    try:
        port = _wait_for_port(master, log_path)
        _wait_until_answering(port, log_path)
        yield master, port, log_path
    finally:
        if master.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(master.pid, signal.SIGKILL)
            master.wait(timeout=10)


def _view_reports(port: int) -> list[str]:
    """Send REQUESTS tagged requests from CLIENTS threads; return the request ids answered."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

        def view(n: int) -> str:
            answer = client.get(f"/reports/r{n}", headers={"X-User-Id": f"usr_{n % 7}"})
            assert answer.status_code == 200, answer.text
            return answer.headers["X-Request-Id"]

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            return list(pool.map(view, range(REQUESTS)))


@pytest.mark.slow
@needs_fork
def test_gunicorn_preload_workers_send_each_request_once(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """gunicorn --preload, 4 workers, SIGTERM: each request's event arrives once, from a worker."""
    gunicorn = pytest.importorskip("gunicorn")
    with _gunicorn(vibefollow_server, tmp_path, gunicorn.version_info) as (master, port, log_path):
        request_ids = _view_reports(port)
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=EXIT_TIMEOUT) == 0, log_path.read_text()
    events = vibefollow_server.events
    viewed = [e for e in events if e["name"] == "report_viewed"]
    assert len(set(request_ids)) == REQUESTS
    assert Counter(e["properties"]["request_id"] for e in viewed) == Counter(request_ids)
    booted = [e for e in events if e["name"] == "app_booted"]
    assert [e["properties"]["pid"] for e in booted] == [master.pid]
    assert len(events) == REQUESTS + 1
    worker_pids = {e["properties"]["pid"] for e in viewed}
    assert len(worker_pids) > 1, worker_pids
    assert master.pid not in worker_pids
    assert vibefollow_server.replayed == 0  # no request went out twice either


# Written to a file (not run with -c) so that "spawn" children can import its functions.
_POOL_SCRIPT = """\
import json
import logging
import multiprocessing
import os
import sys

import vf_otel

JOBS = 24
PROCESSES = 4
PARENT_EVENTS = 3
FLUSH_TIMEOUT = 20.0
log = logging.getLogger("shop.jobs")


def configure():
    root = logging.getLogger()
    root.addHandler(vf_otel.VibefollowHandler())
    root.setLevel(logging.INFO)


def handler():
    return next(
        h for h in logging.getLogger().handlers if isinstance(h, vf_otel.VibefollowHandler)
    )


def log_job(job):
    properties = {"job": job, "pid": os.getpid()}
    log.info("done", extra={"vf_user": f"usr_{job}", "vf_event": "job_done",
                            "vf_properties": properties})


def pool_task(job):
    log_job(job)
    # Pool workers end with os._exit() or are terminated: deliver before returning.
    return os.getpid(), handler().flush(timeout=FLUSH_TIMEOUT)


def process_main(jobs, method):
    if method == "spawn":  # a fresh interpreter: no handler inherited
        configure()
    for job in jobs:
        log_job(job)
    sys.exit(0 if handler().flush(timeout=FLUSH_TIMEOUT) else 3)


def run_pool(context, method):
    initializer = configure if method == "spawn" else None
    with context.Pool(PROCESSES, initializer=initializer) as pool:
        results = pool.map(pool_task, range(JOBS), chunksize=1)
    return [pid for pid, _ in results], all(ok for _, ok in results)


def run_processes(context, method):
    children = [
        context.Process(target=process_main, args=(list(range(k, JOBS, PROCESSES)), method))
        for k in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    return [c.pid for c in children], all(c.exitcode == 0 for c in children)


def main(method, kind):
    configure()
    for n in range(PARENT_EVENTS):
        log.info("before", extra={"vf_user": "usr_parent", "vf_event": "parent_before_fork",
                                  "vf_properties": {"n": n, "pid": os.getpid()}})
    context = multiprocessing.get_context(method)
    run = run_pool if kind == "pool" else run_processes
    pids, children_flushed = run(context, method)
    before = handler().stats()
    print(json.dumps({
        "parent": os.getpid(),
        "children": sorted(set(pids)),
        "children_flushed": children_flushed,
        "parent_enqueued": before.enqueued,
        "parent_queued": before.queued,
        "parent_sent_before_flush": before.sent,
        "parent_flushed": handler().flush(timeout=FLUSH_TIMEOUT),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""


def _run_pool_script(
    server: VibefollowServer, tmp_path: Path, method: str, kind: str
) -> dict[str, Any]:
    script = tmp_path / "jobs.py"
    script.write_text(textwrap.dedent(_POOL_SCRIPT))
    done = run_python(
        server, [str(script), method, kind], timeout=120, cwd=tmp_path, drop=_DROP, **NO_FLUSH_TIMER
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pool", "process"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_send_each_event_once(
    vibefollow_server: VibefollowServer, tmp_path: Path, method: str, kind: str
) -> None:
    """Children (fork: inherited handler; spawn: their own) send theirs; the parent, its own."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} is not available")
    result = _run_pool_script(vibefollow_server, tmp_path, method, kind)
    assert result["children_flushed"]
    # The parent's queue was untouched by its children: its 3 events still waited there.
    assert (result["parent_enqueued"], result["parent_queued"]) == (3, 3)
    assert result["parent_sent_before_flush"] == 0
    assert result["parent_flushed"]
    events = vibefollow_server.events
    jobs = [e for e in events if e["name"] == "job_done"]
    assert sorted(e["properties"]["job"] for e in jobs) == list(range(24))
    parents = [e for e in events if e["name"] == "parent_before_fork"]
    assert sorted(e["properties"]["n"] for e in parents) == [0, 1, 2]
    assert {e["properties"]["pid"] for e in parents} == {result["parent"]}
    job_pids = {e["properties"]["pid"] for e in jobs}
    assert job_pids <= set(result["children"])
    assert result["parent"] not in job_pids
    if kind == "process":
        assert job_pids == set(result["children"])
    assert len(events) == 24 + 3
    assert vibefollow_server.replayed == 0
