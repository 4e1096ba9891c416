"""The spool over real HTTP against VibefollowServer: replay, dedup, restarts, sharing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import vf_otel
from vf_otel._delivery.wire import encode_event, events_request
from vf_otel._event.model import Event
from vf_otel._spool.store import Spool
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory
from .test_spool import WHEN

# One process of a two-process scenario: log (or not), then close, printing stats.
CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import vf_otel
    base_url, api_key, spool, count, prefix = sys.argv[1:6]
    handler = vf_otel.VibefollowHandler(
        api_key=api_key, base_url=base_url, spool_path=spool, flush_interval=60.0,
        shutdown_timeout=3.0, max_retries=1,
    )
    log = logging.getLogger("child")
    log.addHandler(handler)
    for i in range(int(count)):
        log.warning("spooled_%s_%d" % (prefix, i), extra={"vf_user": "usr_%d" % i})
    flushed = handler.flush(timeout=10.0) if prefix == "flush" else None
    handler.close()
    stats = handler.stats()
    print(json.dumps({"flushed": flushed, "spooled": stats.spooled, "sent": stats.sent,
                      "dropped": dict(stats.dropped)}))
    """
)


def run_child(server: VibefollowServer, spool: Path, count: int, prefix: str) -> dict[str, Any]:
    """Run CHILD in a fresh interpreter and return the stats it printed."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            "-c",
            CHILD,
            server.base_url,
            server.api_key,
            str(spool),
            str(count),
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_lost_answer_then_spooled_then_replayed_is_deduplicated(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, tmp_path: Path
) -> None:
    """A batch that landed but whose answer was lost is spooled, replayed and deduplicated."""
    handler = make_handler(spool_path=tmp_path / "spool.db", max_retries=0)
    log = logging.getLogger("app.spool.lost")
    log.addHandler(handler)
    vibefollow_server.lose_response_next()
    for i in range(3):
        log.warning("signup", extra={"vf_user": f"usr_{i}"})
    assert handler.flush(timeout=10)
    log.removeHandler(handler)
    first, replay = vibefollow_server.requests
    assert (first.fault, replay.replayed) == ("lose_response", True)
    assert (first.idempotency_key, first.body) == (replay.idempotency_key, replay.body)
    assert len(vibefollow_server.events) == 3
    assert vibefollow_server.replayed == 1
    stats = handler.stats()
    assert (stats.spooled, stats.sent, stats.backlog, stats.dropped_total) == (3, 3, 0, 0)


@pytest.mark.slow
def test_shutdown_during_outage_is_delivered_by_the_next_process(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Process 1 exits while the API fails; process 2 delivers all of it, same keys, once."""
    spool = tmp_path / "spool.db"
    vibefollow_server.fail_next(503, count=100_000)
    first = run_child(vibefollow_server, spool, 7, "outage")
    assert first["sent"] == 0
    assert first["spooled"] == 7
    assert first["dropped"] == {}
    tried = {r.idempotency_key for r in vibefollow_server.requests}
    assert tried
    vibefollow_server.clear()  # healthy again (and nothing was accepted before)
    second = run_child(vibefollow_server, spool, 0, "flush")
    assert second["flushed"] is True
    assert second["sent"] == 7
    names = sorted(e["name"] for e in vibefollow_server.events)
    assert names == sorted(f"spooled_outage_{i}" for i in range(7))
    assert {r.idempotency_key for r in vibefollow_server.requests} <= tried
    assert Spool(str(spool), 10**8, lease=60).pending() == 0


@pytest.mark.slow
def test_two_processes_sharing_a_spool_send_each_request_once(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Two processes replaying one spool at once: every request goes out exactly once."""
    spool_file = tmp_path / "spool.db"
    spool = Spool(str(spool_file), 10**8, lease=60)
    expected = []
    for chunk in range(60):
        events = [
            Event(f"shared_{chunk}_{i}", "usr_1", {}, WHEN, f"id{chunk}-{i}") for i in range(5)
        ]
        expected += [e.name for e in events]
        spool.add([events_request(events, [encode_event(e) for e in events])])
    spool.close()
    command = [
        sys.executable,
        "-c",
        CHILD,
        vibefollow_server.base_url,
        vibefollow_server.api_key,
        str(spool_file),
        "0",
        "flush",
    ]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    sent = [json.loads(out.strip().splitlines()[-1])["sent"] for out, _ in outputs]
    assert sum(sent) == 300
    assert sorted(e["name"] for e in vibefollow_server.events) == sorted(expected)
    assert len(vibefollow_server.requests) == 60
    assert vibefollow_server.replayed == 0


def test_corrupt_spool_file_degrades_to_memory_with_one_error(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A garbage spool file: one clear error, and delivery carries on in memory."""
    path = tmp_path / "spool.db"
    path.write_bytes(b"\x00garbage" * 500)
    log = logging.getLogger("app.spool.corrupt")
    with caplog.at_level(logging.ERROR, logger="vf_otel"):
        handler = make_handler(spool_path=str(path), max_retries=0)
        log.addHandler(handler)
        vibefollow_server.fail_next(503)
        log.warning("signup", extra={"vf_user": "usr_1"})
        assert handler.flush(timeout=10)
        log.removeHandler(handler)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "spool" in errors[0].getMessage()
    assert len(vibefollow_server.events) == 1
    assert handler.stats().spooled == 0


def test_spool_eviction_is_counted_and_reported(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, tmp_path: Path
) -> None:
    """Past spool_max_bytes the oldest spooled events are dropped as spool_evicted."""
    lost: list[vf_otel.Event] = []
    handler = make_handler(
        spool_path=tmp_path / "spool.db",
        spool_max_bytes=20_000,
        batch_size=1,
        max_retries=0,
        on_error=lambda exc, events: lost.extend(events),
    )
    log = logging.getLogger("app.spool.evict")
    log.addHandler(handler)
    vibefollow_server.fail_next(401, count=100)  # holds everything back, no retry storm
    for i in range(6):
        log.warning("big", extra={"vf_user": f"usr_{i}", "vf_properties": {"pad": "x" * 3000}})
    assert not handler.flush(timeout=5)
    log.removeHandler(handler)
    stats = handler.stats()
    evicted = stats.dropped["spool_evicted"]
    assert evicted >= 2
    assert stats.spooled == 6
    # The oldest rows go first; requests run concurrently, so which events were parked
    # first is not the order they were logged in.
    assert len({e.user_id for e in lost}) == evicted
    assert {e.user_id for e in lost} <= {f"usr_{i}" for i in range(6)}
    assert Spool(str(tmp_path / "spool.db"), 10**8, lease=60).pending() == 6 - evicted
