"""Requests as they go on the wire: bodies, chunks, idempotency keys, error envelopes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._event.model import Event, idempotency_key, wire_time

__all__ = [
    "EVENTS_PATH",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "SCRUBBED",
    "USERS_PATH",
    "ErrorDetail",
    "Request",
    "accepted_envelope",
    "declined_envelope",
    "encode_event",
    "error_detail",
    "error_details",
    "event_requests",
    "failed_event_index",
    "failed_event_indexes",
    "scrub",
    "snippet",
    "split_request",
    "user_requests",
]

EVENTS_PATH: Final = "/events/batch"
USERS_PATH: Final = "/users"
#: An event whose JSON is larger than this is dropped (reason ``event_too_large``).
MAX_EVENT_BYTES: Final = 64 * 1024
#: Requests are split so that no body exceeds this, whatever the batch size.
MAX_REQUEST_BYTES: Final = 1024 * 1024
#: The field-path forms an API may use to name event ``i`` of a batch: ``events[2].name``,
#: ``events.2.name``, ``/events/2/name`` (JSON Pointer), with an optional ``$.`` / ``body.``.
_INDEXED_FIELD: Final = re.compile(
    r"^(?:\$\.|body\.|/body/|/)?events(?:\[(\d+)\]|\.(\d+)|/(\d+))(?=$|[.\[/])"
)
# One encoder for every body: json.dumps with options builds a new one per call.
_ENCODER: Final = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
# The encoder's own string writer (ensure_ascii=False), for the event's name and user.
_string: Final = json.encoder.encode_basestring
#: How much of a body that is no error envelope is kept as the error's message.
_SNIPPET_CHARS: Final = 200
#: How much of such a body is read for it (whitespace runs collapse to one space).
_SNIPPET_SCAN: Final = 64 * 1024
#: What stands in for the API key wherever a server (or proxy) echoed it back.
SCRUBBED: Final = "[redacted]"


@dataclass(frozen=True, slots=True)
class Request:
    """One POST, fixed once built: a retry sends the same key and the same bytes."""

    path: str
    key: str
    body: bytes
    events: tuple[Event, ...]

    @property
    def weight(self) -> int:
        """How much room it takes in the backlog: its events, or 1 for a user upsert."""
        return len(self.events) if self.path == EVENTS_PATH else 1


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One entry of an error envelope ``{"errors": [{code, message, field?}]}``."""

    code: str | None
    message: str
    field: str | None


def _dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _dict_writer() -> Callable[[dict[str, Any]], str]:
    """What ``_ENCODER.encode`` writes for a dict, through one C encoder made once.

    ``JSONEncoder.encode`` builds a C encoder at every call, which costs more than
    encoding a small dict. ``json.encoder.c_make_encoder`` is private (None without
    the ``_json`` module), so it is used only if it writes a sample exactly as the
    public encoder does; else the public encoder is. It is made without the
    circular-reference check, whose state cannot be shared between threads: a
    value it cannot write (a cycle among them) is written again by the public
    encoder, so the error raised is the one json.dumps raises.
    """
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # private: checked below
    if make is None:
        return _ENCODER.encode
    sample = {"s": 'é"\n\u2028', "n": [1, -2.5, True, False, None], "d": {"k": {}}}
    try:
        write = make(None, _ENCODER.default, _string, None, ":", ",", False, False, False)
        if "".join(write(sample, 0)) != _ENCODER.encode(sample):
            return _ENCODER.encode
    except Exception:  # noqa: BLE001 - no C encoder, or another signature
        return _ENCODER.encode

    def write_dict(value: dict[str, Any]) -> str:
        try:
            return "".join(write(value, 0))
        except Exception:  # noqa: BLE001 - raise exactly what the public encoder raises
            return _ENCODER.encode(value)

    return write_dict


_write_dict: Final = _dict_writer()


def encode_event(event: Event) -> bytes:
    """The event's wire JSON (raises ValueError/TypeError if it is not strict JSON).

    The bytes of ``to_wire()`` encoded compactly, written around the encoded
    properties without building that dict: this runs once per event.
    """
    user, name, properties = event.user_id, event.name, event.properties
    if type(user) is not str or type(name) is not str:
        return _dumps(event.to_wire())  # an Event made by hand with other types
    props = properties if type(properties) is dict else dict(properties)
    when = wire_time(event.occurred_at)  # digits and ASCII marks only: nothing to escape
    return (
        f'{{"external_user_id":{_string(user)},"name":{_string(name)},'
        f'"properties":{_write_dict(props)},"occurred_at":"{when}"}}'
    ).encode()


def event_requests(
    events: Sequence[Event], encoded: Sequence[bytes], batch_size: int
) -> list[Request]:
    """``/events/batch`` requests of at most ``batch_size`` events and MAX_REQUEST_BYTES.

    ``encoded[i]`` is ``events[i]``'s JSON (see :func:`encode_event`).
    """
    count = len(events)
    # The common case, one request: the limits checked once for the whole, not per event
    # (the body is the events, a comma between each, and 15 bytes around them).
    if 0 < count <= batch_size and sum(map(len, encoded)) + count + 14 < MAX_REQUEST_BYTES:
        return [events_request(events, encoded)]
    requests = []
    first = size = 0
    for index, data in enumerate(encoded):
        if index > first and (
            index - first >= batch_size or size + len(data) + 16 > MAX_REQUEST_BYTES
        ):
            requests.append(events_request(events[first:index], encoded[first:index]))
            first, size = index, 0
        size += len(data) + 1
    if count > first:
        requests.append(events_request(events[first:], encoded[first:]))
    return requests


