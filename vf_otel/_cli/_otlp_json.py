"""Recorded telemetry for ``vf-otel rules test``: OTLP JSON files, decoded into SDK objects.

The format is the OTLP/HTTP JSON encoding (what the Collector's ``file`` exporter and
``otlphttp`` with ``encoding: json`` write): ``{"resourceSpans": [...]}`` or
``{"resourceLogs": [...]}``, with trace and span ids as hex, enums as integers and
int64 values as strings (numbers accepted too), unknown fields ignored. Spans become
real ``ReadableSpan`` objects, so the command runs the exporters' own translation.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["DecodeError", "RecordedLog", "decode"]

#: OTLP's SpanKind numbers (0 is "unspecified", read as internal) to the SDK's.
_KINDS: Final = {
    0: SpanKind.INTERNAL,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUSES: Final = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}


class DecodeError(ValueError):
    """The file is not OTLP JSON; the message says where (``resourceSpans[0]...``)."""


@dataclass(frozen=True, slots=True)
class RecordedLog:
    """A log record as ``translate_log`` reads it."""

    body: Any
    attributes: Mapping[str, Any]
    timestamp: int | None
    observed_timestamp: int | None


def decode(data: object) -> tuple[list[ReadableSpan], list[RecordedLog]]:
    """The spans and log records of a parsed OTLP JSON document."""
    if not isinstance(data, Mapping) or not ({"resourceSpans", "resourceLogs"} & set(data)):
        raise DecodeError('expected {"resourceSpans": [...]} or {"resourceLogs": [...]}')
    spans = [
        _span(span, f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]")
        for r, s, i, span in _items(data, "resourceSpans", "scopeSpans", "spans")
    ]
    logs = [
        _log(record, f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]")
        for r, s, i, record in _items(data, "resourceLogs", "scopeLogs", "logRecords")
    ]
    return spans, logs


def _items(data: Mapping[str, Any], outer: str, middle: str, inner: str) -> list[Any]:
    found = []
    for r, resource in enumerate(_list(data.get(outer), outer)):
        scopes = _list(_object(resource, f"{outer}[{r}]").get(middle), f"{outer}[{r}].{middle}")
        for s, scope in enumerate(scopes):
            where = f"{outer}[{r}].{middle}[{s}]"
            for i, item in enumerate(_list(_object(scope, where).get(inner), f"{where}.{inner}")):
                found.append((r, s, i, _object(item, f"{where}.{inner}[{i}]")))
    return found


def _span(span: Mapping[str, Any], where: str) -> ReadableSpan:
    context = SpanContext(
        trace_id=_hex_id(span.get("traceId"), 16, f"{where}.traceId"),
        span_id=_hex_id(span.get("spanId"), 8, f"{where}.spanId"),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    status = _object(span.get("status") or {}, f"{where}.status")
    code = _STATUSES.get(_int(status.get("code", 0), f"{where}.status.code"))
    kind = _KINDS.get(_int(span.get("kind", 0), f"{where}.kind"))
    if code is None or kind is None:
        raise DecodeError(f"{where}: unknown kind or status code")
    events = [
        SpanEvent(
            name=str(event.get("name", "")),
            attributes=_attributes(event.get("attributes"), f"{where}.events[{i}]"),
            timestamp=_int(event.get("timeUnixNano", 0), f"{where}.events[{i}].timeUnixNano"),
        )
        for i, event in enumerate(_list(span.get("events"), f"{where}.events"))
    ]
    return ReadableSpan(
        name=str(span.get("name", "")),
        context=context,
        attributes=_attributes(span.get("attributes"), where),
        events=events,
        kind=kind,
        status=Status(code, status.get("message") or None),
        start_time=_int(span.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano"),
        end_time=_int(span.get("endTimeUnixNano", 0), f"{where}.endTimeUnixNano"),
    )


def _log(record: Mapping[str, Any], where: str) -> RecordedLog:
    body = record.get("body")
    return RecordedLog(
        body=None if body is None else _value(body, f"{where}.body"),
        attributes=_attributes(record.get("attributes"), where),
        timestamp=_int(record.get("timeUnixNano", 0), f"{where}.timeUnixNano") or None,
        observed_timestamp=_int(record.get("observedTimeUnixNano", 0), where) or None,
    )


def _attributes(values: object, where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for i, item in enumerate(_list(values, f"{where}.attributes")):
        pair = _object(item, f"{where}.attributes[{i}]")
        key = pair.get("key")
        if not isinstance(key, str):
            raise DecodeError(f"{where}.attributes[{i}].key: expected a string")
        result[key] = _value(pair.get("value") or {}, f"{where}.attributes[{i}].value")
    return result


def _value(value: object, where: str) -> Any:
    """An OTLP AnyValue as Python: str, bool, int, float, bytes, tuple or dict (or None)."""
    value = _object(value, where)
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _int(value["intValue"], where)
    if "doubleValue" in value:
        return _float(value["doubleValue"], where)
    if "bytesValue" in value:
        try:
            return base64.b64decode(str(value["bytesValue"]), validate=True)
        except binascii.Error:
            raise DecodeError(f"{where}.bytesValue: not base64") from None
    if "arrayValue" in value:
        items = _list(_object(value["arrayValue"], where).get("values"), where)
        return tuple(_value(item, f"{where}[{i}]") for i, item in enumerate(items))
    if "kvlistValue" in value:
        return _attributes(_object(value["kvlistValue"], where).get("values"), where)
    return None  # an empty AnyValue


def _hex_id(value: object, size: int, where: str) -> int:
    # Hex per the OTLP JSON spec; base64 (proto3 JSON) would be the wrong length.
    if not isinstance(value, str) or len(value) != 2 * size:
        raise DecodeError(f"{where}: expected {2 * size} hex digits")
    try:
        return int(value, 16)
    except ValueError:
        raise DecodeError(f"{where}: expected {2 * size} hex digits") from None


def _int(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise DecodeError(f"{where}: expected an integer (or one as a string)")


def _float(value: object, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    raise DecodeError(f"{where}: expected a number")


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError(f"{where}: expected a list")
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DecodeError(f"{where}: expected an object")
    return value
