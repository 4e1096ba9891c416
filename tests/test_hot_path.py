"""The handler's app-thread shortcuts (benchmarks/hot_path.py) keep the behaviour they skip."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

import pytest

import vf_otel
from vf_otel._delivery import policy as pace_module
from vf_otel._delivery.policy import BUSY_AFTER, FASTEST_LOGGING, PAUSE_EVERY, STEP_BACK, Pace
from vf_otel._event.build import Rejection
from vf_otel._sources import handler as handler_module
from vf_otel.testing import VibefollowServer

from .conftest import HANG_GUARD, HandlerFactory


def test_a_filter_on_the_handler_still_decides(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """filter() is skipped only when there are no filters: one that refuses still refuses."""
    handler = make_handler()
    handler.addFilter(lambda record: record.getMessage() != "secret")
    app_logger.addHandler(handler)
    app_logger.info("secret", extra={"vf_user": "usr_1"})
    app_logger.info("kept", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=10)
    assert [e["name"] for e in vibefollow_server.events] == ["kept"]


def test_a_full_batch_wakes_the_worker_before_the_interval(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """Queueing batch_size records starts a delivery at once, not after flush_interval."""
    handler = make_handler(batch_size=5, flush_interval=60.0)
    app_logger.addHandler(handler)
    for i in range(5):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert vibefollow_server.wait_for_events(5, timeout=10)


def test_properties_are_sent_as_they_were_when_logged(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """The inlined snapshot copies a properties or traits dict the caller mutates afterwards."""
    handler = make_handler()
    app_logger.addHandler(handler)
    properties = {"plan": "trial"}
    traits = {"name": "Ada"}
    app_logger.info(
        "e", extra={"vf_user": "usr_1", "vf_properties": properties, "vf_traits": traits}
    )
    properties["plan"] = "changed"
    traits["name"] = "changed"
    assert handler.flush(timeout=10)
    assert vibefollow_server.events[0]["properties"] == {"plan": "trial"}
    assert vibefollow_server.users[0]["traits"] == {"name": "Ada"}


def test_the_worker_lets_the_app_run_while_it_builds(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch nobody waits for is built and encoded with the GIL let go every PAUSE_EVERY."""
    yields: list[int] = []
    monkeypatch.setattr(pace_module, "_yield_gil", lambda: yields.append(1))
    # Batches by size alone: the first event would go at once (adaptive batching).
    handler = make_handler(batch_size=2 * PAUSE_EVERY, flush_interval=60.0, adaptive_batching=False)
    app_logger.addHandler(handler)
    for i in range(2 * PAUSE_EVERY):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert vibefollow_server.wait_for_events(2 * PAUSE_EVERY, timeout=10)
    # Before the full batch is taken, then after each PAUSE_EVERY events built and encoded.
    assert len(yields) == 5


