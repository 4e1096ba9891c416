"""Requests as the client builds them, over real loopback HTTP: proxies, headers, cookies.

The client builds each request itself (client.py); these tests hold it to what
httpx.Client.post did: the proxy from ``HTTP_PROXY`` is used, ``NO_PROXY`` is
honoured, and the headers and cookies an API sees are the same.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


class _ForwardProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy on 127.0.0.1 that records what it forwarded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.forwarded: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ForwardProxy

    def do_POST(self) -> None:
        target = urlsplit(self.path)  # a proxy gets the absolute URL
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        self.server.forwarded.append((self.command, self.path, headers))
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("POST", path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[_ForwardProxy]:
    server = _ForwardProxy()
    # Polled every 10 ms (not 0.5 s): shutdown() below ends it at once.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch, proxy: _ForwardProxy) -> _ForwardProxy:
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    return proxy


def test_events_and_upserts_go_through_the_environment_proxy(
    proxy_env: _ForwardProxy,
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
) -> None:
    """Both kinds of request go through HTTP_PROXY with the headers Client.post sent."""
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("signup", extra={"vf_user": "usr_1", "vf_traits": {"plan": "pro"}})
    app_logger.info("invite_sent", extra={"vf_user": "usr_1", "vf_properties": {"seats": 3}})

    assert handler.flush(timeout=10)

    assert [e["name"] for e in vibefollow_server.events] == ["signup", "invite_sent"]
    assert [(u["external_user_id"], u["traits"]) for u in vibefollow_server.users] == [
        ("usr_1", {"plan": "pro"})
    ]
    paths = [urlsplit(url).path for _, url, _ in proxy_env.forwarded]
    assert sorted(paths) == ["/api/v1/events/batch", "/api/v1/users"]
    for _, url, headers in proxy_env.forwarded:
        assert url.startswith(vibefollow_server.base_url + "/api/v1/")
        assert headers["User-Agent"].startswith("vf-otel/")
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == f"Bearer {vibefollow_server.api_key}"
        assert "Idempotency-Key" in headers
        assert headers["Accept"] == "*/*"  # httpx's defaults still go along
        # Answers are small: read as sent, never inflated past the 64 KiB read.
        assert headers["Accept-Encoding"] == "identity"


def test_no_proxy_sends_directly(
    proxy_env: _ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
) -> None:
    """A host in NO_PROXY is reached directly."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("signup", extra={"vf_user": "usr_1"})

    assert handler.flush(timeout=10)

    assert [e["name"] for e in vibefollow_server.events] == ["signup"]
    assert proxy_env.forwarded == []


def test_a_base_url_with_a_path_prefix_keeps_it(
    proxy_env: _ForwardProxy, vibefollow_server: VibefollowServer
) -> None:
    """The proxy sees the absolute URL: a base URL's path prefix is in it, once."""
    handler = vf_otel.VibefollowHandler(
        api_key=vibefollow_server.api_key,
        base_url=vibefollow_server.base_url + "/tenant",
        flush_interval=60.0,
        max_retries=0,
    )
    logger = logging.getLogger("test_proxy_env.prefix")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info("signup", extra={"vf_user": "usr_1"})
        # The test server has no /tenant/ routes: a 404, dead-lettered, so not delivered.
        assert not handler.flush(timeout=5)
        assert handler.stats().dead_lettered == 1
    finally:
        logger.removeHandler(handler)
        handler.close()
    urls = [url for _, url, _ in proxy_env.forwarded]
    assert urls, "nothing reached the proxy"
    assert {urlsplit(url).path for url in urls} == {"/tenant/api/v1/events/batch"}


def test_a_cookie_the_server_set_goes_back_as_client_post_sent_it(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
) -> None:
    """A load balancer's sticky-session cookie set on one answer rides the next request."""
    vibefollow_server.respond_next(
        202,
        '{"data": {"accepted": true}}',
        headers={"Set-Cookie": "lb=node-2; Path=/"},
        process=True,
    )
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info("first", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=5)
    app_logger.info("second", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=5)

    first, second = vibefollow_server.requests
    assert "cookie" not in first.headers
    assert second.headers["cookie"] == "lb=node-2"
    assert [e["name"] for e in vibefollow_server.events] == ["first", "second"]
