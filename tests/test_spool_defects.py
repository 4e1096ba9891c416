"""Spool defects fixed: dead holders' leases, forked children, deleted files, the cap."""

from __future__ import annotations

import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vf_otel._delivery.wire import Request
from vf_otel._spool.database import row_values, this_process
from vf_otel._spool.store import Spool

from .test_spool import LEASE, WallClock, ended_pid, request, spool_at

LINUX = sys.platform.startswith("linux")
# Whether this process can tell that a holder ended (POSIX, and /proc readable on Linux).
JUDGES = bool(this_process().space)
needs_judging = pytest.mark.skipif(not JUDGES, reason="cannot tell here whether a pid runs")
# A process that claims every free row of the spool at argv[1], says how many, and
# holds them (with a real 100 s lease) until it is killed.
CLAIMER = textwrap.dedent(
    """
    import sys
    from vf_otel._spool.store import Spool
    spool = Spool(sys.argv[1], 10**8, lease=100.0)
    print(len(spool.claim()), flush=True)
    sys.stdin.read()
    """
)


def keys_on_disk(path: Path) -> list[str]:
    """The keys of the rows in the file at ``path``, read through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return [key for (key,) in conn.execute("SELECT key FROM vf_requests ORDER BY id")]
    finally:
        conn.close()


def size_of(spooled: Request) -> int:
    """The bytes ``spooled`` counts against spool_max_bytes."""
    return row_values(spooled)[5]


def lease_to(path: Path, pid: int, until: float, *, space: str, started: str) -> None:
    """Lease every row of ``path`` to ``pid``, recorded as started at ``started`` in ``space``."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE vf_requests SET owner = ?, lease_until = ?", (pid, until))
            conn.execute("INSERT INTO vf_holders VALUES (?, ?, ?)", (pid, space, started))
    finally:
        conn.close()


# -- 1. rows of a holder that died are free at once ---------------------------------


@needs_judging
def test_rows_of_a_sigkilled_holder_are_claimable_at_once(tmp_path: Path) -> None:
    """A live holder keeps its rows; once SIGKILLed (and reaped) they are claimable at once."""
    path = tmp_path / "s.db"
    spool = Spool(str(path), 10**8, lease=LEASE)  # real time: the holder's lease is real
    spool.add([request(0), request(2)])
    with subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CLAIMER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        try:
            ready, _, _ = select.select([holder.stdout], [], [], 60)
            assert ready, "the holder did not claim within 60 s"
            assert holder.stdout.readline().strip() == "2"
            assert spool.claimable() == 0  # it runs: its rows are its own
            assert spool.claim() == []
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=60)
    assert spool.claimable() == 4
    assert [r.key for r, _ in spool.claim()] == [request(0).key, request(2).key]
    spool.close()


@needs_judging
@pytest.mark.skipif(not LINUX, reason="process start times come from /proc")
def test_a_holder_whose_pid_was_reused_is_taken_for_ended(tmp_path: Path) -> None:
    """Rows leased under this pid by a process that started at another time are free."""
    clock = WallClock()
    path = tmp_path / "s.db"
    spool = spool_at(path, clock)
    spool.add([request(0)])
    me = this_process()
    lease_to(path, me.pid, clock.now + LEASE, space=me.space, started="1")
    assert spool.claimable() == 2
    assert [r.key for r, _ in spool.claim()] == [request(0).key]
    spool.close()


