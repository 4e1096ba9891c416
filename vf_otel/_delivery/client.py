"""The HTTP side of delivery: one httpx client per process, one POST per call.

Each POST is an ``httpx.Request`` built here and handed to ``httpx.Client.send``:
``httpx.Client.post`` would merge the base URL, default headers and cookies anew for
every request, a third of the client's own cost per batch. The URL and headers
are the same for every request but its Idempotency-Key, so they are made once;
the client still picks the transport (proxies from the environment, TLS
settings), never follows a redirect, and times the request out; cookies a server
set go back as Client.post would send them.
"""

from __future__ import annotations

import os
import platform
from typing import Final

import httpx

from .._config import Settings
from .._errors import NetworkError, VibefollowError
from .._version import __version__
from . import threads
from .answers import error_for, foreign_answer
from .httplog import own_http, quiet_own_http_logs
from .wire import Request, accepted_envelope, scrub

__all__ = ["USER_AGENT", "Client"]

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
        # Senders share one client (and its connection pool): make it once.
        self._lock = threads.Lock()
        # Its requests must add no line to the app's logs (httplog.py).
        quiet_own_http_logs()

    def after_fork(self) -> None:
        """Forget the parent's client (its sockets are the parent's)."""
        self._pid = os.getpid()
        self._client = None
        self._lock = threads.Lock()

    def post(self, request: Request, timeout: float) -> VibefollowError | None:
        """None when the API accepted ``request``; else the error (status 0: no answer)."""
        try:
            client = self.http()
            prepared = httpx.Request(
                "POST",
                self._url(request.path),
                content=request.body,
                headers=[*self._headers, (b"Idempotency-Key", request.key.encode())],
                extensions={"timeout": self._timeout(timeout)},
            )
            if client.cookies:  # what Client.post sends too: a load balancer's sticky cookie
                client.cookies.set_cookie_header(prepared)
            response = client.send(prepared)
        except httpx.TimeoutException as exc:
            return NetworkError(f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            # A protocol error may quote what the server sent, which may echo the key.
            return NetworkError(f"{type(exc).__name__}: {scrub(str(exc), self._settings.api_key)}")
        except httpx.DecodingError as exc:
            # A broken (e.g. gzip) body: whatever the status, nobody knows what the
            # server did, and a retry with the same key is safe.
            return NetworkError(f"the answer could not be decoded ({type(exc).__name__})")
        if response.is_success:
            # A captive portal's or a proxy's page is not a delivery: retried (same key).
            if accepted_envelope(response.content):
                return None
            return foreign_answer(response, self._settings.api_key)
        return error_for(response, self._settings.api_key)

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
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._settings.api_key:
            headers["Authorization"] = "Bearer " + self._settings.api_key
        self._client = httpx.Client(
            base_url=self._settings.api_url,
            headers=headers,
            timeout=self._settings.timeout,
            transport=self._transport,
            follow_redirects=False,
        )
        # What build_request would send: the client's defaults (Accept, Accept-Encoding,
        # Connection) and ours; Host and Content-Length come with each request.
        self._headers = list(self._client.headers.raw)
        return self._client
