"""The HTTP side of delivery: the httpx client, what an answer means, its own log records."""

from __future__ import annotations

# Imported now, not at the first request: a first connection from a real thread after
# gevent patched socket builds gevent's resolver pool, which imports this module, and
# after threading's shutdown (at exit, where a first request may go out) its import
# fails ("can't register atexit after shutdown"). About 0.7 ms; asyncio has loaded
# concurrent.futures already.
import concurrent.futures.thread  # noqa: F401

# Imported now too: the first connection's getaddrinfo() encodes the host name with the
# "idna" codec, which is looked up, imported, on first use. On a sender thread that
# import can deadlock with an import the app's thread is running at that moment (seen:
# eventlet.monkey_patch() importing dnspython, while the first event of the process went
# out; the process hung for good at exit). requests and urllib3 import it early for the
# same reason.
import encodings.idna  # noqa: F401
import logging
import os
import platform
import re
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Final

import httpx

from .. import _compat
from .._config import Settings
from .._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    ValidationError,
    VibefollowError,
)
from .._version import __version__
from . import threads
from .policy import Watch, Watchdog, parse_retry_after, watch_streams, watching
from .threads import on_delivery_thread
from .wire import Request, accepted_envelope, declined_envelope, error_details, scrub, snippet

__all__ = [
    "HTTP_LOGGER",
    "HTTP_LOGGERS",
    "MAX_ANSWER_BYTES",
    "NOT_ACCEPTED",
    "NOT_THE_API",
    "REDIRECT",
    "RETRYABLE_STATUSES",
    "STALE_CONNECTION",
    "USER_AGENT",
    "Client",
    "describe",
    "error_for",
    "foreign_answer",
    "isolatable",
    "own_http",
    "quiet_own_http_logs",
    "redirected",
    "retryable",
    "scrub_key",
    "skip_cookieless_answers",
    "too_large",
]


