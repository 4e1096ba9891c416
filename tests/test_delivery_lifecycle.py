"""The delivery core as production tries it, over real HTTP (issue 9's defects).

Each test here reproduces one way events used to be lost at the edges — a blip
right before exit, one hung request, an API that never answers, a burned probe,
a signal handler that logs, a callback that flushes, a poison value, a stale
count — and checks that every event now lands exactly once or is counted.
Processes that exit are real subprocesses: ``atexit`` runs ``logging.shutdown()``,
which calls ``flush()`` then ``close()`` with their default timeouts.
"""

from __future__ import annotations

import logging
import subprocess
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import run_python

#: Bounds every subprocess (seconds); a deadlock shows up as this timeout.
CHILD_LIMIT = 90.0
EXIT_SCRIPT = """
import logging, sys
import vf_otel

handler = vf_otel.VibefollowHandler()  # every option from VIBEFOLLOW_* or its default
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(handler)
for seq in range(int(sys.argv[1])):
    log.info("lifecycle", extra={"vf_user": f"usr_{seq % 97}", "vf_properties": {"seq": seq}})
# No flush, no close: the interpreter's exit runs logging.shutdown().
"""


def _run_child(
    server: VibefollowServer, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return run_python(server, ["-c", textwrap.dedent(script), *args], timeout=CHILD_LIMIT)


def _seqs(server: VibefollowServer) -> Counter[int]:
    return Counter(event["properties"]["seq"] for event in server.events)


@pytest.mark.slow
def test_five_failures_right_before_exit_still_deliver_everything(
    server: VibefollowServer,
) -> None:
    """A blip (5 x 503) just before logging.shutdown(): the circuit's cool-down is waited out
    within shutdown_timeout, the probe succeeds, and all 10,000 events land once."""
    server.fail_next(503, count=5, path="/events/batch")
    done = _run_child(server, EXIT_SCRIPT, "10000")
    assert done.returncode == 0, done.stderr
    assert _seqs(server) == Counter(range(10_000)), done.stderr
    assert server.rejected == 0
    assert server.pending_faults == 0
    assert "not delivered" not in done.stderr


@pytest.mark.slow
def test_one_hung_request_does_not_cost_the_rest_under_default_flush_and_close(
    server: VibefollowServer,
) -> None:
    """One request held past the client's timeout (4 s): it is retried, the other 9,500
    events follow, and the default flush() + close() of logging.shutdown(), which share
    one shutdown_timeout (10 s), deliver all 10,000 exactly once."""
    server.delay_next(6.0, count=1, path="/events/batch")
    script = ["-c", textwrap.dedent(EXIT_SCRIPT), "10000"]
    done = run_python(server, script, timeout=CHILD_LIMIT, VIBEFOLLOW_TIMEOUT="4")
    assert done.returncode == 0, done.stderr
    server.wait_for_events(10_000, timeout=15.0)  # the held original lands late, deduplicated
    assert _seqs(server) == Counter(range(10_000)), done.stderr
    assert server.rejected == 0


@pytest.mark.slow
@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_an_api_that_never_answers_overflows_to_the_spool_not_to_drops(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """Requests held past the client timeout while the app logs 3,000 events at 1,000/s into
    a queue of 1,000: the worker keeps draining into the spool, nothing is dropped, and once
    the API answers again every event lands exactly once."""
    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key,
        base_url=server.base_url,
        spool_path=tmp_path / "spool.db",
        max_queue_size=1_000,
        flush_interval=0.05,
        timeout=0.5,
        export_timeout=5.0,
        shutdown_timeout=5.0,
    )
    log = logging.getLogger("app.never_answers")
    log.propagate = False
    log.addHandler(handler)
    server.delay_next(2.0, count=10_000, path="/events/batch")
    try:
        seq = 0
        for _ in range(60):  # 60 x 50 events, paced at 50 ms: 1,000 events/s for 3 s
            for _ in range(50):
                log.warning("hung", extra={"vf_user": "usr_1", "vf_properties": {"seq": seq}})
                seq += 1
            time.sleep(0.05)
        during = handler.stats()
        server.clear_faults()
        deadline = time.monotonic() + 60.0
        while not handler.flush(5.0) and time.monotonic() < deadline:
            pass
        stats = handler.stats()
    finally:
        log.removeHandler(handler)
        handler.close()
    assert during.spooled > 0, during
    assert stats.dropped == {}, stats
    server.wait_for_events(seq, timeout=10.0)
    assert _seqs(server) == Counter(range(seq))
    assert server.rejected == 0


@pytest.mark.usefixtures("fast_clock")  # the cool-down not waited out
def test_flush_with_no_time_left_does_not_burn_the_probe(server: VibefollowServer) -> None:
    """flush(timeout=0) while the circuit is half-open takes no probe slot it cannot use:
    the next flush probes, the API answers, and everything lands."""
    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key, base_url=server.base_url, flush_interval=60.0, max_retries=0
    )
    log = logging.getLogger("app.probe")
    log.propagate = False
    log.addHandler(handler)
    try:
        server.fail_next(503, count=5, path="/events/batch")
        for seq in range(5):
            log.warning("probe", extra={"vf_user": "usr_1", "vf_properties": {"seq": seq}})
        # Five failures open the circuit; the cool-down (10 ms on the fast clock, then
        # doubling) passes into half-open while the app keeps asking for flushes it gives
        # no time to.
        for _ in range(30):
            assert not handler.flush(0.0)
            time.sleep(0.01)
        assert server.pending_faults == 0
        assert handler.flush(10.0)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert _seqs(server) == Counter(range(5))


