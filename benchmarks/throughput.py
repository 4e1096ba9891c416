"""Delivery throughput from one process; the delivery threads' CPU at a steady 1,000 events/s.

    python benchmarks/throughput.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

Throughput: log N tagged records as fast as possible, then flush; events/s is
N over the time from the first call until the flush returns (so it includes
the app thread's share, the worker's batching, encoding and HTTP). Rounds are
interleaved; the ratio is to OTLP/HTTP (higher is better).

Variants:
- vf_server: VibefollowHandler → local VibefollowServer (``/events/batch``,
  which validates every event strictly and records it);
- vf_sink: VibefollowHandler → a loopback sink that answers 200 at once (the
  client's own ceiling);
- otlp_sink: the OTel SDK's LoggingHandler + BatchLogRecordProcessor +
  OTLP/HTTP log exporter → the same sink.

CPU share: the same handlers at a steady 1,000 events/s (10 every 10 ms) for a
while; the delivery threads' CPU time (their CPU clocks) over wall time: OTel's
batch processor thread (which also sends), vf-otel's worker and the sender threads
that run its requests (the other VibefollowHandler's sit idle meanwhile).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from _common import (
    LOCAL_KEY,
    SIZES,
    ServerProcess,
    interleave,
    loopback_only,
    optional_module,
    paced,
    parse_args,
    print_table,
    quiet_deprecations,
    summarise,
    thread_cpu_seconds,
    write_results,
)

import vf_otel

EXTRA: Final = {"vf_user": "usr_42", "vf_properties": {"plan": "trial", "seats": 3}}
HUGE_QUEUE: Final = 10_000_000
FLUSH_TIMEOUT: Final = 300.0
STEADY_RATE: Final = 1_000.0
LABELS: Final = {
    "otlp_sink": "OTel LoggingHandler + OTLP/HTTP log exporter → sink",
    "vf_server": "VibefollowHandler → VibefollowServer",
    "vf_sink": "VibefollowHandler → loopback sink",
}
VARIANTS: Final = tuple(LABELS)


@dataclass
class Sender:
    """A logger wired to one delivery path, its flush, close, and its threads' names."""

    logger: logging.Logger
    flush: Callable[[], object]
    close: Callable[[], object]
    delivery: tuple[str, ...]  # name prefixes of the threads that deliver (some start later)


def _new_threads(before: set[threading.Thread], prefix: str) -> threading.Thread:
    found = [t for t in threading.enumerate() if t not in before and t.name.startswith(prefix)]
    if len(found) != 1:
        raise LookupError(f"expected one new {prefix}* thread, found {len(found)}")
    return found[0]


def _delivery_cpu(prefixes: tuple[str, ...]) -> dict[threading.Thread, float]:
    """CPU seconds so far of each live thread whose name starts with one of ``prefixes``."""
    return {t: thread_cpu_seconds(t) for t in threading.enumerate() if t.name.startswith(prefixes)}


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def vibefollow(name: str, base_url: str) -> Sender:
    """VibefollowHandler with default settings except a queue that never fills."""
    before = set(threading.enumerate())
    handler = vf_otel.VibefollowHandler(
        api_key=LOCAL_KEY, base_url=base_url, max_queue_size=HUGE_QUEUE
    )
    _new_threads(before, "VibefollowWorker")  # the names measured below are still right
    return Sender(
        _logger(name, handler),
        lambda: handler.flush(timeout=FLUSH_TIMEOUT),
        handler.close,
        ("VibefollowWorker", "VibefollowSender"),
    )


