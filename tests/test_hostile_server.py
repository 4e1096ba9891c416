"""Servers that really misbehave (issue 18): 200 MB answers, trickled answers, a key in
the reason phrase, ``accepted: false``, and flush() after a full backlog.

Raw-socket servers (tests/hostile.py) on 127.0.0.1; a child process where memory
(its VmHWM) or its exit is measured. Every bound on time is generous: a hang guard.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HANG_GUARD, HandlerFactory, wait_until
from .hostile import HostileServer

KEY = "vf_test_hostile_0123456789abcdef"
#: What a child on 200 MB answers may reach (a bare child is ~40 MB; before: 738 MB+).
MEMORY_BOUND_KB = 150 * 1024
#: What a child on a gzip bomb may reach: decoding one socket read of it whole is +64 MB.
BOMB_BOUND_KB = 80 * 1024

CHILD = """
    import json, logging, os, sys, time
    import vf_otel

    reported = []
    handler = vf_otel.VibefollowHandler(
        api_key={key!r}, base_url={url!r}, flush_interval=3600,
        on_error=lambda error, events: reported.extend(events), **{options!r},
    )
    log = logging.getLogger("app")
    log.propagate = False
    log.addHandler(handler)
    for i in range({count}):
        log.warning("e", extra={{"vf_event": "e", "vf_user": "u", "vf_properties": {{"i": i}}}})
    flushed = handler.flush(timeout={flush})
    started = time.monotonic()
    handler.close()
    stats = handler.stats()
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    print(json.dumps({{
        "flushed": flushed, "sent": stats.sent, "dropped": stats.dropped_total,
        "in_flight": stats.in_flight, "reported": len(reported), "hwm_kb": hwm,
        "close_seconds": time.monotonic() - started,
    }}))
"""


def run_child(url: str, *, count: int = 10, flush: float = 5.0, **options: Any) -> dict[str, Any]:
    """Run CHILD against ``url``; its printed summary."""
    source = textwrap.dedent(CHILD).format(
        key=KEY, url=url, options=options, count=count, flush=flush
    )
    return _summary_of(source)


def _summary_of(source: str) -> dict[str, Any]:
    """Run ``source`` in this interpreter with no VIBEFOLLOW_* set; the JSON summary it
    printed last (the key never in its output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", source],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["huge200", "huge500"])
def test_a_200_mb_answer_keeps_memory_bounded(mode: str) -> None:
    """A 200 MB answer (2xx or 500, retried) is not read whole: memory stays bounded."""
    with HostileServer(mode) as server:
        result = run_child(server.base_url, flush=2.0, max_retries=3, shutdown_timeout=1.0)
    assert result["hwm_kb"] < MEMORY_BOUND_KB, result
    assert server.requests >= 2  # retried: an oversized 2xx is not the API's answer
    assert result["flushed"] is False
    assert result["sent"] == 0
    # Nothing silent: every event is dropped at shutdown and reported to on_error.
    assert result["dropped"] == result["reported"] == 10


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gzip_bomb200", "gzip_bomb500"])
def test_a_gzip_bomb_is_decoded_no_further_than_an_answer_can_need(mode: str) -> None:
    """A server that gzips although asked for identity: 250 KB decoding to 256 MB. httpx
    decodes each 64 KiB read whole (64 MB at a time: the child peaked at 170 MB); vf-otel
    decodes at most the 64 KiB an answer may hold, so the child stays near its bare size."""
    with HostileServer(mode) as server:
        result = run_child(server.base_url, flush=2.0, max_retries=3, shutdown_timeout=1.0)
    assert result["hwm_kb"] < BOMB_BOUND_KB, result
    assert server.requests >= 2  # retried: a 2xx over the limit is not the API's answer
    assert result["flushed"] is False
    assert result["sent"] == 0
    assert result["dropped"] == result["reported"] == 10


@pytest.mark.slow
def test_bytes_after_a_gzip_body_are_not_read_for_ever() -> None:
    """A 200 whose gzip envelope is followed by zeros until the client closes: they decode
    to nothing, so only the raw count ends the read (twice MAX_ANSWER_BYTES). Before, the
    request went on until ``timeout`` (zlib kept the trailing bytes: 260 MB); now it ends
    at once as not the API's answer, and is retried."""
    with HostileServer("gzip_trailing200") as server:
        result = run_child(
            server.base_url, flush=2.0, timeout=20.0, max_retries=3, shutdown_timeout=1.0
        )
    assert result["hwm_kb"] < BOMB_BOUND_KB, result
    assert server.requests >= 2, result  # ended and retried well within the 20 s timeout
    assert result["sent"] == 0
    assert result["dropped"] + result["in_flight"] == result["reported"] == 10


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["trickle_head", "trickle_body"])
def test_timeout_bounds_the_whole_request_against_a_trickling_server(mode: str) -> None:
    """A server trickling a byte every 0.2 s: each request ends at ``timeout`` and is
    retried (before: one request held for 20-40 s); at exit every event is accounted for."""
    with HostileServer(mode) as server:
        began = time.monotonic()
        result = run_child(
            server.base_url, flush=2.0, timeout=0.5, max_retries=5, shutdown_timeout=1.0
        )
        took = time.monotonic() - began
    assert server.requests >= 2, result  # the first request timed out and was retried
    assert result["sent"] == 0
    # Every event accounted for: dropped (and reported), or out when the stop ended.
    assert result["dropped"] + result["in_flight"] == 10
    # Each reported once: as dropped, or as still in flight at the stop (outcome unknown).
    assert result["reported"] == result["dropped"] + result["in_flight"]
    assert took < 30  # flush 2 s + shutdown 1 s; a trickled answer would take 20-40 s


