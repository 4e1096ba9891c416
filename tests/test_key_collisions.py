"""Keys that become the same string (issue 10, item 11): the last value wins, and is counted.

``{1: "a", "1": "b"}`` can only be sent as ``{"1": "b"}``. The event still goes (it is no
drop); the value left out is counted in ``stats().key_collisions`` and warned about,
naming the key, never a value.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import vf_otel
from vf_otel._delivery.ledger import Ledger
from vf_otel._event import values
from vf_otel._event.build import Rejection, build_pending, make_event
from vf_otel._event.model import Event
from vf_otel._event.values import (
    MAX_STRING_LENGTH,
    KeyCollisions,
    coerce_mapping,
    coerce_value,
    is_plain,
)
from vf_otel._observe import RateLimitedLog
from vf_otel._sources.otel import translate_log, translate_span
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
# Two keys longer than a string may be: both are cut to the same text.
LONG_A = "k" * MAX_STRING_LENGTH + "a"
LONG_B = "k" * MAX_STRING_LENGTH + "b"
CLIPPED = coerce_value(LONG_A)
# Two keys that differ only by a lone surrogate (both sent as U+FFFD); chr(), not
# literals, which a linter may read as the same text.
LONE_A, LONE_B = "k" + chr(0xD800), "k" + chr(0xDC00)
# Values no warning may show.
SECRET_A, SECRET_B = "secret-value-a", "secret-value-b"


class Color(enum.Enum):
    """An Enum whose value is also used as a key."""

    RED = "red"


class Word(str):
    """A str subclass: equal to, and hashed as, the str it holds."""


class Level(enum.IntEnum):
    """An int Enum: its key is its value's text."""

    HIGH = 3


class Digit(enum.Enum):
    """An Enum whose value is the text of an int key (distinct from both as a dict key)."""

    ONE = "1"


class Unprintable:
    """A key whose ``__str__`` raises: it becomes ``"<unprintable Unprintable>"``."""

    def __str__(self) -> NoReturn:
        raise RuntimeError("no text")


class Named:
    """Distinct keys (hashed by identity) that print alike."""

    def __str__(self) -> str:
        return "same"


class BreaksMidway(dict[Any, Any]):
    """A mapping whose items() raises after yielding colliding keys."""

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        yield 1, "a"
        yield "1", "b"
        raise RuntimeError("gone")


def coerced(value: dict[Any, Any]) -> tuple[dict[str, Any], KeyCollisions]:
    """``value`` coerced, and what its keys lost."""
    collisions = KeyCollisions()
    return coerce_mapping(value, collisions), collisions


# -- coercion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "key"),
    [
        ({1: SECRET_A, "1": SECRET_B}, {"1": SECRET_B}, "1"),
        ({"1": SECRET_A, 1: SECRET_B}, {"1": SECRET_B}, "1"),
        ({Color.RED: SECRET_A, "red": SECRET_B}, {"red": SECRET_B}, "red"),
        ({Level.HIGH: SECRET_A, "3": SECRET_B}, {"3": SECRET_B}, "3"),
        ({True: SECRET_A, "True": SECRET_B}, {"True": SECRET_B}, "True"),
        ({LONG_A: SECRET_A, LONG_B: SECRET_B}, {CLIPPED: SECRET_B}, CLIPPED),
        ({LONE_A: SECRET_A, LONE_B: SECRET_B}, {"k\ufffd": SECRET_B}, "k\ufffd"),
        (
            {Unprintable(): SECRET_A, Unprintable(): SECRET_B},
            {"<unprintable Unprintable>": SECRET_B},
            "<unprintable Unprintable>",
        ),
        ({Named(): SECRET_A, Named(): SECRET_B}, {"same": SECRET_B}, "same"),
    ],
    ids=[
        "int-str",
        "str-int",
        "enum",
        "int-enum",
        "bool",
        "clipped",
        "surrogates",
        "raises",
        "str",
    ],
)
def test_two_keys_that_become_one_keep_the_last_value_and_count_one(
    value: dict[Any, Any], expected: dict[str, Any], key: str
) -> None:
    """Each way two keys become the same string: the last value is kept, one is counted."""
    result, collisions = coerced(value)
    assert result == expected
    assert (collisions.count, collisions.key, collisions.event) == (1, key, None)


