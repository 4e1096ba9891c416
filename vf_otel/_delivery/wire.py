"""Events to requests on the wire: ``before_send``, bodies, chunks, keys, error envelopes."""

from __future__ import annotations

import itertools
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from .._config import Settings
from .._errors import UndeliveredError, ValidationError
from .._event.build import SAME_AS_IDENTIFY, build_batch, email_problem, is_identify
from .._event.model import Event, idempotency_key, wire_time
from .._event.values import KeyCollisions
from ..typing import BeforeSend

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "EVENTS_PATH",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "NO_BASE_URL_TEXT",
    "SCRUBBED",
    "USERS_PATH",
    "ErrorDetail",
    "Request",
    "Screen",
    "accepted_envelope",
    "build_counted",
    "declined_envelope",
    "encode_event",
    "error_detail",
    "error_details",
    "event_requests",
    "failed_event_index",
    "failed_event_indexes",
    "prepare",
    "scrub",
    "snippet",
    "split_request",
    "user_requests",
]


# Requests as they go on the wire: bodies, chunks, idempotency keys, error envelopes.

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
    ``tests/test_properties_hypothesis.py::test_encode_event_writes_the_bytes_of_json_dumps``
    holds it to ``json.dumps``; what it buys: ``benchmarks/fast_paths.py``, encode rows.
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
    key = idempotency_key(EVENTS_PATH, map(_EVENT_ID, events))
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


# Events to requests: encode each once, refuse what cannot go (counted), then chunk.

#: ``Pace.in_steps``: ``encode`` over the events a few at a time, pausing in between.
InSteps = Callable[
    [Callable[[list[Event]], list[bytes | None]], list[Event]],
    list[bytes | None],
]

_TRAITS: Final = operator.attrgetter("traits")
_FIRST: Final = operator.itemgetter(0)
_SECOND: Final = operator.itemgetter(1)
_EVENT_ID: Final = operator.attrgetter("event_id")
_NAME: Final = operator.attrgetter("name")

#: Why nothing is sent when VIBEFOLLOW_BASE_URL was invalid (the value is never quoted).
NO_BASE_URL_TEXT: Final = (
    "VIBEFOLLOW_BASE_URL is invalid: nothing is sent until it is fixed "
    "(run `vf-otel doctor` for the reason)"
)


def prepare(
    events: Sequence[Event],
    settings: Settings,
    ledger: Ledger,
    in_steps: InSteps | None = None,
    measured: Callable[[int, int], None] | None = None,
) -> list[Request]:
    """User upserts first, then batches; an unencodable or oversized event is dropped alone.

    ``in_steps`` (the worker's ``Pace.in_steps``) encodes a few events at a time, letting
    the app's threads run in between; without it, all at once. ``measured(events, bytes)``
    is told the JSON size of the events encoded (oversized ones too), a chunk at a time.
    """
    if not settings.has_base_url:
        # An invalid VIBEFOLLOW_BASE_URL: no host is the right one, so nothing goes out.
        ledger.drop("invalid_base_url", events, UndeliveredError(NO_BASE_URL_TEXT))
        return []

    def encode(chunk: list[Event]) -> list[bytes | None]:
        # Each event's JSON, in a loop that runs in C; None for one dropped (and counted).
        try:
            bodies: list[bytes | None] = list(map(encode_event, chunk))
        except Exception:  # noqa: BLE001 - one cannot be encoded: each on its own, in order
            bodies, size = [], 0
            for event in chunk:
                data = _encoded_or_dropped(event, ledger)
                size += 0 if data is None else len(data)
                bodies.append(_within_limit(event, data, ledger))
            if measured is not None:
                measured(len(chunk), size)
            return bodies
        sizes = list(map(len, cast("list[bytes]", bodies)))
        if measured is not None:
            measured(len(chunk), sum(sizes))
        if sizes and max(sizes) > MAX_EVENT_BYTES:
            pairs = zip(chunk, bodies, strict=True)
            bodies = [_within_limit(event, data, ledger) for event, data in pairs]
        return bodies

    chosen = list(events)
    encoded = encode(chosen) if in_steps is None else in_steps(encode, chosen)
    if None in encoded:
        pairs = [pair for pair in zip(chosen, encoded, strict=True) if pair[1] is not None]
        kept, bodies = list(map(_FIRST, pairs)), list(map(_SECOND, pairs))
    else:
        kept, bodies = chosen, cast("list[bytes]", encoded)
    # Passes in C over the batch: most carry no traits and no identify().
    # (``is not``: a traits mapping's own __eq__ is never run.)
    has_traits = any(map(operator.is_not, map(_TRAITS, kept), itertools.repeat(None)))
    requests = _upserts(kept, ledger) if has_traits else []
    if True in map(SAME_AS_IDENTIFY, map(_NAME, kept)):
        # An identify() is only its user upsert: it never goes out as an event.
        pairs = [pair for pair in zip(kept, bodies, strict=True) if not is_identify(pair[0].name)]
        kept, bodies = [event for event, _ in pairs], [data for _, data in pairs]
    requests += event_requests(kept, bodies, settings.batch_size)
    return requests


