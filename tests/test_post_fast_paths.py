"""The client's fast paths (client.py), over real loopback HTTP: what the API sees is what
the plain httpx path sends, cookies still stick, and without httpx's private attribute
(a later httpx) the plain path does the same work. And the request watchdog, woken
only when it must be (policy.py), still cuts each request at its own deadline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import vf_otel._compat
from vf_otel._config import resolve_settings
from vf_otel._delivery import client as client_module
from vf_otel._delivery import policy
from vf_otel._delivery.client import Client
from vf_otel._delivery.wire import Request, encode_event, events_request
from vf_otel._event.model import Event
from vf_otel.testing import VibefollowServer

from .conftest import wait_until

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
_numbers = itertools.count()

needs_private_layout = pytest.mark.skipif(
    vf_otel._compat.FALLBACK,
    reason="needs the fast path: VF_OTEL_FORCE_COMPAT_FALLBACK=1 forces the fallback",
)


class PlainClient(Client):
    """The plain httpx path: requests built by ``httpx.Request(content=...)``, every
    answer's cookies parsed by httpx."""

    fast_paths = False


def batch() -> Request:
    """An /events/batch request of one new event (its own key)."""
    n = next(_numbers)
    event = Event("report_exported", "usr_1", {"n": n}, WHEN, f"e{n}", None)
    return events_request([event], [encode_event(event)])


@pytest.fixture
def clients(vibefollow_server: VibefollowServer) -> Iterator[list[Client]]:
    """The clients a test makes (closed afterwards)."""
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def client_for(
    server: VibefollowServer, made: list[Client], kind: type[Client] = Client, **options: Any
) -> Client:
    settings = resolve_settings(
        environ={}, api_key=server.api_key, base_url=server.base_url, **options
    )
    client = kind(settings, None)
    made.append(client)
    return client


def sent(server: VibefollowServer, index: int) -> dict[str, str]:
    """The headers of request ``index`` as the API saw them, but its own key."""
    headers = dict(server.requests[index].headers)
    assert headers.pop("idempotency-key")
    return headers


def test_the_fast_path_sends_what_the_plain_path_sends(
    vibefollow_server: VibefollowServer, clients: list[Client]
) -> None:
    """Same headers in the same order, same body, same URL: built, and as the API saw them
    (with a sticky cookie too)."""
    fast = client_for(vibefollow_server, clients)
    plain = client_for(vibefollow_server, clients, PlainClient)
    request = batch()
    built = []
    for client in (fast, plain):
        client.http()  # the client's default headers
        prepared = client.build(request, {})
        built.append((prepared.method, prepared.url, prepared.headers.raw, prepared.content))
    assert built[0] == built[1]
    assert built[0][2][0] == (b"Host", httpx.URL(vibefollow_server.base_url).netloc)

    vibefollow_server.respond_next(
        202,
        '{"data": {"accepted": true}}',
        headers={"Set-Cookie": "lb=node-2; Path=/"},
        count=2,
        process=True,
    )
    for client in (fast, plain):
        assert client.post(batch(), 10) is None  # answered with the cookie
    for client in (fast, plain):
        assert client.post(batch(), 10) is None  # sent with it
    assert sent(vibefollow_server, 0) == sent(vibefollow_server, 1)
    assert sent(vibefollow_server, 2) == sent(vibefollow_server, 3)
    assert sent(vibefollow_server, 2)["cookie"] == "lb=node-2"
    assert len(vibefollow_server.events) == 4


def sticky_cookies(server: VibefollowServer, client: Client) -> None:
    """An answer's Set-Cookie rides the next requests; an answer without one leaves the
    jar as it is; a later Set-Cookie replaces the value."""
    server.respond_next(202, '{"data": {"accepted": true}}', headers={"Set-Cookie": "lb=a; Path=/"})
    for _ in range(3):
        assert client.post(batch(), 10) is None
    server.respond_next(202, '{"data": {"accepted": true}}', headers={"Set-Cookie": "lb=b; Path=/"})
    for _ in range(2):
        assert client.post(batch(), 10) is None
    cookies = [r.headers.get("cookie") for r in server.requests]
    assert cookies == [None, "lb=a", "lb=a", "lb=a", "lb=b"]
    assert dict(client.http().cookies) == {"lb": "b"}


@needs_private_layout
def test_an_answer_with_a_cookie_still_fills_the_jar_on_the_fast_path(
    vibefollow_server: VibefollowServer, clients: list[Client]
) -> None:
    client = client_for(vibefollow_server, clients)
    assert isinstance(client.http().cookies, client_module._Cookies)
    sticky_cookies(vibefollow_server, client)


def test_without_the_private_attribute_cookies_stick_all_the_same(
    vibefollow_server: VibefollowServer,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A later httpx that renamed ``Client._cookies``: nothing is changed, httpx parses
    every answer, and the cookie rides the next requests as before."""
    monkeypatch.setattr(client_module, "_COOKIES_ATTRIBUTE", "_cookies_renamed")
    client = client_for(vibefollow_server, clients)
    assert type(client.http().cookies) is httpx.Cookies
    assert not hasattr(client.http(), "_cookies_renamed")
    sticky_cookies(vibefollow_server, client)


def test_the_forced_fallback_leaves_the_cookies_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vf_otel._compat, "FALLBACK", True)
    with httpx.Client() as http:
        cookies = http.cookies
        assert client_module.skip_cookieless_answers(http) is False
        assert http.cookies is cookies
        assert type(cookies) is httpx.Cookies


class _CookiesElsewhere(httpx.Client):
    """An httpx laid out otherwise: ``cookies`` is not what ``_cookies`` holds."""

    def __init__(self) -> None:
        super().__init__()
        self._elsewhere = httpx.Cookies()

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._elsewhere


def test_a_client_laid_out_otherwise_is_left_alone() -> None:
    with _CookiesElsewhere() as http:
        before = http._cookies
        assert client_module.skip_cookieless_answers(http) is False
        assert http._cookies is before
        assert type(http.cookies) is httpx.Cookies


@needs_private_layout
def test_the_fast_cookies_keep_the_jar_and_its_cookies() -> None:
    """Installed on a client that already holds a cookie: the same jar, the cookie kept;
    installing again changes nothing."""
    with httpx.Client(cookies={"lb": "a"}) as http:
        jar = http.cookies.jar
        assert client_module.skip_cookieless_answers(http) is True
        fast = http.cookies
        assert isinstance(fast, client_module._Cookies)
        assert fast.jar is jar
        assert dict(fast) == {"lb": "a"}
        assert client_module.skip_cookieless_answers(http) is True
        assert http.cookies is fast


def test_a_shorter_deadline_wakes_the_watchdog() -> None:
    """The watchdog sleeps until the first deadline it knows of; a request due sooner
    wakes it, and is cut at its own deadline while the longer one runs on."""
    dog = policy.Watchdog()
    long = dog.watch(60)
    assert wait_until(lambda: dog._until == long.deadline)  # asleep until then
    short = dog.watch(0.2)
    try:
        assert wait_until(lambda: short.expired)
        assert not long.expired
    finally:
        dog.release(short)
        dog.release(long)


def test_the_watchdog_drops_the_watches_that_ended() -> None:
    """Requests that ended in time do not wake it one by one, nor pile up: it drops them
    every so often."""
    dog = policy.Watchdog()
    for _ in range(50 * policy._PRUNE_AT):
        dog.release(dog.watch(60))
    assert wait_until(lambda: len(dog._heap) < policy._PRUNE_AT)
