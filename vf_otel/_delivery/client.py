"""The HTTP side of delivery: one httpx client per process, one POST per call.

Each POST is an ``httpx.Request`` built here and handed to ``httpx.Client.send``:
``httpx.Client.post`` would merge the base URL, default headers and cookies anew for
every request, a third of the client's own cost per batch. The URL and headers
are the same for every request but its Idempotency-Key, so they are made once;
the client still picks the transport (proxies from the environment, TLS
settings), never follows a redirect; cookies a server set go back as Client.post
would send them.

An answer is read only as far as it can matter: the API's envelope and error
texts are small, so at most ``MAX_ANSWER_BYTES`` are read and the rest is left
unread (the connection is closed, not drained). A 2xx larger than that is not
the API's answer. ``timeout`` bounds the whole request (deadline.py).

A pooled keep-alive connection the server closed while it sat idle fails the
request sent on it before any byte of an answer: a connection closed or reset on
reuse. That is no sign of trouble at the API; its error says so
(``STALE_CONNECTION``), and the attempt loop sends the request again at once.
"""

from __future__ import annotations

# Imported now, not at the first request: a first connection from a real thread after
# gevent patched socket builds gevent's resolver pool, which imports this module, and
# after threading's shutdown (at exit, where a first request may go out) its import
# fails ("can't register atexit after shutdown"). About 0.7 ms; asyncio has loaded
# concurrent.futures already.
import concurrent.futures.thread  # noqa: F401
import os
import platform
from typing import Final

import httpx

from .._config import Settings
from .._errors import NetworkError, VibefollowError
from .._version import __version__
from . import threads
from .answers import NOT_THE_API, error_for, foreign_answer
from .deadline import Watch, Watchdog, watch_streams, watching
from .httplog import own_http, quiet_own_http_logs, scrub_key
from .wire import Request, accepted_envelope, declined_envelope, scrub

__all__ = ["MAX_ANSWER_BYTES", "NOT_ACCEPTED", "STALE_CONNECTION", "USER_AGENT", "Client"]

#: The most of an answer read: the API's envelopes and error texts are far smaller.
MAX_ANSWER_BYTES: Final = 64 * 1024
#: The code of the error for a 2xx envelope saying ``"accepted": false``.
NOT_ACCEPTED: Final = "not_accepted"
#: The code of the error for a pooled connection closed or reset on reuse, before any
#: byte of an answer came (the server dropped it while it sat idle).
STALE_CONNECTION: Final = "stale_connection"
#: What a stale connection fails with: the server closed it (no answer), or reset it.
_STALE_ERRORS: Final = (
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.ConnectError,
)

USER_AGENT: Final = (
    f"vf-otel/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
)


