"""The SQLite spool alone: round trips, leases, eviction, bad files, fork."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vf_otel._delivery.wire import Request, encode_event, events_request, user_requests
from vf_otel._event.model import Event
from vf_otel._spool.store import Spool

WHEN = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
LEASE = 100.0


class WallClock:
    """A wall clock moved by hand (leases are in wall time: they outlive a process)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def request(start: int, count: int = 2, *, pad: int = 0) -> Request:
    """A batch request for events ``e<start>``..., optionally padded to a size."""
    events = [
        Event("used", "usr_1", {"n": i, "pad": "x" * pad, "nested": [1.5, None]}, WHEN, f"e{i}")
        for i in range(start, start + count)
    ]
    return events_request(events, [encode_event(e) for e in events])


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended."""
    return ended_pid()


def spool_at(path: Path, clock: WallClock | None = None, max_bytes: int = 10**8) -> Spool:
    """A spool on ``path`` with a 100 s lease."""
    return Spool(str(path), max_bytes, lease=LEASE, wall_clock=clock or WallClock())


def test_round_trip_keeps_key_body_and_events(tmp_path: Path) -> None:
    """A claimed row is the exact Request that was stored: same key, bytes and events."""
    spool = spool_at(tmp_path / "s.db")
    original = request(0, 3)
    traits = Event("used", "usr_2", {}, WHEN, "t1", {"email": "a@b.c", "plan": "pro"})
    (upsert,) = user_requests([traits])
    assert spool.add([original, upsert]) == (True, [])
    assert spool.pending() == 4
    claimed = spool.claim()
    assert [r for r, _ in claimed] == [original, upsert]
    assert claimed[0][0].events[0].occurred_at == WHEN
    spool.close()


def test_claimed_rows_are_not_claimed_again_until_released(tmp_path: Path) -> None:
    """A second handle (another process) sees no free rows while the lease holds."""
    clock = WallClock()
    mine, other = spool_at(tmp_path / "s.db", clock), spool_at(tmp_path / "s.db", clock)
    mine.add([request(0), request(2)])
    first = mine.claim(limit=1)
    assert [r.key for r, _ in other.claim()] == [request(2).key]
    assert other.claim() == []
    assert mine.release(first[0][1])
    assert [r.key for r, _ in other.claim()] == [request(0).key]
    mine.close()
    other.close()


def test_finished_rows_are_gone(tmp_path: Path) -> None:
    """finish() deletes the row: nobody replays a request that was sent."""
    spool = spool_at(tmp_path / "s.db")
    spool.add([request(0)])
    ((_, row),) = spool.claim()
    assert spool.finish(row)
    assert spool.pending() == 0
    assert spool.claim() == []
    spool.close()


def test_a_lease_whose_holder_cannot_be_judged_expires(tmp_path: Path, dead_pid: int) -> None:
    """A holder that recorded no identity (an older vf-otel) keeps its rows until the lease ends."""
    clock = WallClock()
    survivor = spool_at(tmp_path / "s.db", clock)
    survivor.add([request(0)])
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE vf_requests SET owner = ?, lease_until = ?", (dead_pid, clock.now + 5))
    conn.close()
    assert survivor.claimable() == 0
    assert survivor.claim() == []
    clock.now += 6
    assert survivor.claimable() == 2
    assert [r.key for r, _ in survivor.claim()] == [request(0).key]
    survivor.close()


def test_cap_evicts_the_oldest_rows(tmp_path: Path) -> None:
    """Past max_bytes the oldest rows are deleted and returned, newest kept."""
    spool = spool_at(tmp_path / "s.db", max_bytes=30_000)
    evicted = []
    for i in range(6):
        stored, gone = spool.add([request(10 * i, 1, pad=4000)])
        assert stored
        evicted.extend(gone)
    kept = [r.key for r, _ in spool.claim()]
    assert [r.key for r in evicted] == [request(10 * i, 1, pad=4000).key for i in range(3)]
    assert kept == [request(10 * i, 1, pad=4000).key for i in range(3, 6)]
    spool.close()


def test_garbage_file_turns_the_spool_off_with_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a database: open() is False, one error, every call falls back."""
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    spool = spool_at(path)
    with caplog.at_level(logging.ERROR, logger="vf_otel"):
        assert spool.open() is False
        assert spool.add([request(0)]) == (False, [])
        assert spool.claim() == []
        assert spool.pending() == 0
        assert not spool.release(1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "unusable" in errors[0].getMessage()
    assert str(path) in errors[0].getMessage()
    assert not spool.usable


def test_unopenable_path_turns_the_spool_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A path under a regular file cannot be created: one error, memory only."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spool = spool_at(blocker / "s.db")
    with caplog.at_level(logging.ERROR, logger="vf_otel"):
        assert spool.open() is False
        assert spool.add([request(0)]) == (False, [])
    assert len(caplog.records) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_directory_turns_the_spool_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool in a directory without write permission: one error, memory only."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        spool = spool_at(folder / "s.db")
        with caplog.at_level(logging.ERROR, logger="vf_otel"):
            assert spool.open() is False
            assert spool.add([request(0)]) == (False, [])
        assert len(caplog.records) == 1
    finally:
        folder.chmod(0o700)


def test_unreadable_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    """A row whose events do not decode is deleted; the good rows still come back."""
    spool = spool_at(tmp_path / "s.db")
    spool.add([request(0), request(2)])
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE vf_requests SET events = 'nope' WHERE id = 1")
    conn.close()
    assert [r.key for r, _ in spool.claim()] == [request(2).key]
    assert spool.pending() == 2
    spool.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available")
def test_forked_child_uses_its_own_connection_and_not_the_parents_rows(tmp_path: Path) -> None:
    """After fork the child opens a new connection and cannot claim rows the parent leased."""
    spool = spool_at(tmp_path / "s.db")
    spool.add([request(0), request(2)])
    held = spool.claim(limit=1)
    parent_conn = spool._conn  # the child must not reuse it
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            spool.after_fork()
            claimed = spool.claim()
            ok = [r.key for r, _ in claimed] == [request(2).key]
            ok = ok and spool._conn is not parent_conn
            ok = ok and not spool.release(held[0][1])  # not the child's lease: changes nothing
            spool.close()  # releases the child's row, not the parent's
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child gave its row back on close; ours is still ours.
    assert [r.key for r, _ in spool.claim()] == [request(2).key]
    assert spool.release(held[0][1])
    assert [r.key for r, _ in spool.claim()] == [request(0).key]
    spool.close()