def otlp(name: str, sink_url: str) -> Sender | None:
    """The OTel SDK's log pipeline, default batching, OTLP/HTTP to the sink."""
    module = optional_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
    if module is None:
        return None
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: PLC0415

    before = set(threading.enumerate())
    provider = LoggerProvider()
    exporter = module.OTLPLogExporter(endpoint=sink_url + "/v1/logs")
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=HUGE_QUEUE))
    worker = _new_threads(before, "OtelBatchLog")
    handler = LoggingHandler(logger_provider=provider)
    return Sender(
        _logger(name, handler),
        lambda: provider.force_flush(int(FLUSH_TIMEOUT * 1000)),
        provider.shutdown,
        (worker.name,),
    )


def events_per_second(sender: Sender, count: int) -> float:
    """Log ``count`` tagged records, flush; events per second over the whole."""
    log = sender.logger
    started = time.perf_counter()
    for _ in range(count):
        log.info("signup", extra=EXTRA)
    sender.flush()
    return count / (time.perf_counter() - started)


def cpu_share(sender: Sender, seconds: float) -> dict[str, float]:
    """Delivery threads, app thread and whole-process CPU over wall time at STEADY_RATE."""
    log = sender.logger

    def emit(count: int) -> None:
        for _ in range(count):
            log.info("signup", extra=EXTRA)

    app = threading.current_thread()
    delivery_0, app_0 = _delivery_cpu(sender.delivery), thread_cpu_seconds(app)
    process_0, wall_0 = time.process_time(), time.monotonic()
    sent = paced(STEADY_RATE, seconds, emit)
    wall = time.monotonic() - wall_0
    delivery = _delivery_cpu(sender.delivery)  # a thread started meanwhile counts from 0
    return {
        "rate": sent / wall,
        "seconds": wall,
        "delivery": sum(cpu - delivery_0.get(t, 0.0) for t, cpu in delivery.items()) / wall,
        "app_thread": (thread_cpu_seconds(app) - app_0) / wall,
        "process": (time.process_time() - process_0) / wall,
    }


def main() -> None:
    """Run the throughput rounds and the steady-rate measurement; print; write JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    loopback_only()
    quiet_deprecations()
    with ServerProcess("vibefollow") as server, ServerProcess("sink") as sink:
        factories: dict[str, Callable[[], Sender | None]] = {
            "vf_server": lambda: vibefollow("bench.vf_server", server.url),
            "vf_sink": lambda: vibefollow("bench.vf_sink", sink.url),
            "otlp_sink": lambda: otlp("bench.otlp", sink.url),
        }
        built = {name: factories[name]() for name in VARIANTS if name in args.wanted}
        senders = {name: s for name, s in built.items() if s is not None}
        try:
            samples = interleave(
                {
                    name: functools.partial(events_per_second, s, sizes.events)
                    for name, s in senders.items()
                },
                sizes.rounds,
            )
            steady: dict[str, Any] = {
                name: cpu_share(senders[name], sizes.steady_seconds)
                for name in ("vf_server", "otlp_sink")
                if name in senders
            }
        finally:
            for sender in senders.values():
                sender.close()
    reference = "otlp_sink" if "otlp_sink" in samples else next(iter(samples))
    summary = summarise(samples, reference)
    print_table(
        f"Throughput: events/s, flushed (ratio to {reference}, higher is better)",
        summary,
        "events/s",
        1.0,
        LABELS,
    )
    print(f"\nCPU share at a steady {STEADY_RATE:,.0f} events/s (1.0 = one core)")
    for name, row in steady.items():
        print(
            f"{LABELS[name]:60} delivery {row['delivery']:6.1%}  app {row['app_thread']:6.1%}"
            f"  process {row['process']:6.1%}  ({row['rate']:,.0f} ev/s)"
        )
    write_results(
        args.json,
        {
            "size": args.size,
            "events": sizes.events,
            "rounds": sizes.rounds,
            "unit": "events per second",
            "reference": reference,
            "variants": summary,
            "labels": {name: LABELS[name] for name in summary},
            "steady_rate": STEADY_RATE,
            "steady": steady,
            "steady_labels": {name: LABELS[name] for name in steady},
        },
    )


if __name__ == "__main__":
    main()
