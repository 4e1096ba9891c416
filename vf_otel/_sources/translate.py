"""Translate finished spans and OTel log records into Events.

Runs on the SDK's export thread, never on the request path. The common case —
a span or record with no ``vf`` tag — is decided by two dictionary lookups.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from opentelemetry.trace import StatusCode

from .._event.coerce import KeyCollisions
from .._event.model import Event, new_event_id
from .._event.validate import Rejection, make_event
from .._event.when import explicit_time

__all__ = [
    "CONTEXT_USER_KEY",
    "EVENT_KEY",
    "USER_KEY",
    "event_id_for",
    "log_event_id",
    "translate_log",
    "translate_span",
]

USER_KEY: Final = "vf.user"
EVENT_KEY: Final = "vf.event"
#: Where the user span processor records the context's user. A separate key on
#: purpose: ``vf.user`` marks a span as an event, and every span started inside
#: ``vf_otel.user(...)`` must not become one.
CONTEXT_USER_KEY: Final = "vf.context_user"
PROPERTIES_PREFIX: Final = "vf.properties."
TRAITS_PREFIX: Final = "vf.traits."
#: An explicit time for the event (backfills): epoch seconds or an ISO-8601 string.
OCCURRED_AT_KEY: Final = "vf.occurred_at"
LOG_OCCURRED_AT_KEYS: Final = ("vf_occurred_at", OCCURRED_AT_KEY)
#: The logging ``extra=`` names, as the OTel LoggingHandler copies them into attributes.
LOG_USER_KEYS: Final = ("vf_user", USER_KEY)
LOG_EVENT_KEYS: Final = ("vf_event", EVENT_KEY)
# Separates the parts hashed into a log record's id (cannot occur in a decimal or hex part).
_ID_SEPARATOR: Final = "\x1f"
# A stringified mapping longer than this is not parsed back (it would be rejected anyway).
_MAX_PARSED_TEXT: Final = 65_536

Attrs = Mapping[str, Any]
Result = Event | Rejection


class SpanContextLike(Protocol):
    """The ids of a span: ``SpanContext``, or the relay's decoded OTLP span's."""

    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...


class StatusLike(Protocol):
    """A span's status: only its code is read."""

    @property
    def status_code(self) -> StatusCode: ...


class SpanEventLike(Protocol):
    """The part of a span event read here."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def timestamp(self) -> int: ...


class SpanLike(Protocol):
    """The part of a finished span read here: the SDK's ``ReadableSpan``, or a span the
    relay decoded from OTLP (``vf_otel.relay.decode``)."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def events(self) -> Sequence[SpanEventLike]: ...
    @property
    def status(self) -> StatusLike: ...
    @property
    def context(self) -> SpanContextLike | None: ...
    @property
    def start_time(self) -> int | None: ...


class LogRecordLike(Protocol):
    """The part of an OTel ``LogRecord`` read here (the same from SDK 1.34 to 1.45)."""

    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def body(self) -> Any: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def observed_timestamp(self) -> int | None: ...


# -- spans ----------------------------------------------------------------------------


def translate_span(
    span: SpanLike, *, include_errors: bool = False, collisions: KeyCollisions | None = None
) -> list[Result]:
    """The events a finished span carries: itself if tagged, then its tagged span events.

    Values lost because two keys became the same string are counted in ``collisions``
    (for the exporter's ledger).
    """
    attrs: Attrs = span.attributes or {}
    tagged = USER_KEY in attrs or EVENT_KEY in attrs
    if not tagged and not span.events:
        return []
    if not include_errors and span.status.status_code is StatusCode.ERROR:
        return []
    context = span.context
    if context is None:
        return []
    results: list[Result] = []
    span_user = attrs.get(USER_KEY, attrs.get(CONTEXT_USER_KEY))
    if tagged:
        results.append(
            _from_attrs(
                attrs,
                default_name=span.name,
                user=span_user,
                nanos=span.start_time,
                event_id=event_id_for(context.trace_id, context.span_id, 0),
                collisions=collisions,
            )
        )
    for index, span_event in enumerate(span.events, start=1):
        event_attrs: Attrs = span_event.attributes or {}
        if USER_KEY in event_attrs or EVENT_KEY in event_attrs:
            results.append(
                _from_attrs(
                    event_attrs,
                    default_name=span_event.name,
                    user=event_attrs.get(USER_KEY, span_user),
                    nanos=span_event.timestamp,
                    event_id=event_id_for(context.trace_id, context.span_id, index),
                    collisions=collisions,
                )
            )
    return results


def event_id_for(trace_id: int, span_id: int, index: int) -> str:
    """A stable id: the same span exported twice yields the same idempotency key.

    ``index`` 0 is the span itself, ``i + 1`` its i-th span event.
    """
    return f"{trace_id:032x}{span_id:016x}-{index}"