# The HTTP side of delivery: one httpx client per process, one POST per call.
#
# Each POST is an ``httpx.Request`` built here and handed to ``httpx.Client.send``:
# ``httpx.Client.post`` would merge the base URL, default headers and cookies anew for
# every request, a third of the client's own cost per batch. The URL and headers
# are the same for every request but its Idempotency-Key, so they are made once;
# the client still picks the transport (proxies from the environment, TLS
# settings), never follows a redirect; cookies a server set go back as Client.post
# would send them.
#
# An answer is read only as far as it can matter: the API's envelope and error
# texts are small, so at most ``MAX_ANSWER_BYTES`` are read and the rest is left
# unread (the connection is closed, not drained). A 2xx larger than that is not
# the API's answer. ``timeout`` bounds the whole request (policy.py).
#
# A pooled keep-alive connection the server closed while it sat idle fails the
# request sent on it before any byte of an answer: a connection closed or reset on
# reuse. That is no sign of trouble at the API; its error says so
# (``STALE_CONNECTION``), and the attempt loop sends the request again at once.
#
# Two fast paths keep the client's CPU per request down (delivery is bound by one
# interpreter's CPU; benchmarks/fast_paths.py measures them against the plain path,
# ``Client.fast_paths = False``: about 50 µs of some 440 per 63 KB batch):
#
# - the request is built from headers made once per URL (Host and the client's
#   defaults, in the order ``httpx.Request(content=...)`` puts them) with its
#   Idempotency-Key and Content-Length set, and the body as an ``httpx.ByteStream``:
#   ``Request(stream=...)`` adds no header of its own, so the headers are not parsed
#   and normalised twice over for each request (about 15 µs);
# - the client's cookies skip httpx's parsing of an answer with no cookie in it:
#   ``Client.send`` hands every answer to ``Cookies.extract_cookies``, which wraps
#   it and its request in urllib objects (the request's URL parsed again, every
#   header copied into an ``email.message.Message``) only for the jar to find no
#   Set-Cookie header (about 20 µs). An answer that has one is parsed as before,
#   into the same jar. httpx has no public way to give a client a ``Cookies`` of
#   another class (its ``cookies`` setter copies into a plain one), so
#   :func:`skip_cookieless_answers` sets the client's ``_cookies``, with a guard:
#   when the attribute is not there as known (another httpx,
#   ``VF_OTEL_FORCE_COMPAT_FALLBACK=1``), nothing is changed and every answer is
#   parsed as httpx does.


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

    #: False: every request built and every answer's cookies parsed the plain httpx
    #: way (the fast paths above off; benchmarks compare the two, tests hold them equal).
    fast_paths: ClassVar[bool] = True

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None) -> None:
        self._settings = settings
        self._transport = transport
        self._pid = os.getpid()
        self._client: httpx.Client | None = None
        #: Per path: its URL, and the headers of a request to it but its own two.
        self._targets: dict[str, tuple[httpx.URL, httpx.Headers]] = {}
        self._headers: list[tuple[bytes, bytes]] = []
        self._configured_timeout: dict[str, float | None] | None = None
        #: Whether the watchdog sees every request's stream, reused connections too
        #: (deadline.watch_streams); False: the trace-only fallback.
        self.streams_watched = False
        # Senders share one client (and its connection pool): make it once.
        self._lock = threads.Lock()
        self._watchdog = Watchdog()
        # Its requests must add no line to the app's logs (see below).
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
            prepared = self.build(
                request, {"timeout": self._timeout(timeout), "trace": watch.trace}
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

    def build(self, request: Request, extensions: dict[str, Any]) -> httpx.Request:
        """The ``httpx.Request`` that POSTs ``request``: the headers ``httpx.Request``
        gives its body (Host first, Content-Length last), the client's defaults and ours.

        Call after :meth:`http`, which sets the client's default headers.
        """
        url, headers = self._target(request.path)
        if not self.fast_paths:
            return httpx.Request(
                "POST",
                url,
                content=request.body,
                headers=[*self._headers, (b"Idempotency-Key", request.key.encode())],
                extensions=extensions,
            )
        prepared = httpx.Request(
            "POST",
            url,
            headers=headers,
            stream=httpx.ByteStream(request.body),
            extensions=extensions,
        )
        prepared.headers["Idempotency-Key"] = request.key
        prepared.headers["Content-Length"] = str(len(request.body))
        prepared.read()  # as Request(content=...) does: its .content is there
        return prepared

    def _target(self, path: str) -> tuple[httpx.URL, httpx.Headers]:
        target = self._targets.get(path)
        if target is None:
            url = httpx.URL(self._settings.api_url + path)
            # What Request(content=...) puts first: Host, unless the client's headers have one.
            host = (
                []
                if any(k.lower() == b"host" for k, _ in self._headers)
                else [(b"Host", url.netloc)]
            )
            target = self._targets[path] = (url, httpx.Headers([*host, *self._headers]))
        return target

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
        # Identity: the API's answers are small; one compressed anyway is decoded with a
        # bound (_Inflate), never a whole network read at once as httpx would.
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
            # Its own transports only: one the app gave is left as it is (policy.py).
            self.streams_watched = watch_streams(self._client)
        # What build_request would send: the client's defaults (Accept, Accept-Encoding,
        # Connection) and ours; Host and Content-Length come with each request.
        self._headers = list(self._client.headers.raw)
        self._targets.clear()
        if self.fast_paths:
            skip_cookieless_answers(self._client)
        return self._client


class _Cookies(httpx.Cookies):
    """A client's cookies that parse only an answer with a cookie in it (see above)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Load the answer's cookies into the jar, as httpx does, if it has any."""
        # Set-Cookie2 too: the jar's policy may take it (http.cookiejar); an answer
        # with neither header leaves the jar as it is, which httpx's parsing would.
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


#: The private attribute behind ``httpx.Client.cookies`` (httpx 0.25 to 0.29 at least).
_COOKIES_ATTRIBUTE: Final = "_cookies"


def skip_cookieless_answers(client: httpx.Client) -> bool:
    """Give ``client`` cookies that skip parsing an answer with none (same jar, so
    the cookies it holds stay); False, nothing changed, when httpx is not laid out
    as known (``client.cookies`` not the ``_cookies`` attribute) or the fallback is forced.
    """
    if _compat.FALLBACK:
        return False
    cookies: Any = getattr(client, _COOKIES_ATTRIBUTE, None)
    if isinstance(cookies, _Cookies):
        return True
    if type(cookies) is not httpx.Cookies or client.cookies is not cookies:
        return False
    setattr(client, _COOKIES_ATTRIBUTE, _Cookies(cookies.jar))
    if client.cookies.jar is not cookies.jar or not isinstance(client.cookies, _Cookies):
        setattr(client, _COOKIES_ATTRIBUTE, cookies)  # the attribute is not what it reads
        return False
    return True


class _LateError(Exception):
    """The request's deadline passed while its answer was being read."""


def _read_answer(response: httpx.Response, watch: Watch) -> bytes | None:
    """The answer's body, decoded, up to ``MAX_ANSWER_BYTES``; None when it is longer.

    Read raw and decoded here, never more than the room left: httpx decodes each
    network read whole, so 64 KiB of a gzip bomb from a server that ignores the
    client's ``Accept-Encoding: identity`` would be 64 MB at once (``_Inflate``). Nor
    more than twice that read raw: a compressed answer may decode to little or nothing
    (what follows its end) for as long as the server likes.
    """
    if response.is_stream_consumed:  # made whole already (a transport the app gave)
        body = response.content
        return body if len(body) <= MAX_ANSWER_BYTES else None
    inflate = _Inflate.of(response.headers.get("content-encoding", ""))
    chunks: list[bytes] = []
    size = read = 0
    for raw in response.iter_raw():
        if watch.late():
            raise _LateError
        read += len(raw)
        if read > 2 * MAX_ANSWER_BYTES:  # compressed, it may decode to little for ever
            return None
        chunk = raw if inflate is None else inflate.feed(raw, MAX_ANSWER_BYTES + 1 - size)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Inflate:
    """Decodes a gzip or deflate answer, never making more than it is asked for.

    The client asks for ``identity``; a server (or proxy) that compresses anyway is
    decoded as httpx would, but ``zlib``'s ``max_length`` bounds each step's output, so
    a compressed answer costs no more memory than a plain one. What follows the end of
    the compressed body is ignored, as httpx does (and not kept). Any other coding
    (``br``, ``zstd``, several at once, a proxy's ``none``) is read as it is, as httpx
    reads a coding it does not know: the status still says what happened, and a 2xx
    body that is not the API's envelope is retried.
    """

    __slots__ = ("_deflate", "_started", "_zlib")

    def __init__(self, *, deflate: bool) -> None:
        self._deflate = deflate
        self._started = False
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS if deflate else zlib.MAX_WBITS | 16)

    @classmethod
    def of(cls, header: str) -> _Inflate | None:
        """The decoder for a Content-Encoding header; None: read the body as it is."""
        codings = [c for c in (part.strip().lower() for part in header.split(",")) if c]
        codings = [c for c in codings if c != "identity"]
        if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
            return cls(deflate=codings[0] == "deflate")
        return None

    def feed(self, data: bytes, most: int) -> bytes:
        """Decode ``data``; at most ``most`` bytes (then more input may be left)."""
        if self._zlib.eof:  # past the end of the compressed body: ignored
            return b""
        try:
            out = self._zlib.decompress(data, most)
        except zlib.error as exc:
            if not (self._deflate and not self._started):
                raise httpx.DecodingError(f"undecodable answer: {exc}") from None
            # "deflate" without the zlib wrapper (raw), as servers often send it.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._started = True
            return self.feed(data, most)
        self._started = True
        return out