@needs_judging
def test_a_holder_that_runs_as_another_user_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.kill(pid, 0) raising PermissionError means the holder runs: its rows stay its own."""
    clock = WallClock()
    path = tmp_path / "s.db"
    spool = spool_at(path, clock)
    spool.add([request(0)])
    lease_to(path, ended_pid(), clock.now + LEASE, space=this_process().space, started="")
    assert spool.claimable() == 2  # ended: free at once

    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_permitted)
    assert spool.claimable() == 0
    assert spool.claim() == []
    spool.close()


def test_a_holder_recorded_in_another_pid_namespace_keeps_its_rows(tmp_path: Path) -> None:
    """A pid from another container may run there though it is free here: wait for the lease."""
    clock = WallClock()
    path = tmp_path / "s.db"
    spool = spool_at(path, clock)
    spool.add([request(0)])
    lease_to(path, ended_pid(), clock.now + LEASE, space="linux:elsewhere", started="7")
    assert spool.claimable() == 0
    assert spool.claim() == []
    clock.now += LEASE + 1
    assert [r.key for r, _ in spool.claim()] == [request(0).key]
    spool.close()


def test_claimable_counts_free_rows_not_those_being_sent(tmp_path: Path) -> None:
    """claimable() leaves out rows a running process holds; pending() counts every row."""
    clock = WallClock()
    mine = spool_at(tmp_path / "s.db", clock)
    other = spool_at(tmp_path / "s.db", clock)
    mine.add([request(0, 3), request(3, 1)])
    assert other.claimable() == 4
    assert mine.claim(limit=1)
    assert other.claimable() == 1
    assert mine.claimable() == 1
    assert other.pending() == 4
    mine.close()
    other.close()


# -- 2. a forked child's claims do not strand the parent's rows ---------------------


@needs_judging
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available")
def test_rows_a_forked_child_claimed_are_free_once_it_exits(tmp_path: Path) -> None:
    """A child that claims the parent's rows and exits without closing strands nothing."""
    spool = spool_at(tmp_path / "s.db")
    spool.add([request(0), request(2)])
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            spool.after_fork()
            ok = len(spool.claim()) == 2
        finally:
            os._exit(0 if ok else 1)  # no close(): as a worker that is killed or _exits
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert spool.claimable() == 4
    assert [r.key for r, _ in spool.claim()] == [request(0).key, request(2).key]
    spool.close()


@needs_judging
@pytest.mark.skipif(not (LINUX and hasattr(os, "fork")), reason="zombies are seen in /proc")
def test_rows_of_a_child_not_yet_reaped_are_free(tmp_path: Path) -> None:
    """A child that ended but was not waited for (a zombie) holds nothing either."""
    spool = spool_at(tmp_path / "s.db")
    spool.add([request(0)])
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            spool.after_fork()
            ok = len(spool.claim()) == 1
        finally:
            os._exit(0 if ok else 1)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
        assert [r.key for r, _ in spool.claim()] == [request(0).key]
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    spool.close()


def test_close_releases_the_rows_the_handle_holds(tmp_path: Path) -> None:
    """close() gives back what its handle claimed: another handle claims it at once."""
    clock = WallClock()
    leaving = spool_at(tmp_path / "s.db", clock)
    staying = spool_at(tmp_path / "s.db", clock)
    leaving.add([request(0), request(2)])
    assert len(leaving.claim()) == 2
    assert staying.claim() == []
    leaving.close()
    assert [r.key for r, _ in staying.claim()] == [request(0).key, request(2).key]
    staying.close()


# -- 3. a deleted or replaced file is opened anew -----------------------------------


def remove_spool_files(path: Path, suffixes: tuple[str, ...] = ("", "-wal", "-shm")) -> None:
    """Delete the database at ``path`` and those of its side files named by ``suffixes``."""
    for suffix in suffixes:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_deleted_spool_file_is_recreated_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request added after the file (and its -wal, -shm) was deleted lands in a new file."""
    path = tmp_path / "s.db"
    spool = spool_at(path)
    assert spool.add([request(0)]) == (True, [])
    remove_spool_files(path)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert spool.add([request(2)]) == (True, [])
        assert spool.add([request(4)]) == (True, [])
    assert keys_on_disk(path) == [request(2).key, request(4).key]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "deleted or replaced" in warnings[0]
    assert str(path) in warnings[0]
    assert spool.usable
    spool.close()


def test_a_database_deleted_without_its_wal_is_recreated_cleanly(tmp_path: Path) -> None:
    """The old file's -wal and -shm are not paired with the new file."""
    path = tmp_path / "s.db"
    spool = spool_at(path)
    spool.add([request(0), request(2)])
    remove_spool_files(path, ("",))
    assert spool.claim() == []  # the new file is empty
    spool.add([request(4)])
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert keys_on_disk(path) == [request(4).key]
    spool.close()