def test_long_keys_take_the_slow_path() -> None:
    """is_plain refuses a key too long to send, so clipped keys are compared after clipping."""
    assert not is_plain({LONG_A: 1})
    assert is_plain({"1": 1, "2": 2})


def test_a_key_taken_before_is_still_checked_by_its_type() -> None:
    """is_plain remembers the str keys it took; a str subclass equal to one is no such key
    (coercion makes it a str), and a key with a lone surrogate is never taken."""
    assert is_plain({"plan": 1})
    assert not is_plain({Word("plan"): 1})
    assert not is_plain({LONE_A: 1})
    assert not is_plain({LONE_A: 1})  # refused again, not remembered
    long_key = "k" * 65  # a plain key, checked every time rather than kept
    assert is_plain({long_key: 1})
    assert long_key not in values._PLAIN_KEYS
    assert "plan" in values._PLAIN_KEYS


def test_the_last_value_takes_the_first_keys_place() -> None:
    """As in a dict display: the key keeps its first position, the value is the last one."""
    result, collisions = coerced({1: "a", "x": 0, "1": "b", Level.HIGH: "c", "3": "d"})
    assert list(result.items()) == [("1", "b"), ("x", 0), ("3", "d")]
    assert (collisions.count, collisions.key) == (2, "1")


def test_three_keys_that_become_one_lose_two_values() -> None:
    """Every value replaced counts once: three keys for "1" lose two values."""
    result, collisions = coerced({1: "a", "1": "b", Digit.ONE: "c", "x": "y"})
    assert result == {"1": "c", "x": "y"}
    assert (collisions.count, collisions.key) == (2, "1")


def test_collisions_are_counted_at_every_depth() -> None:
    """In nested dicts, dicts in lists and dicts in tuples alike."""
    value = {
        "outer": {2: "a", "2": "b", "inner": {3: "c", "3": "d"}},
        "list": [{4: "e", "4": "f"}],
        "tuple": ({5: "g", "5": "h"},),
    }
    result, collisions = coerced(value)
    assert result == {
        "outer": {"2": "b", "inner": {"3": "d"}},
        "list": [{"4": "f"}],
        "tuple": [{"5": "h"}],
    }
    assert collisions.count == 4


def test_counts_add_up_across_calls() -> None:
    """One KeyCollisions gathers many mappings' losses; its key is the first one seen."""
    collisions = KeyCollisions()
    coerce_mapping({1: "a", "1": "b"}, collisions)
    coerce_mapping({"x": 1}, collisions)
    coerce_mapping({2: "a", "2": "b"}, collisions)
    assert (collisions.count, collisions.key) == (2, "1")


def test_without_collisions_the_result_is_the_same() -> None:
    """Counting changes nothing: coerce_mapping and coerce_value still keep the last value."""
    value = {1: "a", "1": "b", "n": {Color.RED: 1, "red": 2}}
    assert coerce_mapping(value) == coerced(value)[0] == {"1": "b", "n": {"red": 2}}
    assert coerce_value([value]) == [{"1": "b", "n": {"red": 2}}]


def test_distinct_keys_and_plain_dicts_count_nothing() -> None:
    """No collision, no count: a plain dict (the fast path) and a slow one with distinct keys."""
    for value in ({"a": 1, "b": 2}, {1: "a", 2: "b", "n": {Color.RED: 1}}):
        _, collisions = coerced(value)
        assert collisions == KeyCollisions()


