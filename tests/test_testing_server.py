"""vf_otel.testing.VibefollowServer: a strict Vibefollow API on loopback, over real HTTP."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest

import vf_otel.testing
from vf_otel.testing import DEFAULT_API_KEY, RecordedRequest, VibefollowServer

from .conftest import HANG_GUARD

# Once vf-otel is installed the pytest11 entry point (_vf_otel_pytest) serves the fixture;
# without it, the documented fallback registers it.
if not any(ep.value == "_vf_otel_pytest" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["vf_otel.testing.pytest_plugin"]

ACCEPTED = {"data": {"accepted": True}}


@pytest.fixture
def server(vibefollow_server: VibefollowServer) -> VibefollowServer:
    """The plugin's server under a short name."""
    return vibefollow_server


@pytest.fixture
def client(server: VibefollowServer) -> Iterator[httpx.Client]:
    """An httpx client pointed at the server's /api/v1."""
    with httpx.Client(base_url=server.base_url + "/api/v1", timeout=10.0) as http:
        yield http


def auth(server: VibefollowServer, key: str | None = None, **extra: str) -> dict[str, str]:
    """Valid request headers with a fresh Idempotency-Key, or the one given."""
    return {
        "Authorization": f"Bearer {server.api_key}",
        "Idempotency-Key": key or str(uuid.uuid4()),
        **extra,
    }