def test_rows_claimed_from_a_deleted_file_are_not_finished_in_the_new_one(
    tmp_path: Path,
) -> None:
    """A row id from the old file never deletes or releases the new file's row of that id."""
    path = tmp_path / "s.db"
    spool = spool_at(path)
    spool.add([request(0)])
    ((_, old_row),) = spool.claim()
    remove_spool_files(path)
    spool.add([request(2)])  # id 1 again, in the new file
    assert not spool.finish(old_row)
    assert not spool.release(old_row)
    assert keys_on_disk(path) == [request(2).key]
    spool.close()


def test_a_replaced_spool_file_is_opened_anew(tmp_path: Path) -> None:
    """A spool moved over the path (a restored copy) is what the next claim reads."""
    path, copy = tmp_path / "s.db", tmp_path / "copy.db"
    spool = spool_at(path)
    spool.add([request(0)])
    restored = spool_at(copy)
    restored.add([request(2)])
    restored.close()  # checkpoints: the copy is one file
    os.replace(copy, path)
    remove_spool_files(path, ("-wal", "-shm"))
    assert [r.key for r, _ in spool.claim()] == [request(2).key]
    spool.close()


# -- 4. the cap never evicts the request it is making room for ----------------------


def test_a_request_larger_than_the_cap_is_refused_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Too big for the spool: not stored (delivery keeps it in memory), nothing evicted."""
    small, big = request(0, 1), request(10, 1, pad=5000)
    spool = spool_at(tmp_path / "s.db", max_bytes=size_of(small) + 1000)
    assert spool.add([small]) == (True, [])
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert spool.add([big]) == (False, [])
    assert keys_on_disk(tmp_path / "s.db") == [small.key]
    assert "no room" in caplog.records[0].getMessage()
    spool.close()


def test_eviction_spares_the_new_request_and_rows_being_sent(tmp_path: Path) -> None:
    """Evicting the free rows is not enough (the rest is being sent): refuse, evict nothing."""
    clock = WallClock()
    path = tmp_path / "s.db"
    first, second, third = request(10, 1, pad=3000), request(20, 1), request(30, 1, pad=3000)
    cap = size_of(first) + size_of(second) + 10  # first and third do not fit together
    spool = spool_at(path, clock, max_bytes=cap)
    sender = spool_at(path, clock, max_bytes=cap)
    assert spool.add([first]) == (True, [])
    ((sending, row),) = sender.claim()  # being sent now
    assert sending.key == first.key
    assert spool.add([second]) == (True, [])
    assert spool.add([third]) == (False, [])
    assert keys_on_disk(path) == [first.key, second.key]
    assert sender.finish(row)
    assert spool.add([third]) == (True, [])
    assert keys_on_disk(path) == [second.key, third.key]
    spool.close()
    sender.close()


def test_eviction_takes_the_oldest_other_rows_first(tmp_path: Path) -> None:
    """Room is made from the oldest free rows only, as few as needed."""
    path = tmp_path / "s.db"
    old, mid, new = (request(10 * i, 1, pad=3000) for i in range(3))
    spool = spool_at(path, max_bytes=size_of(old) + size_of(mid) + 10)
    spool.add([old])
    spool.add([mid])
    stored, evicted = spool.add([new])
    assert stored
    assert [r.key for r in evicted] == [old.key]
    assert keys_on_disk(path) == [mid.key, new.key]
    spool.close()