def test_a_request_reported_in_flight_at_shutdown_is_not_reported_again_when_it_ends() -> None:
    """No spool, a server that never answers: at the stop's deadline the request still out
    is reported to on_error (outcome unknown); when its own timeout ends it later, its
    events are counted as dropped but not reported a second time (CI once saw 20 reports
    for 10 events in the trickling test above)."""
    reported: list[str] = []
    with HostileServer("hang") as server:
        handler = vf_otel.VibefollowHandler(
            api_key=KEY,
            base_url=server.base_url,
            timeout=1.0,
            max_retries=0,
            shutdown_timeout=0.3,
            on_error=lambda _error, events: reported.extend(e.event_id for e in events),
        )
        log = logging.getLogger("app.hostile.in_flight")
        log.propagate = False
        log.addHandler(handler)
        try:
            log.warning("e", extra={"vf_event": "e", "vf_user": "u"})
            wait_until(lambda: server.requests >= 1)  # the request is out, unanswered
            handler.close()  # ends at its deadline with the request still out
            assert handler.stats().in_flight == 1
            assert len(reported) == 1
            # The request's own timeout ends it: counted as dropped, reported no more.
            wait_until(lambda: handler.stats().in_flight == 0)
        finally:
            log.removeHandler(handler)
    stats = handler.stats()
    assert (stats.sent, stats.dropped_total, stats.in_flight) == (0, 1, 0)
    assert len(reported) == 1, reported


