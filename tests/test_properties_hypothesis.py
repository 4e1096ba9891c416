"""Hostile input: arbitrary tag values and span attributes never break the app or the wire.

Property-based, over real HTTP. Runs are bounded and derandomised, so CI is
deterministic; one server is shared by the module.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

import vf_otel  # noqa: E402
from vf_otel._delivery.wire import encode_event  # noqa: E402
from vf_otel._event.build import CANONICAL_EVENTS, build_batch, make_event, record_time  # noqa: E402  # noqa: E402
from vf_otel._event.model import Event, wire_time  # noqa: E402
from vf_otel._event.values import (  # noqa: E402
    DEFAULT_REDACTOR,
    coerce_value,
    plain_copy,
)
from vf_otel.testing import RecordedRequest, VibefollowServer  # noqa: E402

BOUNDED = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BATCH = 500
# Events that can never be built are refused before they are queued.
BEFORE_QUEUE = frozenset({"missing_user", "queue_full", "no_api_key"})


@pytest.fixture(scope="module")
def server() -> Iterator[VibefollowServer]:
    """One local Vibefollow API for the whole module."""
    with VibefollowServer() as running:
        yield running


# -- strategies -----------------------------------------------------------------------------


class Color(enum.Enum):
    """An Enum, as apps put in properties."""

    RED = "red"
    ODD = float("nan")


class Unprintable:
    """An object whose __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


def _cyclic(seed: dict[str, Any]) -> dict[str, Any]:
    value = dict(seed)
    value["self"] = value
    value["list"] = [value, [value]]
    return value


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for level in range(depth):
        value = {f"l{level}": value, "password": level}
    return value


# Lone surrogates are valid Python str but cannot be encoded as UTF-8.
odd_text = st.text(alphabet=st.characters(codec=None), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\u2028", "\ufeff"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.binary(max_size=20),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.decimals(allow_nan=True),
    st.uuids(),
    st.sampled_from([Color.RED, Color.ODD, b"\xff\xfe", math.inf]),
    st.builds(Unprintable),
    st.builds(object),
    st.integers(min_value=0, max_value=40_000).map(lambda n: "x" * n),  # huge strings
    st.integers(min_value=0, max_value=30).map(_deep),
)
odd_keys = st.one_of(
    odd_text,
    st.integers(),
    st.floats(),
    st.none(),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.sampled_from([Color.RED, "", "password", "Api-Key", "email", "x" * 20_000]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(st.integers() | st.text(max_size=3), max_size=4),
        st.dictionaries(odd_keys, inner, max_size=4),
        st.dictionaries(st.text(max_size=5), inner, max_size=4).map(_cyclic),
    ),
    max_leaves=12,
)
mappings = st.dictionaries(odd_keys, values, max_size=6) | values
tag_values = st.one_of(values, st.just("usr_1"), st.integers(), st.text(max_size=10))


# -- handler --------------------------------------------------------------------------------


def _check_wire(requests: list[RecordedRequest]) -> None:
    """Every body is strict JSON and every batch within the API's limit."""
    for request in requests:
        body = json.loads(request.body, parse_constant=_refuse)
        if request.path.endswith("/events/batch"):
            assert 1 <= len(body["events"]) <= MAX_BATCH


def _refuse(name: str) -> None:
    raise AssertionError(f"non-strict JSON constant {name}")


@BOUNDED
@given(
    user=tag_values | st.none(),
    name=tag_values | st.none(),
    properties=mappings | st.none(),
    traits=mappings | st.none(),
    data=st.data(),
)
def test_arbitrary_extra_values_never_escape_into_the_app(
    server: VibefollowServer, user: Any, name: Any, properties: Any, traits: Any, data: Any
) -> None:
    """Whatever the tags hold: no exception, strict JSON on the wire, every event accounted."""
    server.clear()
    extra = {"vf_user": user, "vf_event": name, "vf_properties": properties, "vf_traits": traits}
    # Any subset of the tags, so absent keys are exercised as well as None values.
    keep = data.draw(st.sets(st.sampled_from(sorted(extra)), min_size=1))
    handler = vf_otel.VibefollowHandler(
        api_key=server.api_key, base_url=server.base_url, flush_interval=60.0, max_retries=0
    )
    logger = logging.getLogger("app.hypothesis")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("msg %s", "arg", extra={k: extra[k] for k in keep})
        flushed = handler.flush(10.0)
        stats = handler.stats()
    finally:
        logger.removeHandler(handler)
        handler.close()
    _check_wire(server.requests)
    assert server.rejected == 0, [(r.path, r.status, r.body[:300]) for r in server.requests]
    after_queue = sum(n for reason, n in stats.dropped.items() if reason not in BEFORE_QUEUE)
    assert stats.enqueued == stats.sent + stats.dead_lettered + after_queue
    is_event = bool(keep & {"vf_user", "vf_event"})
    assert stats.enqueued + stats.dropped_total - after_queue == int(is_event)
    assert (stats.queued, stats.backlog) == (0, 0)
    # A user upsert is no event: accounted apart, settled too.
    assert (stats.users_in_flight, stats.users_parked) == (0, 0)
    assert stats.users_sent == len(server.users)
    assert len(server.events) == stats.sent
    # flush() says True exactly when nothing was lost.
    assert flushed == (stats.dropped_total == 0 and stats.dead_lettered == 0)


