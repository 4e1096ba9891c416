"""The relay's OTLP/HTTP contract over real HTTP: decoding, answers, auth, limits, delivery.

Each test serves a real RelayApp with uvicorn on loopback (in a thread) delivering to
the local Vibefollow server; the decoder's own tests need no server.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto: the relay extra")
pytest.importorskip("uvicorn", reason="uvicorn: the relay extra")

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from vf_otel import Rule
from vf_otel.relay import Relay, RelayApp
from vf_otel.relay.app import status_bytes
from vf_otel.relay.decode import OTLPDecodeError, decode_logs, decode_traces
from vf_otel.testing import VibefollowServer

from .relay_support import (
    AUTH,
    SPAN_ID,
    START_NS,
    TOKEN,
    TRACE_ID,
    json_log,
    json_span,
    json_traces,
    served,
)

PB = {"Content-Type": "application/x-protobuf", **AUTH}
JS = {"Content-Type": "application/json", **AUTH}
Serve = Callable[..., str]


@pytest.fixture
def serve(server: VibefollowServer) -> Iterator[Serve]:
    """Start relays delivering to the local server; each is stopped afterwards."""
    stack: list[Any] = []

    def start(**options: Any) -> str:
        options.setdefault("api_key", server.api_key)
        options.setdefault("base_url", server.base_url)
        app_options = {
            key: options.pop(key) for key in ("max_body_bytes", "concurrency") if key in options
        }
        app = RelayApp(Relay(**options), token=TOKEN, **app_options)
        context = served(app)
        url = context.__enter__()
        stack.append(context)
        return url

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def signup_traces() -> dict[str, Any]:
    """One tagged span with one tagged span event, and one untagged span."""
    clicked = {
        "name": "clicked",
        "timeUnixNano": str(START_NS + 5),
        "attributes": [{"key": "vf.event", "value": {"stringValue": "button_clicked"}}],
    }
    tagged = json_span(
        "POST /signup",
        {"vf.user": "u-1", "vf.event": "user_signed_up", "vf.properties.plan": "pro"},
        events=[clicked],
    )
    other = json_span("GET /health", {"http.route": "/health"}, span_id="0000000000000001")
    return json_traces(tagged, other)


def to_protobuf(document: dict[str, Any]) -> bytes:
    """The same request as protobuf (through the relay's own JSON decoding of the ids)."""
    spans = json.loads(json.dumps(document))
    for resource in spans["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
                span.pop("parentSpanId")
    message = ExportTraceServiceRequest()
    json_format.ParseDict(spans, message, ignore_unknown_fields=True)
    return message.SerializeToString()


# -- decoding -------------------------------------------------------------------------


def test_json_ids_are_hex_not_base64() -> None:
    """OTLP/JSON's hex trace and span ids come out as the 16 and 8 bytes they name."""
    body = json.dumps(signup_traces()).encode()
    span = decode_traces(body, json_body=True)[0]
    assert span.context is not None
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.context.trace_id.bit_length() > 96  # 16 bytes, not the 24 base64 would make
    assert span.context.span_id == int(SPAN_ID, 16)
    # What proto3 JSON alone would have made of them:
    naive = ExportTraceServiceRequest()
    json_format.ParseDict(signup_traces(), naive, ignore_unknown_fields=True)
    assert len(naive.resource_spans[0].scope_spans[0].spans[0].trace_id) == 24


def test_json_int64_strings_enums_and_unknown_fields() -> None:
    """int64 as strings, enums as integers, and unknown fields are read per the spec."""
    body = json.dumps(json_traces(json_span("s", {"n": 7}, status=2))).encode()
    span = decode_traces(body, json_body=True)[0]
    assert span.start_time == START_NS
    assert span.attributes == {"n": 7}
    assert span.status.status_code.name == "ERROR"


def test_protobuf_and_json_decode_alike() -> None:
    """The same request in protobuf and in JSON decodes to the same spans."""
    document = signup_traces()
    from_json = decode_traces(json.dumps(document).encode(), json_body=True)
    from_pb = decode_traces(to_protobuf(document), json_body=False)
    assert from_json == from_pb


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\xff\x00garbage", "protobuf"),
        (json.dumps(json_traces(json_span("s", {}, trace_id="zz" * 16))).encode(), "not hex"),
        (json.dumps(json_traces(json_span("s", {}, trace_id="ab" * 12))).encode(), "32 hex"),
        (b"[1, 2]", "not an object"),
        (b'{"resourceSpans": 3}', "resourceSpans must be a list"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}',
            "integer",
        ),
        (b"\xff", "JSON"),
    ],
)
def test_undecodable_bodies_raise(body: bytes, needle: str) -> None:
    """Bodies that are not OTLP in the claimed encoding raise OTLPDecodeError, saying why."""
    json_body = not body.startswith(b"\xff\x00")
    with pytest.raises(OTLPDecodeError, match=needle):
        decode_traces(body, json_body=json_body)