def test_an_export_timeout_shorter_than_min_attempt_still_delivers(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """``export_timeout`` under MIN_ATTEMPT (50 ms): retries are held back near the deadline,
    never the first attempt, so the event still reaches the server."""
    handler = make_handler(export_timeout=0.04)
    log = logging.getLogger("app.hostile.short_deadline")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("e", extra={"vf_event": "e", "vf_user": "u"})
        assert handler.flush(timeout=10)
    finally:
        log.removeHandler(handler)
    assert handler.stats().sent == 1
    assert len(vibefollow_server.events) == 1


def test_api_key_in_the_reason_phrase_is_scrubbed_from_http_debug_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server echoing the key into its reason phrase: vf_otel.http lines never show it."""
    with HostileServer("answer", reason=f"Accepted for Bearer {KEY}") as server:
        handler = vf_otel.VibefollowHandler(api_key=KEY, base_url=server.base_url)
        try:
            with caplog.at_level(logging.DEBUG):  # httpx logs only when enabled
                log = logging.getLogger("app.hostile.reason")
                log.propagate = False
                log.addHandler(handler)
                log.warning("e", extra={"vf_event": "e", "vf_user": "u"})
                assert handler.flush(timeout=10)
                log.removeHandler(handler)
        finally:
            handler.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "vf_otel.http"]
    assert any("[redacted]" in line for line in lines), lines
    assert not any(KEY in line for line in lines)
    assert KEY not in caplog.text


def test_accepted_false_is_dead_lettered_and_reported_not_counted_as_sent() -> None:
    """A 2xx envelope saying accepted: false is refused for good: not sent, reported."""
    body = b'{"data":{"accepted":false}}'
    reported: list[vf_otel.VibefollowError] = []
    with HostileServer("answer", body=body) as server:
        handler = vf_otel.VibefollowHandler(
            api_key=KEY,
            base_url=server.base_url,
            on_error=lambda error, events: reported.append(error),
        )
        try:
            log = logging.getLogger("app.hostile.declined")
            log.propagate = False
            log.addHandler(handler)
            for _ in range(3):
                log.warning("e", extra={"vf_event": "e", "vf_user": "u"})
            assert handler.flush(timeout=10) is False
            log.removeHandler(handler)
        finally:
            handler.close()
        requests = server.requests
    stats = handler.stats()
    assert stats.sent == 0
    assert stats.dead_lettered == 3
    assert requests == 1  # one batch, never retried (the same key would replay it)
    assert reported
    assert all(error.code == "not_accepted" for error in reported)


@pytest.mark.usefixtures("fast_clock")  # the circuit's cool-down not waited out
def test_flush_after_a_backlog_full_drop_reports_it_once_then_answers_true(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """After backlog_full drops, the next flush says False once; later ones True, promptly."""
    # 4 KiB of backlog: two parked requests of 10 such events (1+ KiB each, compressed).
    handler = make_handler(
        max_retries=0, max_queue_size=20, max_backlog_bytes=4096, batch_size=10, timeout=2.0
    )
    log = logging.getLogger("app.hostile.backlog")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.fail_next(503, count=100_000)
    for round_ in range(6):  # each flush parks a batch; the backlog holds 20 events
        for i in range(10):
            pad = {"pad": os.urandom(100).hex()}  # random: does not compress
            log.warning(
                "e", extra={"vf_event": f"e{round_}_{i}", "vf_user": "u", "vf_properties": pad}
            )
        # The worker sends a full batch unasked; once it is parked (and an older one
        # dropped), the round's flush says so. With no time: on the fast clock a flush
        # during the outage would try again until its timeout.
        wait_until(lambda: handler.stats().queued + handler.stats().in_flight == 0)
        handler.flush(timeout=0)
    assert handler.stats().dropped.get("backlog_full", 0) > 0
    vibefollow_server.clear_faults()
    # Each drop was said by the round's flush after it; nothing dropped since: this one
    # delivers what the backlog kept (as soon as the circuit lets it) and says True.
    assert handler.flush(timeout=15) is True
    assert len(vibefollow_server.events) == 60 - handler.stats().dropped_total
    began = time.monotonic()
    assert handler.flush(timeout=15) is True
    assert time.monotonic() - began < 10  # not the whole timeout
    log.warning("e", extra={"vf_event": "after", "vf_user": "u"})
    assert handler.flush(timeout=15) is True
    log.removeHandler(handler)
    stats = handler.stats()
    assert stats.sent == len(vibefollow_server.events)
    assert stats.sent + stats.dropped_total == 61


@pytest.mark.usefixtures("fast_clock")  # the circuit's cool-down not waited out
def test_a_backlog_full_drop_makes_the_next_flush_false_once_with_the_api_back(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """No flush during the outage: the first flush once the API is back delivers what the
    backlog kept and says False (the drops since the last flush), the next says True."""
    errors: list[int] = []
    handler = make_handler(
        max_retries=0,
        max_queue_size=20,
        max_backlog_bytes=4096,
        batch_size=10,
        timeout=2.0,
        on_error=lambda _error, events: errors.append(len(events)),
    )
    log = logging.getLogger("app.hostile.backlog_once")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.fail_next(503, count=100_000)
    for round_ in range(6):  # the worker sends each full batch unasked; it parks
        for i in range(10):
            pad = {"pad": os.urandom(100).hex()}  # random: does not compress
            log.warning(
                "e", extra={"vf_event": f"e{round_}_{i}", "vf_user": "u", "vf_properties": pad}
            )
        wait_until(lambda: handler.stats().queued + handler.stats().in_flight == 0)
    dropped = handler.stats().dropped.get("backlog_full", 0)
    assert dropped > 0
    vibefollow_server.clear_faults()
    assert handler.flush(timeout=15) is False  # delivered the rest; says the drops, once
    stats = handler.stats()
    assert (stats.queued, stats.in_flight, stats.parked) == (0, 0, 0), stats
    assert stats.dropped_total == dropped == sum(errors)  # every drop counted and reported
    assert stats.sent == len(vibefollow_server.events) == 60 - dropped
    assert handler.flush(timeout=15) is True  # nothing since: settled, True
    log.warning("e", extra={"vf_event": "after", "vf_user": "u"})
    assert handler.flush(timeout=15) is True
    log.removeHandler(handler)
    assert handler.stats().sent == len(vibefollow_server.events) == 61 - dropped


@pytest.mark.slow
def test_a_batchs_user_upserts_go_out_at_most_four_at_once() -> None:
    """Side by side, but bounded: 20 upserts the API holds 0.3 s each are never more
    than 4 out at once (the senders), and more than one at a time."""
    users_path = "/api/v1/users"
    with HostileServer("answer", delays={users_path: 0.3}) as server:
        handler = vf_otel.VibefollowHandler(
            api_key=KEY, base_url=server.base_url, batch_size=100, flush_interval=60.0
        )
        log = logging.getLogger("app.hostile.upsert_bound")
        log.propagate = False
        log.addHandler(handler)
        try:
            log.warning("e", extra={"vf_event": "warm", "vf_user": "u0", "vf_traits": {"n": 0}})
            assert handler.flush(timeout=30)  # the API has answered: no slow start now
            for i in range(1, 21):
                log.warning(
                    "e", extra={"vf_event": "signup", "vf_user": f"u{i}", "vf_traits": {"n": i}}
                )
            assert handler.flush(timeout=60)
        finally:
            log.removeHandler(handler)
            handler.close()
        upserts = [seen for seen in server.seen if seen.path == users_path]
    stats = handler.stats()
    assert (stats.users_sent, stats.sent) == (21, 21)
    assert len(upserts) == 21
    # How many were out at once: at each arrival, those arrived and not yet answered.
    out_at_once = [
        sum(1 for other in upserts if other.arrived <= seen.arrived < (other.answered or 0))
        for seen in upserts
    ]
    assert max(out_at_once) <= 4, out_at_once
    assert max(out_at_once) >= 2, out_at_once


EXIT_CHILD = """
    import atexit, json, time
    # Registered before logging is imported: runs after logging.shutdown() at exit.
    marks = {{}}
    def report():
        stats = handler.stats()
        print(json.dumps({{
            "exit_seconds": time.monotonic() - marks["exit"], "dropped": stats.dropped_total,
            "spooled": stats.spooled, "in_flight": stats.in_flight, "reported": len(reported),
        }}), flush=True)
    atexit.register(report)
    import logging
    import vf_otel

    reported = []
    handler = vf_otel.VibefollowHandler(
        api_key={key!r}, base_url={url!r}, on_error=lambda error, events: reported.extend(events),
        **{options!r},
    )
    log = logging.getLogger("app")
    log.propagate = False
    log.addHandler(handler)
    for i in range(50):
        log.warning("e", extra={{"vf_event": "e", "vf_user": "u", "vf_properties": {{"i": i}}}})
    marks["exit"] = time.monotonic()
"""


def run_exit_child(url: str, **options: Any) -> dict[str, Any]:
    """Run EXIT_CHILD against ``url``: 50 events, then a plain exit; its summary."""
    return _summary_of(textwrap.dedent(EXIT_CHILD).format(key=KEY, url=url, options=options))


def refused_url() -> str:
    """A loopback URL nothing listens on: every connection is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "shutdown_timeout"), [("hang", 3.0), ("refused", 6.0)])