# -- span exporter --------------------------------------------------------------------------

attribute_values = st.one_of(
    odd_text,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.text(max_size=5), max_size=4),
    st.lists(st.floats(), max_size=4),
    st.integers(min_value=0, max_value=40_000).map(lambda n: "y" * n),
)
attribute_keys = st.one_of(
    st.text(max_size=12),
    odd_text.map(lambda k: "vf.properties." + k),
    st.text(max_size=12).map(lambda k: "vf.traits." + k),
    st.sampled_from(["vf.user", "vf.event", "vf.traits.email", "vf.properties.password"]),
)
attributes = st.dictionaries(attribute_keys, attribute_values, max_size=8)


def _spans(name: str, attrs: dict[str, Any], event_attrs: list[dict[str, Any]]) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("hypothesis").start_as_current_span(name, attributes=attrs) as span:
        for index, extra in enumerate(event_attrs):
            span.add_event(f"e{index}", attributes=extra)
    finished: tuple[ReadableSpan, ...] = memory.get_finished_spans()
    return list(finished)


@BOUNDED
@given(
    name=odd_text,
    attrs=attributes,
    event_attrs=st.lists(attributes, max_size=3),
)
def test_arbitrary_span_attributes_never_escape(
    server: VibefollowServer, name: str, attrs: dict[str, Any], event_attrs: list[dict[str, Any]]
) -> None:
    """Any span name and attributes: SUCCESS, strict JSON on the wire, every event accounted."""
    server.clear()
    spans = _spans(name, attrs, event_attrs)
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=server.api_key, base_url=server.base_url, flush_interval=60.0, max_retries=0
    )
    try:
        result = exporter.export(spans)
        flushed = exporter.force_flush(10_000)
        stats = exporter.stats()
    finally:
        exporter.shutdown()
    _check_wire(server.requests)
    assert server.rejected == 0, [(r.path, r.status, r.body[:300]) for r in server.requests]
    # Spans are checked while translated, before delivery takes them; only encoding comes after.
    after_delivery = sum(stats.dropped.get(r, 0) for r in ("unserializable", "event_too_large"))
    assert stats.enqueued == stats.sent + stats.dead_lettered + after_delivery
    assert (stats.queued, stats.backlog) == (0, 0)
    assert len(server.events) == stats.sent
    # export() and force_flush() say SUCCESS / True exactly when nothing was lost.
    lost = stats.dropped_total + stats.dead_lettered
    assert (result is SpanExportResult.SUCCESS) == (lost == 0)
    assert flushed == (lost == 0)


def test_strategies_reach_the_nasty_cases() -> None:
    """The value strategy really produces NaN, bytes, cycles and odd keys (no vacuous pass)."""
    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(value=mappings)
    def probe(value: Any) -> None:
        try:
            text = repr(value)
        except RuntimeError:  # Unprintable somewhere inside
            text = "Unprintable"
        for marker in ("nan", "b'", "{...}", "Unprintable", "Decimal", "UUID"):
            if marker in text:
                seen.add(marker)

    probe()
    assert seen >= {"nan", "b'", "{...}", "Decimal", "UUID", "Unprintable"}, seen


# -- the worker's shortcuts -----------------------------------------------------------------

# Values the shortcuts take as they are, and their edges: NaN, big ints, long or odd text.
plain_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**2100), max_value=2**2100),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.integers(min_value=16_380, max_value=16_390).map(lambda n: "z" * n),
)
plain_keys = odd_text | st.sampled_from(["password", "feature", "apiKey", "k" * 16_390])
plain_mappings = st.dictionaries(plain_keys, plain_values, max_size=5)
# Mostly what the shortcut takes (so it is exercised), often what it must refuse.
names = st.sampled_from(["signup", "feature_used", "trial_expiring"]) | st.sampled_from(
    [*CANONICAL_EVENTS, " ", "ünïcode", "\ud800"]
)
users = st.sampled_from(["usr_1", "42"]) | st.sampled_from(["usr é", "\ud800", " "]) | tag_values
WIRE_JSON = {"allow_nan": False, "ensure_ascii": False, "separators": (",", ":")}


