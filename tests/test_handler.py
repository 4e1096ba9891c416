"""VibefollowHandler end to end, over real HTTP against the local server."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import logging
import math
import time
from typing import Any

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory, SkipClock


class Plan(enum.Enum):
    TRIAL = "trial"


def test_tagged_records_arrive_exactly_and_untagged_do_not(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """N tagged records become exactly N events; untagged records send nothing."""
    handler = make_handler(batch_size=7)
    app_logger.addHandler(handler)
    for i in range(25):
        app_logger.info("signup", extra={"vf_user": f"usr_{i}", "vf_properties": {"i": i}})
        app_logger.info("untagged line %d", i)
    assert handler.flush(timeout=10)
    events = vibefollow_server.events
    assert sorted(e["properties"]["i"] for e in events) == list(range(25))
    assert {e["name"] for e in events} == {"signup"}
    assert [r.path for r in vibefollow_server.requests] == ["/api/v1/events/batch"] * 4
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, stats.dropped_total) == (25, 25, 0)


def test_event_fields_follow_the_tagging_contract(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """vf_event overrides the name; the default name is the message template, not the text."""
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("checkout for %s", "usr_1", extra={"vf_user": "usr_1"})
    app_logger.info("ignored text", extra={"vf_user": "usr_2", "vf_event": "trial_started"})
    assert handler.flush(timeout=10)
    names = {e["external_user_id"]: e["name"] for e in vibefollow_server.events}
    assert names == {"usr_1": "checkout for %s", "usr_2": "trial_started"}
    event = vibefollow_server.events[0]
    assert set(event) == {"external_user_id", "name", "properties", "occurred_at"}
    assert dt.datetime.strptime(event["occurred_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_traits_upsert_the_user_with_email_top_level(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """vf_traits posts /users before the event, with email moved out of the traits."""
    handler = make_handler()
    app_logger.addHandler(handler)
    traits = {"email": "ada@example.com", "plan": "pro"}
    app_logger.info("user_signed_up", extra={"vf_user": "usr_9", "vf_traits": traits})
    assert handler.flush(timeout=10)
    assert vibefollow_server.users == [
        {"external_user_id": "usr_9", "email": "ada@example.com", "traits": {"plan": "pro"}}
    ]
    assert [r.path for r in vibefollow_server.requests] == ["/api/v1/users", "/api/v1/events/batch"]


def test_context_user_fills_in_records_with_only_vf_event(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """vf_otel.user() supplies the user; with no user anywhere the record is dropped, counted."""
    handler = make_handler()
    app_logger.addHandler(handler)
    with vf_otel.user("usr_ctx"):
        app_logger.info("x", extra={"vf_event": "report_exported"})
    app_logger.info("x", extra={"vf_event": "report_exported"})
    assert not handler.flush(timeout=10)  # one record was dropped
    assert [e["external_user_id"] for e in vibefollow_server.events] == ["usr_ctx"]
    assert handler.stats().dropped == {"missing_user": 1}


@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_retries_reuse_the_same_key_and_body(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """5xx, 429 and a reset are retried with one Idempotency-Key and identical bytes."""
    handler = make_handler()
    app_logger.addHandler(handler)
    vibefollow_server.fail_next(503)
    vibefollow_server.fail_next(429, retry_after="0")
    vibefollow_server.reset_next()
    vibefollow_server.fail_next(500)
    app_logger.info("signup", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=30)
    requests = vibefollow_server.requests
    assert len(requests) == 5
    assert len({r.idempotency_key for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    assert len(vibefollow_server.events) == 1
    assert handler.stats().retried == 4


@pytest.mark.usefixtures("fast_clock")  # the retry's backoff not waited out
def test_lost_response_is_deduplicated_by_the_server(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """A batch accepted but whose answer was lost is retried and replayed, not recorded twice."""
    handler = make_handler()
    app_logger.addHandler(handler)
    vibefollow_server.lose_response_next()
    for i in range(3):
        app_logger.info("signup", extra={"vf_user": f"usr_{i}"})
    assert handler.flush(timeout=30)
    assert len(vibefollow_server.events) == 3
    assert vibefollow_server.replayed == 1
    assert handler.stats().sent == 3


def test_retry_after_is_respected(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    fast_clock: SkipClock,
) -> None:
    """After a 429 with Retry-After: 1 the retry waits at least that second (on the
    delivery's clock, which skips the wait: test_retry_after_is_waited_in_real_time)."""
    handler = make_handler()
    app_logger.addHandler(handler)
    vibefollow_server.fail_next(429, retry_after="1")
    app_logger.info("signup", extra={"vf_user": "usr_1"})
    started = fast_clock()
    assert handler.flush(timeout=30)
    assert fast_clock() - started >= 0.95  # a lower bound only: never flaky
    assert len(vibefollow_server.events) == 1


@pytest.mark.slow
def test_retry_after_is_waited_in_real_time(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """On the real clock (the default Timing), the second of a Retry-After: 1 is waited."""
    handler = make_handler()
    app_logger.addHandler(handler)
    vibefollow_server.fail_next(429, retry_after="1")
    app_logger.info("signup", extra={"vf_user": "usr_1"})
    started = time.monotonic()
    assert handler.flush(timeout=30)
    assert time.monotonic() - started >= 0.95  # a lower bound only: never flaky
    assert len(vibefollow_server.events) == 1


def test_poison_event_is_isolated_and_the_rest_lands(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """A 422 naming events[i] dead-letters that event alone; the others are re-sent and land."""
    reported: list[tuple[vf_otel.VibefollowError, list[vf_otel.Event]]] = []
    handler = make_handler(on_error=lambda exc, events: reported.append((exc, list(events))))
    app_logger.addHandler(handler)
    vibefollow_server.reject_event(lambda event: event["name"] == "poison")
    for name in ("a", "b", "poison", "c"):
        app_logger.info(name, extra={"vf_user": "usr_1"})
    assert not handler.flush(timeout=10)  # one event was dead-lettered
    assert [e["name"] for e in vibefollow_server.events] == ["a", "b", "c"]
    keys = [r.idempotency_key for r in vibefollow_server.requests]
    assert len(keys) == 2
    assert keys[0] != keys[1]
    stats = handler.stats()
    assert (stats.sent, stats.dead_lettered) == (3, 1)
    ((error, events),) = reported
    assert isinstance(error, vf_otel.ValidationError)
    assert error.field == "events[2].name"
    assert [e.name for e in events] == ["poison"]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"next": value}
    return value


COERCED = [
    ("when", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2026-01-02T03:04:05.000Z"),
    ("day", dt.date(2026, 1, 2), "2026-01-02"),
    ("tags", {"b", "a"}, ["a", "b"]),
    ("pair", (1, 2), [1, 2]),
    ("plan", Plan.TRIAL, "trial"),
    ("price", decimal.Decimal("9.90"), "9.90"),
    ("ratio", math.nan, None),
    ("big", math.inf, None),
    ("raw", b"caf\xc3\xa9 \xff", "café \ufffd"),
    ("weird", Unprintable(), "<unprintable Unprintable>"),
    ("loop", _cyclic(), {"name": "loop", "self": "<cycle>"}),
]


def test_bad_property_values_are_coerced_never_raised(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """Each kind of property value reaches the server as strict JSON, coerced."""
    handler = make_handler()
    app_logger.addHandler(handler)
    properties = {key: value for key, value, _ in COERCED}
    properties["deep"] = _deep(20)
    properties["huge"] = "x" * 100_000
    app_logger.info("odd_values", extra={"vf_user": "usr_1", "vf_properties": properties})
    assert handler.flush(timeout=10)
    (event,) = vibefollow_server.events
    received = event["properties"]
    for key, _, expected in COERCED:
        assert received[key] == expected, key
    assert isinstance(json.dumps(received["deep"]), str)
    assert "leaf" not in json.dumps(received["deep"]).replace("\\", "")[:50]
    assert len(received["huge"]) < 20_000


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"vf_user": ["usr_1"]}, "invalid_user"),
        ({"vf_user": ""}, "invalid_user"),
        ({"vf_user": "usr_1", "vf_properties": ["not", "a", "mapping"]}, "invalid_properties"),
        ({"vf_user": "usr_1", "vf_traits": "pro"}, "invalid_traits"),
        ({"vf_user": "usr_1", "vf_event": ""}, "invalid_name"),
        ({"vf_user": "usr_1", "vf_event": "feature_used"}, "missing_required_property"),
        ({"vf_event": "orphan"}, "missing_user"),
    ],
)
def test_invalid_records_are_dropped_and_counted(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    extra: dict[str, Any],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An invalid tag drops the record with a counted reason and a warning; nothing is sent."""
    reported: list[vf_otel.VibefollowError] = []
    handler = make_handler(on_error=lambda exc, events: reported.append(exc))
    app_logger.addHandler(handler)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        app_logger.info("msg", extra=extra)
    assert not handler.flush(timeout=10)  # the record was dropped
    assert vibefollow_server.requests == []
    assert handler.stats().dropped == {reason: 1}
    assert [type(e) for e in reported] == [vf_otel.ValidationError]
    assert "vf-otel dropped 1 event(s)" in caplog.text


def test_warnings_are_rate_limited(
    make_handler: HandlerFactory, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """A thousand bad records give one warning per reason and a thousand counted drops."""
    handler = make_handler()
    app_logger.addHandler(handler)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        for _ in range(1000):
            app_logger.info("msg", extra={"vf_user": "usr_1", "vf_event": "feature_used"})
        assert not handler.flush(timeout=10)  # all were dropped
    assert handler.stats().dropped == {"missing_required_property": 1000}
    assert len([r for r in caplog.records if r.name.startswith("vf_otel")]) == 1


def test_full_queue_drops_new_records_and_counts_them(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """Past max_queue_size new records are dropped as queue_full; the queued ones all land."""
    # batch_size above the queue size and a long interval: the worker never drains meanwhile.
    handler = make_handler(max_queue_size=10, batch_size=500)
    app_logger.addHandler(handler)
    for i in range(15):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    stats = handler.stats()
    assert (stats.enqueued, stats.queued, stats.dropped) == (10, 10, {"queue_full": 5})
    assert not handler.flush(timeout=10)  # five were refused
    assert [e["external_user_id"] for e in vibefollow_server.events] == [
        f"usr_{i}" for i in range(10)
    ]


def test_an_invalid_email_trait_drops_only_the_upsert(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """An email the API would refuse: the event arrives, the upsert alone is dropped and
    counted (users_failed), reported to on_error with no events (none was lost)."""
    reported: list[tuple[str | None, int]] = []
    handler = make_handler(
        on_error=lambda exc, events: reported.append((getattr(exc, "field", None), len(events)))
    )
    app_logger.addHandler(handler)
    app_logger.info("user_signed_up", extra={"vf_user": "usr_1", "vf_traits": {"email": "a@"}})
    assert handler.flush(timeout=10)
    assert [e["external_user_id"] for e in vibefollow_server.events] == ["usr_1"]
    assert vibefollow_server.users == []
    stats = handler.stats()
    assert (stats.sent, stats.users_failed, stats.dropped_total) == (1, 1, 0)
    assert reported == [("traits.email", 0)]