def test_log_record_without_body_or_time() -> None:
    """A log record's missing body is None and OTLP's 0 times are None (unknown)."""
    document = json_log("x", {}, time_ns=0)
    del document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]
    record = decode_logs(json.dumps(document).encode(), json_body=True)[0]
    assert record.body is None
    assert record.timestamp is None
    assert record.observed_timestamp is None
    assert record.trace_id == int(TRACE_ID, 16)


def test_status_bytes_is_a_google_rpc_status() -> None:
    """The hand-written error body parses as google.rpc.Status."""
    status_pb2 = pytest.importorskip("google.rpc.status_pb2", reason="googleapis-common-protos")
    status = status_pb2.Status()
    status.ParseFromString(status_bytes(14, "é" * 200))
    assert (status.code, status.message) == (14, "é" * 200)


# -- over HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_tagged_spans_become_events(serve: Serve, server: VibefollowServer, encoding: str) -> None:
    """A tagged span and its tagged span event arrive as events; the answer is an empty
    export response in the request's encoding."""
    url = serve()
    document = signup_traces()
    if encoding == "json":
        reply = httpx.post(f"{url}/v1/traces", content=json.dumps(document), headers=JS)
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {}
    else:
        reply = httpx.post(f"{url}/v1/traces", content=to_protobuf(document), headers=PB)
        assert reply.headers["content-type"] == "application/x-protobuf"
        assert ExportTraceServiceResponse.FromString(reply.content) == ExportTraceServiceResponse()
    assert reply.status_code == 200
    names = sorted((e["name"], e["external_user_id"]) for e in server.events)
    assert names == [("button_clicked", "u-1"), ("user_signed_up", "u-1")]
    signup = next(e for e in server.events if e["name"] == "user_signed_up")
    assert signup["properties"] == {"plan": "pro"}
    assert signup["occurred_at"] == "2026-01-02T03:04:05.678Z"


def test_a_batch_sent_twice_is_delivered_once(serve: Serve, server: VibefollowServer) -> None:
    """The same batch sent twice, to two relays, makes the same idempotency keys: one event."""
    first, second = serve(), serve()
    body = json.dumps(signup_traces())
    for url in (first, second, first):
        assert httpx.post(f"{url}/v1/traces", content=body, headers=JS).status_code == 200
    assert len(server.events) == 2
    assert server.replayed == 2


def test_log_records_sent_twice_are_one_event(serve: Serve, server: VibefollowServer) -> None:
    """A tagged log record gets an id from its content: sent twice, delivered once."""
    url = serve()
    body = json.dumps(json_log("signed up", {"vf_user": "u-2", "vf_event": "user_signed_up"}))
    for _ in range(2):
        assert httpx.post(f"{url}/v1/logs", content=body, headers=JS).status_code == 200
    assert [e["name"] for e in server.events] == ["user_signed_up"]
    assert server.replayed == 1


RELAY_RULES = [
    Rule(
        event="order_placed",
        kind="server",
        where={"http.route": "/orders"},
        properties=["http.route"],
    ),
    Rule(event="order_placed_by_client", kind="client", where={"http.route": "/orders"}),
    Rule(event="export_done", signal="log", body="export finished", properties=["rows"]),
]


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_rules_make_events_of_untagged_spans(
    serve: Serve, server: VibefollowServer, encoding: str
) -> None:
    """Mapping rules apply in the relay: an untagged server span (OTLP kind 2) matches
    the rule naming kind "server", not the one naming "client"; sent twice, one event."""
    url = serve(rules=RELAY_RULES)
    span = json_span("POST /orders", {"http.route": "/orders", "enduser.id": "u-7", "x": 1})
    document = json_traces(span)
    if encoding == "json":
        body, headers = json.dumps(document).encode(), JS
    else:
        body, headers = to_protobuf(document), PB
    for _ in range(2):
        assert httpx.post(f"{url}/v1/traces", content=body, headers=headers).status_code == 200
    received = [(e["name"], e["external_user_id"], e["properties"]) for e in server.events]
    assert received == [("order_placed", "u-7", {"http.route": "/orders"})]
    assert server.replayed == 1


