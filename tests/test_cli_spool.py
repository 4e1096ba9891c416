"""``vf-otel spool stats|replay|purge``: the spool file as the command sees it."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from vf_otel._cli import ExitCode, main
from vf_otel._cli._spool_access import pid_alive
from vf_otel._delivery.wire import Request, encode_event, events_request, user_requests
from vf_otel._event.model import Event
from vf_otel._spool.store import Spool, spool_file_problem
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory
from .test_cli import LIVE_KEY
from .test_spool import WHEN

LEASE = 100.0


def batch(prefix: str, count: int = 2, *, traits: bool = False) -> list[Request]:
    """One /events/batch request (plus a /users upsert with ``traits``) for ``count`` events."""
    events = [
        Event(f"{prefix}_{i}", f"usr_{prefix}", {"n": i}, WHEN, f"{prefix}-{i}", None)
        for i in range(count)
    ]
    if traits:
        events[0] = Event(events[0].name, events[0].user_id, {}, WHEN, events[0].event_id, {"a": 1})
    return [events_request(events, [encode_event(e) for e in events]), *user_requests(events)]


def fill(path: Path, *requests: Request) -> Spool:
    """A spool at ``path`` holding ``requests`` (left open: the caller may lease rows)."""
    spool = Spool(str(path), 10**8, lease=LEASE)
    assert spool.add(list(requests)) == (True, [])
    return spool


def lease_all(path: Path, pid: int, seconds: float = LEASE) -> None:
    """Mark every row as leased by ``pid`` (another process) for ``seconds``."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE vf_requests SET owner = ?, lease_until = ?", (pid, time.time() + seconds)
        )
    conn.close()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout)


def rows(path: Path) -> int:
    """Rows in the spool file, read directly."""
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM vf_requests").fetchone()
    conn.close()
    return int(count)


def keys_in(path: Path) -> list[str]:
    """The Idempotency-Keys stored in the spool file, oldest row first."""
    with sqlite3.connect(path) as conn:
        keys = [str(key) for (key,) in conn.execute("SELECT key FROM vf_requests ORDER BY id")]
    conn.close()
    return keys


def stats_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``vf-otel spool stats --json`` parsed."""
    capsys.readouterr()
    assert main(["spool", "stats", "--spool-path", str(path), "--json"]) == ExitCode.OK
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def replay(server: VibefollowServer, path: Path, *extra: str) -> int:
    """``vf-otel spool replay`` against ``server``."""
    args = ["--api-key", server.api_key, "--base-url", server.base_url, *extra]
    return main(["spool", "replay", "--spool-path", str(path), *args])


class FakeTerminal(io.StringIO):
    """stdin as a terminal, with the user's typed answer."""

    def isatty(self) -> bool:
        return True


# -- the command line ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["stats", "replay", "purge"])
def test_each_action_has_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``vf-otel spool ACTION --help`` describes --spool-path and exits 0."""
    assert main(["spool", action, "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vf-otel spool {action}")
    assert "--spool-path" in out


def test_spool_without_an_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bare ``vf-otel spool`` lists the actions and exits 2."""
    assert main(["spool"]) == ExitCode.USAGE
    assert "required: ACTION" in capsys.readouterr().err