SIGNAL_SCRIPT = """
import logging, signal, sys
import vf_otel

handler = vf_otel.VibefollowHandler(flush_interval=0.01, batch_size=10)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(handler)
fired = 0

def on_alarm(signum, frame):
    global fired
    fired += 1
    log.info("from_signal", extra={"vf_user": "usr_s", "vf_properties": {"n": fired}})

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for n in range(20_000):
    log.info("from_main", extra={"vf_user": "usr_m", "vf_properties": {"n": n}})
    if n % 1000 == 0:
        handler.flush(1.0)  # flush() interrupted by the signal too
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(fired, flush=True)
"""


@pytest.mark.slow
def test_logging_from_a_signal_handler_never_deadlocks(server: VibefollowServer) -> None:
    """A SIGALRM handler logging tagged records every 0.5 ms while the main thread logs and
    flushes: the process finishes (no lock is re-entered) and every event lands."""
    done = _run_child(server, SIGNAL_SCRIPT)
    assert done.returncode == 0, done.stderr
    fired = int(done.stdout.split()[-1])
    assert fired > 0
    names = Counter(event["name"] for event in server.events)
    assert names == {"from_main": 20_000, "from_signal": fired}


class _Loud:
    """A property value whose text says which thread turned it into text."""

    threads: list[str]

    def __init__(self) -> None:
        self.threads = []

    def __str__(self) -> str:
        self.threads.append(threading.current_thread().name)
        return "loud"


def test_flush_inside_on_error_returns_at_once_and_user_str_runs_on_the_worker(
    server: VibefollowServer,
) -> None:
    """on_error runs on a delivery thread: flush() there does not wait for itself; the app's
    flush() never runs user __str__ (coercion happens on the worker)."""
    inner: list[tuple[bool, str]] = []
    handler: vf_otel.VibefollowHandler

    def on_error(error: vf_otel.VibefollowError, events: Any) -> None:
        inner.append((handler.flush(30.0), threading.current_thread().name))

    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key, base_url=server.base_url, flush_interval=60.0, on_error=on_error
    )
    log = logging.getLogger("app.on_error")
    log.propagate = False
    log.addHandler(handler)
    loud = _Loud()
    server.reject_event(lambda event: event["name"] == "poison")
    try:
        log.warning("fine", extra={"vf_user": "usr_1", "vf_properties": {"v": loud}})
        log.warning("poison", extra={"vf_user": "usr_1"})
        log.warning("poison", extra={"vf_user": "usr_2"})
        assert not handler.flush(30.0)  # two were dead-lettered
    finally:
        log.removeHandler(handler)
        handler.close()
    assert [result for result, _ in inner] == [False]  # one 422 named both: one report
    assert all(name.startswith("Vibefollow") for _, name in inner)
    assert loud.threads
    assert "MainThread" not in loud.threads
    assert [e["name"] for e in server.events] == ["fine"]


