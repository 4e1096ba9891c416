"""What an answer means, as pure functions: envelopes, field paths, size, foreign 2xx, secrets."""

from __future__ import annotations

import httpx
import pytest

from vf_otel._delivery.client import (
    NOT_THE_API,
    REDIRECT,
    error_for,
    foreign_answer,
    isolatable,
    redirected,
    retryable,
    too_large,
)
from vf_otel._delivery.ledger import Ledger
from vf_otel._delivery.wire import (
    SCRUBBED,
    ErrorDetail,
    accepted_envelope,
    error_details,
    failed_event_index,
    failed_event_indexes,
    snippet,
)
from vf_otel._errors import (
    AuthError,
    NetworkError,
    ServerError,
    UndeliveredError,
    ValidationError,
    VibefollowError,
)

KEY = "sk_live_ANSWERStest0123456789abcdefghijk"
REQUEST = httpx.Request("POST", "https://api.vibefollow.com/api/v1/events/batch")


def response(status: int, **kwargs: object) -> httpx.Response:
    """An answer to the batch request above."""
    return httpx.Response(status, request=REQUEST, **kwargs)  # type: ignore[arg-type]


# -- the error envelope -------------------------------------------------------------------


def test_every_entry_of_the_envelope_is_read() -> None:
    """All entries come back, in order, each with its code, message and field."""
    payload = (
        b'{"errors":[{"code":"validation_failed","message":"required","field":"events[2].name"},'
        b'{"code":"validation_failed","message":"bad","field":"events.4.properties"},'
        b'{"code":"validation","message":"x"}]}'
    )
    assert error_details(payload) == [
        ErrorDetail("validation_failed", "required", "events[2].name"),
        ErrorDetail("validation_failed", "bad", "events.4.properties"),
        ErrorDetail("validation", "x", None),
    ]


def test_location_lists_and_indexes_become_field_paths() -> None:
    """A field given as a location list, or only an index, becomes a field path."""
    payload = b'{"errors":[{"field":["body","events",3,"name"]},{"index":5,"message":"m"}]}'
    assert [d.field for d in error_details(payload)] == ["body.events.3.name", "events[5]"]


@pytest.mark.parametrize(
    "payload",
    [b"", b"<html>502</html>", b'{"errors":[]}', b'{"errors":{}}', b"[", b'{"errors":[1]}'],
)
def test_a_body_that_is_no_envelope_gives_one_detail_without_code(payload: bytes) -> None:
    """Junk gives exactly one detail: no code, no field, the body's start as the message."""
    (detail,) = error_details(payload)
    assert (detail.code, detail.field) == (None, None)
    assert len(detail.message) <= 200


@pytest.mark.parametrize(
    ("field", "count", "expected"),
    [
        ("events[2].name", 5, 2),
        ("events.2.name", 5, 2),
        ("/events/2/name", 5, 2),
        ("events[2]", 5, 2),
        ("events.2", 5, 2),
        ("/events/2", 5, 2),
        ("$.events[2].properties.plan", 5, 2),
        ("body.events.2.name", 5, 2),
        ("/body/events/2/name", 5, 2),
        ("events.12.name", 5, None),
        ("events.2x.name", 5, None),
        ("events/2/name", 5, 2),
        ("/events/name", 5, None),
        ("xevents.2", 5, None),
    ],
)
def test_field_path_forms(field: str, count: int, expected: int | None) -> None:
    """events[i].x, events.i.x and /events/i/x (with optional $. or body) name event i."""
    assert failed_event_index(field, count) == expected


def test_indexes_are_distinct_sorted_and_in_range() -> None:
    """Several fields naming events give each event once, in order, out-of-range ones dropped."""
    fields = ["events[4].name", "events.1.x", "/events/4/y", None, "name", "events[9].z"]
    assert failed_event_indexes(fields, 5) == [1, 4]


# -- what each answer means ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (VibefollowError("HTTP 413", status=413), True),
        (VibefollowError("HTTP 413 <html>", status=413, code=None), True),
        (VibefollowError("HTTP 400: x", status=400, code="payload_too_large"), True),
        (VibefollowError("HTTP 400: Request body exceeds 1 MB", status=400), True),
        (VibefollowError("HTTP 400: request size limit", status=400), True),
        (VibefollowError("HTTP 400: not JSON", status=400, code="invalid_json"), False),
        (VibefollowError("HTTP 404", status=404), False),
        (VibefollowError("HTTP 422: too large", status=422), False),
    ],
)  # fmt: skip
def test_too_large(error: VibefollowError, expected: bool) -> None:
    """413 always, a 400 only when its code or message speaks of size."""
    assert too_large(error) is expected


