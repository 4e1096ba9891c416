"""Cost of a log call on the application thread, side by side, as ratios.

    python benchmarks/hot_path.py [--calls N] [--rounds R]

Each round times every variant once, in turn, so machine noise hits them all
alike; the report gives the median per-call time and the median ratio to the
do-nothing handler. Absolute times on a shared machine mean little: read the ratios.

Variants:
- baseline: ``logger.info`` through a handler whose ``emit`` does nothing;
- untagged / tagged: through ``VibefollowHandler``, delivering to the local
  Vibefollow server (``vf_otel.testing``) on a worker thread meanwhile;
- tagged, delivery paused: the same, with the worker blocked, to separate the
  logging thread's own cost from the worker competing for the GIL.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections.abc import Callable

import httpx

import vf_otel
from vf_otel.testing import VibefollowServer

EXTRA = {"vf_user": "usr_42", "vf_properties": {"plan": "trial", "seats": 3}}


class _Nothing(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        """Do nothing: the baseline."""


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def _time(call: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def _paused_handler(gate: threading.Event) -> vf_otel.VibefollowHandler:
    def hold(request: httpx.Request) -> httpx.Response:
        gate.wait()
        return httpx.Response(202, json={"data": {"accepted": True}})

    return vf_otel.VibefollowHandler(
        api_key="sk_test_" + "0" * 32,
        transport=httpx.MockTransport(hold),
        max_queue_size=10_000_000,
        export_timeout=3600,
        timeout=600,
    )


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    gate = threading.Event()
    with VibefollowServer() as server:
        live = vf_otel.VibefollowHandler(
            api_key=server.api_key, base_url=server.base_url, max_queue_size=10_000_000
        )
        paused = _paused_handler(gate)
        base = _logger("bench.base", _Nothing())
        vf_live = _logger("bench.live", live)
        vf_paused = _logger("bench.paused", paused)
        variants: dict[str, Callable[[], None]] = {
            "baseline (do-nothing handler)": lambda: base.info("signup", extra=EXTRA),
            "untagged record": lambda: vf_live.info("signup"),
            "tagged record": lambda: vf_live.info("signup", extra=EXTRA),
            "tagged, delivery paused": lambda: vf_paused.info("signup", extra=EXTRA),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, call in variants.items():
                times[name].append(_time(call, args.calls))
        _report(times)
        live.flush(timeout=60)
        gate.set()
        paused.close()
        live.close()


def _report(times: dict[str, list[float]]) -> None:
    baseline = times["baseline (do-nothing handler)"]
    print(f"{'variant':32} {'median µs/call':>15} {'ratio':>7}")
    for name, samples in times.items():
        ratio = statistics.median(s / b for s, b in zip(samples, baseline, strict=True))
        print(f"{name:32} {statistics.median(samples) * 1e6:15.2f} {ratio:6.2f}x")


if __name__ == "__main__":
    main()
