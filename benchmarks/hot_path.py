"""Cost of one event on the application thread, side by side, as ratios to a do-nothing handler.

    python benchmarks/hot_path.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

Each round times every variant once (rotating the order), so machine noise hits
them all alike; after its turn a variant's queue is drained, untimed, so its
worker never competes with the next variant. The report gives the median
per-call time and the median per-round ratio to the baseline. Rounds are short
(2,000 calls, 100 of them): a burst still spans four full batches, so the worker
is woken in the middle of it, and the median of many short rounds is steady where
a few long ones were not: for the same code, three runs of nine rounds of 20,000
calls gave 1.18x, 1.23x and 1.25x, three runs of a hundred rounds of 2,000 gave
1.21x, 1.20x and 1.20x. Queues are large
enough never to fill; every worker delivers to a server in another process on
127.0.0.1 while the app thread is being timed.

Variants (the same event: "signup" for usr_42 with two properties):
- baseline: ``logger.info`` through a handler whose ``emit`` does nothing;
- vf_untagged / vf_tagged: through ``VibefollowHandler`` → local VibefollowServer;
- otel_logging: the OTel SDK's ``LoggingHandler`` + ``LoggerProvider`` +
  ``BatchLogRecordProcessor`` + OTLP/HTTP log exporter → loopback sink;
- posthog: ``Posthog.capture()`` → loopback sink;
- segment: Segment ``analytics`` ``Client.track()`` → loopback sink;
- loguru_nothing / loguru_handler / loguru_sink: loguru's ``logger.bind(vf_user=...,
  vf_properties=...).info("signup")`` (default format) into a do-nothing function
  sink, into ``logger.add(VibefollowHandler())`` (loguru's StandardSink builds a
  ``LogRecord``) and into ``vf_otel.loguru_sink(handler)``. Each sink takes only its
  own variant's messages (a ``filter=`` on the bound ``bench`` key, alike for all three).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from _common import (
    LOCAL_KEY,
    SIZES,
    ServerProcess,
    interleave,
    loopback_only,
    optional_module,
    parse_args,
    per_call,
    print_table,
    quiet_deprecations,
    summarise,
    write_results,
)

import vf_otel

PROPERTIES: Final = {"plan": "trial", "seats": 3}
EXTRA: Final = {"vf_user": "usr_42", "vf_properties": PROPERTIES}
#: Never reached: every queue is drained after each variant's turn.
HUGE_QUEUE: Final = 10_000_000
DRAIN_TIMEOUT: Final = 120.0
LABELS: Final = {
    "baseline": "baseline: do-nothing logging handler",
    "vf_untagged": "VibefollowHandler, untagged record",
    "vf_tagged": "VibefollowHandler, tagged record",
    "otel_logging": "OTel LoggingHandler + BatchLogRecordProcessor (OTLP/HTTP)",
    "posthog": "posthog capture()",
    "segment": "Segment analytics track()",
    "loguru_nothing": "loguru: do-nothing function sink",
    "loguru_handler": "loguru: logger.add(VibefollowHandler())",
    "loguru_sink": "loguru: vf_otel.loguru_sink(handler)",
}
VARIANTS: Final = tuple(LABELS)


@dataclass
class Variant:
    """One way of sending the event: the timed call, and untimed drain / close steps."""

    call: Callable[[], object]
    drain: Callable[[], object] = lambda: None
    close: Callable[[], object] = lambda: None
    notes: dict[str, str] = field(default_factory=dict)


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        """Do nothing: the baseline."""


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def baseline() -> Variant:
    """``logger.info`` with the tagged ``extra=`` through a do-nothing handler."""
    log = _logger("bench.base", _Nothing())
    return Variant(lambda: log.info("signup", extra=EXTRA))


def vibefollow(base_url: str, *, tagged: bool) -> Variant:
    """Through VibefollowHandler, delivering to the local VibefollowServer meanwhile."""
    handler = vf_otel.VibefollowHandler(
        api_key=LOCAL_KEY, base_url=base_url, max_queue_size=HUGE_QUEUE
    )
    log = _logger("bench.vf_tagged" if tagged else "bench.vf_untagged", handler)
    call = (lambda: log.info("signup", extra=EXTRA)) if tagged else (lambda: log.info("signup"))
    return Variant(call, lambda: handler.flush(timeout=DRAIN_TIMEOUT), handler.close)


def otel_logging(sink_url: str) -> Variant | None:
    """The OTel SDK's log pipeline with the OTLP/HTTP exporter, to the loopback sink."""
    otlp = optional_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
    if otlp is None:
        return None
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: PLC0415

    provider = LoggerProvider()
    exporter = otlp.OTLPLogExporter(endpoint=sink_url + "/v1/logs")
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=HUGE_QUEUE, max_export_batch_size=512)
    )
    log = _logger("bench.otel", LoggingHandler(logger_provider=provider))
    return Variant(
        lambda: log.info("signup", extra=EXTRA),
        lambda: provider.force_flush(int(DRAIN_TIMEOUT * 1000)),
        provider.shutdown,
        {"exporter": "OTLP/HTTP (protobuf) to the loopback sink"},
    )