def test_exit_never_overruns_shutdown_timeout(mode: str, shutdown_timeout: float) -> None:
    """logging.shutdown() at exit (flush, then close) costs at most shutdown_timeout, with
    the API hanging or refusing connections; every event is accounted for."""
    if mode == "hang":
        with HostileServer("hang") as server:
            result = run_exit_child(
                server.base_url, shutdown_timeout=shutdown_timeout, timeout=30.0
            )
    else:
        result = run_exit_child(refused_url(), shutdown_timeout=shutdown_timeout)
    # Before: flush and close each waited (about 1.5 to 2 times shutdown_timeout).
    assert result["exit_seconds"] < shutdown_timeout + 1.0, result
    assert result["dropped"] + result["in_flight"] == 50, result


class FlushingSubclass(vf_otel.VibefollowHandler):
    """An app's subclass whose flush() and close() call the handler's own."""

    def flush(self, timeout: float | None = None) -> bool:
        return super().flush(timeout)

    def close(self) -> None:
        super().close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", [vf_otel.VibefollowHandler, FlushingSubclass])
def test_logging_shutdown_called_by_the_app_costs_one_shutdown_timeout(
    kind: type[vf_otel.VibefollowHandler],
) -> None:
    """logging.shutdown() called by the app, not at exit: its flush() and close() share
    one shutdown_timeout against a hanging API (before: each waited all of it, 2x; and a
    subclass overriding flush() hid logging.shutdown() from the handler); every event is
    reported once, dropped or still in flight."""
    shutdown_timeout = 3.0
    reported: list[str] = []
    with HostileServer("hang") as server:
        handler = kind(
            api_key=KEY,
            base_url=server.base_url,
            shutdown_timeout=shutdown_timeout,
            timeout=30.0,
            on_error=lambda _error, events: reported.extend(e.event_id for e in events),
        )
        log = logging.getLogger("app.hostile.logging_shutdown")
        log.propagate = False
        log.addHandler(handler)
        try:
            for i in range(50):
                log.warning("e", extra={"vf_event": "e", "vf_user": "u", "vf_properties": {"i": i}})
            assert wait_until(lambda: server.requests >= 1)  # the API holds a request
            began = time.monotonic()
            logging.shutdown([weakref.ref(handler)])  # flush(), then close(): this handler only
            took = time.monotonic() - began
        finally:
            log.removeHandler(handler)
        stats = handler.stats()
    assert took < shutdown_timeout + 1.5, took  # before: twice shutdown_timeout
    assert server.requests >= 1
    assert stats.sent == 0
    assert stats.dropped_total + stats.in_flight == 50, stats
    assert sorted(set(reported)) == sorted(reported)  # each reported once
    assert len(reported) == 50