def _timed_out(timeout: float) -> NetworkError:
    return NetworkError(f"timed out (the request took longer than {timeout:g} s)")


# What an HTTP answer means for delivery: an error class, and what to do about it.
#
# Every text a server (or a proxy in between) wrote goes through ``wire.scrub``
# before it becomes part of an error: a server that echoes the request's headers
# would otherwise put the API key into ``on_error`` and the warnings.

#: The code of the error for a 2xx that is not the API's JSON envelope.
NOT_THE_API: Final = "not_the_api"
#: The code of the error for a 3xx (the base URL is wrong).
REDIRECT: Final = "redirect"
#: The statuses tried again later, besides every 5xx: a lost answer or foreign 2xx (0), a
#: proxy's or load balancer's Request Timeout (408), a rate limit (429). The
#: Idempotency-Key makes a retry safe whatever the server did with the first try.
RETRYABLE_STATUSES: Final = frozenset({0, 408, 429})
#: A 400 about the body's size, as proxies and gateways word it.
_ABOUT_SIZE: Final = re.compile(
    r"too[\s_-]*(large|big|long)|exceed|\bsize\b|size[\s_-]*limit|max(imum)?[\s_-]*body",
    re.IGNORECASE,
)
_TITLE: Final = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_SCAN: Final = 64 * 1024


def retryable(error: VibefollowError) -> bool:
    """Network errors and foreign answers (status 0), 408, 429 and every 5xx: try again later."""
    return error.status in RETRYABLE_STATUSES or error.status >= 500


def too_large(error: VibefollowError) -> bool:
    """413, or a 400 about size: the body is over some limit, so smaller requests may pass."""
    if error.status == 413:
        return True
    return error.status == 400 and bool(_ABOUT_SIZE.search(f"{error.code or ''} {error.message}"))


def redirected(error: VibefollowError) -> bool:
    """A 3xx: the base URL is not the API's (never followed: the key would go along)."""
    return 300 <= error.status < 400


def isolatable(error: VibefollowError) -> bool:
    """A 422 about the batch's events (not an Idempotency-Key reuse): find the bad ones."""
    return error.status == 422 and error.code != "idempotency_key_reuse"