def event(**fields: Any) -> dict[str, Any]:
    """A valid event object, with fields overridden or added."""
    return {"external_user_id": "usr_42", "name": "user_signed_up", **fields}


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The single entry of an error envelope."""
    body = response.json()
    assert list(body) == ["errors"]
    assert len(body["errors"]) == 1
    entry: dict[str, Any] = body["errors"][0]
    return entry


def post_batch(
    client: httpx.Client, server: VibefollowServer, events: list[Any], key: str | None = None
) -> httpx.Response:
    """POST /events/batch with valid headers."""
    return client.post("/events/batch", json={"events": events}, headers=auth(server, key))


# -- success ------------------------------------------------------------------------------


def test_accepted_batch_is_recorded_in_arrival_order(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """A valid batch gets 202 {"data":{"accepted":true}} and its events are recorded in order."""
    first = [event(name="a"), event(name="b", properties={"plan": "pro"})]
    second = [event(name="c", occurred_at="2024-01-15T10:00:00.000Z")]
    for events in (first, second):
        response = post_batch(client, server, events)
        assert response.status_code == 202
        assert response.json() == ACCEPTED
        assert response.headers["content-type"] == "application/json"
    assert server.events == first + second
    assert [request.status for request in server.requests] == [202, 202]


def test_single_event_and_user_upsert_are_recorded(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """POST /events records one event and POST /users records one user, both with 202."""
    user = {"external_user_id": "usr_42", "email": "a@example.com", "traits": {"plan": "pro"}}
    assert client.post("/events", json=event(), headers=auth(server)).status_code == 202
    assert client.post("/users", json=user, headers=auth(server)).status_code == 202
    assert server.events == [event()]
    assert server.users == [user]


def test_recorded_values_are_copies(server: VibefollowServer, client: httpx.Client) -> None:
    """Mutating what events returns does not change what the server recorded."""
    post_batch(client, server, [event()])
    server.events[0]["name"] = "changed"
    assert server.events == [event()]


def test_content_type_parameters_are_allowed(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """application/json; charset=utf-8 is accepted."""
    headers = auth(server, **{"Content-Type": "application/json; charset=utf-8"})
    response = client.post("/events", content=json.dumps(event()).encode(), headers=headers)
    assert response.status_code == 202


def test_chunked_body_is_read(server: VibefollowServer, client: httpx.Client) -> None:
    """A chunked request body is reassembled before processing."""
    parts = [b'{"external_user_id": "usr_42",', b' "name": "chunked"}']
    headers = auth(server, **{"Content-Type": "application/json"})
    response = client.post("/events", content=iter(parts), headers=headers)
    assert response.status_code == 202
    assert server.events == [event(name="chunked")]


def test_keep_alive_serves_several_requests_on_one_connection(server: VibefollowServer) -> None:
    """HTTP/1.1 keep-alive: two requests on one connection both get answers."""
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for name in ("one", "two"):
            body = json.dumps(event(name=name))
            headers = auth(server, **{"Content-Type": "application/json"})
            connection.request("POST", "/api/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            assert response.status == 202
            assert json.loads(response.read()) == ACCEPTED
    finally:
        connection.close()
    assert [e["name"] for e in server.events] == ["one", "two"]


# -- routing, auth, headers ---------------------------------------------------------------


def test_unknown_path_is_404_and_other_methods_405(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """Unknown routes answer 404 not_found; a GET on a route answers 405 with Allow: POST."""
    missing = client.post("/events/bulkish", json={}, headers=auth(server))
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    wrong_method = client.get("/events")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert error_of(wrong_method)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer sk_test_wrong_key_0000000000000000000", "Basic abc", "sk_x"],
)
def test_bad_or_missing_key_is_401(
    server: VibefollowServer, client: httpx.Client, authorization: str | None
) -> None:
    """A missing, malformed or wrong key gets 401 auth_required and nothing is recorded."""
    headers = auth(server)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.post("/events", json=event(), headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "auth_required"
    assert server.events == []
    assert server.rejected == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(
    server: VibefollowServer, client: httpx.Client, content_type: str | None
) -> None:
    """Anything but application/json gets 415 unsupported_media_type."""
    headers = auth(server)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post("/events", content=json.dumps(event()).encode(), headers=headers)
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert server.events == []


def test_missing_idempotency_key_is_400(server: VibefollowServer, client: httpx.Client) -> None:
    """No Idempotency-Key header gets 400 idempotency_key_required."""
    headers = auth(server)
    del headers["Idempotency-Key"]
    response = client.post("/events", json=event(), headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "idempotency_key_required"


@pytest.mark.parametrize(
    "key",
    [
        "not-a-uuid",
        uuid.uuid4().hex,
        "{" + str(uuid.uuid4()) + "}",
        str(uuid.uuid4())[:-1],
        str(uuid.uuid1()),
        str(uuid.uuid5(uuid.NAMESPACE_URL, "x")),
        str(uuid.UUID(int=uuid.uuid4().int & ~(0xC << 60))),  # a v4 without the RFC variant
    ],
    ids=["text", "hex", "braces", "short", "v1", "v5", "variant"],
)
def test_invalid_idempotency_key_is_400(
    server: VibefollowServer, client: httpx.Client, key: str
) -> None:
    """A key that is not a canonical version-4 UUID gets 400 invalid_idempotency_key."""
    response = client.post("/events", json=event(), headers=auth(server, key))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_idempotency_key"


@pytest.mark.parametrize(
    "body",
    [
        b'{"external_user_id": "u", "name": ',
        b'{"external_user_id": "u", "name": "n", "properties": {"x": NaN}}',
        b'{"external_user_id": "u", "name": "n", "properties": {"x": -Infinity}}',
        b'{"external_user_id": "u", "name": "n", "properties": {"x": 1e999}}',
        b'{"external_user_id": "\xff", "name": "n"}',
        b'\xef\xbb\xbf{"external_user_id": "u", "name": "n"}',
        b"",
    ],
    ids=["truncated", "nan", "infinity", "overflow", "not-utf8", "bom", "empty"],
)
def test_invalid_json_is_400(server: VibefollowServer, client: httpx.Client, body: bytes) -> None:
    """Bodies that are not strict UTF-8 JSON get 400 invalid_json."""
    headers = auth(server, **{"Content-Type": "application/json"})
    response = client.post("/events", content=body, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert server.requests[0].json is None


@pytest.mark.parametrize(
    ("content_length", "status", "code"),
    [(str(1 << 40), 413, "payload_too_large"), ("ten", 400, "bad_request")],
)
def test_unframeable_body_is_refused_and_closes(
    server: VibefollowServer, content_length: str, status: int, code: str
) -> None:
    """An oversized or unparseable Content-Length is refused unread and the connection closed."""
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/api/v1/events")
        connection.putheader("Content-Length", content_length)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == status
        assert response.getheader("Connection") == "close"
        assert json.loads(response.read())["errors"][0]["code"] == code
    finally:
        connection.close()


def test_unknown_http_method_gets_a_json_error(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """Even requests http.server refuses itself are answered with the JSON error envelope."""
    response = client.request("BREW", "/events")
    assert response.status_code == 501
    assert response.headers["content-type"] == "application/json"
    assert error_of(response)["code"] == "not_implemented"


# -- idempotency --------------------------------------------------------------------------


def test_same_key_and_body_is_replayed(server: VibefollowServer, client: httpx.Client) -> None:
    """A repeat with the same key and body replays the answer and records nothing new."""
    key = str(uuid.uuid4())
    first = post_batch(client, server, [event()], key)
    again = post_batch(client, server, [event()], key)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert server.events == [event()]
    assert server.replayed == 1
    assert [request.replayed for request in server.requests] == [False, True]


def test_concurrent_requests_with_one_key_are_recorded_once(server: VibefollowServer) -> None:
    """Racing requests sharing a key and body are processed once and replayed for the rest."""
    key = str(uuid.uuid4())
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url + "/api/v1", timeout=10.0) as client:
            statuses.append(post_batch(client, server, [event()], key).status_code)

    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == [202] * 8
    assert server.events == [event()]
    assert server.replayed == 7


@pytest.mark.parametrize("reuse_status", [422, 409])
def test_same_key_different_body_is_refused(reuse_status: int) -> None:
    """Reusing a key with another body gets reuse_status with code idempotency_key_reuse."""
    with (
        VibefollowServer(reuse_status=reuse_status) as server,
        httpx.Client(base_url=server.base_url + "/api/v1") as client,
    ):
        key = str(uuid.uuid4())
        post_batch(client, server, [event(name="a")], key)
        response = post_batch(client, server, [event(name="b")], key)
        assert response.status_code == reuse_status
        assert error_of(response) == {
            "code": "idempotency_key_reuse",
            "message": "Idempotency-Key was already used with a different request",
        }
        assert server.events == [event(name="a")]


def test_same_key_on_another_route_is_refused(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """One key cannot serve two endpoints, even with an identical body."""
    key = str(uuid.uuid4())
    body = {"external_user_id": "usr_42"}
    assert client.post("/users", json=body, headers=auth(server, key)).status_code == 202
    response = client.post("/events", json=body, headers=auth(server, key))
    assert error_of(response)["code"] == "idempotency_key_reuse"


def test_validation_failure_is_stored_and_replayed(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """A 422 is remembered under its key: the same request again replays the same 422."""
    key = str(uuid.uuid4())
    first = post_batch(client, server, [event(name="")], key)
    again = post_batch(client, server, [event(name="")], key)
    assert first.status_code == again.status_code == 422
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


def test_refused_requests_do_not_store_the_key(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """After a 401 the same key and body are processed fresh, not replayed."""
    key = str(uuid.uuid4())
    headers = {**auth(server, key), "Authorization": "Bearer nope"}
    assert client.post("/events", json=event(), headers=headers).status_code == 401
    response = client.post("/events", json=event(), headers=auth(server, key))
    assert response.status_code == 202
    assert "idempotent-replayed" not in response.headers
    assert server.events == [event()]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ({"events": []}, "events"),
        ({"events": {"0": event()}}, "events"),
        ({"events": [event()] * 4}, "events"),
        ({"events": [event()], "extra": 1}, "events"),
        ([event()], "events"),
    ],
    ids=["missing", "empty", "not-a-list", "too-big", "extra-key", "bare-list"],
)
def test_bad_batch_envelope_is_422_on_events(body: Any, field: str) -> None:
    """The batch must be {"events": [1..max_batch_size events]}; otherwise 422 field events."""
    with (
        VibefollowServer(max_batch_size=3) as server,
        httpx.Client(base_url=server.base_url + "/api/v1") as client,
    ):
        assert post_batch(client, server, [event()] * 3).status_code == 202
        response = client.post("/events/batch", json=body, headers=auth(server))
        assert response.status_code == 422
        assert error_of(response)["code"] == "validation_failed"
        assert error_of(response)["field"] == field
        assert len(server.events) == 3


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"external_user_id": "usr_1"}, "events[1].name"),
        ({"name": "n"}, "events[1].external_user_id"),
        (event(external_user_id=""), "events[1].external_user_id"),
        (event(external_user_id=42), "events[1].external_user_id"),
        (event(name=None), "events[1].name"),
        (event(properties=[1]), "events[1].properties"),
        (event(properties=None), "events[1].properties"),
        (event(timestamp="2024-01-15T10:00:00.000Z"), "events[1].timestamp"),
        ("not an object", "events[1]"),
    ],
)
def test_bad_event_rejects_whole_batch_with_indexed_field(
    server: VibefollowServer, client: httpx.Client, bad: Any, field: str
) -> None:
    """Invalid events fail the batch with 422, one error per event naming events[i].<field>."""
    response = post_batch(client, server, [event(), bad, {"also": "bad"}])
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field, "events[2].also"]
    assert server.events == []


def test_single_event_fields_have_no_prefix(server: VibefollowServer, client: httpx.Client) -> None:
    """POST /events reports the bare field name, unknown keys included."""
    response = client.post("/events", json=event(colour="red"), headers=auth(server))
    assert response.status_code == 422
    assert error_of(response) == {
        "code": "validation_failed",
        "message": "unknown field",
        "field": "colour",
    }


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2024-01-15T10:00:00Z",
        "2024-01-15T10:00:00.000000Z",
        "2024-01-15T10:00:00.000+00:00",
        "2024-01-15 10:00:00.000Z",
        "2024-13-15T10:00:00.000Z",
        "2024-02-30T10:00:00.000Z",
        "\uff12\uff10\uff12\uff14-01-15T10:00:00.000Z",  # fullwidth digits
        1705312800000,
    ],
)
def test_occurred_at_must_be_millisecond_utc(
    server: VibefollowServer, client: httpx.Client, occurred_at: Any
) -> None:
    """occurred_at must be YYYY-MM-DDTHH:MM:SS.mmmZ and a real date."""
    response = client.post("/events", json=event(occurred_at=occurred_at), headers=auth(server))
    assert response.status_code == 422
    assert error_of(response)["field"] == "occurred_at"


def test_valid_occurred_at_is_accepted(server: VibefollowServer, client: httpx.Client) -> None:
    """A millisecond UTC occurred_at is accepted as sent."""
    body = event(occurred_at="2024-02-29T23:59:59.999Z")
    assert client.post("/events", json=body, headers=auth(server)).status_code == 202
    assert server.events == [body]


@pytest.mark.parametrize(
    ("user", "field", "message"),
    [
        ({"email": "a@b.c"}, "external_user_id", "required"),
        ({"external_user_id": ""}, "external_user_id", None),
        ({"external_user_id": "u", "email": "no-at"}, "email", "Invalid email"),
        ({"external_user_id": "u", "email": "a@b@c"}, "email", "Invalid email"),
        ({"external_user_id": "u", "email": "@b"}, "email", "Invalid email"),
        ({"external_user_id": "u", "email": "a@"}, "email", "Invalid email"),
        ({"external_user_id": "u", "email": None}, "email", "Invalid email"),
        ({"external_user_id": "u", "traits": "pro"}, "traits", None),
        ({"external_user_id": "u", "name": "Ada"}, "name", "unknown field"),
    ],
)
def test_invalid_user_is_422_with_field(
    server: VibefollowServer,
    client: httpx.Client,
    user: dict[str, Any],
    field: str,
    message: str | None,
) -> None:
    """User upserts are validated field by field, with "Invalid email" for a bad email."""
    response = client.post("/users", json=user, headers=auth(server))
    assert response.status_code == 422
    entry = error_of(response)
    assert (entry["code"], entry["field"]) == ("validation_failed", field)
    if message is not None:
        assert entry["message"] == message
    assert server.users == []


def test_reject_event_simulates_a_poison_event(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """Events matching a reject_event predicate fail with 422 on events[i].name."""
    server.reject_event(lambda e: e["name"] == "poison")
    response = post_batch(client, server, [event(), event(name="poison")])
    assert response.status_code == 422
    assert error_of(response)["field"] == "events[1].name"
    single = client.post("/events", json=event(name="poison"), headers=auth(server))
    assert error_of(single)["field"] == "name"
    assert post_batch(client, server, [event()]).status_code == 202
    assert server.events == [event()]
    assert server.rejected == 2


def test_reject_event_reports_every_matching_event(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """A batch with several events a rule refuses gets one error per event, in order."""
    server.reject_event(lambda e: e["name"] == "poison")
    batch = [event(name="poison"), event(), event(name="poison")]
    response = post_batch(client, server, batch)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["events[0].name", "events[2].name"]
    assert server.events == []


def test_reject_event_without_a_field_names_no_event(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """With name_field=False the 422's errors carry no field: the event cannot be told."""
    server.reject_event(lambda e: e["name"] == "poison", name_field=False)
    response = post_batch(client, server, [event(), event(name="poison")])
    assert response.status_code == 422
    assert response.json() == {
        "errors": [{"code": "validation_failed", "message": "event rejected by server rule"}]
    }


