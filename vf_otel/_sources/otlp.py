"""OTLP export requests as translation reads them: the shapes, and the OTLP/JSON reader.

What comes out (``Span``, ``LogRecord``) is what ``vf_otel._sources.otel`` reads of the
SDK's spans and log records, so OTLP telemetry becomes events by the same translation
as in-process exporters'. Two readers share it: the relay (``vf_otel.relay.decode``,
which adds protobuf) and ``vf-otel rules test``, which reads recorded OTLP/JSON files
and so needs no protobuf package: nothing here imports one.

OTLP/JSON is proto3 JSON but for one thing: trace and span ids are hex, where proto3
JSON reads bytes fields as base64 (and would turn a 32-digit trace id into 24 bytes).
Enums are integers (names accepted), 64-bit integers strings or numbers, unknown fields
ignored. An error names where it is (``resourceSpans[0].scopeSpans[1].spans[2].traceId``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from opentelemetry.trace import SpanKind, StatusCode

__all__ = [
    "Ids",
    "LogRecord",
    "OTLPDecodeError",
    "Scope",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "decode_document",
    "decode_logs_json",
    "decode_traces_json",
    "span_kind",
    "span_status",
]

_T = TypeVar("_T")
_TRACE_BYTES: Final = 16
_SPAN_BYTES: Final = 8
_UINT64: Final = 2**64
_INT64: Final = 2**63
#: Status codes may come by name too (proto3 JSON), though OTLP/JSON writes integers.
_STATUS_NAMES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_FLOAT_WORDS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: OTLP's status codes (unset, ok, error) as the OTel API names them.
_STATUS: Final = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
#: OTLP's span kinds as the OTel API names them (what mapping rules' ``kind`` names).
#: Unspecified (0) is read as internal, as the specification allows a receiver to; a
#: kind no version of OTLP defines is None: no rule naming a kind matches it.
_KINDS: Final = {
    0: SpanKind.INTERNAL,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_KIND_NAMES: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}


def span_kind(code: int) -> SpanKind | None:
    """OTLP's span kind number as the OTel API's (None for one OTLP does not define)."""
    return _KINDS.get(code)


def span_status(code: int) -> SpanStatus:
    """OTLP's status code number as a status (one OTLP does not define reads as unset)."""
    return SpanStatus(_STATUS.get(code, StatusCode.UNSET))


class OTLPDecodeError(ValueError):
    """The body is not an OTLP export request in the encoding it claims (answered 400)."""

    def at(self, where: str) -> OTLPDecodeError:
        """The same error, its message prefixed with where it is in the document."""
        return OTLPDecodeError(f"{where}.{self}")


@dataclass(frozen=True, slots=True)
class Ids:
    """A span's trace and span ids as integers, as ``SpanContext`` holds them."""

    trace_id: int
    span_id: int


@dataclass(frozen=True, slots=True)
class SpanStatus:
    """A span's status code."""

    status_code: StatusCode


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A span event: its name, attributes and time (ns since the epoch)."""

    name: str
    attributes: Mapping[str, Any]
    timestamp: int


@dataclass(frozen=True, slots=True)
class Scope:
    """The instrumentation scope a span or record came from."""

    name: str


@dataclass(frozen=True, slots=True)
class Span:
    """A span as translation reads it; ``context`` is None when its ids are missing."""

    name: str
    kind: SpanKind | None
    context: Ids | None
    start_time: int | None
    status: SpanStatus
    attributes: Mapping[str, Any]
    events: tuple[SpanEvent, ...]
    instrumentation_scope: Scope


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log record as translation reads it; times are None when OTLP says 0 (unknown)."""

    body: Any
    attributes: Mapping[str, Any]
    timestamp: int | None
    observed_timestamp: int | None
    trace_id: int
    span_id: int
    instrumentation_scope: Scope

    @property
    def log_record(self) -> LogRecord:
        """Itself: the SDK's export batches hold the record as ``.log_record``."""
        return self


# -- OTLP/JSON -------------------------------------------------------------------------
# Read straight from the parsed document into the same shapes as protobuf's: 20x cheaper
# than going through json_format, whose proto3 rules would also read the hex ids as base64.
# Where an error is costs nothing until there is one (a try per span, record and scope).


