"""Cost per span of VibefollowSpanExporter.export, beside OTLP/HTTP's encoding of the same spans.

    python benchmarks/spans.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

The spans are built once through the SDK (a TracerProvider and an in-memory
exporter) and handed to each exporter in batches of 512, as a
BatchSpanProcessor would. Each round times every variant once, rotating the
order. The Vibefollow exporter's ``export()`` delivers before it returns (the SDK's
processor already buffers), so its figure includes the request to a local
VibefollowServer in another process; the OTLP row is encoding alone.

Variants:
- vf_untagged: a batch with no ``vf.*`` attribute: nothing to send;
- vf_tagged: every span tagged (``vf.user``, ``vf.event``, two properties): all become events;
- otlp_encode: ``encode_spans(batch).SerializeToString()`` from
  opentelemetry-exporter-otlp-proto-common — what the OTLP/HTTP exporter does
  before the request, without the network (encoding only).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

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
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

import vf_otel

SPAN_BATCH: Final = 512  # BatchSpanProcessor's default max_export_batch_size
HUGE_QUEUE: Final = 10_000_000
DRAIN_TIMEOUT: Final = 120.0
#: What a typical server span carries besides any vf.* tag.
HTTP_ATTRIBUTES: Final[dict[str, AttributeValue]] = {
    "http.request.method": "POST",
    "http.route": "/signup",
    "url.scheme": "https",
    "server.address": "app.example.com",
    "http.response.status_code": 201,
}
VF_ATTRIBUTES: Final[dict[str, AttributeValue]] = {
    "vf.user": "usr_42",
    "vf.event": "user_signed_up",
    "vf.properties.plan": "trial",
    "vf.properties.seats": 3,
}
LABELS: Final = {
    "otlp_encode": "OTLP/HTTP encode_spans + SerializeToString (no network)",
    "vf_untagged": "VibefollowSpanExporter.export, untagged spans",
    "vf_tagged": "VibefollowSpanExporter.export, tagged spans",
}
VARIANTS: Final = tuple(LABELS)


def make_spans(count: int, *, tagged: bool) -> list[ReadableSpan]:
    """``count`` finished spans from the SDK, with or without the vf.* tags."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("benchmark")
    attributes = {**HTTP_ATTRIBUTES, **(VF_ATTRIBUTES if tagged else {})}
    for _ in range(count):
        with tracer.start_as_current_span("POST /signup", attributes=attributes):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def per_span(export: Callable[[Sequence[ReadableSpan]], object], batch: list[ReadableSpan]) -> Any:
    """A timer: seconds per span to pass ``batches`` copies of ``batch`` to ``export``."""

    def run(batches: int) -> float:
        started = time.perf_counter()
        for _ in range(batches):
            export(batch)
        return (time.perf_counter() - started) / (batches * len(batch))

    return run


def main() -> None:
    """Build the spans, run the rounds, print the table, write the JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    loopback_only()
    untagged = make_spans(SPAN_BATCH, tagged=False)
    tagged = make_spans(SPAN_BATCH, tagged=True)
    encoder = optional_module("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    with ServerProcess("vibefollow") as server:
        exporter = vf_otel.VibefollowSpanExporter(
            api_key=LOCAL_KEY, base_url=server.url, max_queue_size=HUGE_QUEUE
        )
        timers: dict[str, Callable[[int], float]] = {
            "vf_untagged": per_span(exporter.export, untagged),
            "vf_tagged": per_span(exporter.export, tagged),
        }
        if encoder is not None:
            timers["otlp_encode"] = per_span(
                lambda spans: encoder.encode_spans(spans).SerializeToString(), tagged
            )
        wanted = [name for name in VARIANTS if name in args.wanted and name in timers]
        try:
            samples = interleave(
                {name: functools.partial(timers[name], sizes.span_batches) for name in wanted},
                sizes.rounds,
                between=lambda name: exporter.force_flush(int(DRAIN_TIMEOUT * 1000)),
            )
        finally:
            exporter.shutdown()
        delivered = int(server.command("events"))
    reference = "otlp_encode" if "otlp_encode" in samples else wanted[0]
    summary = summarise(samples, reference)
    print_table(f"Spans: cost per span (ratio to {reference})", summary, "µs/span", 1e6, LABELS)
    if encoder is None:
        print("skipped otlp_encode: opentelemetry-exporter-otlp-proto-common", file=sys.stderr)
    write_results(
        args.json,
        {
            "size": args.size,
            "batch": SPAN_BATCH,
            "batches": sizes.span_batches,
            "rounds": sizes.rounds,
            "unit": "seconds per span",
            "reference": reference,
            "variants": summary,
            "labels": {name: LABELS[name] for name in summary},
            "vf_events_delivered": delivered,
        },
    )


if __name__ == "__main__":
    main()
