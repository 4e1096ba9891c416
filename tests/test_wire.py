"""Requests on the wire: chunking, bodies, user upserts and error envelopes."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from vf_otel._delivery.wire import (
    EVENTS_PATH,
    MAX_REQUEST_BYTES,
    USERS_PATH,
    ErrorDetail,
    Request,
    encode_event,
    error_detail,
    event_requests,
    failed_event_index,
    user_requests,
)
from vf_otel._event.model import Event, idempotency_key

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make(
    index: int,
    *,
    user: str = "usr_1",
    traits: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> Event:
    """An event with id ``e<index>``."""
    return Event(f"evt_{index}", user, properties or {"i": index}, WHEN, f"e{index}", traits)


def encoded(events: list[Event]) -> list[tuple[Event, bytes]]:
    """Each event paired with its wire JSON."""
    return [(event, encode_event(event)) for event in events]


def requests_for(pairs: list[tuple[Event, bytes]], batch_size: int) -> list[Request]:
    """event_requests() of events paired with their JSON."""
    return event_requests([e for e, _ in pairs], [d for _, d in pairs], batch_size)


def test_encode_event_is_compact_strict_json() -> None:
    """An event encodes to compact UTF-8 JSON of its wire form."""
    event = make(1, properties={"city": "Zürich"})
    data = encode_event(event)
    assert json.loads(data) == event.to_wire()
    assert b" " not in data
    assert "Zürich".encode() in data


def test_encode_event_refuses_nan() -> None:
    """An event that is not strict JSON raises instead of producing NaN."""
    with pytest.raises(ValueError, match="JSON"):
        encode_event(make(1, properties={"x": float("nan")}))


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [(0, 5, []), (1, 5, [1]), (5, 5, [5]), (6, 5, [5, 1]), (12, 5, [5, 5, 2]), (3, 1, [1, 1, 1])],
)
def test_chunked_by_batch_size(count: int, batch_size: int, sizes: list[int]) -> None:
    """Events are split into requests of at most batch_size, in order."""
    events = [make(i) for i in range(count)]
    requests = list(requests_for(encoded(events), batch_size))
    assert [len(r.events) for r in requests] == sizes
    assert [e for r in requests for e in r.events] == events


def test_body_is_exactly_events_list() -> None:
    """A body is valid JSON with the single key "events" holding the wire forms."""
    events = [make(i) for i in range(3)]
    (request,) = requests_for(encoded(events), 500)
    assert request.path == EVENTS_PATH
    assert json.loads(request.body) == {"events": [e.to_wire() for e in events]}
    assert request.weight == 3


def test_key_derived_from_event_ids() -> None:
    """Each request's key is the idempotency key of exactly its event ids."""
    events = [make(i) for i in range(4)]
    first, second = requests_for(encoded(events), 2)
    assert first.key == idempotency_key(EVENTS_PATH, ["e0", "e1"])
    assert second.key == idempotency_key(EVENTS_PATH, ["e2", "e3"])


def test_keys_stay_the_same_across_versions() -> None:
    """A key is a fixed function of its ids: a request spooled by an older version is deduped."""
    assert idempotency_key(EVENTS_PATH, ["e0", "e1"]) == "1c753be7-4dc4-4a69-ab53-13ef0e33f6ff"
    assert idempotency_key(USERS_PATH, ["e0"]) == "555eda74-c010-4788-94e6-fd184ef70bf2"


def test_rebuilding_gives_identical_requests() -> None:
    """The same events give byte-identical bodies and the same keys every time."""
    events = [make(i, properties={"tags": ["b", "a"], "n": i}) for i in range(7)]
    assert list(requests_for(encoded(events), 3)) == list(requests_for(encoded(events), 3))


def test_chunked_by_request_bytes() -> None:
    """Large events are split so no body exceeds MAX_REQUEST_BYTES, whatever batch_size."""
    blob = "x" * 60_000
    events = [make(i, properties={"blob": blob}) for i in range(40)]
    requests = list(requests_for(encoded(events), 500))
    assert len(requests) > 1
    assert all(len(r.body) <= MAX_REQUEST_BYTES for r in requests)
    assert [e for r in requests for e in r.events] == events
    for request in requests:
        assert len(json.loads(request.body)["events"]) == len(request.events)
    # Greedy packing: each request but the last had no room for the next event.
    for request, following in itertools.pairwise(requests):
        next_size = len(encode_event(following.events[0]))
        assert len(request.body) + next_size + 1 > MAX_REQUEST_BYTES


@pytest.mark.parametrize(("extra", "requests"), [(0, 1), (1, 2)])
def test_one_request_shortcut_splits_where_the_loop_does(extra: int, requests: int) -> None:
    """A batch is one request exactly while the event-by-event packing would keep it one."""

    def padded(index: int, target: int) -> tuple[Event, bytes]:
        event = make(index, properties={"p": ""})
        event = make(index, properties={"p": "y" * (target - len(encode_event(event)))})
        return event, encode_event(event)

    # Packing keeps event i while (bytes so far + a comma each) + its bytes + 16 fit.
    first = padded(0, 200)
    second = padded(1, MAX_REQUEST_BYTES - 16 - (200 + 1) + extra)
    assert len(list(requests_for([first, second], 500))) == requests
    # The loop alone (a batch over batch_size never takes the shortcut) agrees.
    alone = [padded(i, 50) for i in range(2, 4)]
    chunks = list(requests_for([first, second, *alone], 3))
    assert len(chunks[0].events) == (2 if requests == 1 else 1)