@pytest.mark.parametrize(
    ("name", "properties", "field"),
    [
        ("feature_used", {}, "properties.feature"),
        ("feature_used", {"feature": None}, "properties.feature"),
        ("onboarding_step", {"completed": True}, "properties.step"),
        ("subscription_changed", {"from": "pro"}, "properties.to"),
        ("trial_expiring", {}, "properties.daysLeft"),
        ("user_invited", {"invitedemail": "a@b.c"}, "properties.invitedEmail"),
    ],
)
def test_canonical_events_need_their_required_properties(
    server: VibefollowServer,
    client: httpx.Client,
    name: str,
    properties: dict[str, Any],
    field: str,
) -> None:
    """A canonical lifecycle event without a required property is a 422 naming it."""
    response = post_batch(client, server, [event(name=name, properties=properties)])
    assert response.status_code == 422
    assert error_of(response) == {
        "code": "validation_failed",
        "message": "required",
        "field": f"events[0].{field}",
    }
    single = client.post("/events", json=event(name=name), headers=auth(server))
    assert error_of(single)["field"] == field
    assert server.events == []


def test_canonical_events_with_their_properties_are_accepted(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """Canonical events carrying what they require, and those requiring nothing, pass."""
    batch = [
        event(name="feature_used", properties={"feature": "export"}),
        event(name="trial_expiring", properties={"daysLeft": 3}),
        event(name="payment_failed"),
        event(name="user_signed_up", properties={}),
    ]
    assert post_batch(client, server, batch).status_code == 202
    assert len(server.events) == 4


def test_event_over_the_size_limit_is_a_422_naming_it() -> None:
    """An event whose JSON is over max_event_bytes fails the batch with 422 on events[i]."""
    with (
        VibefollowServer(max_event_bytes=300) as server,
        httpx.Client(base_url=server.base_url + "/api/v1") as client,
    ):
        big = event(properties={"text": "x" * 300})
        response = post_batch(client, server, [event(), big])
        assert response.status_code == 422
        entry = error_of(response)
        assert (entry["code"], entry["field"]) == ("event_too_large", "events[1]")
        assert "over 300" in entry["message"]
        assert post_batch(client, server, [event()]).status_code == 202


def test_default_event_size_limit_is_64_kib(server: VibefollowServer, client: httpx.Client) -> None:
    """By default an event over 64 KiB of JSON is refused, one under it accepted."""
    small = event(properties={"text": "x" * (60 * 1024)})
    large = event(properties={"text": "x" * (65 * 1024)})
    assert post_batch(client, server, [small]).status_code == 202
    response = post_batch(client, server, [large])
    assert response.status_code == 422
    assert error_of(response)["code"] == "event_too_large"


def test_body_over_max_body_bytes_is_a_413() -> None:
    """A request larger than max_body_bytes gets 413 payload_too_large, like a proxy's limit."""
    with (
        VibefollowServer(max_body_bytes=500) as server,
        httpx.Client(base_url=server.base_url + "/api/v1") as client,
    ):
        response = post_batch(client, server, [event(properties={"t": "x" * 100})] * 5)
        assert response.status_code == 413
        assert error_of(response)["code"] == "payload_too_large"
        assert server.events == []
        assert server.rejected == 1
        assert post_batch(client, server, [event()]).status_code == 202


def test_internal_error_answers_500_and_server_survives(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """An exception inside the server answers 500 server_error; the next request still works."""

    def broken(_: dict[str, Any]) -> bool:
        raise RuntimeError("boom")

    server.reject_event(broken)
    response = post_batch(client, server, [event()])
    assert response.status_code == 500
    assert error_of(response)["code"] == "server_error"
    server.clear()
    assert post_batch(client, server, [event()]).status_code == 202


# -- scripted faults ----------------------------------------------------------------------


def test_fail_next_answers_with_status_and_retry_after(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """fail_next(429, retry_after="2") answers 429 rate_limited with Retry-After, unprocessed."""
    server.fail_next(429, retry_after="2")
    key = str(uuid.uuid4())
    response = post_batch(client, server, [event()], key)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert error_of(response)["code"] == "rate_limited"
    assert server.events == []
    retry = post_batch(client, server, [event()], key)
    assert retry.status_code == 202
    assert "idempotent-replayed" not in retry.headers
    assert server.events == [event()]
    assert [(r.status, r.fault) for r in server.requests] == [(429, "status"), (202, None)]
    assert server.rejected == 0


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(503, None, "server_error"), (401, None, "auth_required"), (403, None, "forbidden"),
     (400, None, "error"), (429, "backfill_queue_full", "backfill_queue_full")],
)  # fmt: skip
def test_fail_next_codes(
    server: VibefollowServer, client: httpx.Client, status: int, code: str | None, expected: str
) -> None:
    """fail_next uses the status's default error code unless given one."""
    server.fail_next(status, code=code, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    response = post_batch(client, server, [event()])
    assert response.status_code == status
    assert error_of(response)["code"] == expected
    assert response.headers["retry-after"] == "Wed, 21 Oct 2026 07:28:00 GMT"


def test_a_429_carries_retry_after_by_default(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """fail_next(429) sends Retry-After: 1, as the API always does; respond_next need not."""
    server.fail_next(429)
    server.respond_next(429, '{"errors":[{"code":"rate_limited","message":"slow"}]}')
    first, second = (post_batch(client, server, [event()]) for _ in range(2))
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert second.status_code == 429
    assert "retry-after" not in second.headers


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, "<html><title>Hotel WiFi</title></html>", "text/html"),
        (202, '{"data": ', "application/json"),
        (204, "", None),
        (413, "<html><h1>413 Request Entity Too Large</h1></html>", "text/html"),
        (520, "", "text/plain"),
        (400, b"\xff\x00 binary", "application/octet-stream"),
    ],
    ids=["captive-portal", "invalid-json", "no-content", "proxy-413", "cdn-520", "binary"],
)
def test_respond_next_answers_with_exactly_that(
    server: VibefollowServer,
    client: httpx.Client,
    status: int,
    body: str | bytes,
    content_type: str | None,
) -> None:
    """respond_next sends any status with exactly the body and content type given, unprocessed."""
    server.respond_next(status, body, content_type=content_type, headers={"X-Proxy": "edge-1"})
    response = post_batch(client, server, [event()])
    assert response.status_code == status
    assert response.content == (body.encode() if isinstance(body, str) else body)
    assert response.headers.get("content-type") == content_type
    assert response.headers["x-proxy"] == "edge-1"
    assert server.events == []
    assert [(r.status, r.fault) for r in server.requests] == [(status, "respond")]
    assert server.rejected == 0


