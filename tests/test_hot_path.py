"""The handler's app-thread shortcuts (benchmarks/hot_path.py) keep the behaviour they skip."""

from __future__ import annotations

import gc
import logging

import pytest

from vf_otel._delivery import pace as pace_module
from vf_otel._delivery.requests import PAUSE_EVERY
from vf_otel._event.validate import Rejection
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


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
    handler = make_handler(batch_size=2 * PAUSE_EVERY, flush_interval=60.0)
    app_logger.addHandler(handler)
    for i in range(2 * PAUSE_EVERY):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert vibefollow_server.wait_for_events(2 * PAUSE_EVERY, timeout=10)
    assert len(yields) == 4  # after each PAUSE_EVERY events built, and each encoded


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
    fields = gc.get_referents(queue._items)
    # The one tracked field is the handler's redactor, shared by every record.
    assert [field for field in fields if gc.is_tracked(field)] == [handler._redactor]
