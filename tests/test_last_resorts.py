"""What no per-event guard foresaw still costs only what it must, counted and reported.

Over real HTTP to the local server: a before_send that returns a malformed Event, a
sender thread that cannot be started, a build or a prepare that fails unexpectedly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

import vf_otel
from vf_otel._delivery import dispatch as senders_module
from vf_otel._delivery import dispatch as worker_module
from vf_otel._delivery import threads
from vf_otel._event import build as pending_module
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


def test_a_malformed_event_from_before_send_costs_only_that_event(
    make_handler: HandlerFactory, app_logger: logging.Logger, vibefollow_server: VibefollowServer
) -> None:
    """A user id that is a list (Event checks nothing) once failed the whole batch."""
    errors: list[tuple[vf_otel.VibefollowError, int]] = []

    def spoil(event: vf_otel.Event) -> vf_otel.Event:
        if event.name == "bad":
            return dataclasses.replace(event, user_id=["not", "a", "str"])  # type: ignore[arg-type]
        return event

    handler = make_handler(before_send=spoil, on_error=lambda e, ev: errors.append((e, len(ev))))
    app_logger.addHandler(handler)
    app_logger.info("bad", extra={"vf_user": "u1", "vf_traits": {"plan": "pro"}})
    app_logger.info("good", extra={"vf_user": "u2", "vf_traits": {"plan": "free"}})

    assert not handler.flush(5.0)

    assert [e["name"] for e in vibefollow_server.events] == ["good"]
    assert [u["external_user_id"] for u in vibefollow_server.users] == ["u2"]
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, dict(stats.dropped)) == (2, 1, {"before_send_failed": 1})
    ((error, count),) = errors
    assert "user_id is not a str" in str(error)
    assert count == 1


class _NoThreadOnce:
    """Stands in for the threads module in dispatch.py: the first sender's start() fails."""

    def __init__(self) -> None:
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(threads, name)

    def Thread(self, target: Callable[[], object], name: str) -> threads.Thread:  # noqa: N802
        if self.failed or name != "VibefollowSender":
            return threads.Thread(target, name)
        self.failed += 1
        return _Unstartable(target, name)


class _Unstartable(threads.Thread):
    """A thread that cannot start, as when the interpreter exits or a thread limit is hit."""

    __slots__ = ()

    def start(self) -> None:
        """Refuse, as ``_thread.start_new_thread`` does then."""
        raise RuntimeError("can't start new thread")


def test_a_sender_thread_that_cannot_start_parks_the_batch_for_later(
    monkeypatch: pytest.MonkeyPatch,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    vibefollow_server: VibefollowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No thread (the interpreter exiting, a thread limit): kept, tried again, delivered
    once; nothing stays in flight, no slot is lost."""
    shim = _NoThreadOnce()
    monkeypatch.setattr(senders_module, "threads", shim)
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("signup", extra={"vf_user": "u1"})

    assert handler.flush(10.0)

    assert shim.failed == 1
    assert [e["name"] for e in vibefollow_server.events] == ["signup"]
    stats = handler.stats()
    assert (stats.sent, stats.in_flight, stats.parked, stats.dropped_total) == (1, 0, 0, 0)
    assert "could not start a sender" in caplog.text


def test_an_unforeseen_build_failure_is_reported_as_one_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    vibefollow_server: VibefollowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """internal_error, as an UndeliveredError (not a complaint about the app's input), its
    traceback logged; the rest of the batch goes."""
    real = pending_module.plain_event
    calls = [0]

    def fails_once(*args: Any) -> vf_otel.Event:
        calls[0] += 1
        if calls[0] == 1:
            raise ZeroDivisionError("a bug")
        return real(*args)

    monkeypatch.setattr(pending_module, "plain_event", fails_once)
    errors: list[vf_otel.VibefollowError] = []
    handler = make_handler(on_error=lambda e, ev: errors.append(e))
    app_logger.addHandler(handler)
    app_logger.info("first", extra={"vf_user": "u1"})
    app_logger.info("second", extra={"vf_user": "u1"})

    assert not handler.flush(5.0)

    assert [e["name"] for e in vibefollow_server.events] == ["second"]
    assert dict(handler.stats().dropped) == {"internal_error": 1}
    (error,) = errors
    assert type(error) is vf_otel.UndeliveredError
    assert "ZeroDivisionError" in str(error)
    assert "Traceback" in caplog.text
    assert "ZeroDivisionError: a bug" in caplog.text


def test_a_batch_that_fails_to_be_prepared_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    vibefollow_server: VibefollowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every event built is dropped as internal_error, the one refused earlier is counted
    under its own reason only, and flush() says not everything landed."""

    def broken(*args: Any, **kwargs: Any) -> list[Any]:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(worker_module, "prepare", broken)
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("one", extra={"vf_user": "u1"})
    app_logger.info("two", extra={"vf_user": "u1"})
    app_logger.info("", extra={"vf_user": "u1"})  # refused by the checks: invalid_name

    assert not handler.flush(5.0)

    stats = handler.stats()
    assert stats.enqueued == 3
    assert dict(stats.dropped) == {"internal_error": 2, "invalid_name": 1}
    assert (stats.sent, stats.in_flight, stats.queued) == (0, 0, 0)
    assert vibefollow_server.events == []
    assert "could not prepare a batch" in caplog.text