def test_respond_next_with_process_replaces_the_answer_of_a_processed_request(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """process=True: the events are recorded and the retry is replayed, not recorded twice."""
    server.respond_next(200, "<html>proxy says hi</html>", content_type="text/html", process=True)
    key = str(uuid.uuid4())
    first = post_batch(client, server, [event()], key)
    assert (first.status_code, first.text) == (200, "<html>proxy says hi</html>")
    assert server.events == [event()]
    retry = post_batch(client, server, [event()], key)
    assert (retry.status_code, retry.json()) == (202, ACCEPTED)
    assert retry.headers["idempotent-replayed"] == "true"
    assert server.events == [event()]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_next_sends_a_3xx_with_location(
    server: VibefollowServer, client: httpx.Client, status: int
) -> None:
    """redirect_next answers a 3xx with Location and an HTML body; nothing is processed."""
    server.redirect_next("https://elsewhere.example/api/v1/events/batch", status=status)
    response = post_batch(client, server, [event()])
    assert response.status_code == status
    assert response.headers["location"] == "https://elsewhere.example/api/v1/events/batch"
    assert response.headers["content-type"] == "text/html"
    assert server.events == []
    assert [(r.status, r.fault) for r in server.requests] == [(status, "redirect")]


def test_respond_and_redirect_arguments_are_checked(server: VibefollowServer) -> None:
    """Statuses out of range, a body on a 204 and multi-line headers are refused up front."""
    with pytest.raises(ValueError, match="status"):
        server.respond_next(101)
    with pytest.raises(ValueError, match="status"):
        server.respond_next(600)
    with pytest.raises(ValueError, match="body"):
        server.respond_next(204, "x")
    with pytest.raises(ValueError, match="header line"):
        server.respond_next(200, headers={"X-A": "1\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="header line"):
        server.respond_next(200, content_type="text/html\nX-Evil: 1")
    with pytest.raises(ValueError, match="redirect"):
        server.redirect_next("https://x.example", status=200)
    with pytest.raises(ValueError, match="header line"):
        server.redirect_next("https://x.example/\r\nX-Evil: 1")
    with pytest.raises(ValueError, match="unknown route"):
        server.respond_next(200, path="/nope")
    assert server.pending_faults == 0


def test_faults_apply_fifo_to_matching_paths(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """Faults are consumed in order by requests whose path matches; count repeats a fault."""
    server.fail_next(503, count=2, path="/events/batch")
    server.fail_next(500, path="/api/v1/users")
    assert client.post("/events", json=event(), headers=auth(server)).status_code == 202
    user = {"external_user_id": "u"}
    assert client.post("/users", json=user, headers=auth(server)).status_code == 500
    statuses = [post_batch(client, server, [event()]).status_code for _ in range(3)]
    assert statuses == [503, 503, 202]
    assert server.pending_faults == 0


def test_fault_arguments_are_checked(server: VibefollowServer) -> None:
    """Unknown routes, non-error statuses, zero counts and long delays are refused up front."""
    with pytest.raises(ValueError, match="unknown route"):
        server.fail_next(503, path="/event")
    with pytest.raises(ValueError, match="status"):
        server.fail_next(200)
    with pytest.raises(ValueError, match="count"):
        server.reset_next(count=0)
    with pytest.raises(ValueError, match="seconds"):
        server.delay_next(31)
    with pytest.raises(ValueError, match="header line"):
        server.fail_next(429, retry_after="1\r\nX-Evil: 1")


def test_reset_next_is_a_network_error(server: VibefollowServer, client: httpx.Client) -> None:
    """reset_next aborts the connection with no response; the request is not processed."""
    server.reset_next()
    with pytest.raises((httpx.NetworkError, httpx.RemoteProtocolError)):
        post_batch(client, server, [event()])
    assert server.events == []
    assert [(r.status, r.fault) for r in server.requests] == [(None, "reset")]
    assert post_batch(client, server, [event()]).status_code == 202


def test_delay_next_answers_late_but_normally(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """delay_next holds the response for the given time, then processes the request."""
    server.delay_next(0.2)
    started = time.monotonic()
    response = post_batch(client, server, [event()])
    assert time.monotonic() - started >= 0.15
    assert response.status_code == 202
    assert server.events == [event()]
    assert server.requests[0].fault == "delay"


def test_stop_cuts_a_delay_short() -> None:
    """stop() wakes a request held by delay_next, which then gets no answer and is not processed."""
    server = VibefollowServer().start()
    server.delay_next(30)
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.post(server.base_url + "/api/v1/events", json=event(), headers=auth(server))
        except httpx.TransportError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    # The fault is taken when the request arrives; only then is stop() cutting a delay short.
    deadline = time.monotonic() + 10
    while server.pending_faults and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    caller.join(timeout=10)
    assert time.monotonic() - started < 10
    assert len(errors) == 1
    assert server.events == []
    # stop() may close the socket before the woken handler thread has recorded the request.
    assert server.wait_for_requests(1, timeout=10)
    assert [(r.status, r.fault) for r in server.requests] == [(None, "delay")]


def test_lost_response_then_retry_is_replayed(
    server: VibefollowServer, client: httpx.Client
) -> None:
    """lose_response_next processes then resets; the retry is replayed, not recorded twice."""
    server.lose_response_next()
    key = str(uuid.uuid4())
    with pytest.raises((httpx.NetworkError, httpx.RemoteProtocolError)):
        post_batch(client, server, [event()], key)
    assert server.events == [event()]
    retry = post_batch(client, server, [event()], key)
    assert retry.status_code == 202
    assert retry.headers["idempotent-replayed"] == "true"
    assert server.events == [event()]
    assert server.replayed == 1
    assert [(r.status, r.fault) for r in server.requests] == [(202, "lose_response"), (202, None)]


# -- waiting, clearing, recording ---------------------------------------------------------


def test_wait_for_events_wakes_when_events_arrive(server: VibefollowServer) -> None:
    """wait_for_events returns True once enough events arrived, False on timeout."""
    assert server.wait_for_events(1, timeout=0.05) is False

    def send() -> None:
        with httpx.Client(base_url=server.base_url + "/api/v1") as client:
            post_batch(client, server, [event(), event()])
            client.post("/users", json={"external_user_id": "u"}, headers=auth(server))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert server.wait_for_events(2, timeout=10)
        assert server.wait_for_users(1, timeout=10)
        assert server.wait_for_requests(2, timeout=10)
    finally:
        sender.join()
    assert len(server.events) == 2


def test_clear_forgets_everything(server: VibefollowServer, client: httpx.Client) -> None:
    """clear() drops events, users, requests, counters, idempotency keys, faults and rules."""
    key = str(uuid.uuid4())
    post_batch(client, server, [event()], key)
    post_batch(client, server, [event()], key)
    server.fail_next(503)
    server.reject_event(lambda e: True)
    server.clear()
    assert (server.events, server.users, server.requests) == ([], [], [])
    assert (server.replayed, server.rejected) == (0, 0)
    response = post_batch(client, server, [event()], key)
    assert response.status_code == 202
    assert "idempotent-replayed" not in response.headers
    assert server.events == [event()]


@pytest.mark.parametrize("key", [DEFAULT_API_KEY, "sk_live_0123456789abcdefghijklmnopqrstuv"])
def test_api_key_is_redacted_in_recorded_requests(key: str) -> None:
    """The key never shows in a RecordedRequest or the server's repr: only sk_… and 4 chars."""
    with (
        VibefollowServer(key) as server,
        httpx.Client(base_url=server.base_url + "/api/v1") as client,
    ):
        post_batch(client, server, [event()])
        client.post("/events", json=event(), headers={**auth(server), "Authorization": key})
        recorded = server.requests
        assert recorded[0].headers["authorization"] == "Bearer sk_…" + key[-4:]
        assert recorded[1].headers["authorization"] == "<redacted>"
        for text in (repr(recorded), str(recorded), repr(server)):
            assert key not in text
            assert key[:-4] not in text


def test_recorded_request_fields(server: VibefollowServer, client: httpx.Client) -> None:
    """A RecordedRequest carries method, path, lower-case headers, body, JSON and key."""
    key = str(uuid.uuid4())
    response = post_batch(client, server, [event()], key)
    (recorded,) = server.requests
    assert isinstance(recorded, RecordedRequest)
    assert (recorded.method, recorded.path, recorded.status) == (
        "POST",
        "/api/v1/events/batch",
        202,
    )
    assert recorded.headers["idempotency-key"] == key == recorded.idempotency_key
    assert recorded.body == response.request.content
    assert recorded.json == {"events": [event()]}
    assert (recorded.replayed, recorded.fault) == (False, None)


# -- lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "192.168.1.10", "::", "example.invalid", "", "bad host\x00"]
)
def test_host_must_be_loopback(host: str) -> None:
    """Binding anywhere but loopback, or to a name that does not resolve, is refused."""
    with pytest.raises(ValueError, match="loopback"):
        VibefollowServer(host=host)


def test_localhost_is_resolved_to_a_loopback_address() -> None:
    """host="localhost" binds the loopback address it resolves to, and serves there."""
    with VibefollowServer(host="localhost") as server:
        host = httpx.URL(server.base_url).host
        assert ipaddress.ip_address(host).is_loopback
        response = httpx.post(
            f"{server.base_url}/api/v1/events", json=event(), headers=auth(server), timeout=10.0
        )
        assert response.status_code == 202
        assert len(server.events) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"reuse_status": 400}, "reuse_status"), ({"max_batch_size": 0}, "max_batch_size"),
     ({"port": 70000}, "port"), ({"api_key": ""}, "api_key"),
     ({"max_body_bytes": 0}, "max_body_bytes"), ({"max_body_bytes": 1 << 30}, "max_body_bytes"),
     ({"max_event_bytes": 0}, "max_event_bytes")],
)  # fmt: skip
def test_constructor_arguments_are_checked(kwargs: dict[str, Any], match: str) -> None:
    """Nonsense configuration fails at construction."""
    with pytest.raises(ValueError, match=match):
        VibefollowServer(**kwargs)