def _from_attrs(
    attrs: Attrs,
    *,
    default_name: str,
    user: object,
    nanos: int | None,
    event_id: str,
    collisions: KeyCollisions | None,
) -> Result:
    traits = _prefixed(attrs, TRAITS_PREFIX)
    occurred_at = _occurred_at(attrs.get(OCCURRED_AT_KEY), nanos)
    if isinstance(occurred_at, Rejection):
        return occurred_at
    return make_event(
        name=attrs.get(EVENT_KEY, default_name),
        user_id=user,
        properties=_prefixed(attrs, PROPERTIES_PREFIX),
        traits=traits or None,
        occurred_at=occurred_at,
        event_id=event_id,
        redactor=None,  # the exporter redacts with its own settings (EventSink.deliver)
        collisions=collisions,
    )


def _prefixed(attrs: Attrs, prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in attrs.items() if key.startswith(prefix)}


def _occurred_at(explicit: object, nanos: int | None) -> datetime | Rejection:
    """The explicit ``vf.occurred_at`` when there is one (refused if unusable), else the
    span's, span event's or record's own time."""
    if explicit is None:
        return utc_from_nanos(nanos)
    moment = explicit_time(explicit)
    if isinstance(moment, str):
        return Rejection("invalid_occurred_at", "occurred_at", moment)
    return moment


def utc_from_nanos(nanos: int | None) -> datetime:
    """An OTel timestamp (ns since the epoch) as an aware UTC datetime; now if missing."""
    if nanos is None:
        return datetime.now(UTC)
    # Rounded to the microsecond: a log record's float ``created`` reaches us as
    # e.g. ...249999872 ns, which must not become the previous millisecond.
    seconds, micros = divmod((nanos + 500) // 1000, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


# -- log records ------------------------------------------------------------------------


def translate_log(
    record: LogRecordLike,
    collisions: KeyCollisions | None = None,
    *,
    event_id: Callable[[LogRecordLike], str] | None = None,
) -> Result | None:
    """A tagged log record as an Event (or why not); None when it carries no tag.

    Accepts the logging ``extra=`` names (``vf_user``, ``vf_event``,
    ``vf_properties``, ``vf_traits``) and the span-style dotted names. The
    SDK keeps mapping values as dicts (sequences become tuples, which coerce
    back to lists); a mapping that some pipeline stringified is parsed back.
    Values lost because two keys became the same string are counted in ``collisions``.
    ``event_id`` makes the id of a tagged record (the relay's :func:`log_event_id`:
    the same record relayed twice is one event); by default a random one.
    """
    attrs: Attrs = record.attributes or {}
    if not any(key in attrs for key in (*LOG_USER_KEYS, *LOG_EVENT_KEYS)):
        return None
    name = _first(attrs, LOG_EVENT_KEYS)
    nanos = record.timestamp or record.observed_timestamp
    occurred_at = _occurred_at(_first(attrs, LOG_OCCURRED_AT_KEYS), nanos)
    if isinstance(occurred_at, Rejection):
        return occurred_at
    return make_event(
        name=record.body if name is None else name,
        user_id=_first(attrs, LOG_USER_KEYS),
        properties=_log_mapping(attrs, "properties"),
        traits=_log_mapping(attrs, "traits") or None,
        occurred_at=occurred_at,
        event_id=new_event_id() if event_id is None else event_id(record),
        redactor=None,  # the exporter redacts with its own settings (EventSink.deliver)
        collisions=collisions,
    )


def log_event_id(record: LogRecordLike, trace_id: int = 0, span_id: int = 0) -> str:
    """A stable id for a log record, from everything that tells two records apart.

    Its trace and span ids, times, body and attributes: a Collector that sends a batch
    again, or two relays that both get it, make the same id, hence the same idempotency
    key. Two records equal in every one of these are one event.
    """
    parts = [
        f"{trace_id:032x}{span_id:016x}",
        str(record.timestamp or 0),
        str(record.observed_timestamp or 0),
        json.dumps(record.body, sort_keys=True, default=repr),
        json.dumps(dict(record.attributes or {}), sort_keys=True, default=repr),
    ]
    digest = hashlib.sha256(_ID_SEPARATOR.join(parts).encode()).hexdigest()
    return f"log-{digest[:32]}"


def _first(attrs: Attrs, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _log_mapping(attrs: Attrs, kind: str) -> Any:
    """``vf_<kind>`` (a mapping, or one rendered as text) merged with ``vf.<kind>.<key>``."""
    whole = _first(attrs, (f"vf_{kind}", f"vf.{kind}"))
    if isinstance(whole, str):
        whole = _parse_mapping(whole)
    dotted = _prefixed(attrs, f"vf.{kind}.")
    if whole is None:
        return dotted
    if not isinstance(whole, Mapping):
        return whole  # make_event rejects it with a clear reason
    return {**whole, **dotted}


def _parse_mapping(text: str) -> Any:
    """JSON, or a Python ``str(dict)``; the text itself when it is neither."""
    if len(text) > _MAX_PARSED_TEXT:
        return text
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, Mapping):
            return value
    return text
