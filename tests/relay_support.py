"""Shared by the relay tests: OTLP/JSON built by hand per the specification, and a relay
served by a real uvicorn on loopback (in a thread, or as a ``vf-otel relay`` process),
and a TCP forwarder in front of relays (a round-robin balancer, or a recorder)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import httpx

TOKEN: Final = "relay-test-token-0123456789"
AUTH: Final = {"Authorization": f"Bearer {TOKEN}"}
TRACE_ID: Final = "5b8efff798038103d269b633813fc60c"
SPAN_ID: Final = "eee19b7ec3c1b174"
#: 2026-01-02T03:04:05.678901234Z in ns since the epoch.
START_NS: Final = 1_767_323_045_678_901_234


def attr(key: str, value: Any) -> dict[str, Any]:
    """One OTLP/JSON KeyValue (ints as strings, as the spec writes int64)."""
    if isinstance(value, bool):
        any_value: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        any_value = {"intValue": str(value)}
    elif isinstance(value, float):
        any_value = {"doubleValue": value}
    else:
        any_value = {"stringValue": value}
    return {"key": key, "value": any_value}


def json_span(
    name: str,
    attributes: Mapping[str, Any],
    *,
    trace_id: str = TRACE_ID,
    span_id: str = SPAN_ID,
    start: int = START_NS,
    status: int = 0,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A span object as OTLP/JSON writes it: hex ids, int enums, int64 as strings, plus
    a field no version of OTLP defines (a receiver ignores it)."""
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": "",
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1_000_000),
        "attributes": [attr(k, v) for k, v in attributes.items()],
        "events": events or [],
        "status": {"code": status},
        "someFutureField": {"x": 1},
    }


def json_traces(*spans: dict[str, Any]) -> dict[str, Any]:
    """An ExportTraceServiceRequest in OTLP/JSON."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "shop")]},
                "scopeSpans": [{"scope": {"name": "shop.http"}, "spans": list(spans)}],
            }
        ]
    }


def json_log(
    body: str, attributes: Mapping[str, Any], *, time_ns: int = START_NS, scope: str = "shop"
) -> dict[str, Any]:
    """An ExportLogsServiceRequest with one record, in OTLP/JSON."""
    record = {
        "timeUnixNano": str(time_ns),
        "observedTimeUnixNano": str(time_ns),
        "severityNumber": 9,
        "body": {"stringValue": body},
        "attributes": [attr(k, v) for k, v in attributes.items()],
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
    }
    if not time_ns:
        del record["timeUnixNano"], record["observedTimeUnixNano"]
    return {
        "resourceLogs": [
            {"scopeLogs": [{"scope": {"name": scope}, "logRecords": [record]}]},
        ]
    }


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # bounded: uvicorn starts in well under a second
        if server.started or not thread.is_alive():
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def relay_env(base_url: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of a ``vf-otel relay`` process delivering to ``base_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    env.update(
        VIBEFOLLOW_API_KEY=api_key,
        VIBEFOLLOW_BASE_URL=base_url,
        VIBEFOLLOW_RELAY_TOKEN=TOKEN,
        **extra,
    )
    return env


@contextlib.contextmanager
def relay_process(
    env: Mapping[str, str],
    *args: str,
    port: int | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``vf-otel relay`` in its own process, ready; yields its URL and the process.

    Stopped with SIGTERM afterwards (unless the test killed it already).
    """
    port = port or free_port()
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - closed below, after the process
    command = [sys.executable, "-m", "vf_otel", "relay", "--port", str(port), *args]
    process = subprocess.Popen(command, env=dict(env), stdout=out, stderr=out, cwd=cwd)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            stop_process(process)
        out.close()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) until the relay answers /readyz."""
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"the relay exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the relay did not become ready")


class Forwarder:
    """A TCP forwarder on loopback (``url``): each new connection goes to the next of
    ``backends`` in turn (a round-robin load balancer when there are several); with
    ``record``, what clients sent through it is kept (``sent``)."""

    def __init__(self, backends: list[int], *, record: bool = False) -> None:
        self._backends = backends
        self._turn = 0
        self._record = record
        self._lock = threading.Lock()
        self._sent = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> bytes:
        """The bytes clients sent through it (with ``record``), all connections in one."""
        with self._lock:
            return bytes(self._sent)

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            port = self._backends[self._turn % len(self._backends)]
            self._turn += 1
            threading.Thread(target=self._carry, args=(client, port), daemon=True).start()

    def _carry(self, client: socket.socket, port: int) -> None:
        """Carry one connection both ways until both sides are done, then close it."""
        with client, socket.create_connection(("127.0.0.1", port)) as backend:
            back = threading.Thread(target=self._pipe, args=(backend, client, False))
            back.start()
            self._pipe(client, backend, self._record)
            back.join(60)

    def _pipe(self, source: socket.socket, sink: socket.socket, keep: bool) -> None:
        try:
            while data := source.recv(65536):
                if keep:
                    with self._lock:
                        self._sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