def _outcome(call: Any) -> Any:
    """What ``call()`` returns, or the type and text of what it raises."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return (type(exc), str(exc))


@BOUNDED
@given(value=plain_mappings)
@example(value={"nan": math.nan, "ok": 1})
@example(value={"inf": -math.inf})
@example(value={"big": 2**2000})
@example(value={"big": -(2**2000)})
@example(value={"long": "z" * 16_385})
@example(value={"k" * 16_385: 1})
@example(value={"lone": "\ud800"})
@example(value={"\udfff": 1})
@example(value={1: "int key"})
def test_plain_copy_takes_only_what_coercion_leaves_alone(value: dict[Any, Any]) -> None:
    """Where the shortcut copies a dict as it is, coercion would have changed nothing in it."""
    plain = plain_copy(value)
    if plain is not None:
        assert plain == coerce_value(value)
        assert plain is not value


def test_plain_copy_takes_the_common_values() -> None:
    """Short text (any encodable), ints, finite floats, bools and None take the shortcut."""
    common = {"plan": "trial", "seats": 3, "ok": True, "x": None, "f": 1.5, "é": "ü" * 16_384}
    assert plain_copy({**common, "big": 2**2000 - 1, "small": -(2**2000) + 1}) == {
        **common,
        "big": 2**2000 - 1,
        "small": -(2**2000) + 1,
    }


@BOUNDED
@given(
    name=names | tag_values,
    user=users,
    properties=plain_mappings | st.none() | mappings,
    created=st.floats(min_value=0, max_value=4e9),
)
@example(name="signup", user="usr_1", properties={"apiKey": "k", "plan": "a"}, created=1e9)
@example(name="feature_used", user="usr_1", properties={"plan": "a"}, created=1e9)
@example(name="signup", user="usr é", properties={"plan": "a"}, created=1e9)
@example(name="signup", user="usr_1", properties={"n": math.nan}, created=1e9)
def test_build_batch_builds_what_make_event_builds(
    name: Any, user: Any, properties: Any, created: float
) -> None:
    """The worker's shortcut for plain tags gives the very Event (or Rejection) of the checks."""
    item = (name, user, properties, None, created, DEFAULT_REDACTOR)
    events, refused = build_batch([item], event_ids=["e1"])
    (fast,) = [*events, *refused]
    general = make_event(
        name=name,
        user_id=user,
        properties=properties,
        traits=None,
        occurred_at=record_time(created),
        event_id="e1",
    )
    assert fast == general


@BOUNDED
@given(created=st.floats(min_value=0, max_value=4e9))
@example(created=1764952047.6)  # held as .59999…: logging's msecs is 599
def test_a_record_time_is_its_millisecond(created: float) -> None:
    """A log record's time is kept to the millisecond logging's own ``msecs`` shows."""
    exact = dt.datetime.fromtimestamp(created, dt.UTC)
    kept = record_time(created)
    assert kept.tzinfo is dt.UTC
    assert kept.microsecond % 1000 == 0
    assert dt.timedelta(0) <= exact - kept < dt.timedelta(milliseconds=1, microseconds=1)
    assert kept.microsecond // 1000 == int((created - int(created)) * 1000)


@BOUNDED
@given(
    name=names | tag_values,
    user=users,
    properties=plain_mappings | mappings,
    when=st.datetimes(timezones=st.none() | st.just(dt.UTC) | st.timezones()),
    coerced=st.booleans(),
)
def test_encode_event_writes_the_bytes_of_json_dumps(
    name: Any, user: Any, properties: Any, when: dt.datetime, coerced: bool
) -> None:
    """encode_event's bytes (or error) are json.dumps(to_wire()) exactly, for any Event."""
    if coerced:
        built = make_event(
            name=name, user_id=user, properties=properties, traits=None, occurred_at=when,
            event_id="e1",
        )  # fmt: skip
        assume(isinstance(built, Event))
        event = built
    else:  # made by hand: raw values, cycles, NaN, any types
        event = Event(name, user, properties, when, "e1")
    expected = _outcome(lambda: json.dumps(event.to_wire(), **WIRE_JSON).encode())
    assert _outcome(lambda: encode_event(event)) == expected


@BOUNDED
@given(when=st.datetimes(timezones=st.none() | st.just(dt.UTC) | st.timezones()))
def test_wire_time_is_isoformat_to_the_millisecond(when: dt.datetime) -> None:
    """wire_time writes what isoformat(timespec="milliseconds") does, in UTC, with Z."""

    def isoformat() -> str:
        utc = when.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat(timespec="milliseconds") + "Z"

    assert _outcome(lambda: wire_time(when)) == _outcome(isoformat)