def decode_traces_json(body: bytes) -> list[Span]:
    """The spans of an OTLP/JSON ``ExportTraceServiceRequest``; raises OTLPDecodeError."""
    return _from_json(body, _json_traces)


def decode_logs_json(body: bytes) -> list[LogRecord]:
    """The log records of an OTLP/JSON ``ExportLogsServiceRequest``; raises OTLPDecodeError."""
    return _from_json(body, _json_logs)


def decode_document(document: object) -> tuple[list[Span], list[LogRecord]]:
    """The spans and log records of a parsed OTLP/JSON file (``vf-otel rules test``).

    Stricter than the relay, as a file is checked by a person: a span kind or status
    code OTLP does not define is an error, not "no kind" or "unset".
    """
    if not isinstance(document, dict) or not ({"resourceSpans", "resourceLogs"} & set(document)):
        raise OTLPDecodeError('expected {"resourceSpans": [...]} or {"resourceLogs": [...]}')
    try:
        _check_enums(document)
        return _json_traces(document), _json_logs(document)
    except OTLPDecodeError:
        raise
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OTLPDecodeError(f"not OTLP JSON: {exc}") from exc


def _check_enums(document: dict[str, Any]) -> None:
    for r, resource_spans in enumerate(_objects(document, "resourceSpans")):
        for s, scope_spans in enumerate(_objects(resource_spans, "scopeSpans")):
            for i, span in enumerate(_objects(scope_spans, "spans")):
                kind = _enum(span.get("kind"), _KIND_NAMES)
                code = _enum(_object(span, "status").get("code"), _STATUS_NAMES)
                if kind not in _KINDS or code not in _STATUS:
                    where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                    raise OTLPDecodeError(f"{where}: unknown kind or status code")


def _from_json(body: bytes, read: Callable[[dict[str, Any]], list[_T]]) -> list[_T]:
    try:
        return read(_document(body))
    except OTLPDecodeError:
        raise
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OTLPDecodeError(f"not an OTLP JSON body: {exc}") from exc


def _document(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise OTLPDecodeError("the JSON body is not an object")
    return document


def _json_traces(document: dict[str, Any]) -> list[Span]:
    return _json_items(document, ("resourceSpans", "scopeSpans", "spans"), _json_span)


def _json_items(
    document: dict[str, Any],
    keys: tuple[str, str, str],
    build: Callable[[dict[str, Any], Scope], _T],
) -> list[_T]:
    """What ``build`` makes of each item under resource → scope → items (``keys``), with
    its scope; an error names where in the document it is."""
    resources_key, scopes_key, items_key = keys
    built: list[_T] = []
    for r, resource in enumerate(_objects(document, resources_key)):
        for s, scoped in enumerate(_objects(resource, scopes_key)):
            where = f"{resources_key}[{r}].{scopes_key}[{s}]"
            try:
                scope = Scope(_text(_object(scoped, "scope").get("name")))
                items = _objects(scoped, items_key)
            except OTLPDecodeError as exc:
                raise exc.at(where) from None
            for i, item in enumerate(items):
                try:
                    built.append(build(item, scope))
                except OTLPDecodeError as exc:
                    raise exc.at(f"{where}.{items_key}[{i}]") from None
    return built


def _json_span(span: dict[str, Any], scope: Scope) -> Span:
    trace_id = _hex_id(span.get("traceId"), _TRACE_BYTES, "traceId")
    span_id = _hex_id(span.get("spanId"), _SPAN_BYTES, "spanId")
    _hex_id(span.get("parentSpanId"), _SPAN_BYTES, "parentSpanId")  # checked, unused
    code = _enum(_object(span, "status").get("code"), _STATUS_NAMES)
    return Span(
        name=_text(span.get("name")),
        kind=span_kind(_enum(span.get("kind"), _KIND_NAMES)),
        context=Ids(trace_id, span_id) if trace_id and span_id else None,
        start_time=_time(span, "startTimeUnixNano") or None,
        status=span_status(code),
        attributes=_json_attributes(span.get("attributes")),
        events=tuple(
            SpanEvent(
                _text(event.get("name")),
                _json_attributes(event.get("attributes")),
                _time(event, "timeUnixNano"),
            )
            for event in _objects(span, "events")
        ),
        instrumentation_scope=scope,
    )


def _json_logs(document: dict[str, Any]) -> list[LogRecord]:
    return _json_items(document, ("resourceLogs", "scopeLogs", "logRecords"), _json_log)


def _json_log(record: dict[str, Any], scope: Scope) -> LogRecord:
    return LogRecord(
        body=_json_value(record.get("body")),
        attributes=_json_attributes(record.get("attributes")),
        timestamp=_time(record, "timeUnixNano") or None,
        observed_timestamp=_time(record, "observedTimeUnixNano") or None,
        trace_id=_hex_id(record.get("traceId"), _TRACE_BYTES, "traceId"),
        span_id=_hex_id(record.get("spanId"), _SPAN_BYTES, "spanId"),
        instrumentation_scope=scope,
    )


def _time(parent: dict[str, Any], key: str) -> int:
    """A fixed64 time field (ns since the epoch), 0 when absent; errors name the field."""
    try:
        return _integer(parent.get(key), 0, _UINT64)
    except OTLPDecodeError as exc:
        raise OTLPDecodeError(f"{key}: {exc}") from None


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OTLPDecodeError(f"{key} must be an object")
    return value


def _objects(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise OTLPDecodeError(f"{key} must be a list of objects")
    return value


def _text(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OTLPDecodeError(f"expected a string, not {type(value).__name__}")
    return value


def _integer(value: object, low: int, high: int) -> int:
    """An integer field: a JSON number or a decimal string (64-bit ones are strings)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.lstrip("-").isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise OTLPDecodeError(f"expected an integer, not {value!r:.40}")
    if not low <= number < high:
        raise OTLPDecodeError(f"integer out of range: {number}")
    return number


def _enum(value: object, names: Mapping[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _integer(value, -(2**31), 2**31)


def _hex_id(value: object, size: int, name: str) -> int:
    """OTLP/JSON's hex trace or span id as an integer (0 when absent)."""
    text = _text(value)
    if not text:
        return 0
    if len(text) != 2 * size:
        raise OTLPDecodeError(f"{name}: expected {2 * size} hex digits, not {len(text)}")
    try:
        return int.from_bytes(bytes.fromhex(text), "big")
    except ValueError:
        raise OTLPDecodeError(
            f"{name}: expected {2 * size} hex digits, not hex: {text[:40]!r}"
        ) from None


def _json_attributes(pairs: object) -> dict[str, Any]:
    if pairs is None:
        return {}
    if not isinstance(pairs, list):
        raise OTLPDecodeError("attributes must be a list")
    return {_text(pair.get("key")): _json_value(pair.get("value")) for pair in pairs}


def _json_value(value: object) -> Any:
    """An AnyValue as ``_value`` reads it from protobuf."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OTLPDecodeError("an AnyValue must be an object")
    for kind, read in _READERS.items():
        if kind in value and value[kind] is not None:
            return read(value[kind])
    return None


def _double(value: object) -> float:
    if isinstance(value, str) and value in _FLOAT_WORDS:
        return _FLOAT_WORDS[value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value)  # ValueError (a 400) when it is no number
    raise OTLPDecodeError(f"expected a number, not {value!r:.40}")


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise OTLPDecodeError("boolValue must be true or false")
    return value


def _base64(value: object) -> bytes:
    try:
        return base64.b64decode(_text(value), validate=True)
    except binascii.Error:
        return base64.urlsafe_b64decode(_text(value))  # proto3 JSON accepts both alphabets


def _values(container: object) -> list[Any]:
    if not isinstance(container, dict):
        raise OTLPDecodeError("arrayValue and kvlistValue must be objects")
    values = container.get("values")
    if values is None:
        return []
    if not isinstance(values, list):
        raise OTLPDecodeError("values must be a list")
    return values


_READERS: Final[dict[str, Callable[[Any], Any]]] = {
    "stringValue": _text,
    "boolValue": _boolean,
    "intValue": lambda value: _integer(value, -_INT64, _INT64),
    "doubleValue": _double,
    "arrayValue": lambda value: tuple(_json_value(item) for item in _values(value)),
    "kvlistValue": lambda value: _json_attributes(_values(value)),
    "bytesValue": _base64,
}
