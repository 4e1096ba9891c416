"""Running the test server: a loopback address, the daemon thread that serves it, and a
stop that is final. What is served is ``InMemoryApi``'s business; how, ``_http``'s."""

from __future__ import annotations

import ipaddress
import socket
import threading

from vf_otel.testing._api import InMemoryApi
from vf_otel.testing._http import LoopbackHTTPServer


def loopback_address(host: str) -> tuple[str, int]:
    """The IP literal to bind for ``host`` and its address family.

    ``host`` is a loopback IP literal, or a name such as ``localhost`` that resolves
    to loopback addresses only (the first one is bound, IPv4 first); anything that is
    not loopback, or does not resolve, is refused with a ValueError.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _resolve_loopback(host)
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address, got {host!r}")
    return host, socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _resolve_loopback(name: str) -> tuple[str, int]:
    """``name`` resolved, when every address it resolves to is loopback."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(address.is_loopback for address in addresses):
        raise ValueError(
            f"host must be a loopback address such as 127.0.0.1 or localhost, got {name!r}"
            + ("" if addresses else " (it does not resolve)")
        )
    address = min(addresses, key=lambda a: a.version)  # IPv4 first
    return str(address), socket.AF_INET6 if address.version == 6 else socket.AF_INET


class Serving:
    """``api`` served at ``address`` in a daemon thread: started once, stopped for good.

    ``stopping`` is set by ``stop()``; the API's scripted delays wait on it, so
    stopping cuts them short.
    """

    def __init__(
        self, api: InMemoryApi, address: tuple[str, int], family: int, stopping: threading.Event
    ) -> None:
        self.address = address
        self._api = api
        self._family = family
        self._stopping = stopping
        self._lock = threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Kept after stop(), so reprs and failure messages can still name the server.
        self.base_url: str | None = None

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._httpd is not None and not self._stopping.is_set()

    def start(self) -> None:
        """Bind and serve in a daemon thread; again does nothing; after ``stop()`` raises."""
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("a stopped VibefollowServer cannot be restarted; make a new one")
            if self._httpd is None:
                self._httpd = LoopbackHTTPServer(self.address, self._api, self._family)
                host, port = self._httpd.socket.getsockname()[:2]
                shown = f"[{host}]" if self._family == socket.AF_INET6 else str(host)
                self.base_url = f"http://{shown}:{port}"
                self._thread = threading.Thread(
                    target=self._httpd.serve_until_stopped,
                    name=f"vibefollow-test-server:{port}",
                    daemon=True,
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and close the socket. Idempotent."""
        with self._lock:
            if self._httpd is None or self._stopping.is_set():
                return
            self._stopping.set()  # wakes handlers sleeping in a scripted delay
            self._httpd.stop_serving()
            if self._thread is not None:
                self._thread.join()
            self._httpd.drop_connections()
            self._httpd.server_close()