def test_ipv6_loopback_is_served() -> None:
    """host="::1" works and base_url brackets the address."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = VibefollowServer(host="::1").start()
    except OSError:
        pytest.skip("::1 cannot be bound here")
    with server, httpx.Client(base_url=server.base_url + "/api/v1") as client:
        assert server.base_url.startswith("http://[::1]:")
        assert post_batch(client, server, [event()]).status_code == 202


def test_start_and_stop_are_idempotent() -> None:
    """start() twice keeps one server; stop() twice is harmless; then connections are refused."""
    server = VibefollowServer()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    assert server.start() is server
    url = server.base_url
    assert server.start().base_url == url
    running = [server.running]
    server.stop()
    server.stop()
    running.append(server.running)
    assert running == [True, False]
    assert server.base_url == url
    assert repr(server) == f"<VibefollowServer {url} not running>"
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/api/v1/events", json=event(), headers=auth(server))
    with pytest.raises(RuntimeError, match="restart"):
        server.start()


def test_stop_drops_pooled_keep_alive_connections() -> None:
    """After stop() a client's pooled connection is not served by a lingering handler."""
    server = VibefollowServer().start()
    with httpx.Client(base_url=server.base_url + "/api/v1") as client:
        assert post_batch(client, server, [event()]).status_code == 202
        server.stop()
        with pytest.raises(httpx.TransportError):
            post_batch(client, server, [event()])
    assert len(server.events) == 1