def _encoded_or_dropped(event: Event, ledger: Ledger) -> bytes | None:
    """``encode_event(event)``, or None with the event dropped as ``unserializable``."""
    try:
        return encode_event(event)
    except Exception as exc:  # noqa: BLE001 - one bad event must not sink the batch
        error = ValidationError(f"not serialisable as JSON: {exc}", status=0, field="properties")
        ledger.drop("unserializable", [event], error)
        return None


def _within_limit(event: Event, data: bytes | None, ledger: Ledger) -> bytes | None:
    """``data``, or None with ``event`` dropped as ``event_too_large`` (over MAX_EVENT_BYTES)."""
    if data is None or len(data) <= MAX_EVENT_BYTES:
        return data
    error = ValidationError(
        f"event is {len(data)} bytes as JSON, over {MAX_EVENT_BYTES}",
        status=0,
        field="properties",
    )
    ledger.drop("event_too_large", [event], error)
    return None


def _upserts(events: Sequence[Event], ledger: Ledger) -> list[Request]:
    """One merged upsert per user; a user whose traits cannot be encoded loses only theirs."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        if event.traits is not None:
            by_user.setdefault(event.user_id, []).append(event)
    requests: list[Request] = []
    for user_events in by_user.values():
        merged: dict[str, object] = {}
        for event in user_events:
            merged.update(event.traits or {})
        problem = email_problem(merged)
        if problem is not None:
            # The API would refuse the upsert: it alone is lost; the events still go.
            ledger.upsert_failed(ValidationError(problem, status=0, field="traits.email"))
            continue
        try:
            requests.extend(user_requests(user_events))
        except Exception as exc:  # noqa: BLE001 - one user's traits must not sink the batch
            error = ValidationError(
                f"traits not serialisable as JSON: {exc}", status=0, field="traits"
            )
            ledger.upsert_failed(error)
    return requests


# Between building and sending: the worker's build of queued items, and ``before_send``.
#
# Both count what they leave out on the pipeline's ledger: a refused log call by
# its reason, values lost to keys that became one string, an event the app's
# ``before_send`` left out (``filtered``, the app's choice) or failed on
# (``before_send_failed``, a loss, reported to ``on_error``: it raised, or returned
# something other than None or an Event whose fields have the types Event declares).


def build_counted(items: Sequence[object], ledger: Ledger) -> list[Event]:
    """The Events for queued items, in order; every refusal and key collision is counted."""
    collisions = KeyCollisions()  # values lost to keys that became the same string
    events, refused = build_batch(items, collisions)
    for rejection in refused:
        if rejection.cause is not None:  # a failure no check foresaw: a bug to report as one
            ledger.error("build", "vf-otel could not build an event", exc_info=rejection.cause)
            error = UndeliveredError(f"could not build an event: {rejection.message}")
            ledger.drop("internal_error", (), error, count=1)
        else:
            ledger.reject(rejection.reason, rejection.field, rejection.message)
    ledger.keys_collided(collisions)
    return events


class Screen:
    """The app's ``before_send``: what it keeps, as it rewrote it; everything without one."""

    __slots__ = ("_before_send", "_ledger")

    def __init__(self, before_send: BeforeSend | None, ledger: Ledger) -> None:
        self._before_send = before_send
        self._ledger = ledger

    def __call__(self, events: Sequence[Event]) -> list[Event]:
        before_send = self._before_send
        if before_send is None:
            return list(events)
        ledger = self._ledger
        kept: list[Event] = []
        left_out = 0
        for event in events:
            try:
                result: object = before_send(event)
            except Exception as exc:  # noqa: BLE001 - the app's hook drops one event, never more
                ledger.error("before_send", "before_send raised", exc_info=True)
                error = UndeliveredError(f"before_send raised {type(exc).__name__}")
                ledger.drop("before_send_failed", [event], error)
                continue
            if result is None:
                left_out += 1
            elif not isinstance(result, Event):
                error = UndeliveredError(
                    f"before_send returned {type(result).__name__}, not an Event or None"
                )
                ledger.drop("before_send_failed", [event], error)
            elif (problem := _malformed(result)) is not None:
                # Not checked again later: a user id that is a list would fail the batch.
                error = UndeliveredError(f"before_send returned an Event whose {problem}")
                ledger.drop("before_send_failed", [event], error)
            else:
                kept.append(result)
        if left_out:
            ledger.filtered(left_out)
        return kept


def _malformed(event: Event) -> str | None:
    """What makes an Event the app rewrote unfit to send (its field types), or None.

    Event does not check its fields (a dataclass), so ``replace(event, user_id=[1])``
    is an Event; read here as plain objects, as the app may have set them.
    """
    for field in ("name", "user_id", "event_id"):
        if not isinstance(getattr(event, field), str):
            return f"{field} is not a str"
    properties: object = event.properties
    traits: object = event.traits
    occurred_at: object = event.occurred_at
    if not isinstance(properties, Mapping):
        return "properties are not a mapping"
    if traits is not None and not isinstance(traits, Mapping):
        return "traits are neither a mapping nor None"
    if not isinstance(occurred_at, datetime):
        return "occurred_at is not a datetime"
    return None