@pytest.mark.parametrize("action", [["stats"], ["replay", "--api-key", LIVE_KEY], ["purge"]])
def test_no_spool_configured_is_a_config_error(
    action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --spool-path or VIBEFOLLOW_SPOOL_PATH each action says so and exits 4."""
    assert main(["spool", *action]) == ExitCode.BAD_CONFIG
    err = capsys.readouterr().err
    assert "no spool configured" in err
    assert "VIBEFOLLOW_SPOOL_PATH" in err


def test_a_missing_file_is_refused_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path with no file is an error, not an empty spool: the command creates nothing."""
    path = tmp_path / "typo.db"
    assert main(["spool", "purge", "--yes", "--spool-path", str(path)]) == ExitCode.BAD_CONFIG
    assert f"{path}: no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_another_database_is_refused_and_left_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SQLite file of some other app is not a spool: no table added, journal mode kept."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    before = path.read_bytes()
    assert main(["spool", "stats", "--spool-path", str(path)]) == ExitCode.BAD_CONFIG
    assert "not a vf-otel spool (no vf_requests table)" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A text file at the spool path: a clear message and status 4."""
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not SQLite\n" * 20)
    assert main(["spool", "stats", "--spool-path", str(path)]) == ExitCode.BAD_CONFIG
    assert "not a vf-otel spool" in capsys.readouterr().err


def test_spool_file_problem_wants_every_column(tmp_path: Path) -> None:
    """A vf_requests table missing the spool's columns is not taken for a spool."""
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE vf_requests (id INTEGER, path TEXT)")
    conn.close()
    assert spool_file_problem(str(path)) == (
        "not a vf-otel spool "
        "(vf_requests lacks body, events, key, lease_until, owner, size, weight)"
    )
    assert spool_file_problem(str(tmp_path)) == "not a regular file"
    fill(tmp_path / "real.db", *batch("a")).close()
    assert spool_file_problem(str(tmp_path / "real.db")) is None


# -- stats ---------------------------------------------------------------------------


def test_stats_json_counts_rows_events_bytes_and_ages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: rows, events, user upserts, bytes, the events' ages, and no leases."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a", 3, traits=True), *batch("b", 2)).close()
    result = stats_json(path, capsys)
    assert (result["rows"], result["events"], result["user_upserts"]) == (3, 5, 1)
    assert result["bytes"] > 0
    assert result["file_bytes"] >= result["bytes"]
    assert result["oldest_event_at"] == result["newest_event_at"] == WHEN.isoformat()
    age = time.time() - WHEN.timestamp()
    assert result["oldest_age_seconds"] == pytest.approx(age, abs=60)
    assert result["leases"] == []


def test_stats_of_an_empty_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty spool: zeros, and no ages."""
    path = tmp_path / "spool.db"
    fill(path).close()
    result = stats_json(path, capsys)
    assert (result["rows"], result["events"], result["bytes"]) == (0, 0, 0)
    assert result["oldest_event_at"] is None
    assert result["oldest_age_seconds"] is None


def test_stats_names_the_pids_holding_leases_and_whether_they_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_pid: int
) -> None:
    """Leased rows are listed per pid, with whether that process is alive."""
    path = tmp_path / "spool.db"
    spool = fill(path, *batch("a", 3), *batch("b", 4))
    lease_all(path, dead_pid)
    spool.claim(limit=1)  # nothing free: both rows are the dead pid's
    with sqlite3.connect(path) as conn:  # hand the second row to this (live) process
        conn.execute("UPDATE vf_requests SET owner = ? WHERE id = 2", (os.getpid(),))
    conn.close()
    leases = stats_json(path, capsys)["leases"]
    assert [(x["pid"], x["alive"], x["rows"], x["events"]) for x in leases] == sorted(
        [(dead_pid, False, 1, 3), (os.getpid(), True, 1, 4)]
    )
    assert all(0 < x["expires_in_seconds"] <= LEASE for x in leases)
    assert main(["spool", "stats", "--spool-path", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"by pid {dead_pid} (not running;" in out
    assert f"by pid {os.getpid()} (running;" in out
    spool.close()


def test_an_expired_lease_is_not_a_lease(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row whose lease ran out is claimable by anyone: stats does not list it."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    lease_all(path, os.getpid(), seconds=-1)
    assert stats_json(path, capsys)["leases"] == []


def test_stats_reads_the_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """VIBEFOLLOW_SPOOL_PATH is used when --spool-path is not given; the argument wins."""
    env_path, arg_path = tmp_path / "env.db", tmp_path / "arg.db"
    fill(env_path, *batch("a")).close()
    fill(arg_path).close()
    monkeypatch.setenv("VIBEFOLLOW_SPOOL_PATH", str(env_path))
    assert main(["spool", "stats", "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["rows"] == 1
    assert stats_json(arg_path, capsys)["rows"] == 0


def test_pid_alive() -> None:
    """This process is alive; pid 0 and negative pids (process groups) are never signalled."""
    assert pid_alive(os.getpid()) is (True if os.name == "posix" else None)
    assert pid_alive(0) is None
    assert pid_alive(-1) is None


# -- replay --------------------------------------------------------------------------


def spool_during_outage(
    server: VibefollowServer, make_handler: HandlerFactory, path: Path, count: int
) -> set[str | None]:
    """Log ``count`` events while the API answers 503, close; the keys that were tried."""
    server.fail_next(503, count=100_000)
    handler = make_handler(spool_path=path, max_retries=0, shutdown_timeout=2.0, batch_size=2)
    log = logging.getLogger("app.cli.spool")
    log.addHandler(handler)
    try:
        for i in range(count):
            log.warning("outage_event", extra={"vf_user": f"usr_{i}"})
        handler.close()
    finally:
        log.removeHandler(handler)
    assert handler.stats().sent == 0
    return {r.idempotency_key for r in server.requests}


def test_replay_sends_the_spool_once_with_the_same_keys(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What an app spooled in an outage goes out once, same Idempotency-Keys; spool empties."""
    path = tmp_path / "spool.db"
    tried = spool_during_outage(vibefollow_server, make_handler, path, 5)
    assert rows(path) == 3  # batches of 2, 2 and 1
    spooled = set(keys_in(path))
    assert tried <= spooled  # what the app tried before it spooled, the same keys
    vibefollow_server.clear()  # healthy again
    capsys.readouterr()
    assert replay(vibefollow_server, path) == ExitCode.OK
    out = capsys.readouterr().out
    assert "replaying 3 request(s) (5 events, 0 user upserts)" in out
    assert "done: 3 request(s) sent (5 events, 0 user upserts); the spool is empty" in out
    assert sorted(e["external_user_id"] for e in vibefollow_server.events) == [
        f"usr_{i}" for i in range(5)
    ]
    keys = [str(r.idempotency_key) for r in vibefollow_server.requests]
    assert sorted(keys) == sorted(spooled)
    assert rows(path) == 0
    assert replay(vibefollow_server, path) == ExitCode.OK  # nothing left: nothing sent twice
    assert len(vibefollow_server.requests) == 3


def test_replay_sends_the_exact_bytes_and_the_server_deduplicates(
    vibefollow_server: VibefollowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spooled request that had landed already is answered from the idempotency store."""
    path = tmp_path / "spool.db"
    landed, *others = batch("a", 2, traits=True)
    fill(path, landed, *others, *batch("b", 3)).close()
    headers = {
        "Authorization": f"Bearer {vibefollow_server.api_key}",
        "Idempotency-Key": landed.key,
    }
    headers["Content-Type"] = "application/json"
    url = vibefollow_server.base_url + "/api/v1" + landed.path
    assert httpx.post(url, content=landed.body, headers=headers).status_code == 202
    assert replay(vibefollow_server, path) == ExitCode.OK
    # Up to four rows go out at once, so the replayed copy is not necessarily second.
    first, *replayed = vibefollow_server.requests
    (again,) = [r for r in replayed if r.idempotency_key == landed.key]
    assert (again.body, again.replayed) == (landed.body, True)
    assert vibefollow_server.replayed == 1
    assert len(vibefollow_server.events) == 5
    assert len(vibefollow_server.users) == 1
    # The request that had landed counts as sent: the server answered it with success.
    assert "3 request(s) sent (5 events, 1 user upsert)" in capsys.readouterr().out
    assert first.idempotency_key == landed.key


def test_replay_uses_the_environment_like_the_library(
    vibefollow_server: VibefollowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VIBEFOLLOW_API_KEY, _BASE_URL and _SPOOL_PATH are enough to replay."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", vibefollow_server.api_key)
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", vibefollow_server.base_url)
    monkeypatch.setenv("VIBEFOLLOW_SPOOL_PATH", str(path))
    assert main(["spool", "replay"]) == ExitCode.OK
    assert len(vibefollow_server.events) == 2


def test_replay_to_a_server_that_is_down_keeps_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Connection refused: exit 1 with the reason; every row is still in the spool."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a"), *batch("b")).close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--api-key", LIVE_KEY, "--base-url", f"http://127.0.0.1:{port}", "--timeout", "0.3"]
    assert main(["spool", "replay", "--spool-path", str(path), *args]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "not done: 2 request(s) (4 events) still in the spool" in err
    assert "ConnectError" in err
    assert "vf-otel doctor" in err
    assert rows(path) == 2
    assert stats_json(path, capsys)["leases"] == []  # released, not left leased


def test_replay_with_a_refused_key_keeps_everything_and_hides_the_key(
    vibefollow_server: VibefollowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """401: exit 1, the reason names the refused key (redacted), nothing is deleted."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    args = ["--api-key", LIVE_KEY, "--base-url", vibefollow_server.base_url]
    assert main(["spool", "replay", "--spool-path", str(path), *args]) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "refused the API key (401" in captured.err
    assert LIVE_KEY not in captured.out + captured.err
    assert rows(path) == 1
    assert vibefollow_server.events == []


def test_replay_without_an_api_key_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key anywhere: exit 3 before anything is claimed."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    assert main(["spool", "replay", "--spool-path", str(path)]) == ExitCode.NO_API_KEY
    assert "no API key" in capsys.readouterr().err
    assert rows(path) == 1


def test_replay_with_delivery_off_sends_nothing_and_keeps_the_spool(
    vibefollow_server: VibefollowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """VIBEFOLLOW_ENABLED=false turns this command's sending off too: exit 1, saying why
    and what to change; every row stays, nothing is sent."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    monkeypatch.setenv("VIBEFOLLOW_ENABLED", "false")
    assert replay(vibefollow_server, path) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "not replayed: delivery is off (VIBEFOLLOW_ENABLED=false); the spool is kept" in err
    assert "Unset VIBEFOLLOW_ENABLED" in err
    assert rows(path) == 1
    assert vibefollow_server.requests == []


def test_replay_leaves_rows_another_process_is_sending(
    vibefollow_server: VibefollowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row leased by another process is not sent; the free ones are; exit 1 names the pid."""
    path = tmp_path / "spool.db"
    app = fill(path, *batch("held", 3))
    (held,) = app.claim()  # the "app" is sending this one now
    fill(path, *batch("free", 2)).close()
    assert replay(vibefollow_server, path, "--timeout", "0.5") == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "not done: 1 request(s) (3 events) still in the spool" in err
    assert f"leased by other processes: 1 request(s) (3 events) by pid {os.getpid()}" in err
    assert sorted(e["name"] for e in vibefollow_server.events) == ["free_0", "free_1"]
    assert app.finish(held[1])
    app.close()


def test_replay_reports_events_the_server_refuses_for_good(
    vibefollow_server: VibefollowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A poison event is dead-lettered (warned about); the rest lands; the spool empties."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a", 3)).close()
    vibefollow_server.reject_event(lambda event: event["name"] == "a_1")
    assert replay(vibefollow_server, path) == ExitCode.OK
    captured = capsys.readouterr()
    assert "the server refused 1 event(s) for good" in captured.err
    assert sorted(e["name"] for e in vibefollow_server.events) == ["a_0", "a_2"]
    assert rows(path) == 0


def test_replay_sends_rows_another_process_releases_meanwhile(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """A row freed while replay waits for it is claimed and sent before --timeout."""
    path = tmp_path / "spool.db"
    app = fill(path, *batch("held", 3))
    (held,) = app.claim()
    release = threading.Timer(0.2, app.release, args=(held[1],))
    release.start()
    try:
        assert replay(vibefollow_server, path, "--timeout", "10") == ExitCode.OK
    finally:
        release.join()
        app.close()
    assert sorted(e["name"] for e in vibefollow_server.events) == ["held_0", "held_1", "held_2"]
    assert rows(path) == 0


def test_send_leaves_the_spool_alone(
    vibefollow_server: VibefollowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """send neither replays the app's spool nor spools an event it could not deliver."""
    path = tmp_path / "spool.db"
    fill(path, *batch("app")).close()
    monkeypatch.setenv("VIBEFOLLOW_SPOOL_PATH", str(path))
    args = ["send", "x", "--user", "u1", "--api-key", vibefollow_server.api_key]
    assert main([*args, "--base-url", vibefollow_server.base_url]) == ExitCode.OK
    assert [e["name"] for e in vibefollow_server.events] == ["x"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert main([*args, "--base-url", down, "--timeout", "0.3"]) == ExitCode.CONNECTION
    assert rows(path) == 1


# -- purge ---------------------------------------------------------------------------


def test_purge_with_yes_deletes_everything_and_counts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--yes: every row goes; the output says how many events were discarded."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a", 3, traits=True), *batch("b", 2)).close()
    assert main(["spool", "purge", "--yes", "--spool-path", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "purged 3 request(s)" in out
    assert "5 events and 1 user upsert discarded" in out
    assert rows(path) == 0


def test_purge_refuses_without_yes_when_stdin_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped stdin and no --yes: nothing is deleted, exit 2."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["spool", "purge", "--spool-path", str(path)]) == ExitCode.USAGE
    assert "pass --yes" in capsys.readouterr().err
    assert rows(path) == 1


@pytest.mark.parametrize(("answer", "status", "left"), [("y\n", 0, 0), ("n\n", 1, 1), ("", 1, 1)])
def test_purge_asks_on_a_terminal(
    answer: str,
    status: int,
    left: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a terminal purge asks first; only yes deletes."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))
    assert main(["spool", "purge", "--spool-path", str(path)]) == status
    assert "Delete 1 request(s): 2 events, 0 user upserts from" in capsys.readouterr().err
    assert rows(path) == left


def test_purge_of_an_empty_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing spooled: nothing to ask, exit 0."""
    path = tmp_path / "spool.db"
    fill(path).close()
    assert main(["spool", "purge", "--spool-path", str(path)]) == ExitCode.OK
    assert "is empty: nothing to purge" in capsys.readouterr().out


def test_purge_keeps_rows_a_running_process_holds_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows leased by a live pid survive (exit 1 says so); --force deletes them too."""
    path = tmp_path / "spool.db"
    app = fill(path, *batch("held", 3))
    app.claim()
    fill(path, *batch("free", 2)).close()
    assert main(["spool", "purge", "--yes", "--spool-path", str(path)]) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "2 events and 0 user upserts discarded" in captured.out
    assert f"kept 1 request(s) (3 events) by pid {os.getpid()} (running;" in captured.err
    assert "--force" in captured.err
    assert rows(path) == 1
    assert main(["spool", "purge", "--yes", "--force", "--spool-path", str(path)]) == ExitCode.OK
    assert "3 events and 0 user upserts discarded" in capsys.readouterr().out
    assert rows(path) == 0
    app.close()


def test_purge_deletes_rows_of_a_process_that_died(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_pid: int
) -> None:
    """A lease whose pid no longer runs does not hold the purge back."""
    path = tmp_path / "spool.db"
    fill(path, *batch("a")).close()
    lease_all(path, dead_pid)
    assert main(["spool", "purge", "--yes", "--spool-path", str(path)]) == ExitCode.OK
    assert rows(path) == 0
    assert "2 events" in capsys.readouterr().out


def test_spool_purge_method_checks_liveness_inside_its_transaction(tmp_path: Path) -> None:
    """Spool.purge asks ``keep`` about each pid holding a lease, and only those."""
    path = tmp_path / "spool.db"
    spool = fill(path, *batch("a"), *batch("b", 3))
    spool.claim(limit=1)
    asked: list[int] = []

    def keep(pid: int) -> bool:
        asked.append(pid)
        return True

    purged = spool.purge(keep)
    assert purged is not None
    assert asked == [os.getpid()]
    assert (purged.rows, purged.events, [k.rows for k in purged.kept]) == (1, 3, [1])
    spool.close()