def test_a_mapping_whose_items_raise_counts_nothing() -> None:
    """A nested mapping that cannot be read becomes text: no value of it was lost to a key."""
    result, collisions = coerced({"bad": BreaksMidway()})
    assert result == {"bad": "<unprintable BreaksMidway>"}
    assert collisions.count == 0


def test_a_cycle_through_colliding_keys_still_ends() -> None:
    """The walk still finds cycles: a dict inside itself under two colliding keys."""
    value: dict[Any, Any] = {}
    value[1] = value
    value["1"] = "b"
    result, collisions = coerced(value)
    assert result == {"1": "b"}
    assert collisions.count == 1


# -- building events ------------------------------------------------------------------


def build(collisions: KeyCollisions | None, **fields: Any) -> Event | Rejection:
    """make_event with defaults for what the test does not care about."""
    fields.setdefault("name", "report_exported")
    fields.setdefault("user_id", "usr_1")
    fields.setdefault("properties", None)
    fields.setdefault("traits", None)
    return make_event(occurred_at=WHEN, event_id="e1", collisions=collisions, **fields)


def test_make_event_counts_properties_and_traits_with_the_event_name() -> None:
    """Property and trait values lost are added up; the first key and its event are named."""
    collisions = KeyCollisions()
    event = build(
        collisions, properties={1: "a", "1": "b"}, traits={"plan": "x", Color.RED: 1, "red": 2}
    )
    assert isinstance(event, Event)
    assert (event.properties, event.traits) == ({"1": "b"}, {"plan": "x", "red": 2})
    assert (collisions.count, collisions.key, collisions.event) == (2, "1", "report_exported")
    build(collisions, name="other", properties={2: "a", "2": "b"})
    assert (collisions.count, collisions.key, collisions.event) == (3, "1", "report_exported")


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "feature_used", "properties": {1: "a", "1": "b"}},  # no required "feature"
        {"properties": {1: "a", "1": "b"}, "traits": "not a mapping"},
        {"user_id": None, "properties": {1: "a", "1": "b"}},
    ],
    ids=["missing-required", "invalid-traits", "missing-user"],
)
def test_a_refused_event_counts_no_collision(fields: dict[str, Any]) -> None:
    """An event that is not built is a drop, counted as such; its keys count nothing."""
    collisions = KeyCollisions()
    assert isinstance(build(collisions, **fields), Rejection)
    assert collisions == KeyCollisions()


def test_make_event_without_collisions_is_unchanged() -> None:
    """The parameter is optional: without it the Event is the same (last value kept)."""
    counted = build(KeyCollisions(), properties={1: "a", "1": "b"})
    uncounted = build(None, properties={1: "a", "1": "b"})
    assert counted == uncounted
    assert isinstance(uncounted, Event)
    assert uncounted.properties == {"1": "b"}


def test_build_pending_still_builds_a_colliding_log_call() -> None:
    """The worker's path keeps working unchanged: the last value is sent."""
    event = build_pending(("report_exported", "usr_1", {1: "a", "1": "b"}, None, 1.7e9))
    assert isinstance(event, Event)
    assert event.properties == {"1": "b"}


class LogRecord:
    """The part of an OTel log record translate_log reads."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.body = "report_exported"
        self.timestamp = 1_700_000_000_000_000_000
        self.observed_timestamp = None


def test_translate_log_counts_collisions() -> None:
    """A log record's vf_properties (a mapping kept by the SDK) is counted like the handler's."""
    collisions = KeyCollisions()
    result = translate_log(
        LogRecord({"vf_user": "usr_1", "vf_properties": {1: "a", "1": "b"}}), collisions
    )
    assert isinstance(result, Event)
    assert result.properties == {"1": "b"}
    assert (collisions.count, collisions.event) == (1, "report_exported")


def span_with_colliding_keys() -> ReadableSpan:
    """A finished tagged span whose two long property keys clip to the same text, and
    whose span event has two keys that differ only by lone surrogates."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("tests").start_span(
        "report_exported",
        attributes={
            "vf.user": "usr_1",
            f"vf.properties.{LONG_A}": SECRET_A,
            f"vf.properties.{LONG_B}": SECRET_B,
        },
    )
    span.add_event(
        "report_shared",
        {"vf.user": "usr_1", f"vf.properties.{LONE_A}": 1, f"vf.properties.{LONE_B}": 2},
    )
    span.end()
    return memory.get_finished_spans()[0]