def test_rules_make_events_of_untagged_log_records(serve: Serve, server: VibefollowServer) -> None:
    """A log rule applies to relayed records: an untagged record becomes its event, with
    an id from the record (sent twice, one event); one no rule names sends nothing."""
    url = serve(rules=RELAY_RULES)
    body = json.dumps(json_log("export finished", {"user.id": "u-8", "rows": 12, "secret": "s"}))
    other = json.dumps(json_log("export started", {"user.id": "u-8"}))
    for content in (body, body, other):
        assert httpx.post(f"{url}/v1/logs", content=content, headers=JS).status_code == 200
    received = [(e["name"], e["external_user_id"], e["properties"]) for e in server.events]
    assert received == [("export_done", "u-8", {"rows": 12})]
    assert server.replayed == 1


def test_a_rule_match_without_a_user_is_a_partial_success(
    serve: Serve, server: VibefollowServer
) -> None:
    """A relayed record a rule matches but that names no user is refused, and the answer
    says so (partial_success): nothing is sent."""
    url = serve(rules=RELAY_RULES)
    body = json.dumps(json_log("export finished", {"rows": 12}))
    reply = httpx.post(f"{url}/v1/logs", content=body, headers=JS)
    assert reply.status_code == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert "missing_user" in partial["errorMessage"]
    assert server.events == []


def test_relay_without_rules_sends_nothing_for_untagged_telemetry(
    serve: Serve, server: VibefollowServer
) -> None:
    """Without rules, the span and record the rules above would match send nothing."""
    url = serve()
    span = json_span("POST /orders", {"http.route": "/orders", "enduser.id": "u-7"})
    assert httpx.post(f"{url}/v1/traces", json=json_traces(span), headers=JS).status_code == 200
    record = json_log("export finished", {"user.id": "u-8", "rows": 12})
    assert httpx.post(f"{url}/v1/logs", json=record, headers=JS).status_code == 200
    assert server.events == []


def test_refused_records_are_a_partial_success(serve: Serve, server: VibefollowServer) -> None:
    """Records the checks refuse are counted in partial_success; the others are delivered."""
    url = serve()
    bad = json_span("bad", {"vf.user": "", "vf.event": "x"}, span_id="00000000000000aa")
    good = json_span("good", {"vf.user": "u-3", "vf.event": "ok"}, span_id="00000000000000bb")
    no_ids = json_span("no ids", {"vf.user": "u-3"}, trace_id="", span_id="")
    reply = httpx.post(
        f"{url}/v1/traces", content=json.dumps(json_traces(bad, good, no_ids)), headers=JS
    )
    assert reply.status_code == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "missing_user" in partial["errorMessage"] or "invalid_user" in partial["errorMessage"]
    assert "no trace id" in partial["errorMessage"]
    assert [e["name"] for e in server.events] == ["ok"]


def test_untimed_log_record_is_refused_in_protobuf(serve: Serve, server: VibefollowServer) -> None:
    """A tagged log record with no time cannot be one event across re-sends: refused, and
    the protobuf answer says so."""
    url = serve()
    body = json.dumps(json_log("x", {"vf_user": "u", "vf_event": "e"}, time_ns=0))
    reply = httpx.post(f"{url}/v1/logs", content=body, headers=JS)
    assert reply.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    assert server.events == []


def test_gzip_bodies_and_the_size_cap(serve: Serve, server: VibefollowServer) -> None:
    """gzip is accepted; past max_body_bytes (raw or decompressed) the answer is 413."""
    url = serve(max_body_bytes=64 * 1024)
    headers = {**JS, "Content-Encoding": "gzip"}
    body = gzip.compress(json.dumps(signup_traces()).encode())
    assert httpx.post(f"{url}/v1/traces", content=body, headers=headers).status_code == 200
    assert len(server.events) == 2
    bomb = gzip.compress(b" " * (65 * 1024))  # small on the wire, over the cap inflated
    reply = httpx.post(f"{url}/v1/traces", content=bomb, headers=headers)
    assert reply.status_code == 413
    assert reply.json()["code"] == 3
    big = b" " * (65 * 1024)
    assert httpx.post(f"{url}/v1/traces", content=big, headers=JS).status_code == 413
    broken = httpx.post(f"{url}/v1/traces", content=body[:-8], headers=headers)
    assert broken.status_code == 400


