"""Events per second through `vf-otel relay` (protobuf, JSON) beside the in-process exporter.

    python benchmarks/relay.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

A batch of 512 tagged spans (BatchSpanProcessor's default batch) is encoded once as
an OTLP ``ExportTraceServiceRequest``, in protobuf and in OTLP/JSON, and POSTed again
and again to one relay process (uvicorn, one worker) that delivers to a loopback sink
standing in for the API; the in-process ``VibefollowSpanExporter.export`` gets the same
spans and delivers to the same sink. Each round times every variant once, rotating
the order. Figures are seconds per event for the client (request to answer), and for
the relay rows also the relay process's own CPU per event (Linux: /proc), whose
inverse is events/s per core.

Variants:
- exporter: ``VibefollowSpanExporter.export`` in this process (the reference);
- relay_protobuf: POST /v1/traces, ``application/x-protobuf``;
- relay_json: POST /v1/traces, ``application/json`` (hex ids, as OTLP/JSON).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
from _common import (
    LOCAL_KEY,
    SIZES,
    ServerProcess,
    interleave,
    loopback_only,
    optional_module,
    parse_args,
    print_table,
    summarise,
    write_results,
)
from google.protobuf import json_format
from spans import SPAN_BATCH, make_spans

import vf_otel

TOKEN: Final = "benchmark-relay-token-0000"
READY_TIMEOUT: Final = 30.0
LABELS: Final = {
    "exporter": "VibefollowSpanExporter.export in process",
    "relay_protobuf": "vf-otel relay, OTLP/HTTP protobuf",
    "relay_json": "vf-otel relay, OTLP/HTTP JSON",
}
VARIANTS: Final = tuple(LABELS)
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def encode(spans: Sequence[Any]) -> tuple[bytes, bytes]:
    """The spans as an ExportTraceServiceRequest: protobuf, and OTLP/JSON (hex ids)."""
    encoder = optional_module("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    if encoder is None:
        sys.exit("benchmarks/relay.py needs opentelemetry-exporter-otlp-proto-common")
    message = encoder.encode_spans(spans)
    document = json_format.MessageToDict(message)
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return message.SerializeToString(), json.dumps(document).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def start_relay(sink_url: str, port: int) -> subprocess.Popen[bytes]:
    """`vf-otel relay` delivering to the sink; returns once it is ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    env.update(
        VIBEFOLLOW_API_KEY=LOCAL_KEY,
        VIBEFOLLOW_BASE_URL=sink_url,
        VIBEFOLLOW_RELAY_TOKEN=TOKEN,
        VIBEFOLLOW_MAX_QUEUE_SIZE="10000000",
    )
    command = [sys.executable, "-m", "vf_otel", "relay", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    sys.exit("the relay did not start")


def posting(client: httpx.Client, body: bytes, content_type: str, pid: int) -> Any:
    """A timer: seconds per event to POST ``body`` ``batches`` times; CPU kept aside."""
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
    cpu: list[float] = []

    def run(batches: int) -> float:
        before = cpu_seconds(pid)
        started = time.perf_counter()
        for _ in range(batches):
            reply = client.post("/v1/traces", content=body, headers=headers)
            if reply.status_code != 200 or reply.content not in (b"", b"{}"):
                sys.exit(f"the relay answered {reply.status_code}: {reply.content[:200]!r}")
        elapsed = time.perf_counter() - started
        cpu.append((cpu_seconds(pid) - before) / (batches * SPAN_BATCH))
        return elapsed / (batches * SPAN_BATCH)

    run.cpu = cpu  # type: ignore[attr-defined]
    return run


def exporting(export: Callable[[Sequence[Any]], object], batch: Sequence[Any]) -> Any:
    """A timer: seconds per event for ``export(batch)``, ``batches`` times."""

    def run(batches: int) -> float:
        started = time.perf_counter()
        for _ in range(batches):
            export(batch)
        return (time.perf_counter() - started) / (batches * len(batch))

    return run


def measure(wanted: list[str], sizes: Any) -> tuple[dict[str, list[float]], dict[str, Any], int]:
    """Run the rounds against a sink and a relay; samples, timers and the sink's requests."""
    spans = make_spans(SPAN_BATCH, tagged=True)
    protobuf, document = encode(spans)
    with ServerProcess("sink") as sink:
        port = _free_port()
        relay = start_relay(sink.url, port)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        exporter = vf_otel.VibefollowSpanExporter(
            api_key=LOCAL_KEY, base_url=sink.url, max_queue_size=10_000_000
        )
        timers = {
            "exporter": exporting(exporter.export, spans),
            "relay_protobuf": posting(client, protobuf, "application/x-protobuf", relay.pid),
            "relay_json": posting(client, document, "application/json", relay.pid),
        }
        try:
            samples = interleave(
                {name: functools.partial(timers[name], sizes.span_batches) for name in wanted},
                sizes.rounds,
            )
        finally:
            exporter.shutdown()
            client.close()
            relay.terminate()
            relay.wait(30)
        return samples, timers, int(sink.command("requests"))


def main() -> None:
    """Start the sink and the relay, run the rounds, print the table, write the JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    loopback_only()
    wanted = [name for name in VARIANTS if name in args.wanted]
    samples, timers, requests = measure(wanted, sizes)
    reference = wanted[0]
    summary = summarise(samples, reference)
    for name in wanted:
        cpu = getattr(timers[name], "cpu", None)
        if cpu:
            summary[name]["relay_cpu_per_event"] = sorted(cpu)[len(cpu) // 2]
    print_table(
        f"Relay: seconds per event (ratio to {reference})", summary, "µs/event", 1e6, LABELS
    )
    for name, row in summary.items():
        per_event = row.get("relay_cpu_per_event")
        if per_event:
            print(f"{LABELS[name]}: {1 / per_event:,.0f} events/s per relay core")
    results = {"size": args.size, "batch": SPAN_BATCH, "batches": sizes.span_batches}
    results.update(rounds=sizes.rounds, unit="seconds per event", reference=reference)
    results.update(variants=summary, labels={name: LABELS[name] for name in summary})
    write_results(args.json, {**results, "sink_requests": requests})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
