"""Memory during a server outage at a steady event rate, and how delivery recovers.

    python benchmarks/outage.py [--size full|quick|smoke] [--variants memory,memory_2000,spool]
                                [--outage-seconds N] [--json PATH]

A VibefollowHandler with default settings logs a steady 500 events/s to a
local VibefollowServer in another process: a few seconds healthy, then the
server answers every request with 503 for the outage (60 s; 10 s with
``--size quick``; ``--outage-seconds`` for another length), then it is healthy
again. Every second the process's RSS, the Python heap traced by tracemalloc,
the handler's counters and the bytes its parked requests take (compressed) are
sampled.

Variants, each in a fresh process (so one's memory does not colour the other's):
- memory: default settings, in-memory queue and retry backlog only;
- memory_2000: the same at 2,000 events/s;
- spool: the same as memory with ``spool_path`` (SQLite in a temporary directory),
  when this version of vf-otel accepts that option.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Final

from _common import (
    LOCAL_KEY,
    SIZES,
    ServerProcess,
    loopback_only,
    paced,
    parse_args,
    rss_bytes,
    write_results,
)

import vf_otel

RATE: Final = 500.0
#: Events per second, by variant (RATE unless named here).
RATES: Final = {"memory_2000": 2_000.0}
WARMUP_SECONDS: Final = 3.0
#: "Every request for the rest of the outage": far more than can arrive.
FAIL_COUNT: Final = 100_000_000
FLUSH_TIMEOUT: Final = 60.0
EXTRA: Final = {"vf_user": "usr_42", "vf_properties": {"plan": "trial", "seats": 3}}
VARIANTS: Final = ("memory", "memory_2000", "spool")
LABELS: Final = {
    "memory": "default settings (in-memory queue + retry backlog)",
    "memory_2000": "default settings, 2,000 events/s",
    "spool": "with spool_path (SQLite spool)",
}


def spool_supported() -> bool:
    """Whether this vf-otel's handler takes ``spool_path`` (a parameter, or one of its Options)."""
    if "spool_path" in inspect.signature(vf_otel.VibefollowHandler).parameters:
        return True
    options = getattr(vf_otel.typing, "Options", None)  # **options: Unpack[Options]
    return "spool_path" in getattr(options, "__annotations__", {})


def _parked_bytes(handler: vf_otel.VibefollowHandler) -> int:
    """What the handler's parked requests take in memory (0 where this version has no
    such count)."""
    parked = getattr(getattr(handler, "_pipeline", None), "parked", None)
    return int(getattr(parked, "bytes", 0))


def run_variant(variant: str, sizes_name: str, outage_seconds: float | None) -> dict[str, Any]:
    """One outage in this process: samples over time and the final counters."""
    sizes = SIZES[sizes_name]
    if outage_seconds is not None:
        sizes = dataclasses.replace(sizes, outage_seconds=outage_seconds)
    rate = RATES.get(variant, RATE)
    tracemalloc.start()
    options: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess("vibefollow") as server:
        if variant == "spool":
            options["spool_path"] = str(Path(tmp) / "spool.db")
        handler = vf_otel.VibefollowHandler(api_key=LOCAL_KEY, base_url=server.url, **options)
        log = logging.getLogger("bench.outage")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        samples: list[dict[str, Any]] = []
        offset = 0.0

        def emit(count: int) -> None:
            for _ in range(count):
                log.info("signup", extra=EXTRA)

        def sample(phase: str) -> Any:
            def take(elapsed: float) -> None:
                stats = handler.stats()
                samples.append(
                    {
                        "t": round(offset + elapsed, 2),
                        "phase": phase,
                        "rss": rss_bytes(),
                        "traced": tracemalloc.get_traced_memory()[0],
                        "queued": stats.queued,
                        "backlog": stats.backlog,
                        "parked": stats.parked,
                        "parked_bytes": _parked_bytes(handler),
                        "sent": stats.sent,
                        "dropped": stats.dropped_total,
                    }
                )

            return take

        emitted = received = 0
        try:
            phases = (
                ("healthy", min(WARMUP_SECONDS, sizes.outage_seconds), "clear"),
                ("outage", sizes.outage_seconds, f"fail 503 {FAIL_COUNT}"),
                ("recovery", sizes.recovery_seconds, "clear"),
            )
            for phase, seconds, command in phases:
                if command == "clear":  # forgets recorded events too: count them first
                    received += int(server.command("events"))
                server.command(command)
                emitted += paced(rate, seconds, emit, sample(phase))
                offset += seconds
            started = time.monotonic()
            flushed = handler.flush(timeout=FLUSH_TIMEOUT)
            drain_seconds = time.monotonic() - started
            final = handler.stats()
        finally:
            handler.close()
        received += int(server.command("events"))
    return {
        "label": LABELS[variant],
        "rate": rate,
        "outage_seconds": sizes.outage_seconds,
        "emitted": emitted,
        "received": received,
        "flushed": flushed,
        "flush_seconds_after_recovery": drain_seconds,
        "dropped": dict(final.dropped),
        "retried": final.retried,
        "samples": samples,
        "peak_rss": max(s["rss"] for s in samples),
        "start_rss": samples[0]["rss"],
        "peak_traced": max(s["traced"] for s in samples),
        "start_traced": samples[0]["traced"],
    }


def _in_child(variant: str, size: str, outage_seconds: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--size", size, "--variants", variant]
        if outage_seconds is not None:
            command += ["--outage-seconds", str(outage_seconds)]
        subprocess.run(  # noqa: S603 - our own interpreter and script
            [*command, "--json", str(out)],
            check=True,
            timeout=600 + (outage_seconds or 0),
            stdout=subprocess.DEVNULL,
        )
        result: dict[str, Any] = json.loads(out.read_text())["variants"][variant]
        return result


def main() -> None:
    """Run the wanted variants (each in its own process), print a summary, write the JSON."""
    args = parse_args(
        __doc__,
        VARIANTS,
        lambda parser: parser.add_argument(
            "--outage-seconds", type=float, help="how long the server fails (default: by size)"
        ),
    )
    loopback_only()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for variant in args.wanted:
        if variant == "spool" and not spool_supported():
            skipped[variant] = "VibefollowHandler does not accept spool_path in this version"
            continue
        if len(args.wanted) == 1:
            results[variant] = run_variant(variant, args.size, args.outage_seconds)
        else:
            results[variant] = _in_child(variant, args.size, args.outage_seconds)
    for row in results.values():
        mib = 1024 * 1024
        print(
            f"\nOutage, {row['label']}: {row['emitted']} events at {row['rate']:.0f}/s,"
            f" {row['outage_seconds']:.0f} s of 503s\n"
            f"  RSS {row['start_rss'] / mib:.1f} → peak {row['peak_rss'] / mib:.1f} MiB;"
            f" traced heap {row['start_traced'] / mib:.1f}"
            f" → peak {row['peak_traced'] / mib:.1f} MiB\n"
            f"  received {row['received']}, dropped {row['dropped']}, retried {row['retried']},"
            f" flushed after recovery: {row['flushed']}"
        )
    for variant, why in skipped.items():
        print(f"skipped {variant}: {why}", file=sys.stderr)
    write_results(args.json, {"size": args.size, "variants": results, "skipped": skipped})


if __name__ == "__main__":
    main()
