"""The relay's ASGI app: the OTLP/HTTP contract, in front of ``vf_otel.relay.Relay``.

``POST /v1/traces`` and ``POST /v1/logs`` take an OTLP export request as protobuf
(``application/x-protobuf``) or JSON (``application/json``), gzip-compressed or not,
with ``Authorization: Bearer <VIBEFOLLOW_RELAY_TOKEN>``. Answers, in the request's
encoding (OTLP/HTTP specification):

- 200 with an empty response: every event delivered or spooled;
- 200 with ``partial_success`` (rejected count, message): some records refused for good;
- 400 undecodable body, 401 no or wrong token, 404/405 another path or method,
  413 over ``max_body_bytes`` (decompressed), 415 another content type or encoding;
- 503 with ``Retry-After`` when the events could be neither delivered nor spooled in
  time (API down or slow, no spool), or the relay is busy: the client sends again.

Errors carry a ``google.rpc.Status`` body. ``GET /healthz`` (the process answers) and
``GET /readyz`` (it takes batches) need no token and say nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from .decode import OTLPDecodeError, decode_logs, decode_traces
from .forward import DEFAULT_WAIT, Outcome, Relay

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BODY_BYTES",
    "TOKEN_ENV",
    "RelayApp",
    "from_environment",
]

_logger = logging.getLogger("vf_otel")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TOKEN_ENV: Final = "VIBEFOLLOW_RELAY_TOKEN"  # noqa: S105 - a variable name
MAX_BODY_ENV: Final = "VIBEFOLLOW_RELAY_MAX_BODY_BYTES"
WAIT_ENV: Final = "VIBEFOLLOW_RELAY_WAIT"
#: The most a request body may hold once decompressed (the Collector's batches are
#: ~8,192 records by default, well under it).
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Batches delivered at once per process; one more is answered 503 at once.
DEFAULT_CONCURRENCY: Final = 16
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
#: google.rpc.Code for each error status the relay answers.
_GRPC_CODE: Final = {400: 3, 401: 16, 404: 5, 405: 12, 413: 3, 415: 3, 500: 13, 503: 14}
_REASON: Final = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_ROUTES: Final = {b"/v1/traces": "traces", b"/v1/logs": "logs"}


class _Refusal(Exception):  # noqa: N818 - an answer, not an error of the relay's
    """An error answer decided while reading the request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RelayApp:
    """An ASGI 3 app serving the OTLP/HTTP receiver for one [`Relay`][vf_otel.relay.Relay]."""

    def __init__(
        self,
        relay: Relay,
        *,
        token: str,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if not isinstance(token, str) or len(token) < 16:
            raise ValueError(f"the relay's token ({TOKEN_ENV}) must be at least 16 characters")
        if relay.is_api_key(token):
            # Clients would then hold the key the relay exists to keep to itself.
            raise ValueError(f"{TOKEN_ENV} must not be the Vibefollow API key")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ValueError("max_body_bytes must be an int")
        if not 1024 <= max_body_bytes <= 2**31:
            raise ValueError("max_body_bytes must be between 1 KiB and 2 GiB")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be a positive int")
        self.relay = relay
        self._token = token.encode()
        self._max_body = max_body_bytes
        self._concurrency = concurrency
        self._busy = 0
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="vf-otel-relay")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.relay!r}>"  # never the token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: lifespan and HTTP."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Delivers what waits, spools the rest: off the event loop.
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Stop the relay's delivery (what waits is delivered or spooled). Idempotent."""
        self.relay.shutdown()
        self._executor.shutdown(wait=False)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path") or scope["path"].encode()
        path = path.split(b"?", 1)[0]
        headers = {name.lower(): value for name, value in scope["headers"]}
        json_body = _is_json(headers.get(b"content-type", b""))
        if path in (b"/healthz", b"/readyz"):
            await self._probe(path, scope["method"], send)
            return
        try:
            signal = self._admit(path, scope["method"], headers)
            body = await self._read(receive, headers)
        except _Refusal as refusal:
            await _error(send, refusal.status, refusal.message, json_body)
            return
        await self._export(signal, body, json_body, send)

    def _admit(self, path: bytes, method: str, headers: dict[bytes, bytes]) -> str:
        """The signal a request exports; raises the refusal for one the relay does not take."""
        signal = _ROUTES.get(path)
        if signal is None:
            raise _Refusal(404, "not found: the relay serves /v1/traces and /v1/logs")
        if method != "POST":
            raise _Refusal(405, "use POST")
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        # The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials, self._token):
            raise _Refusal(401, f"a valid 'Authorization: Bearer' token ({TOKEN_ENV})")
        _check_content_type(headers.get(b"content-type", b""))
        return signal

    async def _export(self, signal: str, body: bytes, json_body: bool, send: Send) -> None:
        if self._busy >= self._concurrency:
            await _error(send, 503, "the relay is busy", json_body, retry_after=1)
            return
        self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(
                self._executor, self._forward, signal, body, json_body
            )
        except OTLPDecodeError as exc:
            await _error(send, 400, str(exc), json_body)
            return
        except Exception:  # never a traceback to the client; logged here
            _logger.exception("vf-otel relay failed on a batch")
            await _error(send, 500, "internal error", json_body)
            return
        finally:
            self._busy -= 1
        if not outcome.accepted:
            message = "Vibefollow did not take the batch in time; send it again later"
            await _error(send, 503, message, json_body, retry_after=outcome.retry_after)
            return
        await _answer(send, 200, _success(signal, outcome, json_body), json_body)

    def _forward(self, signal: str, body: bytes, json_body: bool) -> Outcome:
        if signal == "traces":
            return self.relay.forward_spans(decode_traces(body, json_body=json_body))
        return self.relay.forward_logs(decode_logs(body, json_body=json_body))

    async def _read(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        """The body, decompressed; refused past ``max_body_bytes`` at any stage."""
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"gzip", b"identity"):
            raise _Refusal(415, "Content-Encoding must be gzip or absent")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise _Refusal(413, f"the body is over {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refusal(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _Refusal(413, f"the body is over {self._max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        return _gunzip(body, self._max_body) if encoding == b"gzip" else body

    async def _probe(self, path: bytes, method: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _error(send, 405, "use GET", json_body=True)
            return
        ready = path == b"/healthz" or self.relay.ready
        body = json.dumps({"status": "ok" if ready else "not ready"}).encode()
        await _answer(send, 200 if ready else 503, body, json_body=True)


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == JSON.encode()


def _check_content_type(content_type: bytes) -> None:
    kind = content_type.split(b";", 1)[0].strip().lower()
    if kind not in (PROTOBUF.encode(), JSON.encode()):
        raise _Refusal(415, f"Content-Type must be {PROTOBUF} or {JSON}")


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Refusal(400, f"the body is not valid gzip: {exc}") from None
    if len(data) > limit:
        raise _Refusal(413, f"the body is over {limit} bytes once decompressed")
    if not inflater.eof:
        raise _Refusal(400, "the gzip body is cut short")
    return data


def _success(signal: str, outcome: Outcome, json_body: bool) -> bytes:
    response: Message
    if signal == "traces":
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=outcome.rejected, error_message=outcome.message
                )
            )
    else:
        response = ExportLogsServiceResponse()
        if outcome.rejected:
            response.partial_success.CopyFrom(
                ExportLogsPartialSuccess(
                    rejected_log_records=outcome.rejected, error_message=outcome.message
                )
            )
    if json_body:
        return json.dumps(json_format.MessageToDict(response)).encode()
    return response.SerializeToString()


def status_bytes(code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (code = 1, message = 2) in protobuf wire format.

    Written by hand: the message lives in googleapis-common-protos, which the relay
    does not otherwise need.
    """
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def _error(
    send: Send, status: int, message: str, json_body: bool, *, retry_after: int = 0
) -> None:
    code = _GRPC_CODE.get(status, 2)
    if json_body:
        body = json.dumps({"code": code, "message": message}).encode()
    else:
        body = status_bytes(code, message)
    extra = [(b"retry-after", str(retry_after).encode())] if retry_after else []
    await _answer(send, status, body, json_body, extra)


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    json_body: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", JSON.encode() if json_body else PROTOBUF.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def from_environment() -> RelayApp:
    """The app configured from the environment, for ``uvicorn --factory`` (and the CLI).

    ``VIBEFOLLOW_RELAY_TOKEN`` (required), ``VIBEFOLLOW_RELAY_MAX_BODY_BYTES``,
    ``VIBEFOLLOW_RELAY_WAIT``; delivery from the ``VIBEFOLLOW_*`` variables, as the
    exporters read them.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"set {TOKEN_ENV}: the token clients send as 'Authorization: Bearer'")
    max_body = _int_env(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES)
    try:
        wait = float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT)
    except ValueError:
        raise ValueError(f"{WAIT_ENV} must be a number of seconds") from None
    relay = Relay(wait=wait)
    try:
        return RelayApp(relay, token=token, max_body_bytes=max_body)
    except ValueError:
        relay.shutdown()  # no delivery thread left behind by a bad setting
        raise


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None