class Client:
    """POSTs requests with their key; a forked child gets its own connection pool."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None) -> None:
        self._settings = settings
        self._transport = transport
        self._pid = os.getpid()
        self._client: httpx.Client | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._headers: list[tuple[bytes, bytes]] = []
        self._configured_timeout: dict[str, float | None] | None = None
        #: Whether the watchdog sees every request's stream, reused connections too
        #: (deadline.watch_streams); False: the trace-only fallback.
        self.streams_watched = False
        # Senders share one client (and its connection pool): make it once.
        self._lock = threads.Lock()
        self._watchdog = Watchdog()
        # Its requests must add no line to the app's logs (httplog.py).
        quiet_own_http_logs()
        scrub_key(settings.api_key)

    def after_fork(self) -> None:
        """Forget the parent's client (its sockets are the parent's)."""
        self._pid = os.getpid()
        self._client = None
        self._lock = threads.Lock()

    def post(self, request: Request, timeout: float) -> VibefollowError | None:
        """None when the API accepted ``request``; else the error (status 0: no answer).

        ``timeout`` bounds the whole request, from connecting to the answer's last byte.
        """
        watch = self._watchdog.watch(timeout)
        try:
            with watching(watch):
                return self._post(request, timeout, watch)
        finally:
            self._watchdog.release(watch)

    def _post(self, request: Request, timeout: float, watch: Watch) -> VibefollowError | None:
        try:
            client = self.http()
            prepared = httpx.Request(
                "POST",
                self._url(request.path),
                content=request.body,
                headers=[*self._headers, (b"Idempotency-Key", request.key.encode())],
                extensions={"timeout": self._timeout(timeout), "trace": watch.trace},
            )
            if client.cookies:  # what Client.post sends too: a load balancer's sticky cookie
                client.cookies.set_cookie_header(prepared)
            response = client.send(prepared, stream=True)
            try:
                watch.use(response.extensions.get("network_stream"))  # a reused connection
                body = _read_answer(response, watch)
            finally:
                response.close()  # what is left unread is not drained: the connection goes
        except httpx.TimeoutException as exc:
            return NetworkError(f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            if watch.late():
                return _timed_out(timeout)  # the watchdog cut it
            if isinstance(exc, _STALE_ERRORS) and watch.reused and not watch.received:
                return NetworkError(
                    f"a pooled connection was closed on reuse ({type(exc).__name__})",
                    code=STALE_CONNECTION,
                )
            # A protocol error may quote what the server sent, which may echo the key.
            return NetworkError(f"{type(exc).__name__}: {scrub(str(exc), self._settings.api_key)}")
        except httpx.DecodingError as exc:
            # A broken (e.g. gzip) body: whatever the status, nobody knows what the
            # server did, and a retry with the same key is safe.
            return NetworkError(f"the answer could not be decoded ({type(exc).__name__})")
        except _LateError:
            return _timed_out(timeout)
        if response.is_success:
            if body is None:
                return NetworkError(
                    f"HTTP {response.status_code} with an answer over {MAX_ANSWER_BYTES} bytes: "
                    "not the Vibefollow API's answer",
                    code=NOT_THE_API,
                )
            # A captive portal's or a proxy's page is not a delivery: retried (same key).
            if accepted_envelope(body):
                if declined_envelope(body):
                    # Not sent, and asking again with the same key replays the same
                    # answer: refused for good, dead-lettered and reported (delivery.md).
                    return VibefollowError(
                        f"HTTP {response.status_code} whose answer says accepted: false",
                        status=response.status_code,
                        code=NOT_ACCEPTED,
                    )
                return None
            return foreign_answer(response, self._settings.api_key, body)
        return error_for(response, self._settings.api_key, body or b"")

    def close(self) -> None:
        """Close this process's client, if it made one."""
        with self._lock, own_http():  # httpcore logs the close on this (app's) thread
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._settings.api_url + path)
        return url

    def _timeout(self, seconds: float) -> dict[str, float | None]:
        """The request's timeout, as ``httpx.Timeout(seconds)`` gives it to the transport.

        Made once for the configured timeout; a deadline's remainder (shorter) each time.
        """
        if seconds == self._settings.timeout:
            if self._configured_timeout is None:
                self._configured_timeout = httpx.Timeout(seconds).as_dict()
            return self._configured_timeout
        return httpx.Timeout(seconds).as_dict()

    def http(self) -> httpx.Client:
        """The httpx client, made on first use (and again in a forked child)."""
        if self._pid != os.getpid():
            self.after_fork()  # forked without the at-fork hook having run
        with self._lock:
            return self._client or self._make()

    def _make(self) -> httpx.Client:
        # Identity: a compressed answer could grow past MAX_ANSWER_BYTES many times in
        # one decoded chunk; the API's answers are small anyway.
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
        }
        if self._settings.api_key:
            headers["Authorization"] = "Bearer " + self._settings.api_key
        self._client = httpx.Client(
            base_url=self._settings.api_url,
            headers=headers,
            timeout=self._settings.timeout,
            transport=self._transport,
            follow_redirects=False,
        )
        if self._transport is None:
            # Its own transports only: one the app gave is left as it is (deadline.py).
            self.streams_watched = watch_streams(self._client)
        # What build_request would send: the client's defaults (Accept, Accept-Encoding,
        # Connection) and ours; Host and Content-Length come with each request.
        self._headers = list(self._client.headers.raw)
        return self._client


class _LateError(Exception):
    """The request's deadline passed while its answer was being read."""


def _read_answer(response: httpx.Response, watch: Watch) -> bytes | None:
    """The answer's body, up to ``MAX_ANSWER_BYTES``; None when it is longer."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if watch.late():
            raise _LateError
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _timed_out(timeout: float) -> NetworkError:
    return NetworkError(f"timed out (the request took longer than {timeout:g} s)")
