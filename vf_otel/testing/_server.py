"""A real Vibefollow-compatible HTTP server on loopback, for tests, demos and local development."""

from __future__ import annotations

import copy
import ipaddress
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

from vf_otel.testing._api import EventPredicate, InMemoryApi, Rejection
from vf_otel.testing._faults import (
    DEFAULT_RETRY_AFTER,
    MAX_DELAY_SECONDS,
    Fault,
    default_code,
    normalise_route,
)
from vf_otel.testing._http import LoopbackHTTPServer
from vf_otel.testing._records import FaultKind, RecordedRequest
from vf_otel.testing._validation import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_EVENT_BYTES

DEFAULT_API_KEY: Final = "sk_test_vfotel0local0testing0only0000000"
"""The key the server accepts unless told otherwise. Local-only: it opens nothing real."""

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_MAX_BATCH_SIZE: Final = 500
DEFAULT_REUSE_STATUS: Final = 422
DEFAULT_WAIT_TIMEOUT: Final = 5.0
# The contract disagrees with itself on the reuse status (vibefollow-api.md §8.2).
_REUSE_STATUSES: Final = frozenset({409, 422})
# Statuses whose answers carry no body (RFC 9110 §15.3.5, §15.4.5).
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_REDIRECT_BODY: Final = b"<html><body><h1>Moved</h1></body></html>"