def test_what_is_retried_held_or_isolated() -> None:
    """Status 0 (incl. foreign 2xx), 408, 429 and 5xx retry; 3xx holds; a 422 isolates
    unless reuse."""
    assert retryable(NetworkError("x", code=NOT_THE_API))
    assert retryable(VibefollowError("x", status=408))
    assert not retryable(VibefollowError("x", status=400))
    assert retryable(ServerError("x", status=520))
    assert not retryable(VibefollowError("x", status=301))
    assert redirected(VibefollowError("x", status=308))
    assert not redirected(VibefollowError("x", status=400))
    assert isolatable(ValidationError("x", status=422))
    assert not isolatable(ValidationError("x", status=422, code="idempotency_key_reuse"))
    assert not isolatable(ValidationError("x", status=409))


def test_a_422_carries_every_field_and_says_how_many_more() -> None:
    """error_for reads the whole envelope: fields in order, the count of the others."""
    body = {"errors": [{"code": "v", "message": "m", "field": f"events[{i}].name"} for i in (3, 1)]}
    error = error_for(response(422, json=body))
    assert isinstance(error, ValidationError)
    assert error.fields == ("events[3].name", "events[1].name")
    assert error.field == "events[3].name"
    assert str(error) == "HTTP 422 v: m (and 1 more error)"


def test_a_redirect_names_where_it_points_without_the_key() -> None:
    """A 3xx becomes a redirect error naming the Location, the key scrubbed from it."""
    answer = response(308, headers={"Location": f"https://x.example/?k={KEY}"})
    error = error_for(answer, KEY)
    assert (type(error), error.status, error.code) == (VibefollowError, 308, REDIRECT)
    assert str(error) == f"HTTP 308 redirect to https://x.example/?k={SCRUBBED}"


def test_an_echoed_key_is_scrubbed_from_code_message_and_field() -> None:
    """A server echoing the Authorization header gets it scrubbed from every text it sent."""
    entry = {"code": KEY, "message": f"Bearer {KEY}", "field": f"events[0].{KEY}"}
    for status in (400, 401, 422, 429, 503):
        error = error_for(response(status, json={"errors": [entry]}), KEY)
        assert KEY not in repr(error)
        assert KEY not in str(getattr(error, "field", ""))
    assert isinstance(error_for(response(401, json={"errors": [entry]}), KEY), AuthError)


def test_a_long_page_echoing_the_key_is_scrubbed_before_it_is_cut() -> None:
    """The key is scrubbed before the message is cut, so not even its start remains."""
    for lead in range(170, 200, 3):
        text = snippet(b"x" * lead + KEY.encode() + b" tail", KEY)
        assert KEY[:6] not in text
        assert len(text) <= 200


def test_a_huge_page_is_cut_without_leaving_the_start_of_the_key() -> None:
    """A body longer than what is read for the message ends without a partial key."""
    body = b" " * (64 * 1024 - 10) + KEY.encode()
    assert snippet(body, KEY) == ""


# -- a 2xx that is not the API's ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"data":{"accepted":true}}', True),
        (b'{"data":{"accepted":487,"rejected":13},"meta":{"received":500}}', True),
        (b'{"data":{}}', True),
        (b'{"accepted":true}', False),
        (b'{"data":true}', False),
        (b"[]", False),
        (b"", False),
        (b"<html>ok</html>", False),
        (b'{"data": ', False),
        (b"[" * 100_000, False),
    ],
)
def test_accepted_envelope(payload: bytes, expected: bool) -> None:
    """Only a JSON object with a ``data`` object is the API's answer."""
    assert accepted_envelope(payload) is expected


def test_a_foreign_2xx_is_a_network_error_naming_status_type_and_title() -> None:
    """A captive portal's page: status 0 (retry), its status, content type and title."""
    html = f"<html><head><title>Sign in\n to WiFi</title></head><body>{KEY}</body></html>"
    error = foreign_answer(response(200, html=html), KEY)
    assert (error.status, error.code) == (0, NOT_THE_API)
    assert str(error) == (
        "HTTP 200 that is not the Vibefollow API's answer (text/html; charset=utf-8): "
        "Sign in to WiFi"
    )
    plain = foreign_answer(response(202, content=f"oops {KEY}".encode()), KEY)
    assert KEY not in str(plain)
    assert "(no Content-Type)" in str(plain)


# -- the cause of what is given up ------------------------------------------------------


def test_undelivered_carries_the_last_error_as_its_cause() -> None:
    """An UndeliveredError made after a refused key names it and chains it as the cause."""
    ledger = Ledger(None)
    assert ledger.undelivered("gone").__cause__ is None
    refused = AuthError("HTTP 401 auth_required: key revoked", status=401, code="auth_required")
    ledger.last_error = refused
    error = ledger.undelivered("not delivered before shutdown")
    assert isinstance(error, UndeliveredError)
    assert error.status == 0
    assert error.__cause__ is refused
    assert str(error) == (
        "not delivered before shutdown; the last error was: HTTP 401 auth_required: key revoked"
    )