def test_request_bytes_limit_at_the_edge() -> None:
    """Events that exactly fill the limit stay in one request; one byte more splits it."""
    overhead = len(b'{"events":[') + len(b"]}")

    def sized(index: int, target: int) -> tuple[Event, bytes]:
        event = make(index, properties={"p": ""})
        pad = target - len(encode_event(event))
        event = make(index, properties={"p": "y" * pad})
        data = encode_event(event)
        assert len(data) == target
        return event, data

    half = (MAX_REQUEST_BYTES - overhead - 1) // 2
    pair = [sized(0, half), sized(1, MAX_REQUEST_BYTES - overhead - 1 - half - 32)]
    assert len(list(requests_for(pair, 500))) == 1
    too_big = [sized(0, half), sized(1, MAX_REQUEST_BYTES - half)]
    requests = list(requests_for(too_big, 500))
    assert [len(r.events) for r in requests] == [1, 1]


def test_user_requests_one_per_user_later_traits_win() -> None:
    """Traits are merged per user, later events overriding earlier keys."""
    events = [
        make(0, user="a", traits={"plan": "trial", "email": "a@x.io"}),
        make(1, user="b", traits={"plan": "pro"}),
        make(2, user="a"),
        make(3, user="a", traits={"plan": "pro", "seats": 3}),
    ]
    requests = user_requests(events)
    bodies = {json.loads(r.body)["external_user_id"]: json.loads(r.body) for r in requests}
    assert bodies == {
        "a": {"external_user_id": "a", "email": "a@x.io", "traits": {"plan": "pro", "seats": 3}},
        "b": {"external_user_id": "b", "traits": {"plan": "pro"}},
    }
    assert all(r.path == USERS_PATH and r.weight == 1 for r in requests)


def test_user_request_keys_from_source_events() -> None:
    """A user upsert's key comes from the ids of the events whose traits it carries."""
    events = [make(0, user="a", traits={"x": 1}), make(1, user="a"), make(2, user="a", traits={})]
    (request,) = user_requests(events)
    assert request.key == idempotency_key(USERS_PATH, ["e0", "e2"])
    assert [e.event_id for e in request.events] == ["e0", "e2"]
    assert request.key != idempotency_key(EVENTS_PATH, ["e0", "e2"])


def test_no_traits_no_user_requests() -> None:
    """Events without traits produce no upserts."""
    assert user_requests([make(0), make(1)]) == []


def test_user_requests_do_not_mutate_event_traits() -> None:
    """Merging traits leaves each event's own traits unchanged."""
    first = make(0, traits={"plan": "trial"})
    second = make(1, traits={"plan": "pro"})
    user_requests([first, second])
    assert first.traits == {"plan": "trial"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"errors":[{"code":"validation_failed","message":"required","field":"events[2].name"}]}',
            ErrorDetail("validation_failed", "required", "events[2].name"),
        ),
        (
            b'{"errors":[{"code":"auth_required","message":"no"}]}',
            ErrorDetail("auth_required", "no", None),
        ),
        (b'{"errors":[{"code":5,"message":["x"],"field":7}]}', ErrorDetail(None, "", None)),
        (b'{"errors":[{"code":"a"},{"code":"b"}]}', ErrorDetail("a", "", None)),
    ],
    ids=["full", "no-field", "wrong-types", "first-wins"],
)
def test_error_detail_envelope(payload: bytes, expected: ErrorDetail) -> None:
    """The first error entry's code, message and field are read, if of the right type."""
    assert error_detail(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b"null",
        b"[]",
        b'"errors"',
        b'{"errors":[]}',
        b'{"errors":{}}',
        b'{"errors":"boom"}',
        b'{"errors":[1]}',
        b'{"errors":[null]}',
        b'{"data":1}',
        b"\xff\xfe\x00junk",
        b"[" * 100_000,
        b'{"a":' * 100_000,
    ],
    ids=[
        "empty", "html", "null", "list", "string", "no-entries", "dict", "str-errors",
        "int-entry", "null-entry", "no-errors", "binary", "deep-list", "deep-dict",
    ],
)  # fmt: skip
def test_error_detail_tolerates_junk(payload: bytes) -> None:
    """Any body that is not an error envelope gives a detail with no code or field."""
    detail = error_detail(payload)
    assert detail.code is None
    assert detail.field is None
    assert isinstance(detail.message, str)
    assert len(detail.message) <= 200


def test_error_detail_junk_message_is_body_prefix() -> None:
    """For a non-envelope body the message is the start of the body as text."""
    assert error_detail(b"<html>Bad Gateway</html>").message == "<html>Bad Gateway</html>"


@pytest.mark.parametrize(
    ("field", "count", "expected"),
    [
        ("events[3].name", 5, 3),
        ("events[0]", 1, 0),
        ("events[0].properties.plan", 2, 0),
        ("events[5].name", 5, None),
        ("events[12].name", 5, None),
        ("events[-1].name", 5, None),
        ("events.name", 5, None),
        ("name", 5, None),
        ("external_user_id", 5, None),
        ("xevents[1]", 5, None),
        ("", 5, None),
        (None, 5, None),
    ],
)
def test_failed_event_index(field: str | None, count: int, expected: int | None) -> None:
    """Only an events[i] field naming one of the request's events gives an index."""
    assert failed_event_index(field, count) == expected