def test_fixture_yields_a_started_server(vibefollow_server: VibefollowServer) -> None:
    """The vibefollow_server fixture is running and uses the default key."""
    assert vibefollow_server.running
    assert vibefollow_server.api_key == DEFAULT_API_KEY
    assert DEFAULT_API_KEY.startswith("sk_test_")
    assert len(DEFAULT_API_KEY) == len("sk_test_") + 32


def test_pytest_start_up_does_not_import_vf_otel(tmp_path: Path) -> None:
    """pytest loads the installed plugin at start-up without importing vf_otel; a test that
    asks for vibefollow_server gets a running server."""
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    (tmp_path / "test_server.py").write_text(
        "def test_server(vibefollow_server):\n    assert vibefollow_server.running\n"
    )
    # Without hypothesis's plugin (another installed one): it alone takes most of a second.
    probe = (
        "import sys, pytest\n"
        "args = ['-q', '-p', 'no:cacheprovider', '-p', 'no:hypothesispytest']\n"
        "code = pytest.main([sys.argv[1], *args, '-k', sys.argv[2]])\n"
        "print('loaded', '_vf_otel_pytest' in sys.modules, 'vf_otel' in sys.modules, int(code))\n"
    )
    runs = {  # side by side: each is a fresh interpreter on its own
        keyword: subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", probe, str(tmp_path), keyword],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for keyword in ("plain", "server")
    }
    lines = {}
    try:
        for keyword, run in runs.items():
            out, _ = run.communicate(timeout=HANG_GUARD)
            lines[keyword] = out.strip().splitlines()[-1]
    finally:
        for run in runs.values():
            if run.poll() is None:  # only after a hang or a failure above
                run.kill()
                run.wait()
    assert lines == {"plain": "loaded True False 0", "server": "loaded True True 0"}


def test_public_surface_matches_all() -> None:
    """__all__ is sorted and lists exactly the public names of vf_otel.testing."""
    # isidentifier() skips the helpers pytest's assertion rewriting adds to plugin modules.
    names = [name for name in vars(vf_otel.testing) if name.isidentifier()]
    public = {name for name in names if not name.startswith("_")} - {"annotations", "pytest_plugin"}
    assert vf_otel.testing.__all__ == sorted(vf_otel.testing.__all__)
    assert set(vf_otel.testing.__all__) == public


def test_port_in_use_raises_oserror() -> None:
    """Starting on a port that is already bound raises the OSError, nothing stranger."""
    with VibefollowServer() as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError):  # noqa: PT011 - errno varies by platform
            VibefollowServer(port=port).start()
