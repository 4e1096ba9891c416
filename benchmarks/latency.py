"""Delivery latency and requests per second at steady event rates.

    python benchmarks/latency.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

A VibefollowHandler logs a steady 1, 10, 100 and 1,000 events/s (paced every 10 ms,
the app thread idle in between) to a loopback sink in another process that answers
as the API does. Each event carries the ``time.monotonic()`` of its log call; the
sink notes how long ago that was when the request reached it (one monotonic clock
for every process on the machine). Latency is log call to receipt; requests/s are
the ``/events/batch`` requests the sink received over the run. Nothing is flushed:
events go out as the handler sends them, and the run waits for the last of them.

Variants:
- adaptive: default settings (a partial batch goes at once when the app is quiet,
  gathers while busy; ``flush_interval`` 5 s is the upper bound);
- timer: ``adaptive_batching=False``, how every version before it batched: a partial
  batch waits for the 5 s ``flush_interval``, a full one (500) goes at once.

Each (variant, rate) gets a fresh handler, so one run's rate does not carry over.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any, Final

from _common import LOCAL_KEY, ServerProcess, loopback_only, paced, parse_args, write_results

import vf_otel

RATES: Final = (1.0, 10.0, 100.0, 1_000.0)
#: Seconds of logging per rate, by size: enough events for a p99 at the low rates.
SECONDS: Final = {
    "full": {1.0: 40.0, 10.0: 20.0, 100.0: 10.0, 1_000.0: 5.0},
    "quick": {1.0: 8.0, 10.0: 5.0, 100.0: 3.0, 1_000.0: 2.0},
    "smoke": {1.0: 1.1, 10.0: 0.5, 100.0: 0.3, 1_000.0: 0.2},
}
#: How long to wait for the last events after the run (the timer variant's interval).
SETTLE_TIMEOUT: Final = 15.0
LABELS: Final = {
    "adaptive": "VibefollowHandler, default settings (adaptive batching)",
    "timer": "VibefollowHandler, adaptive_batching=False (timer: flush_interval 5 s)",
}
VARIANTS: Final = tuple(LABELS)
#: The figures issue 20 asks for at 1, 10 and 100 events/s (ms), and requests/s caps.
TARGET_P50_MS: Final = 50.0
TARGET_P99_MS: Final = 250.0
TARGET_REQUESTS: Final = {100.0: 20.0, 1_000.0: 4.0}


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run_rate(sink: ServerProcess, variant: str, rate: float, seconds: float) -> dict[str, Any]:
    """Log at ``rate`` for ``seconds`` through a fresh handler; latencies and requests."""
    options: dict[str, Any] = {"adaptive_batching": False} if variant == "timer" else {}
    handler = vf_otel.VibefollowHandler(api_key=LOCAL_KEY, base_url=sink.url, **options)
    log = logging.getLogger(f"bench.latency.{variant}.{rate:g}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    # One event first, so the figures are a running app's, not its first connection's.
    log.info("warm-up", extra={"vf_user": "usr_42", "vf_properties": {"t": time.monotonic()}})
    handler.flush(timeout=SETTLE_TIMEOUT)
    time.sleep(1.0)  # quiet again: the warm-up's rate is forgotten
    sink.command("latencies")  # forget anything earlier

    def emit(count: int) -> None:
        for _ in range(count):
            properties = {"t": time.monotonic(), "plan": "trial"}
            log.info("signup", extra={"vf_user": "usr_42", "vf_properties": properties})

    try:
        started = time.monotonic()
        emitted = paced(rate, seconds, emit)
        wall = time.monotonic() - started
        seen = _wait_for(sink, emitted)
    finally:
        log.removeHandler(handler)
        handler.close()
    latencies_ms = [value * 1000 for value in seen["latencies"]]
    return {
        "rate": rate,
        "seconds": round(wall, 2),
        "emitted": emitted,
        "received": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
        "requests": seen["requests"],
        "requests_per_second": round(seen["requests"] / wall, 2),
    }


def _wait_for(sink: ServerProcess, emitted: int) -> dict[str, Any]:
    """What the sink saw, once it has every event (or at SETTLE_TIMEOUT)."""
    seen: dict[str, Any] = {"latencies": [], "requests": 0}
    until = time.monotonic() + SETTLE_TIMEOUT
    while True:
        more = json.loads(sink.command("latencies"))
        seen["latencies"] += more["latencies"]
        seen["requests"] += more["requests"]
        if len(seen["latencies"]) >= emitted or time.monotonic() >= until:
            return seen
        time.sleep(0.05)


def main() -> None:
    """Run each variant at each rate; print a table; write JSON."""
    args = parse_args(__doc__, VARIANTS)
    loopback_only()
    results: dict[str, Any] = {}
    with ServerProcess("latency") as sink:
        for variant in args.wanted:
            rows = [run_rate(sink, variant, r, SECONDS[args.size][r]) for r in RATES]
            results[variant] = {"label": LABELS[variant], "rates": rows}
    print("\nLatency from the log call to the sink's receipt, and requests per second")
    for result in results.values():
        print(result["label"])
        for row in result["rates"]:
            print(
                f"  {row['rate']:>7,.0f} ev/s: p50 {row['p50_ms']:8.1f} ms  p99 "
                f"{row['p99_ms']:8.1f} ms  max {row['max_ms']:8.1f} ms  "
                f"{row['requests_per_second']:6.1f} requests/s "
                f"({row['received']}/{row['emitted']} received)"
            )
    write_results(
        args.json,
        {
            "size": args.size,
            "variants": results,
            "targets": {
                "p50_ms": TARGET_P50_MS,
                "p99_ms": TARGET_P99_MS,
                "requests_per_second": {f"{k:g}": v for k, v in TARGET_REQUESTS.items()},
            },
        },
    )


if __name__ == "__main__":
    main()