def test_translate_span_counts_collisions() -> None:
    """The span and its span event each lose one value; both are still events."""
    collisions = KeyCollisions()
    results = translate_span(span_with_colliding_keys(), collisions=collisions)
    assert [type(r) for r in results] == [Event, Event]
    assert [dict(r.properties) for r in results if isinstance(r, Event)] == [
        {CLIPPED: SECRET_B},
        {"k\ufffd": 2},
    ]
    assert (collisions.count, collisions.key, collisions.event) == (2, CLIPPED, "report_exported")


# -- the ledger -------------------------------------------------------------------------


def test_the_ledger_counts_and_warns_without_a_drop(caplog: pytest.LogCaptureFixture) -> None:
    """key_collisions counts values; one rate-limited warning names the key and event, never
    a value; nothing is dropped, failed or reported to on_error."""
    reported: list[object] = []
    ledger = Ledger(lambda exc, events: reported.append(exc))
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        ledger.keys_collided(KeyCollisions(2, "plan", "signed_up"))
        ledger.keys_collided(KeyCollisions(1, "other", "other_event"))
        ledger.keys_collided(KeyCollisions())  # nothing lost: nothing counted or said
    stats = ledger.snapshot(queued=0, refused={})
    assert (stats.key_collisions, stats.dropped_total, ledger.failures) == (3, 0, 0)
    assert reported == []
    messages = [r.getMessage() for r in caplog.records if r.name == "vf_otel"]
    assert len(messages) == 1
    assert "'plan'" in messages[0]
    assert "'signed_up'" in messages[0]


def test_the_warning_quotes_a_long_key_briefly(caplog: pytest.LogCaptureFixture) -> None:
    """A 16,384-character key is quoted only in part."""
    ledger = Ledger(None)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        ledger.keys_collided(KeyCollisions(1, CLIPPED, "e" * 1000))
    (message,) = [r.getMessage() for r in caplog.records if r.name == "vf_otel"]
    assert len(message) < 400


def test_the_warning_is_rate_limited_per_reason() -> None:
    """Collisions warn on their own reason: a drop's warning does not hold theirs back."""
    ledger = Ledger(None)
    said: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = logging.getLogger("tests.key_collisions")
    logger.propagate = False
    logger.addHandler(Recorder())
    ledger._log = RateLimitedLog(logger)  # to see what it says, alone
    ledger.drop("queue_full", (), count=1)
    ledger.keys_collided(KeyCollisions(1, "k", "e"))
    ledger.keys_collided(KeyCollisions(1, "k", "e"))
    assert len(said) == 2
    assert "kept only the last" in said[1]


def test_after_fork_a_child_counts_its_own() -> None:
    """The count is one of the ledger's: a forked child starts from zero."""
    ledger = Ledger(None)
    ledger.keys_collided(KeyCollisions(1, "k", "e"))
    ledger.after_fork()
    assert ledger.snapshot(queued=0, refused={}).key_collisions == 0


# -- over real HTTP, from each source ----------------------------------------------------


def assert_sent_last_value(server: VibefollowServer, expected: dict[str, Any]) -> None:
    """The server received exactly one event, with the last value for the colliding key."""
    assert [e["properties"] for e in server.events] == [expected]


def collision_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What vf-otel warned about key collisions."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "vf_otel" and "kept only the last" in r.getMessage()
    ]


def log_colliding_call(
    make_handler: HandlerFactory, app_logger: logging.Logger
) -> vf_otel.VibefollowHandler:
    """A handler, and a log call whose properties have int 1 and str "1"."""
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info(
        "report_exported", extra={"vf_user": "u", "vf_properties": {1: SECRET_A, "1": SECRET_B}}
    )
    return handler


