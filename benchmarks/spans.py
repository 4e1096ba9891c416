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
- vf_untagged_rules: the untagged batch with 20 mapping rules, none matching, each naming
  an ``http.route`` (indexed: two dictionary lookups a span);
- vf_untagged_rules_scan: the same with 20 rules that name no span name and no attribute
  value (a prefix: nothing to index, each rule is tested on each span): what the index buys;
- vf_rules_matched: the untagged batch with a rule matching every span: all become events,
  beside vf_tagged;
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
    "vf_untagged_rules": "untagged spans, 20 rules by route, none matching",
    "vf_untagged_rules_scan": "untagged spans, 20 rules by prefix (no index), none matching",
    "vf_rules_matched": "untagged spans, each made an event by a rule",
}
#: Rules a service might have for its other routes: none matches the benchmark's spans.
OTHER_ROUTES: Final = tuple(
    vf_otel.Rule(
        event=f"event_{i}",
        where={"http.route": f"/api/route_{i}", "http.response.status_code": "2xx"},
    )
    for i in range(20)
)
#: Rules with nothing to index (no span name, no equality condition): tested one by one.
UNINDEXED: Final = tuple(
    vf_otel.Rule(event=f"feature_{i}", where={"app.feature": {"prefix": f"feature_{i}"}})
    for i in range(20)
)
#: Makes an event of every benchmark span (its user is ``enduser.id``).
SIGNUP: Final = vf_otel.Rule(
    event="user_signed_up",
    where={"http.request.method": "POST", "http.route": "/signup"},
    properties=["http.route"],
)
VARIANTS: Final = tuple(LABELS)


def make_spans(
    count: int, *, tagged: bool, extra: dict[str, AttributeValue] | None = None
) -> list[ReadableSpan]:
    """``count`` finished spans from the SDK, with or without the vf.* tags."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("benchmark")
    attributes = {**HTTP_ATTRIBUTES, **(VF_ATTRIBUTES if tagged else {}), **(extra or {})}
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
    with_user = make_spans(SPAN_BATCH, tagged=False, extra={"enduser.id": "usr_42"})
    encoder = optional_module("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    with ServerProcess("vibefollow") as server:
        made: list[vf_otel.VibefollowSpanExporter] = []

        def exporter_with(rules: tuple[vf_otel.Rule, ...] = ()) -> vf_otel.VibefollowSpanExporter:
            made.append(
                vf_otel.VibefollowSpanExporter(
                    api_key=LOCAL_KEY, base_url=server.url, max_queue_size=HUGE_QUEUE, rules=rules
                )
            )
            return made[-1]

        exporter = exporter_with()
        timers: dict[str, Callable[[int], float]] = {
            "vf_untagged": per_span(exporter.export, untagged),
            "vf_tagged": per_span(exporter.export, tagged),
            "vf_untagged_rules": per_span(exporter_with(OTHER_ROUTES).export, untagged),
            "vf_untagged_rules_scan": per_span(exporter_with(UNINDEXED).export, untagged),
            "vf_rules_matched": per_span(exporter_with((SIGNUP,)).export, with_user),
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
                between=lambda name: all(
                    each.force_flush(int(DRAIN_TIMEOUT * 1000)) for each in made
                ),
            )
        finally:
            for each in made:
                each.shutdown()
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
