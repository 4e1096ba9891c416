"""A real Vibefollow-compatible HTTP server on loopback, for tests, demos and local development."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

from vf_otel.testing import _faults as faults
from vf_otel.testing._api import EventPredicate, InMemoryApi, Rejection
from vf_otel.testing._records import RecordedRequest
from vf_otel.testing._serving import Serving, loopback_address
from vf_otel.testing._validation import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_EVENT_BYTES

DEFAULT_API_KEY: Final = "sk_test_vfotel0local0testing0only0000000"
"""The key the server accepts unless told otherwise. Local-only: it opens nothing real."""

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_MAX_BATCH_SIZE: Final = 500
DEFAULT_REUSE_STATUS: Final = 422
DEFAULT_WAIT_TIMEOUT: Final = 5.0
# The contract disagrees with itself on the reuse status (vibefollow-api.md §8.2).
_REUSE_STATUSES: Final = frozenset({409, 422})


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

    ```pycon
    >>> with VibefollowServer() as server:
    ...     server.base_url.startswith("http://127.0.0.1:")
    True

    ```
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
        bind_host, family = loopback_address(host)
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
        stopping = threading.Event()
        self._api = InMemoryApi(
            api_key,
            max_batch_size=max_batch_size,
            reuse_status=reuse_status,
            wait=stopping.wait,
            max_body_bytes=max_body_bytes,
            max_event_bytes=max_event_bytes,
        )
        self._serving = Serving(self._api, (bind_host, port), family, stopping)

    def __repr__(self) -> str:
        # Deliberately without the API key.
        state = "running" if self.running else "not running"
        return f"<VibefollowServer {self._serving.base_url or self._serving.address[0]} {state}>"

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
        self._serving.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the socket. Idempotent."""
        self._serving.stop()

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._serving.running

    @property
    def base_url(self) -> str:
        """The origin, e.g. ``http://127.0.0.1:54321``; clients append ``/api/v1``."""
        if self._serving.base_url is None:
            raise RuntimeError("the server has no address until start() is called")
        return self._serving.base_url

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
        self._add(faults.status_fault(status, retry_after=retry_after, code=code, path=path), count)

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
        fault = faults.respond_fault(
            status, body, content_type=content_type, headers=headers, path=path, process=process
        )
        self._add(fault, count)

    def redirect_next(
        self, location: str, *, status: int = 307, count: int = 1, path: str | None = None
    ) -> None:
        """Redirect the next ``count`` matching requests to ``location``, unprocessed.

        A 3xx with a ``Location`` header and a small HTML body, as a web server sends
        for a moved (or mistyped) URL. A client must not follow it with the API key.
        """
        self._add(faults.redirect_fault(location, status=status, path=path), count)

    def reset_next(self, *, count: int = 1, path: str | None = None) -> None:
        """Abort the next ``count`` matching connections with a TCP reset, unprocessed."""
        self._add(faults.Fault("reset", faults.normalise_route(path)), count)

    def delay_next(self, seconds: float, *, count: int = 1, path: str | None = None) -> None:
        """Hold the next ``count`` matching requests for ``seconds``, then process them.

        The delay is capped at 30 s and cut short by
        [`stop()`][vf_otel.testing.VibefollowServer.stop].
        """
        self._add(faults.delay_fault(seconds, path=path), count)

    def lose_response_next(self, *, count: int = 1, path: str | None = None) -> None:
        """Process the next ``count`` matching requests, then reset instead of answering.

        This is "accepted, but the response was lost": a retry with the same
        Idempotency-Key and body gets the stored answer replayed, not recorded twice.
        """
        self._add(faults.Fault("lose_response", faults.normalise_route(path)), count)

    def reject_event(self, predicate: EventPredicate, *, name_field: bool = True) -> None:
        """Fail validation (422, field ``events[i].name``) for events matching ``predicate``.

        Simulates a server-side rule the client cannot know about, i.e. a poison event.
        The predicate gets a copy of each structurally valid event. A batch holding
        several gets one error per matching event. With ``name_field=False`` the errors
        carry no field: the server cannot say which event it refused.
        """
        with self._api.changed:
            self._api.rejections.append(Rejection(predicate, name_field))

    def _add(self, fault: faults.Fault, count: int) -> None:
        with self._api.changed:
            self._api.faults.add(fault, count)
