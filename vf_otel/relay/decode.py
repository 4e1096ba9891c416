"""OTLP export requests (protobuf or JSON) decoded into the shapes translation reads.

Both encodings go through the OTLP protobuf messages (``opentelemetry-proto``):
protobuf is parsed as is; JSON is first brought from the OTLP/JSON rules to proto3
JSON's. The two differ in one place: OTLP/JSON writes trace and span ids as hex,
while proto3 JSON (``google.protobuf.json_format``) reads bytes fields as base64 and
would silently turn a 32-digit trace id into 24 bytes. Everything else is proto3 JSON:
enums as integers, 64-bit integers as strings or numbers, unknown fields ignored.

What comes out (``Span``, ``LogRecord``) is what
``vf_otel._sources.otel`` reads of the SDK's spans and log records, so relayed
telemetry becomes events by the same translation as in-process exporters'.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.trace import SpanKind, StatusCode

__all__ = [
    "Ids",
    "LogRecord",
    "OTLPDecodeError",
    "Scope",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "decode_logs",
    "decode_traces",
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


class OTLPDecodeError(ValueError):
    """The body is not an OTLP export request in the encoding it claims (answered 400)."""


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


def decode_traces(body: bytes, *, json_body: bool) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest``; raises OTLPDecodeError."""
    if json_body:
        return _from_json(body, _json_traces)
    request = ExportTraceServiceRequest()
    _parse_protobuf(request, body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            scope = Scope(scope_spans.scope.name)
            spans.extend(_span(span, scope) for span in scope_spans.spans)
    return spans


def decode_logs(body: bytes, *, json_body: bool) -> list[LogRecord]:
    """The log records of an ``ExportLogsServiceRequest``; raises OTLPDecodeError."""
    if json_body:
        return _from_json(body, _json_logs)
    request = ExportLogsServiceRequest()
    _parse_protobuf(request, body)
    records: list[LogRecord] = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            scope = Scope(scope_logs.scope.name)
            records.extend(
                LogRecord(
                    body=_value(record.body) if record.HasField("body") else None,
                    attributes=_attributes(record.attributes),
                    timestamp=record.time_unix_nano or None,
                    observed_timestamp=record.observed_time_unix_nano or None,
                    trace_id=int.from_bytes(record.trace_id, "big"),
                    span_id=int.from_bytes(record.span_id, "big"),
                    instrumentation_scope=scope,
                )
                for record in scope_logs.log_records
            )
    return records


def _span(span: Any, scope: Scope) -> Span:
    trace_id = int.from_bytes(span.trace_id, "big")
    span_id = int.from_bytes(span.span_id, "big")
    return Span(
        name=span.name,
        kind=_KINDS.get(span.kind),
        # As the SDK: a span without valid ids has no context (translation skips it).
        context=Ids(trace_id, span_id) if trace_id and span_id else None,
        start_time=span.start_time_unix_nano or None,
        status=SpanStatus(_STATUS.get(span.status.code, StatusCode.UNSET)),
        attributes=_attributes(span.attributes),
        events=tuple(
            SpanEvent(event.name, _attributes(event.attributes), event.time_unix_nano)
            for event in span.events
        ),
        instrumentation_scope=scope,
    )


def _parse_protobuf(message: Message, body: bytes) -> None:
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError, TypeError, RecursionError) as exc:
        raise OTLPDecodeError(f"not an OTLP protobuf body: {exc}") from exc


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    """An AnyValue as the SDK keeps attribute values: scalars, tuples, dicts."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


# -- OTLP/JSON -------------------------------------------------------------------------
# Read straight from the parsed document into the same shapes as protobuf's (the
# differential test in tests/test_relay.py holds them equal): 20x cheaper than going
# through json_format, whose proto3 rules would also read the hex ids as base64.


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
    spans: list[Span] = []
    for resource_spans in _objects(document, "resourceSpans"):
        for scope_spans in _objects(resource_spans, "scopeSpans"):
            scope = Scope(_text(_object(scope_spans, "scope").get("name")))
            spans.extend(_json_span(span, scope) for span in _objects(scope_spans, "spans"))
    return spans


def _json_span(span: dict[str, Any], scope: Scope) -> Span:
    trace_id = _hex_id(span.get("traceId"), _TRACE_BYTES, "traceId")
    span_id = _hex_id(span.get("spanId"), _SPAN_BYTES, "spanId")
    _hex_id(span.get("parentSpanId"), _SPAN_BYTES, "parentSpanId")  # checked, unused
    code = _enum(_object(span, "status").get("code"), _STATUS_NAMES)
    return Span(
        name=_text(span.get("name")),
        kind=_KINDS.get(_enum(span.get("kind"), _KIND_NAMES)),
        context=Ids(trace_id, span_id) if trace_id and span_id else None,
        start_time=_integer(span.get("startTimeUnixNano"), 0, _UINT64) or None,
        status=SpanStatus(_STATUS.get(code, StatusCode.UNSET)),
        attributes=_json_attributes(span.get("attributes")),
        events=tuple(
            SpanEvent(
                _text(event.get("name")),
                _json_attributes(event.get("attributes")),
                _integer(event.get("timeUnixNano"), 0, _UINT64),
            )
            for event in _objects(span, "events")
        ),
        instrumentation_scope=scope,
    )


def _json_logs(document: dict[str, Any]) -> list[LogRecord]:
    records: list[LogRecord] = []
    for resource_logs in _objects(document, "resourceLogs"):
        for scope_logs in _objects(resource_logs, "scopeLogs"):
            scope = Scope(_text(_object(scope_logs, "scope").get("name")))
            records.extend(
                LogRecord(
                    body=_json_value(record.get("body")),
                    attributes=_json_attributes(record.get("attributes")),
                    timestamp=_integer(record.get("timeUnixNano"), 0, _UINT64) or None,
                    observed_timestamp=(
                        _integer(record.get("observedTimeUnixNano"), 0, _UINT64) or None
                    ),
                    trace_id=_hex_id(record.get("traceId"), _TRACE_BYTES, "traceId"),
                    span_id=_hex_id(record.get("spanId"), _SPAN_BYTES, "spanId"),
                    instrumentation_scope=scope,
                )
                for record in _objects(scope_logs, "logRecords")
            )
    return records


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
        raise OTLPDecodeError(f"{name} must be {2 * size} hex digits, not {len(text)}")
    try:
        return int.from_bytes(bytes.fromhex(text), "big")
    except ValueError:
        raise OTLPDecodeError(f"{name} is not hex: {text[:40]!r}") from None


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