def test_the_worker_does_not_pause_while_a_flush_waits(
    make_handler: HandlerFactory, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch a flush() waits for is built without letting go: the caller waits for it."""
    yields: list[int] = []
    monkeypatch.setattr(pace_module, "_yield_gil", lambda: yields.append(1))
    handler = make_handler(batch_size=100, flush_interval=60.0)
    app_logger.addHandler(handler)
    for i in range(2 * PAUSE_EVERY):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert handler.flush(timeout=10)
    assert yields == []


def test_the_worker_keeps_up_once_the_queue_is_half_full(
    make_handler: HandlerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past half of max_queue_size the worker stops letting go, and after close() too."""
    yields: list[int] = []
    monkeypatch.setattr(pace_module, "_yield_gil", lambda: yields.append(1))
    handler = make_handler(max_queue_size=4, batch_size=100)  # nothing taken meanwhile
    queue, worker = handler._pipeline.queue, handler._pipeline._worker
    refusal = Rejection("invalid_name", "name", "counted")
    worker._pace.pause()
    queue.put(refusal)
    queue.put(refusal)
    worker._pace.pause()
    assert len(yields) == 2  # up to half full: the app goes first
    queue.put(refusal)
    worker._pace.pause()
    assert len(yields) == 2  # over half full: the worker takes its share
    queue.take(3)
    handler.close()
    worker._pace.pause()
    assert len(yields) == 2  # stopping: nothing to wait for


def test_a_queued_log_call_leaves_nothing_for_the_garbage_collector(
    make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """A tagged record waits as plain fields: no object of its own for the GC to track."""
    handler = make_handler(batch_size=100)  # nothing is taken meanwhile
    app_logger.addHandler(handler)
    app_logger.info("e", extra={"vf_user": "usr_1", "vf_properties": {"plan": "pro"}})
    queue = handler._pipeline.queue
    assert len(queue) == 1
    fields = gc.get_referents(queue.items)
    # The one tracked field is the handler's redactor, shared by every record.
    assert [field for field in fields if gc.is_tracked(field)] == [handler._redactor]


# -- stepping back while the app is busy (Pace) -------------------------------------


class _Waits:
    """Stands in for the pace's hurry event: records how long each step back would wait.

    ``on_clear`` runs at the start of ``clear()``: what another thread did just then.
    """

    def __init__(self) -> None:
        self.waits: list[float | None] = []
        self.flag = False
        self.on_clear: Callable[[], None] = lambda: None

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.on_clear()
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.flag


def _pace(
    *,
    gil_wait: float,
    queued: int = 0,
    max_queue_size: int = 10_000_000,
    flush_waiting: Callable[[], bool] = lambda: False,
    patience: float = 3600.0,
) -> tuple[Pace, _Waits]:
    """A Pace whose clock says each hand-over of the GIL took ``gil_wait`` seconds."""
    ticks = iter(float(n) * gil_wait for n in range(1000))
    pace = Pace(
        queue=range(queued),
        max_queue_size=max_queue_size,
        stop=threading.Event(),
        flush_waiting=flush_waiting,
        patience=patience,
        clock=lambda: next(ticks),
    )
    waits = _Waits()
    pace._hurry = waits  # type: ignore[assignment]
    return pace, waits


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the pace's hand-overs of the GIL instead of making them."""
    made: list[int] = []
    monkeypatch.setattr(pace_module, "_yield_gil", lambda: made.append(1))
    return made


def test_the_worker_steps_back_while_the_app_keeps_the_gil(yields: list[int]) -> None:
    """Getting the GIL back took BUSY_AFTER or more: the worker waits STEP_BACK."""
    pace, waits = _pace(gil_wait=BUSY_AFTER)
    pace.pause()
    assert (len(yields), waits.waits) == (1, [STEP_BACK])


def test_the_worker_goes_on_when_nobody_wanted_the_gil(yields: list[int]) -> None:
    """An idle app gave the GIL straight back: no step back, delivery goes on."""
    pace, waits = _pace(gil_wait=BUSY_AFTER / 10)
    pace.pause()
    assert (len(yields), waits.waits) == (1, [])


@pytest.mark.parametrize(
    ("queued", "flushing"), [(51, False), (0, True)], ids=["queue-past-half", "flush-waits"]
)
def test_a_hurried_worker_never_steps_back(yields: list[int], queued: int, flushing: bool) -> None:
    """Past half of max_queue_size, or with a flush waiting, the worker does not let go."""
    pace, waits = _pace(
        gil_wait=1.0, queued=queued, max_queue_size=100, flush_waiting=lambda: flushing
    )
    pace.pause()
    assert (yields, waits.waits) == ([], [])


def test_a_step_back_ends_before_the_queue_could_be_half_full(yields: list[int]) -> None:
    """Near half full a step back is as long as FASTEST_LOGGING takes to fill the rest."""
    pace, waits = _pace(gil_wait=1.0, queued=4_900, max_queue_size=10_000)
    pace.pause()
    assert waits.waits == [pytest.approx(100 / FASTEST_LOGGING)]
    pace, waits = _pace(gil_wait=1.0, queued=5_000, max_queue_size=10_000)
    pace.pause()  # exactly at half: no room for a step back
    assert waits.waits == []


def test_an_app_busy_for_longer_than_a_burst_gets_no_more_step_backs(yields: list[int]) -> None:
    """After ``patience`` (flush_interval) seconds of busy pauses the worker takes its share;
    a pause that finds the app idle, or comes RUN_GAP after the last busy one, starts over."""
    pace, waits = _pace(gil_wait=0.4, patience=1.0)  # each pause: busy, 0.8 s after the last
    pace.pause()  # busy from now on (0.4)
    pace.pause()  # 1.2: 0.8 s into the run
    pace.pause()  # 2.0: 1.6 s into the run, more than patience
    assert waits.waits == [STEP_BACK, STEP_BACK]
    pace._clock = iter([10.0, 10.0, 11.0, 12.0]).__next__  # idle, then busy again
    pace.pause()
    pace.pause()
    assert waits.waits == [STEP_BACK] * 3
    pace._clock = iter([12.5, 12.6, 13.0, 13.1, 20.0, 20.1]).__next__
    pace.pause()  # 12.6: 0.6 s into the run begun at 12.0: a step back
    pace.pause()  # 13.1: 1.1 s into it: none
    pace.pause()  # 20.1: nothing busy since 13.1, more than RUN_GAP: a new run, a step back
    assert waits.waits == [STEP_BACK] * 5


def test_a_hurry_just_before_a_step_back_is_not_missed(yields: list[int]) -> None:
    """A flush that asked and hurried the worker just before it cleared the event: no wait."""
    flushing = threading.Event()
    pace, waits = _pace(gil_wait=1.0, flush_waiting=flushing.is_set)

    def flush_arrives() -> None:  # Worker.flush: register the waiter, then hurry()
        flushing.set()
        pace.hurry()

    waits.on_clear = flush_arrives
    pace.pause()
    assert waits.waits == []


class _EnteredEvent(threading.Event):
    """A threading.Event that says when somebody starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.entered.set()
        return super().wait(timeout)


def test_a_flush_ends_a_step_back_at_once(
    monkeypatch: pytest.MonkeyPatch, yields: list[int]
) -> None:
    """hurry() (what flush() and shutdown call) wakes a worker in the middle of a step back."""
    monkeypatch.setattr(pace_module, "STEP_BACK", 3600.0)  # only hurry() can end it
    monkeypatch.setattr(pace_module, "FASTEST_LOGGING", 1.0)  # (not the queue's headroom)
    pace, _ = _pace(gil_wait=1.0)
    hurry = pace._hurry = _EnteredEvent()
    worker = threading.Thread(target=pace.pause, daemon=True)
    worker.start()
    assert hurry.entered.wait(HANG_GUARD)  # the worker is stepping back
    pace.hurry()
    worker.join(HANG_GUARD)
    assert not worker.is_alive()


def test_hurry_from_a_signal_handler_inside_hurry_does_not_deadlock(yields: list[int]) -> None:
    """A SIGTERM hook's flush() interrupting a flush() inside hurry(): the inner one skips."""
    pace, _ = _pace(gil_wait=1.0)

    class Interrupted(threading.Event):
        def set(self) -> None:
            with self._cond:  # type: ignore[attr-defined]  # as Event.set() holds it
                pace.hurry()  # the signal handler's flush, on this very thread
                self._flag = True
                self._cond.notify_all()  # type: ignore[attr-defined]

    hurry = pace._hurry = Interrupted()
    caller = threading.Thread(target=pace.hurry, daemon=True)
    caller.start()
    caller.join(HANG_GUARD)
    assert not caller.is_alive()
    assert hurry.is_set()


def test_a_flush_is_not_slowed_by_a_step_back(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker stepping back for an hour (every pause finds the app busy): a flush() ends
    it, and every later pause of the flushed batches goes straight on."""
    monkeypatch.setattr(pace_module, "STEP_BACK", 3600.0)
    monkeypatch.setattr(pace_module, "FASTEST_LOGGING", 1.0)  # only a flush can end it
    monkeypatch.setattr(pace_module, "BUSY_AFTER", 0.0)  # every hand-over counts as busy
    handler = make_handler(batch_size=PAUSE_EVERY, flush_interval=3600.0)
    hurry = handler._pipeline._worker._pace._hurry = _EnteredEvent()
    app_logger.addHandler(handler)
    for i in range(5 * PAUSE_EVERY):  # full batches: the worker starts on them, politely
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert hurry.entered.wait(HANG_GUARD)  # the worker is stepping back
    assert handler.flush(timeout=HANG_GUARD)
    assert len(vibefollow_server.events) == 5 * PAUSE_EVERY


def test_a_subclass_emit_is_still_called(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """handle() skips the call to emit() only when emit() is VibefollowHandler's own."""
    emitted: list[str] = []

    class Auditing(vf_otel.VibefollowHandler):
        def emit(self, record: logging.LogRecord) -> None:
            emitted.append(record.getMessage())
            super().emit(record)

    handler = Auditing(api_key=vibefollow_server.api_key, base_url=vibefollow_server.base_url)
    try:
        app_logger.addHandler(handler)
        app_logger.info("signup", extra={"vf_user": "usr_1"})
        assert handler.flush(timeout=10)
    finally:
        handler.close()
    assert emitted == ["signup"]
    assert [e["name"] for e in vibefollow_server.events] == ["signup"]


# -- which loggers' records may be events (handler.py) --------------------------------


def test_a_logger_let_through_once_is_remembered_and_ours_never_are(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """Names that may send are remembered (str only); the library's own are never let through."""
    handler = make_handler()
    record = logging.makeLogRecord({"name": "app.remembered", "msg": "e", "vf_user": "usr_1"})
    assert handler.handle(record)
    assert "app.remembered" in handler_module._EVENT_LOGGERS
    for name in ("vf_otel.delivery", "httpx", "opentelemetry.sdk"):
        ours = logging.makeLogRecord({"name": name, "msg": "e", "vf_user": "usr_1"})
        assert not handler.handle(ours)
        assert name not in handler_module._EVENT_LOGGERS
    odd = logging.makeLogRecord({"name": None, "msg": "odd", "vf_user": "usr_2"})
    assert handler.handle(odd)  # a record factory's odd name: not ours, sent, not remembered
    assert None not in handler_module._EVENT_LOGGERS
    unhashable = logging.makeLogRecord({"name": ["a"], "msg": "unhashable", "vf_user": "u"})
    assert handler.handle(unhashable)  # never an exception into the app's log call
    assert handler.flush(timeout=10)
    assert [e["name"] for e in vibefollow_server.events] == ["e", "odd", "unhashable"]


def test_the_remembered_logger_names_never_grow_past_their_limit(
    make_handler: HandlerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logger names made up at run time (one per request) start the set over at the limit."""
    monkeypatch.setattr(handler_module, "_EVENT_LOGGERS_LIMIT", 3)
    monkeypatch.setattr(handler_module, "_EVENT_LOGGERS", set())
    handler = make_handler(enabled=False)
    for i in range(7):
        handler.handle(logging.makeLogRecord({"name": f"req.{i}", "vf_user": "usr_1"}))
        assert len(handler_module._EVENT_LOGGERS) <= 3
    assert "req.6" in handler_module._EVENT_LOGGERS
    assert handler.stats().disabled == 7