def error_for(
    response: httpx.Response, secret: str | None = None, body: bytes | None = None
) -> VibefollowError:
    """The error a non-2xx answer stands for, with its code, fields and Retry-After.

    ``body`` is what was read of the answer (its start), else ``response.content``.
    """
    details = error_details(response.content if body is None else body, secret)
    first = details[0]
    status, code = response.status_code, first.code
    more = len(details) - 1
    message = (
        f"HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {first.message}" if first.message else "")
        + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
    )
    if 300 <= status < 400:
        location = _one_line(response.headers.get("Location", ""), secret)
        return VibefollowError(
            f"HTTP {status} redirect to {location or '(no Location header)'}",
            status=status,
            code=REDIRECT,
        )
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status in (409, 422):
        fields = tuple(detail.field for detail in details if detail.field is not None)
        return ValidationError(message, status=status, code=code, fields=fields)
    if status == 429:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return RateLimitError(message, code=code, retry_after=after)
    if status >= 500:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return ServerError(message, status=status, code=code, retry_after=after)
    return VibefollowError(message, status=status, code=code)


def foreign_answer(
    response: httpx.Response, secret: str | None = None, body: bytes | None = None
) -> NetworkError:
    """A 2xx that is not the API's JSON envelope (a captive portal, a proxy): not delivered.

    Status 0, like a lost answer: nobody knows what reached the API, and a retry
    with the same Idempotency-Key is safe.
    """
    content = response.content if body is None else body
    kind = _one_line(response.headers.get("Content-Type", "") or "no Content-Type", secret)
    title = _TITLE.search(content[:_TITLE_SCAN])
    text = snippet(title.group(1) if title else content, secret)
    return NetworkError(
        f"HTTP {response.status_code} that is not the Vibefollow API's answer ({kind})"
        + (f": {text}" if text else ""),
        code=NOT_THE_API,
    )


def describe(error: VibefollowError) -> str:
    """The error's message, naming the refused field when there is one."""
    field = getattr(error, "field", None)
    return f"{error}" + (f" (field {field})" if field else "")


def _one_line(text: str, secret: str | None) -> str:
    return snippet(text.encode("utf-8", "replace"), secret)


# vf-otel's own HTTP log records: off the app's logs, kept at DEBUG under ``vf_otel.http``.
#
# httpx logs every request at INFO on the ``httpx`` logger ("HTTP Request: POST ...")
# and httpcore logs connection details at DEBUG; an app at ``basicConfig(level=INFO)``
# would print a line per batch vf-otel sends. httpx (0.25 to 0.28) has no per-client
# logger and logs after its event hooks run, so the records are caught where they
# are handled: a filter on those loggers takes the records made on a vf-otel thread
# (a worker or a sender, or the app's thread while it closes vf-otel's client) and
# hands a DEBUG copy of httpx's request line to the ``vf_otel.http`` logger instead
# (httpcore's trace, which carries raw headers a server may echo the key into, is
# dropped). The app's own requests, made on its own threads, log exactly as before.
# The copy is the formatted line with every API key a client registered replaced
# (``wire.scrub``): the status line's reason phrase is the server's text, and a
# server may echo the key into it.
#
# One filter object for the process, added once per logger (``addFilter`` ignores an
# object already there, so installing again does nothing); it holds no lock and no
# state beyond a thread-local mark, so a forked child keeps it as it is.

#: Where vf-otel's own HTTP records go, at DEBUG.
HTTP_LOGGER: Final = "vf_otel.http"
#: The loggers httpx and httpcore write to (a filter applies to its own logger only,
#: not to children, so each is named).
HTTP_LOGGERS: Final = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_own = threading.local()
#: The API keys of this process's clients, scrubbed from every line copied.
_KEYS: set[str] = set()


def scrub_key(key: str | None) -> None:
    """Scrub ``key`` from every HTTP log line vf-otel copies from now on."""
    if key:
        _KEYS.add(key)


@contextmanager
def own_http() -> Iterator[None]:
    """Mark HTTP work vf-otel does on the app's thread (closing its client) as vf-otel's."""
    previous = getattr(_own, "active", False)
    _own.active = True
    try:
        yield
    finally:
        _own.active = previous


class _OwnRequests(logging.Filter):
    """Keeps a record made by vf-otel's delivery out of the app's handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (on_delivery_thread() or getattr(_own, "active", False)):
            return True  # the app's own request: untouched
        if record.name != "httpx":
            # httpcore's trace carries raw headers, which a server may echo the API
            # key into: never copied anywhere.
            return False
        try:
            target = logging.getLogger(HTTP_LOGGER)
            if target.isEnabledFor(logging.DEBUG):
                moved = logging.makeLogRecord(record.__dict__)
                text = record.getMessage()
                for key in list(_KEYS):
                    text = scrub(text, key)
                moved.msg, moved.args = text, None
                moved.name = HTTP_LOGGER
                moved.levelno = logging.DEBUG
                moved.levelname = logging.getLevelName(logging.DEBUG)
                target.handle(moved)
        except Exception:  # noqa: BLE001, S110 - a log line is never worth a failed request
            pass
        return False


_FILTER: Final = _OwnRequests()


def quiet_own_http_logs() -> None:
    """Install the filter on httpx's and httpcore's loggers; calling again does nothing."""
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
