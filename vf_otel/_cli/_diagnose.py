"""Plain-words diagnoses for what can go wrong between this machine and the Vibefollow API."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from .._config import Settings
from .._delivery.wire import error_detail
from ._exit import ExitCode
from ._settings import redact_key
from ._terminal import one_line

__all__ = [
    "PROXY_HINT",
    "Failure",
    "environment_proxy",
    "failure_for_exception",
    "failure_for_response",
]

_E = TypeVar("_E", bound=BaseException)

PROXY_HINT: Final = (
    "vf-otel (through httpx) uses the proxy named by HTTPS_PROXY / HTTP_PROXY / ALL_PROXY. "
    "Fix that variable, or list the API host in NO_PROXY to connect directly."
)
TLS_HINT: Final = (
    "Check that the base URL's scheme is right (a plain-HTTP server such as "
    "`vf-otel devserver` needs http://). If a proxy or firewall inspects TLS, point "
    "SSL_CERT_FILE at its CA bundle; check the system clock, too."
)
URL_HINT: Final = (
    "The base URL must be the API origin, e.g. https://api.vibefollow.com; vf-otel "
    "appends /api/v1 itself. Set VIBEFOLLOW_BASE_URL (or --base-url)."
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, in plain words, with the exit status that names it and a next step."""

    code: ExitCode
    message: str
    hint: str = ""


def environment_proxy(url: str) -> str | None:
    """The proxy httpx takes from the environment for ``url`` (credentials hidden), or None.

    The same variables and NO_PROXY rules as httpx: ``*``, a host, or a domain that also
    covers its subdomains.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed(parts.hostname or "", proxies.get("no", "")):
        return None
    shown = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    netloc = shown.netloc.rpartition("@")[2]
    return urlunsplit((shown.scheme, netloc, shown.path, "", ""))


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        domain = entry.partition("://")[2] if "://" in entry else entry
        domain = domain.strip("[]").lstrip(".")
        if entry == "*" or (domain and (host == domain or host.endswith("." + domain))):
            return True
    return False


def failure_for_exception(exc: httpx.HTTPError, settings: Settings, proxy: str | None) -> Failure:
    """Name a request that got no HTTP answer: proxy, timeout, TLS, DNS, refused, broken."""
    parts = urlsplit(settings.base_url)
    where = parts.netloc
    if isinstance(exc, httpx.ProxyError):
        return Failure(
            ExitCode.PROXY, f"the proxy {proxy} would not connect to {where}: {exc}", PROXY_HINT
        )
    if isinstance(exc, httpx.TimeoutException):
        via = f" through the proxy {proxy}" if proxy else ""
        message = (
            f"no answer from {where}{via} within {settings.timeout:g} s ({type(exc).__name__})"
        )
        hint = "The server or network is slow or drops packets; try a longer --timeout."
        return Failure(ExitCode.TIMEOUT, message, hint)
    tls = _cause(exc, ssl.SSLError)
    if tls is not None:
        return Failure(ExitCode.TLS, f"the TLS handshake with {where} failed: {tls}", TLS_HINT)
    if proxy is not None and isinstance(exc, httpx.ConnectError):
        return Failure(ExitCode.PROXY, f"cannot connect to the proxy {proxy}: {exc}", PROXY_HINT)
    if _cause(exc, socket.gaierror) is not None:
        message = f"cannot resolve the host name {parts.hostname}: {exc}"
        return Failure(ExitCode.CONNECTION, message, "Check the base URL for a typo, and DNS.")
    if isinstance(exc, httpx.ConnectError):
        message = f"cannot connect to {where}: {exc}"
        hint = "Nothing accepts connections there: the URL's host or port is wrong, or it is down."
        return Failure(ExitCode.CONNECTION, message, hint)
    message = f"the connection to {where} failed: {type(exc).__name__}: {exc}"
    return Failure(ExitCode.CONNECTION, message, "Check the base URL, and that it speaks HTTP(S).")


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def failure_for_response(response: httpx.Response, settings: Settings) -> Failure | None:
    """None when the API accepted the request; otherwise what the status means here."""
    status = response.status_code
    if 200 <= status < 300:
        return None if _looks_accepted(response) else _not_the_api(response)
    if 300 <= status < 400:
        target = one_line(response.headers.get("Location", "(no Location header)"))
        message = f"{response.request.url} redirects ({_said(response)}) to {target}"
        return Failure(ExitCode.WRONG_URL, message, URL_HINT)
    if status in (401, 403):
        return _auth_failure(response, settings)
    if status in (404, 405):
        message = f"nothing at {response.request.url} takes events ({_said(response)})"
        return Failure(ExitCode.WRONG_URL, message, URL_HINT + f" It is now {settings.base_url}.")
    if status in (409, 422):
        field = error_detail(response.content).field
        where = f"; field {one_line(field)}" if field else ""
        message = f"the server refused the test event ({_said(response)}{where})"
        hint = "The API's rules may differ from this vf-otel version's; try upgrading vf-otel."
        return Failure(ExitCode.INVALID_EVENT, message, hint)
    if status == 429:
        return _rate_limited(response)
    if status >= 500:
        message = f"the server failed ({_said(response)})"
        hint = (
            "Not a configuration problem: Vibefollow (or a gateway in between) is in trouble. "
            "The library retries these; run the doctor again later."
        )
        return Failure(ExitCode.SERVER_ERROR, message, hint)
    message = f"unexpected answer {_said(response)}"
    return Failure(ExitCode.UNEXPECTED_RESPONSE, message, URL_HINT)


def _auth_failure(response: httpx.Response, settings: Settings) -> Failure:
    key = redact_key(settings.api_key)
    if response.status_code == 401:
        message = f"the API key {key} was refused ({_said(response)}): wrong, mistyped or revoked"
        hint = "Copy the project's key from the Vibefollow dashboard into VIBEFOLLOW_API_KEY."
    else:
        message = f"the API key {key} is not allowed here ({_said(response)})"
        hint = "The key is valid but for another project, or lacks access: use this project's key."
    return Failure(ExitCode.AUTH, message, hint)


def _rate_limited(response: httpx.Response) -> Failure:
    after = response.headers.get("Retry-After")
    wait = f"; retry after {one_line(after)} s" if after else ""
    message = f"rate limited ({_said(response)}{wait})"
    hint = "The key and URL work. Too many requests for this project right now: wait and retry."
    return Failure(ExitCode.RATE_LIMITED, message, hint)


def _said(response: httpx.Response) -> str:
    """``HTTP 422 validation_failed: name is required``, from whatever the body holds."""
    status = response.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    detail = error_detail(response.content)
    text = f"HTTP {status}"
    if detail.code:
        text += f" {one_line(detail.code)}"
    elif phrase:
        text += f" {phrase}"
    message = one_line(detail.message)
    return text + (f": {message}" if message else "")


def _looks_accepted(response: httpx.Response) -> bool:
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), dict)


def _not_the_api(response: httpx.Response) -> Failure:
    kind = response.headers.get("Content-Type", "no content type")
    message = (
        f"{response.request.url} answered HTTP {response.status_code} ({one_line(kind)}), "
        "but not the way the Vibefollow API does"
    )
    return Failure(ExitCode.WRONG_URL, message, URL_HINT)