def test_a_trait_too_long_to_print_loses_nothing(server: VibefollowServer) -> None:
    """An int trait of 5,000 digits in a batch of 500: every event lands, the upsert is sent
    with the value described, and flush() raises nothing into the app."""
    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key, base_url=server.base_url, flush_interval=60.0
    )
    log = logging.getLogger("app.poison")
    log.propagate = False
    log.addHandler(handler)
    try:
        for seq in range(500):
            extra: dict[str, Any] = {"vf_user": f"usr_{seq}", "vf_properties": {"seq": seq}}
            if seq == 250:
                extra["vf_traits"] = {"score": 10**5000}
            log.warning("poison_trait", extra=extra)
        assert handler.flush(10.0)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert _seqs(server) == Counter(range(500))
    assert [u["external_user_id"] for u in server.users] == ["usr_250"]
    assert str(server.users[0]["traits"]["score"]).startswith("<int")


def test_an_internal_error_is_counted_and_reaches_on_error() -> None:
    """A failure inside delivery (here: the transport raises something unexpected) drops
    the request's events as internal_error, counted and reported — never raised."""
    reported: list[tuple[vf_otel.VibefollowError, int]] = []

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug")

    handler = vf_otel.VibefollowHandler(
        api_key="sk_test_internal",
        base_url="http://127.0.0.1:9",
        transport=httpx.MockTransport(broken),
        on_error=lambda error, events: reported.append((error, len(events))),
    )
    log = logging.getLogger("app.internal")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("e", extra={"vf_user": "usr_1"})
        assert not handler.flush(5.0)
        stats = handler.stats()
    finally:
        log.removeHandler(handler)
        handler.close()
    assert stats.dropped == {"internal_error": 1}
    assert [(type(e), n) for e, n in reported] == [(vf_otel.UndeliveredError, 1)]


def test_the_shutdown_warning_does_not_count_a_request_still_in_flight(
    server: VibefollowServer, caplog: pytest.LogCaptureFixture
) -> None:
    """close() while one request is still out: the warning says it is in flight (outcome
    unknown), not lost; when it lands it is counted as sent, and nothing as dropped."""
    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key, base_url=server.base_url, flush_interval=0.01,
        shutdown_timeout=0.5,
    )  # fmt: skip
    log = logging.getLogger("app.in_flight")
    log.propagate = False
    log.addHandler(handler)
    server.delay_next(1.0, path="/events/batch")  # answered after the 0.5 s close
    log.warning("slow", extra={"vf_user": "usr_1", "vf_properties": {"seq": 0}})
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        handler.close()
    log.removeHandler(handler)
    warnings = [r.getMessage() for r in caplog.records if r.name == "vf_otel"]
    assert any("1 event(s) still in flight" in w for w in warnings), warnings
    assert not any("not delivered" in w for w in warnings), warnings
    assert server.wait_for_events(1, timeout=10.0)
    deadline = time.monotonic() + 10.0
    while handler.stats().sent == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = handler.stats()
    assert (stats.sent, stats.dropped, stats.in_flight) == (1, {}, 0)


def test_an_export_under_a_refused_key_returns_at_once_with_events_parked(
    server: VibefollowServer,
) -> None:
    """export() learns that its events were parked (the key was refused) as soon as that
    happens: FAILURE, the events held for later, not a wait for the whole export_timeout."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("checkout", attributes={"vf.user": "usr_1"}).end()
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=server.api_key, base_url=server.base_url, export_timeout=600.0
    )
    server.fail_next(401, count=10)
    try:
        result = exporter.export(memory.get_finished_spans())
        stats = exporter.stats()
    finally:
        server.clear_faults()
        exporter.shutdown()
    assert result is SpanExportResult.FAILURE
    assert (stats.parked, stats.sent, stats.dropped_total) == (1, 0, 0)