def test_logging_shutdown_called_by_the_app_spools_at_once(tmp_path: Path) -> None:
    """With a spool and the API refusing connections, logging.shutdown() called by the app
    spools what is queued at once, as exit and close() do (before: its flush() retried
    for the whole shutdown_timeout first)."""
    shutdown_timeout = 30.0
    handler = vf_otel.VibefollowHandler(
        api_key=KEY,
        base_url=refused_url(),
        shutdown_timeout=shutdown_timeout,
        spool_path=str(tmp_path / "spool.db"),
    )
    log = logging.getLogger("app.hostile.logging_shutdown_spool")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(5):
            log.warning("e", extra={"vf_event": "e", "vf_user": "u", "vf_properties": {"i": i}})
        began = time.monotonic()
        logging.shutdown([weakref.ref(handler)])
        took = time.monotonic() - began
    finally:
        log.removeHandler(handler)
    stats = handler.stats()
    assert (stats.spooled, stats.sent, stats.dropped_total) == (5, 0, 0), stats
    assert took < shutdown_timeout / 3, took  # before: ~shutdown_timeout


@pytest.mark.slow
def test_exit_with_a_spool_and_an_unreachable_api_goes_to_disk_at_once(tmp_path: Path) -> None:
    """With a spool and the API refusing connections, exit spools everything in well under
    shutdown_timeout (before: it waited all of it)."""
    result = run_exit_child(
        refused_url(), shutdown_timeout=10.0, spool_path=str(tmp_path / "spool.db")
    )
    assert result["exit_seconds"] < 3.0, result
    assert result["spooled"] == 50
    assert result["dropped"] == result["in_flight"] == result["reported"] == 0