def posthog(sink_url: str) -> Variant | None:
    """``Posthog.capture()`` with no feature flags, geoip or exception capture."""
    module = optional_module("posthog")
    if module is None:
        return None
    client: Any = module.Posthog(
        "phc_benchmark",
        host=sink_url,
        max_queue_size=HUGE_QUEUE,
        disable_geoip=True,
        enable_exception_autocapture=False,
        enable_local_evaluation=False,
        personal_api_key=None,
    )

    def call() -> object:
        return client.capture("signup", distinct_id="usr_42", properties=PROPERTIES)

    return Variant(call, lambda: client.flush(DRAIN_TIMEOUT), client.shutdown)


def segment(sink_url: str) -> Variant | None:
    """Segment's ``Client.track()`` (package segment-analytics-python)."""
    module = optional_module("segment.analytics")
    if module is None:
        return None
    client: Any = module.Client("benchmark_write_key", host=sink_url, max_queue_size=HUGE_QUEUE)

    def call() -> object:
        return client.track(user_id="usr_42", event="signup", properties=PROPERTIES)

    return Variant(call, client.flush, client.shutdown)


def loguru_variant(base_url: str, way: str) -> Variant | None:
    """A loguru message tagged by ``bind``, into the sink ``way`` names."""
    module = optional_module("loguru")
    if module is None:
        return None
    logger = module.logger
    with contextlib.suppress(ValueError):  # loguru's default stderr sink: every message
        logger.remove(0)
    if way == "loguru_nothing":
        sink: Any = lambda message: None  # noqa: E731 - the do-nothing sink
        handler = None
    else:
        handler = vf_otel.VibefollowHandler(
            api_key=LOCAL_KEY, base_url=base_url, max_queue_size=HUGE_QUEUE
        )
        sink = handler if way == "loguru_handler" else vf_otel.loguru_sink(handler)
    sink_id = logger.add(sink, level="INFO", filter=lambda record: record["extra"]["bench"] == way)
    bound = logger.bind(bench=way, **EXTRA)
    if handler is None:
        return Variant(lambda: bound.info("signup"), close=lambda: logger.remove(sink_id))

    def close() -> None:
        logger.remove(sink_id)  # loguru closes a handler it is given
        handler.close()

    return Variant(
        lambda: bound.info("signup"), lambda: handler.flush(timeout=DRAIN_TIMEOUT), close
    )


def build(name: str, vf_url: str, sink_url: str) -> Variant | None:
    """The variant called ``name``, or None when its library is not installed."""
    factories: dict[str, Callable[[], Variant | None]] = {
        "baseline": baseline,
        "vf_untagged": lambda: vibefollow(vf_url, tagged=False),
        "vf_tagged": lambda: vibefollow(vf_url, tagged=True),
        "otel_logging": lambda: otel_logging(sink_url),
        "posthog": lambda: posthog(sink_url),
        "segment": lambda: segment(sink_url),
        "loguru_nothing": lambda: loguru_variant(vf_url, "loguru_nothing"),
        "loguru_handler": lambda: loguru_variant(vf_url, "loguru_handler"),
        "loguru_sink": lambda: loguru_variant(vf_url, "loguru_sink"),
    }
    return factories[name]()


def main() -> None:
    """Run the rounds, print the table, write the JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    loopback_only()
    quiet_deprecations()
    wanted = ["baseline", *(name for name in args.wanted if name != "baseline")]
    with ServerProcess("vibefollow") as vf_server, ServerProcess("sink") as sink:
        built = {name: build(name, vf_server.url, sink.url) for name in wanted}
        variants = {name: v for name, v in built.items() if v is not None}
        skipped = [name for name, v in built.items() if v is None]
        try:
            samples = interleave(
                {
                    name: functools.partial(per_call, v.call, sizes.calls)
                    for name, v in variants.items()
                },
                sizes.hot_rounds,
                between=lambda name: variants[name].drain(),
            )
        finally:
            for variant in variants.values():
                variant.close()
        delivered = int(vf_server.command("events"))
    summary = summarise(samples, "baseline")
    print_table("Hot path: cost per call on the app thread", summary, "µs/call", 1e6, LABELS)
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}", file=sys.stderr)
    write_results(
        args.json,
        {
            "size": args.size,
            "calls": sizes.calls,
            "rounds": sizes.hot_rounds,
            "unit": "seconds per call",
            "variants": summary,
            "labels": {name: LABELS[name] for name in summary},
            "skipped": skipped,
            "notes": {n: v.notes for n, v in variants.items() if v.notes},
            "vf_events_delivered": delivered,
        },
    )


if __name__ == "__main__":
    main()