class VibefollowServer:
    """Serves ``POST /api/v1/events``, ``/api/v1/events/batch`` and ``/api/v1/users``.

    It enforces the public contract strictly (auth, content type, version-4 idempotency
    keys, strict JSON, validation with every invalid event of a batch reported, the
    canonical events' required properties, a per-event size limit) and records what it
    accepted. Faults are scripted per request with
    [`fail_next()`][vf_otel.testing.VibefollowServer.fail_next],
    [`respond_next()`][vf_otel.testing.VibefollowServer.respond_next] (any status, body and
    content type), [`redirect_next()`][vf_otel.testing.VibefollowServer.redirect_next],
    [`reset_next()`][vf_otel.testing.VibefollowServer.reset_next],
    [`delay_next()`][vf_otel.testing.VibefollowServer.delay_next] and
    [`lose_response_next()`][vf_otel.testing.VibefollowServer.lose_response_next].

    ``max_body_bytes`` makes larger requests get a 413, as a proxy's body limit would;
    ``max_event_bytes`` refuses larger events (their compact JSON) with a 422 naming them.

    >>> with VibefollowServer() as server:
    ...     server.base_url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        reuse_status: int = DEFAULT_REUSE_STATUS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._family = _loopback_family(host)
        if not api_key or any(char.isspace() for char in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if reuse_status not in _REUSE_STATUSES:
            raise ValueError(f"reuse_status must be 409 or 422, got {reuse_status}")
        if not 1 <= max_body_bytes <= DEFAULT_MAX_BODY_BYTES:
            raise ValueError(
                f"max_body_bytes must be in 1..{DEFAULT_MAX_BODY_BYTES}, got {max_body_bytes}"
            )
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be >= 1, got {max_event_bytes}")
        self._api_key = api_key
        self._address = (host, port)
        self._stopping = threading.Event()
        self._api = InMemoryApi(
            api_key,
            max_batch_size=max_batch_size,
            reuse_status=reuse_status,
            wait=self._stopping.wait,
            max_body_bytes=max_body_bytes,
            max_event_bytes=max_event_bytes,
        )
        self._lifecycle = threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        # Deliberately without the API key.
        state = "running" if self.running else "not running"
        return f"<VibefollowServer {self._base_url or self._address[0]} {state}>"

    def __enter__(self) -> VibefollowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> VibefollowServer:
        """Bind and serve in a daemon thread. Idempotent; a stopped server cannot restart."""
        with self._lifecycle:
            if self._stopping.is_set():
                raise RuntimeError("a stopped VibefollowServer cannot be restarted; make a new one")
            if self._httpd is None:
                self._httpd = LoopbackHTTPServer(self._address, self._api, self._family)
                host, port = self._httpd.socket.getsockname()[:2]
                shown = f"[{host}]" if self._family == socket.AF_INET6 else str(host)
                # Kept after stop(), so reprs and failure messages can still name the server.
                self._base_url = f"http://{shown}:{port}"
                self._thread = threading.Thread(
                    target=self._httpd.serve_until_stopped,
                    name=f"vibefollow-test-server:{port}",
                    daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the socket. Idempotent."""
        with self._lifecycle:
            if self._httpd is None or self._stopping.is_set():
                return
            self._stopping.set()  # wakes handlers sleeping in a scripted delay
            self._httpd.stop_serving()
            if self._thread is not None:
                self._thread.join()
            self._httpd.drop_connections()
            self._httpd.server_close()

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._httpd is not None and not self._stopping.is_set()

    @property
    def base_url(self) -> str:
        """The origin, e.g. ``http://127.0.0.1:54321``; clients append ``/api/v1``."""
        if self._base_url is None:
            raise RuntimeError("the server has no address until start() is called")
        return self._base_url

    @property
    def api_key(self) -> str:
        """The only key this server accepts."""
        return self._api_key

    # -- what was received -----------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Copies of the accepted events, in arrival order, as received."""
        with self._api.changed:
            return copy.deepcopy(self._api.events)

    @property
    def users(self) -> list[dict[str, Any]]:
        """Copies of the accepted user upserts, in arrival order, as received."""
        with self._api.changed:
            return copy.deepcopy(self._api.users)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached the handler, faulted and rejected ones included."""
        with self._api.changed:
            return list(self._api.requests)

    @property
    def replayed(self) -> int:
        """How many requests were answered by idempotent replay."""
        with self._api.changed:
            return self._api.replayed

    @property
    def rejected(self) -> int:
        """How many requests the contract checks refused (4xx), not counting scripted faults."""
        with self._api.changed:
            return self._api.rejected

    @property
    def pending_faults(self) -> int:
        """How many scripted faults no request has consumed yet."""
        with self._api.changed:
            return len(self._api.faults)

    def wait_for_events(self, count: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> bool:
        """Block until at least ``count`` events were accepted; ``False`` on timeout."""
        return self._wait_until(lambda: len(self._api.events) >= count, timeout)

    def wait_for_users(self, count: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> bool:
        """Block until at least ``count`` user upserts were accepted; ``False`` on timeout."""
        return self._wait_until(lambda: len(self._api.users) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> bool:
        """Block until at least ``count`` requests were recorded; ``False`` on timeout."""
        return self._wait_until(lambda: len(self._api.requests) >= count, timeout)

    def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._api.changed:
            return self._api.changed.wait_for(predicate, timeout)

    def clear(self) -> None:
        """Forget received events, users and requests, idempotency keys, counters,
        pending faults and
        [`reject_event()`][vf_otel.testing.VibefollowServer.reject_event] rules."""
        self._api.clear()

    def clear_faults(self) -> None:
        """Forget the scripted faults no request has met yet (an outage ends now).

        Received events and idempotency keys are kept, so a retry of a request the
        server processed during the outage is still recognised as one.
        """
        with self._api.changed:
            self._api.faults.clear()

    # -- scripting ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: str | None = None,
        code: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` without processing them.

        The body is the API's JSON error envelope. ``code`` defaults by status (401
        ``auth_required``, 403 ``forbidden``, 429 ``rate_limited``, 5xx ``server_error``,
        else ``error``). ``retry_after`` is sent verbatim as ``Retry-After``, so malformed
        values can be tested too; a 429 carries ``Retry-After: 1`` unless told otherwise,
        as the API's always does ([`respond_next()`][vf_otel.testing.VibefollowServer.respond_next]
        sends one without). ``path`` is a
        route such as ``"/events/batch"`` (the ``/api/v1`` prefix is optional); ``None``
        matches any route.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400..599), got {status}")
        if retry_after is None and status == 429:
            retry_after = DEFAULT_RETRY_AFTER
        _check_header_value("retry_after", retry_after)
        fault = Fault(
            "status", normalise_route(path), status, code or default_code(status), retry_after
        )
        self._add(fault, count)

    def respond_next(
        self,
        status: int,
        body: bytes | str = b"",
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
        count: int = 1,
        path: str | None = None,
        process: bool = False,
    ) -> None:
        """Answer the next ``count`` matching requests with exactly this status and body.

        Any status from 200 to 599 with any body (``str`` is sent as UTF-8) and content
        type (``None``: no Content-Type header) and extra ``headers``: a proxy's HTML
        error page, a captive portal's 200, a 2xx with invalid JSON, a 429 without
        Retry-After. Unprocessed, unless ``process=True``: then the request is processed
        (recorded, its key stored) and this answer replaces the API's, so a retry with
        the same key is replayed.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be a final HTTP status (200..599), got {status}")
        data = body.encode() if isinstance(body, str) else bytes(body)
        if data and status in _NO_BODY_STATUSES:
            raise ValueError(f"a {status} answer cannot have a body")
        pairs = tuple((headers or {}).items())
        for name, value in pairs:
            _check_header_value(name, value)
        _check_header_value("content_type", content_type)
        kind: FaultKind = "redirect" if 300 <= status <= 399 else "respond"
        fault = Fault(
            kind,
            normalise_route(path),
            status,
            body=data,
            content_type=content_type,
            headers=pairs,
            process=process,
        )
        self._add(fault, count)

    def redirect_next(
        self, location: str, *, status: int = 307, count: int = 1, path: str | None = None
    ) -> None:
        """Redirect the next ``count`` matching requests to ``location``, unprocessed.

        A 3xx with a ``Location`` header and a small HTML body, as a web server sends
        for a moved (or mistyped) URL. A client must not follow it with the API key.
        """
        if not 300 <= status <= 399:
            raise ValueError(f"status must be a redirect (300..399), got {status}")
        _check_header_value("location", location)
        self.respond_next(
            status,
            _REDIRECT_BODY,
            content_type="text/html",
            headers={"Location": location},
            count=count,
            path=path,
        )

    def reset_next(self, *, count: int = 1, path: str | None = None) -> None:
        """Abort the next ``count`` matching connections with a TCP reset, unprocessed."""
        self._add(Fault("reset", normalise_route(path)), count)

    def delay_next(self, seconds: float, *, count: int = 1, path: str | None = None) -> None:
        """Hold the next ``count`` matching requests for ``seconds``, then process them.

        The delay is capped at 30 s and cut short by
        [`stop()`][vf_otel.testing.VibefollowServer.stop].
        """
        if not 0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"seconds must be in 0..{MAX_DELAY_SECONDS:g}, got {seconds}")
        self._add(Fault("delay", normalise_route(path), seconds=seconds), count)

    def lose_response_next(self, *, count: int = 1, path: str | None = None) -> None:
        """Process the next ``count`` matching requests, then reset instead of answering.

        This is "accepted, but the response was lost": a retry with the same
        Idempotency-Key and body gets the stored answer replayed, not recorded twice.
        """
        self._add(Fault("lose_response", normalise_route(path)), count)

    def reject_event(self, predicate: EventPredicate, *, name_field: bool = True) -> None:
        """Fail validation (422, field ``events[i].name``) for events matching ``predicate``.

        Simulates a server-side rule the client cannot know about, i.e. a poison event.
        The predicate gets a copy of each structurally valid event. A batch holding
        several gets one error per matching event. With ``name_field=False`` the errors
        carry no field: the server cannot say which event it refused.
        """
        with self._api.changed:
            self._api.rejections.append(Rejection(predicate, name_field))

    def _add(self, fault: Fault, count: int) -> None:
        with self._api.changed:
            self._api.faults.add(fault, count)


def _check_header_value(name: str, value: str | None) -> None:
    """A header value must be one line: anything else would let a test forge headers."""
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError(f"{name} must be a single header line")


def _loopback_family(host: str) -> int:
    """The address family for ``host``, which must be a loopback IP literal."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host must be a loopback IP address such as 127.0.0.1, got {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address, got {host!r}")
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET
