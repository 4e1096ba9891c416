"""The spool kept private, closed for good, and honest when it breaks (issue 18)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import vf_otel
from vf_otel import VibefollowError
from vf_otel._delivery.wire import Request
from vf_otel._spool.store import Spool
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory, run_script, wait_until
from .test_spool import request, spool_at

OUTAGE = 100_000
SIDE = ("", "-wal", "-shm")


def mode_of(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def open_fds() -> int:
    """How many file descriptors this process has open now."""
    return len(os.listdir("/proc/self/fd"))


def spool_during_outage(
    server: VibefollowServer, make_handler: HandlerFactory, path: Path, count: int
) -> tuple[vf_otel.VibefollowHandler, list[tuple[VibefollowError, int]]]:
    """A handler whose ``count`` events were spooled while the server answered 503."""
    errors: list[tuple[VibefollowError, int]] = []
    handler = make_handler(
        spool_path=path, max_retries=0, on_error=lambda e, ev: errors.append((e, len(ev)))
    )
    log = logging.getLogger(f"app.spool.safety.{path.parent.name}")
    log.propagate = False
    log.addHandler(handler)
    server.fail_next(503, count=OUTAGE)
    for i in range(count):
        log.warning("signup", extra={"vf_user": f"usr_{i}"})
    # Not delivered: the server still fails (the flush also sends what is queued).
    assert not handler.flush(timeout=0.2)
    assert wait_until(lambda: handler.stats().spooled == count), handler.stats()
    return handler, errors


@pytest.fixture
def private_umask() -> Iterator[None]:
    """The usual umask (022) while the test runs, whatever the runner's is."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_spool_files_and_directory_are_created_private(tmp_path: Path, private_umask: None) -> None:
    """spool.db, -wal and -shm are 0600 and a directory vf-otel creates is 0700 under umask 022."""
    path = tmp_path / "made" / "spool.db"
    spool = Spool(str(path), 1 << 20, lease=60)
    assert spool.open()
    for suffix in SIDE:
        assert mode_of(Path(f"{path}{suffix}")) == 0o600, suffix
    assert mode_of(path.parent) == 0o700
    spool.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_existing_world_readable_spool_is_tightened(tmp_path: Path, private_umask: None) -> None:
    """A spool left 0644 by an earlier version is made 0600 when opened, side files too."""
    path = tmp_path / "spool.db"
    first = Spool(str(path), 1 << 20, lease=60)
    assert first.open()
    for suffix in SIDE:
        os.chmod(f"{path}{suffix}", 0o644)
    second = Spool(str(path), 1 << 20, lease=60)
    assert second.open()
    for suffix in SIDE:
        assert mode_of(Path(f"{path}{suffix}")) == 0o600, suffix
    first.close()
    second.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_doctor_warns_about_a_spool_others_can_read(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """`vf-otel doctor` names a spool file that group or others may read."""
    from .conftest import run_python

    path = tmp_path / "spool.db"
    spool = Spool(str(path), 1 << 20, lease=60)
    assert spool.open()
    spool.close()
    os.chmod(path, 0o644)
    done = run_python(
        vibefollow_server,
        ["-m", "vf_otel", "doctor"],
        timeout=60,
        VIBEFOLLOW_SPOOL_PATH=str(path),
    )
    assert "others can read" in done.stdout, done.stdout + done.stderr
    assert str(path) in done.stdout
    os.chmod(path, 0o600)
    done = run_python(
        vibefollow_server,
        ["-m", "vf_otel", "doctor"],
        timeout=60,
        VIBEFOLLOW_SPOOL_PATH=str(path),
    )
    assert "others can read" not in done.stdout


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_close_does_not_reopen_the_spool(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """200 create/close cycles leave no descriptor open, and close() recreates no deleted file."""
    path = tmp_path / "spool.db"

    def cycle() -> vf_otel.VibefollowHandler:
        return vf_otel.VibefollowHandler(
            api_key=vibefollow_server.api_key, base_url=vibefollow_server.base_url, spool_path=path
        )

    cycle().close()
    before = open_fds()
    for _ in range(200):
        cycle().close()
    assert open_fds() <= before + 2  # the server's own sockets may come and go
    handler = cycle()
    handler.close()
    for suffix in SIDE:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    handler.close()
    handler.stats()
    assert not path.exists()


@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_a_spool_deleted_with_its_wal_is_counted_lost_and_flush_says_false(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, tmp_path: Path
) -> None:
    """Events in a spool deleted with its WAL are dropped as spool_lost, reported; flush False."""
    path = tmp_path / "spool.db"
    handler, errors = spool_during_outage(vibefollow_server, make_handler, path, 3000)
    for suffix in SIDE:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    vibefollow_server.clear_faults()
    assert not handler.flush(timeout=10)
    stats = handler.stats()
    lost = stats.dropped.get("spool_lost", 0)
    assert lost > 0
    assert stats.sent == len(vibefollow_server.events)
    assert stats.sent + lost == 3000  # every event delivered or counted lost: none unaccounted
    assert sum(n for e, n in errors if "deleted" in str(e)) == lost
    assert handler.flush(timeout=10)  # reported once: the next flush is clean


def fill_the_disk(spool: Spool) -> None:
    """Make the spool's next write fail as on a full disk (SQLITE_FULL), reads still work."""
    conn = spool._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def check_full_disk(
    server: VibefollowServer,
    make_handler: HandlerFactory,
    path: Path,
    fill: Callable[[Spool], None],
) -> None:
    """Spool 300 events, fill the disk, log 3000 more, recover: every event sent or counted."""
    handler, errors = spool_during_outage(server, make_handler, path, 300)
    spool = handler._pipeline._spool
    assert spool is not None
    fill(spool)
    log = logging.getLogger(f"app.spool.safety.{path.parent.name}")
    for i in range(3000):
        log.warning("later", extra={"vf_user": f"usr_{i}", "vf_properties": {"pad": "p" * 200}})
    assert not handler.flush(timeout=0.2)
    assert wait_until(lambda: not spool.usable)  # the disk filled up: the spool turned off
    server.clear_faults()
    deadline = time.monotonic() + 90  # the circuit opened in the outage: its backoff first
    while not handler.flush(timeout=5) and time.monotonic() < deadline:
        pass
    stats = handler.stats()
    lost = stats.dropped.get("spool_lost", 0)
    # Stranded in the file (this process will not send them), unless they were being
    # sent right then (a claimed row goes back to memory): either way, counted.
    assert lost in (0, 300), stats
    assert stats.sent == len(server.events) == 3300 - lost
    assert stats.sent + stats.dropped_total == stats.enqueued == 3300
    assert lost == sum(n for e, n in errors if "unusable" in str(e))
    assert stats.in_flight == stats.parked == stats.queued == 0
    assert handler.flush(timeout=10)  # reported once: later flushes are clean


def page_limit(spool: Spool) -> None:
    """Make the spool's next growth fail as on a full disk (SQLITE_FULL); reads still work."""
    conn = spool._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_reports_the_rows_it_strands(tmp_path: Path) -> None:
    """The spool turned off by SQLITE_FULL hands the free rows it holds to on_lost."""
    spool = spool_at(tmp_path / "spool.db")
    lost: list[tuple[list[Request], str]] = []
    spool.on_lost = lambda requests, why: lost.append((requests, why))
    assert spool.add([request(0, 3), request(3, 2)])[0]
    page_limit(spool)
    assert not spool.add([request(10, 500, pad=200)])[0]
    assert not spool.usable
    assert [len(r.events) for r in lost[0][0]] == [3, 2]
    assert "database or disk is full" in lost[0][1]


@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_a_spool_turned_off_by_a_full_disk_counts_what_it_strands(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, tmp_path: Path
) -> None:
    """A simulated full disk (SQLite's page limit): stranded events are spool_lost, reported."""
    check_full_disk(vibefollow_server, make_handler, tmp_path / "spool.db", page_limit)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_a_spool_on_a_full_tmpfs_counts_what_it_strands(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, tmp_path: Path
) -> None:
    """A real 200 KiB tmpfs fills up: stranded events are spool_lost, reported; flush False."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("needs the mount command and CAP_SYS_ADMIN to mount a small tmpfs")
    done = subprocess.run(  # noqa: S603 - mounting a test filesystem
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        check_full_disk(vibefollow_server, make_handler, mount / "spool.db", lambda spool: None)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S603, S607


IN_FLIGHT_AT_EXIT = """
    import json, logging, sys, time
    import vf_otel
    reported = []
    spool = sys.argv[1] or None
    handler = vf_otel.VibefollowHandler(
        spool_path=spool, shutdown_timeout=2.0, flush_interval=60.0, max_retries=0,
        adaptive_batching=False,  # the first request holds a full batch of 500
        on_error=lambda error, events: reported.append((str(error), len(events))),
    )
    log = logging.getLogger("app")
    log.addHandler(handler)
    for i in range(int(sys.argv[2])):
        log.warning("signup", extra={"vf_user": "usr_%d" % i})
    started = time.monotonic()
    handler.close()
    s = handler.stats()
    print(json.dumps({
        "seconds": time.monotonic() - started, "enqueued": s.enqueued, "sent": s.sent,
        "spooled": s.spooled, "in_flight": s.in_flight, "dropped": dict(s.dropped),
        "in_flight_reported": sum(n for e, n in reported if "in flight" in e),
    }))
"""


def run_in_flight_at_exit(
    server: VibefollowServer, tmp_path: Path, spool: Path | None, count: int
) -> dict[str, Any]:
    """Run IN_FLIGHT_AT_EXIT in a fresh interpreter against ``server``; its printed stats."""
    done = run_script(server, tmp_path, IN_FLIGHT_AT_EXIT, str(spool or ""), str(count))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_request_in_flight_at_the_deadline_is_spooled(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Against a hanging API, what is in flight when shutdown ends is spooled, then replayed."""
    spool = tmp_path / "spool.db"
    vibefollow_server.delay_next(30, count=1)  # the first request hangs past the deadline
    first = run_in_flight_at_exit(vibefollow_server, tmp_path, spool, 1000)
    assert first["seconds"] < 15  # shutdown_timeout=2: bounded, not the 30 s hang
    assert first["in_flight"] == 0
    assert first["sent"] == 0
    assert first["spooled"] == 1000  # the hanging request's 500 too, not only the queued ones
    assert first["dropped"] == {}
    vibefollow_server.clear_faults()
    second = run_in_flight_at_exit(vibefollow_server, tmp_path, spool, 0)
    assert second["in_flight"] == 0
    assert second["dropped"] == {}
    assert vibefollow_server.wait_for_events(1000, timeout=30)
    names = {event["external_user_id"] for event in vibefollow_server.events}
    assert len(names) == 1000  # each event once (a late copy of the hung one is deduplicated)


@pytest.mark.slow
def test_a_request_in_flight_at_the_deadline_is_reported_without_a_spool(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Without a spool, the events in flight at the deadline go to on_error as in flight."""
    vibefollow_server.delay_next(30, count=1)
    result = run_in_flight_at_exit(vibefollow_server, tmp_path, None, 1000)
    assert result["seconds"] < 15
    assert result["in_flight"] == 500  # the hanging request: its outcome is unknown
    assert result["in_flight_reported"] == 500
    assert result["dropped"] == {"shutdown": 500}  # the queued rest, never sent
    assert result["sent"] + 500 + 500 == result["enqueued"] == 1000