def events_request(events: Sequence[Event], encoded: Sequence[bytes]) -> Request:
    """One batch request; its key is derived from exactly these event ids."""
    body = b'{"events":[' + b",".join(encoded) + b"]}"
    key = idempotency_key(EVENTS_PATH, (e.event_id for e in events))
    return Request(EVENTS_PATH, key, body, tuple(events))


def user_requests(events: Sequence[Event]) -> list[Request]:
    """One ``/users`` upsert per user whose events carry traits, later traits winning."""
    merged: dict[str, tuple[dict[str, Any], list[Event]]] = {}
    for event in events:
        if event.traits is None:
            continue
        traits, sources = merged.setdefault(event.user_id, ({}, []))
        traits.update(event.traits)
        sources.append(event)
    requests = []
    for sources_traits, sources in merged.values():
        first = sources[0]
        upsert = Event(first.name, first.user_id, {}, first.occurred_at, "", sources_traits)
        key = idempotency_key(USERS_PATH, (e.event_id for e in sources))
        requests.append(Request(USERS_PATH, key, _dumps(upsert.user_upsert()), tuple(sources)))
    return requests


def split_request(request: Request) -> tuple[Request, Request]:
    """Two halves of a batch (at least two events), in order, each with its own key."""
    events = request.events
    middle = len(events) // 2
    halves = events[:middle], events[middle:]
    first, second = (events_request(part, [encode_event(e) for e in part]) for part in halves)
    return first, second


def accepted_envelope(payload: bytes) -> bool:
    """Whether a 2xx body is the API's own answer: a JSON object with a ``data`` object."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get("data"), dict)


def declined_envelope(payload: bytes) -> bool:
    """Whether the API's envelope says ``"accepted": false`` (the contract says it never does)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("data"), dict)
        and (data["data"].get("accepted") is False)
    )


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every copy of ``secret`` (the API key) replaced: servers echo headers."""
    return text.replace(secret, SCRUBBED) if secret else text


def snippet(payload: bytes, secret: str | None = None) -> str:
    """The start of a body as one line of text, with the key scrubbed before it is cut."""
    text = scrub(" ".join(payload[:_SNIPPET_SCAN].decode("utf-8", "replace").split()), secret)
    cut = len(payload) > _SNIPPET_SCAN or len(text) > _SNIPPET_CHARS
    return _without_partial_key(text[:_SNIPPET_CHARS], secret) if cut else text


def _without_partial_key(text: str, secret: str | None) -> str:
    """A cut text may end with the start of the key: drop that start."""
    if secret:
        for size in range(min(len(secret) - 1, len(text)), 0, -1):
            if text.endswith(secret[:size]):
                return text[:-size]
    return text


def error_details(payload: bytes, secret: str | None = None) -> list[ErrorDetail]:
    """Every entry of an error envelope, tolerating anything a server (or a proxy) sends.

    A body that is no envelope gives one detail whose message is the body's start.
    Server text never carries ``secret`` out: a server that echoes headers would.
    """
    try:
        entries = json.loads(payload)["errors"]
        details = [_entry(entry, secret) for entry in entries] if isinstance(entries, list) else []
    # RecursionError: json.loads gives up on deeply nested junk (a proxy's, or a hostile body).
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        details = []
    return details or [ErrorDetail(None, snippet(payload, secret), None)]


def _entry(entry: Any, secret: str | None) -> ErrorDetail:
    code, message, field = entry.get("code"), entry.get("message"), entry.get("field")
    if isinstance(field, list) and all(isinstance(p, str | int) for p in field):
        field = ".".join(str(part) for part in field)  # a location list: ["events", 2, "name"]
    index = entry.get("index")
    if field is None and isinstance(index, int) and not isinstance(index, bool):
        field = f"events[{index}]"  # the bulk endpoints' per-record form
    return ErrorDetail(
        scrub(code, secret) if isinstance(code, str) else None,
        scrub(message, secret) if isinstance(message, str) else "",
        scrub(field, secret) if isinstance(field, str) else None,
    )


def error_detail(payload: bytes, secret: str | None = None) -> ErrorDetail:
    """The first entry of an error envelope (see ``error_details``)."""
    return error_details(payload, secret)[0]


def failed_event_index(field: str | None, count: int) -> int | None:
    """The event a field path names (``events[3].name`` -> 3), if it is one of ``count``."""
    match = _INDEXED_FIELD.match(field or "")
    if match is None:
        return None
    index = int(next(group for group in match.groups() if group is not None))
    return index if index < count else None


def failed_event_indexes(fields: Sequence[str | None], count: int) -> list[int]:
    """The distinct events of ``count`` that the field paths name, in order."""
    found = {failed_event_index(field, count) for field in fields}
    return sorted(index for index in found if index is not None)