def test_bad_requests_get_a_status_body(serve: Serve) -> None:
    """Undecodable bodies are 400 with a google.rpc.Status in the request's encoding;
    other content types 415, other paths 404, other methods 405."""
    url = serve()
    reply = httpx.post(f"{url}/v1/traces", content=b"\xff\x00", headers=PB)
    assert reply.status_code == 400
    assert reply.content.startswith(b"\x08\x03\x12")  # code 3 (INVALID_ARGUMENT), message
    reply = httpx.post(f"{url}/v1/logs", content=b"{nope", headers=JS)
    assert (reply.status_code, reply.json()["code"]) == (400, 3)
    plain = {**AUTH, "Content-Type": "text/plain"}
    assert httpx.post(f"{url}/v1/traces", content=b"x", headers=plain).status_code == 415
    assert httpx.post(f"{url}/v1/metrics", content=b"{}", headers=JS).status_code == 404
    assert httpx.get(f"{url}/v1/traces", headers=JS).status_code == 405


def test_the_relay_token_is_required(serve: Serve, server: VibefollowServer) -> None:
    """Without the relay's bearer token: 401, nothing delivered; the Vibefollow key is
    neither accepted in its place nor ever in an answer."""
    url = serve()
    body = json.dumps(signup_traces())
    for headers in (
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"},
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}x"},
        {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"},
        {"Content-Type": "application/json", "Authorization": TOKEN},
    ):
        reply = httpx.post(f"{url}/v1/traces", content=body, headers=headers)
        assert reply.status_code == 401
        assert server.api_key not in reply.text
        assert server.api_key not in str(reply.headers)
    assert server.events == []
    lower = {"Content-Type": "application/json", "Authorization": f"bearer {TOKEN}"}
    assert httpx.post(f"{url}/v1/traces", content=body, headers=lower).status_code == 200


def test_api_down_without_spool_is_503_then_once(serve: Serve, server: VibefollowServer) -> None:
    """API failing, no spool: 503 with Retry-After, in the request's encoding; after
    recovery the client's retry delivers every event once."""
    url = serve(max_retries=0, wait=2.0)
    server.fail_next(503, count=10_000)
    body = json.dumps(signup_traces())
    reply = httpx.post(f"{url}/v1/traces", content=body, headers=JS)
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["code"] == 14
    reply = httpx.post(f"{url}/v1/traces", content=to_protobuf(signup_traces()), headers=PB)
    assert reply.status_code == 503
    assert reply.content.startswith(b"\x08\x0e")  # google.rpc.Status, code 14 (UNAVAILABLE)
    server.clear_faults()
    for _ in range(100):  # the client retries (bounded); the circuit lets a probe out
        reply = httpx.post(f"{url}/v1/traces", content=body, headers=JS)
        if reply.status_code == 200:
            break
        assert reply.status_code == 503
        server.wait_for_events(2, timeout=float(reply.headers["retry-after"]))
    assert reply.status_code == 200
    assert sorted(e["name"] for e in server.events) == ["button_clicked", "user_signed_up"]


def test_api_down_with_a_spool_is_acknowledged(
    serve: Serve, server: VibefollowServer, tmp_path: Path
) -> None:
    """With a spool, a batch the API cannot take now is spooled and acknowledged (200),
    then delivered once the API is back."""
    url = serve(max_retries=0, spool_path=str(tmp_path / "relay.db"), flush_interval=0.05)
    server.fail_next(503, count=3)
    reply = httpx.post(f"{url}/v1/traces", content=json.dumps(signup_traces()), headers=JS)
    assert reply.status_code == 200
    assert server.events == []
    assert server.wait_for_events(2)


def test_health_and_readiness(serve: Serve) -> None:
    """/healthz and /readyz answer GET without a token, and say nothing else."""
    url = serve()
    for path in ("/healthz", "/readyz"):
        reply = httpx.get(f"{url}{path}")
        assert (reply.status_code, reply.json()) == (200, {"status": "ok"})
    assert httpx.post(f"{url}/readyz").status_code == 405