@pytest.mark.slow
def test_a_batchs_user_upserts_go_out_side_by_side_and_its_events_after_them(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """20 new users at 0.5 s per upsert: sent concurrently (not 10 s one by one), and the
    batch's events only after every upsert was answered."""
    handler = make_handler(batch_size=100)
    log = logging.getLogger("app.hostile.upserts")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.delay_next(0.5, count=20, path="/users")
    for i in range(20):
        log.warning("e", extra={"vf_event": "signup", "vf_user": f"u{i}", "vf_traits": {"n": i}})
    began = time.monotonic()
    flushed: list[bool] = []
    flushing = threading.Thread(target=lambda: flushed.append(handler.flush(timeout=60)))
    flushing.start()
    while flushing.is_alive():  # while the upserts are out, stats() sees every event
        stats = handler.stats()
        # in_flight counts events only; the upserts out are users_in_flight.
        seen = stats.queued + stats.in_flight + stats.parked + stats.sent + stats.dropped_total
        assert seen >= 20, stats
        assert stats.in_flight <= 20, stats
        assert stats.users_in_flight + stats.users_parked + stats.users_sent <= 20, stats
        time.sleep(0.05)
    took = time.monotonic() - began
    assert flushed == [True]
    log.removeHandler(handler)
    assert took < 7  # one by one: 10 s; four at a time: about 3 s
    paths = [r.path for r in vibefollow_server.requests]
    assert paths.count("/api/v1/users") == 20
    last_upsert = max(i for i, path in enumerate(paths) if path == "/api/v1/users")
    first_batch = min(i for i, path in enumerate(paths) if path == "/api/v1/events/batch")
    assert last_upsert < first_batch
    stats = handler.stats()
    assert (stats.users_sent, stats.sent, len(vibefollow_server.events)) == (20, 20, 20)


def test_a_user_upsert_out_is_counted_apart_from_events(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """While a hung upsert is out, every enqueued event is in flight and the upsert is
    users_in_flight, never one more event: enqueued == sent + ... + in_flight + parked."""
    handler = make_handler(batch_size=100)
    log = logging.getLogger("app.hostile.upsert_count")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.delay_next(0.5, count=1, path="/users")
    for i in range(6):
        log.warning("e", extra={"vf_event": f"step_{i}", "vf_user": "u1", "vf_traits": {"n": 1}})
    flushed: list[bool] = []
    flushing = threading.Thread(target=lambda: flushed.append(handler.flush(timeout=30)))
    flushing.start()
    seen_out = False
    while flushing.is_alive():
        stats = handler.stats()
        if stats.users_in_flight:
            seen_out = True
            assert (stats.enqueued, stats.in_flight, stats.users_in_flight) == (6, 6, 1), stats
        accounted = stats.sent + stats.dead_lettered + stats.dropped_total + stats.queued
        assert accounted + stats.in_flight + stats.parked <= stats.enqueued, stats
        time.sleep(0.02)
    log.removeHandler(handler)
    assert flushed == [True]
    assert seen_out  # the held upsert was watched while out
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, stats.users_sent) == (6, 6, 1)
    assert (stats.in_flight, stats.users_in_flight, stats.users_parked) == (0, 0, 0)