def test_handler_delivers_the_last_value_and_drops_nothing(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """A log call's colliding keys: one property "1" with the last value; flush() is True."""
    handler = log_colliding_call(make_handler, app_logger)
    assert handler.flush(10.0) is True
    assert_sent_last_value(vibefollow_server, {"1": SECRET_B})
    stats = handler.stats()
    assert (stats.sent, stats.dropped_total, stats.dead_lettered) == (1, 0, 0)


def test_handler_counts_and_warns_about_the_collision(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The value lost is counted in stats().key_collisions and warned about (key, no value)."""
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        handler = log_colliding_call(make_handler, app_logger)
        assert handler.flush(10.0) is True
    assert_sent_last_value(vibefollow_server, {"1": SECRET_B})
    stats = handler.stats()
    assert (stats.key_collisions, stats.sent, stats.dropped_total) == (1, 1, 0)
    (warning,) = collision_warnings(caplog)
    assert "'1'" in warning
    assert "'report_exported'" in warning
    assert SECRET_A not in warning
    assert SECRET_B not in warning


def test_event_delivers_the_last_value_and_drops_nothing(
    vibefollow_server: VibefollowServer, root_handler: vf_otel.VibefollowHandler
) -> None:
    """vf_otel.event() with an Enum key and its value: one property, the last value."""
    vf_otel.event("report_exported", user="u", properties={Color.RED: SECRET_A, "red": SECRET_B})
    assert root_handler.flush(10.0) is True
    assert_sent_last_value(vibefollow_server, {"red": SECRET_B})
    assert root_handler.stats().dropped_total == 0


def test_event_counts_and_warns_about_the_collision(
    vibefollow_server: VibefollowServer,
    root_handler: vf_otel.VibefollowHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """vf_otel.event()'s lost value is counted in the handler's stats and warned about."""
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        vf_otel.event("report_exported", user="u", properties={1: SECRET_A, "1": SECRET_B})
        assert root_handler.flush(10.0) is True
    assert_sent_last_value(vibefollow_server, {"1": SECRET_B})
    stats = root_handler.stats()
    assert (stats.key_collisions, stats.sent, stats.dropped_total) == (1, 1, 0)
    assert len(collision_warnings(caplog)) == 1


@pytest.fixture
def span_exporter(vibefollow_server: VibefollowServer) -> Iterator[vf_otel.VibefollowSpanExporter]:
    """A span exporter pointed at the local server."""
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=vibefollow_server.api_key, base_url=vibefollow_server.base_url
    )
    yield exporter
    exporter.shutdown()


def test_span_exporter_delivers_the_last_values(
    vibefollow_server: VibefollowServer, span_exporter: vf_otel.VibefollowSpanExporter
) -> None:
    """Clipped and surrogate keys of a span and its span event: both events go, last values."""
    assert span_exporter.export([span_with_colliding_keys()]) is SpanExportResult.SUCCESS
    assert [e["properties"] for e in vibefollow_server.events] == [
        {CLIPPED: SECRET_B},
        {"k\ufffd": 2},
    ]
    assert span_exporter.stats().dropped_total == 0


def test_span_exporter_counts_and_warns_about_the_collisions(
    vibefollow_server: VibefollowServer,
    span_exporter: vf_otel.VibefollowSpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The exporter's stats count both values lost; one warning, export() still SUCCESS."""
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert span_exporter.export([span_with_colliding_keys()]) is SpanExportResult.SUCCESS
    assert len(vibefollow_server.events) == 2
    stats = span_exporter.stats()
    assert (stats.key_collisions, stats.sent, stats.dropped_total) == (2, 2, 0)
    (warning,) = collision_warnings(caplog)
    assert SECRET_A not in warning
    assert SECRET_B not in warning