def test_readiness_fails_once_the_relay_stops_delivering(server: VibefollowServer) -> None:
    """Once its delivery is shut down, /readyz answers 503 (a load balancer stops sending)
    while /healthz still answers 200 (the process serves)."""
    relay = Relay(api_key=server.api_key, base_url=server.base_url)
    with served(RelayApp(relay, token=TOKEN)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        relay.shutdown()
        reply = httpx.get(f"{url}/readyz")
        assert (reply.status_code, reply.json()) == (503, {"status": "not ready"})
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_relay_settings_are_checked() -> None:
    """A short token, the API key as token, a bad cap and a relay without an API key are
    refused at construction."""
    with pytest.raises(ValueError, match="VIBEFOLLOW_API_KEY"):
        Relay()
    relay = Relay(enabled=False)
    try:
        with pytest.raises(ValueError, match="16 characters"):
            RelayApp(relay, token="short")
        with pytest.raises(ValueError, match="max_body_bytes"):
            RelayApp(relay, token=TOKEN, max_body_bytes=10)
        with pytest.raises(ValueError, match="wait"):
            Relay(enabled=False, wait=0)
        with pytest.raises(ValueError, match="on_error"):
            Relay(enabled=False, on_error=3)  # type: ignore[typeddict-item]
        assert TOKEN not in repr(RelayApp(relay, token=TOKEN))
    finally:
        relay.shutdown()
    keyed = Relay(api_key="sk_live_" + "k" * 32, base_url="https://api.example.com")
    try:
        with pytest.raises(ValueError, match="must not be the Vibefollow API key"):
            RelayApp(keyed, token="sk_live_" + "k" * 32)
    finally:
        keyed.shutdown()


def test_relay_public_names() -> None:
    """vf_otel.relay's __all__ is sorted, names its public attributes, each documented in
    docs/reference.md under its public module."""
    import vf_otel.relay

    exported = vf_otel.relay.__all__
    assert list(exported) == sorted(exported)
    public = {name for name in dir(vf_otel.relay) if not name.startswith("_")}
    assert set(exported) == public - {"app", "decode", "forward", "annotations"}
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    for name in exported:
        assert getattr(vf_otel.relay, name).__module__ == "vf_otel.relay"
        assert f"::: vf_otel.relay.{name}\n" in reference


def test_relay_counters_are_otel_metrics(
    server: VibefollowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a MeterProvider in the process, the relay's stats() are vibefollow.* metrics
    under vibefollow.source=relay."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    # Patched, not set: the global provider can be set only once per process.
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    relay = Relay(api_key=server.api_key, base_url=server.base_url)
    try:
        spans = decode_traces(json.dumps(signup_traces()).encode(), json_body=True)
        assert relay.forward_spans(spans).accepted
        assert relay.stats().sent == 2
        data = reader.get_metrics_data()
    finally:
        relay.shutdown()
        provider.shutdown()
    points = {
        (metric.name, tuple(sorted((point.attributes or {}).items()))): point.value
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
    assert points["vibefollow.events.sent", (("vibefollow.source", "relay"),)] == 2


# -- the two decoders agree -----------------------------------------------------------


def _any_values() -> Any:
    from hypothesis import strategies as st
    from opentelemetry.proto.common.v1.common_pb2 import (
        AnyValue,
        ArrayValue,
        KeyValue,
        KeyValueList,
    )

    scalars = st.one_of(
        st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=8)),
        st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
        st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=False)),
        st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
        st.just(AnyValue()),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.builds(
                lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3)
            ),
            st.builds(
                lambda kvs: AnyValue(
                    kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
                ),
                st.lists(st.tuples(st.text(max_size=4), inner), max_size=3),
            ),
        ),
        max_leaves=6,
    )


