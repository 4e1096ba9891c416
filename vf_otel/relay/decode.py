"""OTLP export requests (protobuf or JSON) decoded into the shapes translation reads.

Protobuf goes through the OTLP messages (``opentelemetry-proto``, the ``relay`` extra);
JSON is read straight from the document by ``vf_otel._sources.otlp``, which also holds
the shapes (``Span``, ``LogRecord``) and needs no protobuf package (``vf-otel rules
test`` reads recorded OTLP/JSON with it). The differential test in tests/test_relay.py
holds the two decoders equal.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .._sources.otlp import (
    Ids,
    LogRecord,
    OTLPDecodeError,
    Scope,
    Span,
    SpanEvent,
    SpanStatus,
    decode_logs_json,
    decode_traces_json,
    span_kind,
    span_status,
)

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


def decode_traces(body: bytes, *, json_body: bool) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest``; raises OTLPDecodeError."""
    if json_body:
        return decode_traces_json(body)
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
        return decode_logs_json(body)
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
        kind=span_kind(span.kind),
        # As the SDK: a span without valid ids has no context (translation skips it).
        context=Ids(trace_id, span_id) if trace_id and span_id else None,
        start_time=span.start_time_unix_nano or None,
        status=span_status(span.status.code),
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
