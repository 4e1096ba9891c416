"""OTLP export requests (protobuf or JSON) decoded into the shapes translation reads.

Both encodings go through the OTLP protobuf messages (``opentelemetry-proto``):
protobuf is parsed as is; JSON is first brought from the OTLP/JSON rules to proto3
JSON's. The two differ in one place: OTLP/JSON writes trace and span ids as hex,
while proto3 JSON (``google.protobuf.json_format``) reads bytes fields as base64 and
would silently turn a 32-digit trace id into 24 bytes. Everything else is proto3 JSON:
enums as integers, 64-bit integers as strings or numbers, unknown fields ignored.

What comes out (:class:`Span`, :class:`LogRecord`) is what
``vf_otel._sources.translate`` reads of the SDK's spans and log records, so relayed
telemetry becomes events by the same translation as in-process exporters'.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.trace import StatusCode

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

#: Hex ids in OTLP/JSON, by field name, and their length in bytes.
_ID_BYTES: Final = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
#: The JSON paths to the objects that carry hex ids.
_TRACE_PATH: Final = ("resourceSpans", "scopeSpans", "spans")
_LOG_PATH: Final = ("resourceLogs", "scopeLogs", "logRecords")
#: OTLP's status codes (unset, ok, error) as the OTel API names them.
_STATUS: Final = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}


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
    request = ExportTraceServiceRequest()
    _parse(request, body, json_body, _TRACE_PATH)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            scope = Scope(scope_spans.scope.name)
            spans.extend(_span(span, scope) for span in scope_spans.spans)
    return spans


def decode_logs(body: bytes, *, json_body: bool) -> list[LogRecord]:
    """The log records of an ``ExportLogsServiceRequest``; raises OTLPDecodeError."""
    request = ExportLogsServiceRequest()
    _parse(request, body, json_body, _LOG_PATH)
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


def _parse(message: Message, body: bytes, json_body: bool, path: tuple[str, ...]) -> None:
    encoding = "JSON" if json_body else "protobuf"
    try:
        if json_body:
            json_format.ParseDict(_proto3_json(body, path), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except OTLPDecodeError:
        raise
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OTLPDecodeError(f"not an OTLP {encoding} body: {exc}") from exc


def _proto3_json(body: bytes, path: tuple[str, ...]) -> dict[str, Any]:
    """The OTLP/JSON document, its hex ids rewritten as proto3 JSON's base64."""
    document = json.loads(body)
    if not isinstance(document, dict):
        raise OTLPDecodeError("the JSON body is not an object")
    for item in _objects(document, path):
        _hex_ids_to_base64(item)
        for link in item.get("links") or ():
            if isinstance(link, dict):
                _hex_ids_to_base64(link)
    return document


def _objects(document: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The objects at ``path`` (lists of objects, level by level), e.g. every span."""
    level: list[Any] = [document]
    for key in path:
        level = [
            child
            for parent in level
            if isinstance(parent, dict)
            for child in (parent.get(key) or ())
            if isinstance(child, dict)
        ]
    yield from level


def _hex_ids_to_base64(item: dict[str, Any]) -> None:
    """OTLP/JSON's hex ids, rewritten in place as the base64 proto3 JSON expects."""
    for key, size in _ID_BYTES.items():
        value = item.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise OTLPDecodeError(f"{key} must be a hex string")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise OTLPDecodeError(f"{key} is not hex: {value[:40]!r}") from None
        if len(raw) != size:
            raise OTLPDecodeError(f"{key} must be {2 * size} hex digits, not {len(value)}")
        item[key] = base64.b64encode(raw).decode()


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