def _to_otlp_json(message: Any) -> bytes:
    """``message`` as OTLP/JSON: proto3 JSON with integer enums and hex trace/span ids."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(document)
    return json.dumps(document).encode()


def test_json_and_protobuf_decoders_agree() -> None:
    """For any traces and logs request, the JSON decoder (read straight from the document)
    gives exactly what the protobuf decoder gives."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    attributes = st.lists(
        st.builds(lambda k, v: KeyValue(key=k, value=v), st.text(max_size=6), _any_values()),
        max_size=4,
    )
    ids16, ids8 = (
        st.sampled_from([b"", b"\x01" * 16, bytes(range(16))]),
        st.binary(min_size=8, max_size=8) | st.just(b""),
    )
    times = st.integers(0, 2**64 - 1)
    events = st.builds(
        lambda n, t, a: Span.Event(name=n, time_unix_nano=t, attributes=a),
        st.text(max_size=6),
        times,
        attributes,
    )
    spans = st.builds(
        lambda t, s, n, k, start, code, attrs, evs: Span(
            trace_id=t,
            span_id=s,
            name=n,
            kind=k,
            start_time_unix_nano=start,
            status=Status(code=code),
            attributes=attrs,
            events=evs,
        ),
        ids16,
        ids8,
        st.text(max_size=8),
        st.integers(0, 6),  # 6: a kind no version of OTLP defines
        times,
        st.integers(0, 2),
        attributes,
        st.lists(events, max_size=2),
    )
    records = st.builds(
        lambda t, s, time, observed, body, attrs: LogRecord(
            trace_id=t,
            span_id=s,
            time_unix_nano=time,
            observed_time_unix_nano=observed,
            body=body,
            attributes=attrs,
        ),
        ids16,
        ids8,
        times,
        times,
        _any_values(),
        attributes,
    )
    scope = st.builds(lambda n: InstrumentationScope(name=n), st.text(max_size=6))

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(st.tuples(scope, st.lists(spans, max_size=3)), max_size=2),
        st.lists(st.tuples(scope, st.lists(records, max_size=3)), max_size=2),
    )
    def agree(span_groups: Any, record_groups: Any) -> None:
        traces = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    scope_spans=[ScopeSpans(scope=sc, spans=ss) for sc, ss in span_groups]
                )
            ]
        )
        logs = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    scope_logs=[ScopeLogs(scope=sc, log_records=rs) for sc, rs in record_groups]
                )
            ]
        )
        assert decode_traces(_to_otlp_json(traces), json_body=True) == decode_traces(
            traces.SerializeToString(), json_body=False
        )
        assert decode_logs(_to_otlp_json(logs), json_body=True) == decode_logs(
            logs.SerializeToString(), json_body=False
        )

    agree()


def test_events_the_api_refuses_are_a_partial_success(
    serve: Serve, server: VibefollowServer
) -> None:
    """An event the API refuses for good (422) is dead-lettered and counted as rejected in
    partial_success; the others are delivered, and the batch is not asked for again."""
    server.reject_event(lambda event: event["name"] == "button_clicked")
    reported: list[str] = []
    url = serve(on_error=lambda error, events: reported.extend(e.name for e in events))
    reply = httpx.post(f"{url}/v1/traces", content=json.dumps(signup_traces()), headers=JS)
    assert reply.status_code == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "refused by Vibefollow" in partial["errorMessage"]
    assert [e["name"] for e in server.events] == ["user_signed_up"]
    assert reported == ["button_clicked"]  # the relay's own on_error is still called


def test_a_busy_relay_answers_503_at_once(server: VibefollowServer) -> None:
    """Past its concurrency, a batch is answered 503 with Retry-After at once (the client
    sends it again), while the batch in progress is delivered."""
    import threading

    relay = Relay(api_key=server.api_key, base_url=server.base_url)
    app = RelayApp(relay, token=TOKEN, concurrency=1)
    server.delay_next(1.0)  # the first batch is still out when the second arrives
    body = json.dumps(signup_traces())
    with served(app) as url:
        first: list[int] = []
        slow = threading.Thread(
            target=lambda: first.append(
                httpx.post(f"{url}/v1/traces", content=body, headers=JS, timeout=30).status_code
            )
        )
        slow.start()
        for _ in range(400):  # bounded: until the first batch is on its way to the API
            if relay.stats().in_flight:
                break
            threading.Event().wait(0.01)
        assert relay.stats().in_flight
        reply = httpx.post(f"{url}/v1/traces", content=body, headers=JS)
        assert (reply.status_code, reply.headers["retry-after"]) == (503, "1")
        assert reply.json()["message"] == "the relay is busy"
        slow.join(30)
    assert first == [200]
    assert len(server.events) == 2
