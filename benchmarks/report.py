"""Render benchmarks/results.json as docs/benchmarks.md and docs/benchmarks-hot-path.png.

python benchmarks/report.py [RESULTS_JSON] [DOCS_DIR]     # re-render without re-running
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from _common import HERE, optional_module, spread

CHART: Final = "benchmarks-hot-path.png"
MIB: Final = 1024 * 1024
#: Budgets for the app thread, as ratios to a do-nothing handler (at most).
TARGETS: Final = {"vf_tagged": 1.2, "vf_untagged": 1.05}
#: Delivery to the loopback sink, as a ratio to the OTLP/HTTP log exporter's events/s (at least).
THROUGHPUT_TARGETS: Final = {"vf_sink": 5.0}
#: The latency variant the targets are for (the other is the old behaviour, to compare).
LATENCY_TARGETED: Final = "adaptive"
#: The p50/p99 targets hold at this many events/s and below.
LATENCY_TARGET_RATES: Final = 100


def _spread(row: dict[str, Any]) -> float:
    """A row's spread, from its samples when the results keep them (older results: as saved)."""
    samples = row.get("samples")
    return spread(samples) if samples else float(row["spread"])


def _ratio(row: dict[str, Any]) -> str:
    ratio = row.get("ratio")
    return "—" if ratio is None else f"{ratio:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    packages = ", ".join(
        f"{name} {version}" for name, version in m["packages"].items() if version is not None
    )
    missing = [name for name, version in m["packages"].items() if version is None]
    lines = [
        f"- **When:** {results['date']}, `{results['command']}` (size `{results['size']}`)",
        f"- **Machine:** {m['cpus']} CPUs ({m['cpu_model']}), {m['os']}",
        f"- **Python:** {m['implementation']} {m['python']}",
        f"- **Packages:** {packages}",
        f"- **Load average (1/5/15 min):** {results['load_before']} before,"
        f" {results['load_after']} after",
    ]
    if missing:
        lines.append(f"- **Not installed (skipped):** {', '.join(missing)}")
    return lines


def _hot_path(data: dict[str, Any]) -> list[str]:
    rows = []
    for name, row in data["variants"].items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None and row.get("ratio") is not None:
            verdict = f"≤ {target:g}x {'✅' if row['ratio'] <= target else '❌'}"
        rows.append(
            [
                data["labels"][name],
                f"{row['median'] * 1e6:.2f}",
                _ratio(row),
                f"{_spread(row):.0%}",
                verdict,
            ]
        )
    notes = data.get("notes", {})
    return [
        f"{data['calls']:,} calls x {data['rounds']} interleaved rounds per variant.",
        "",
        *_table(["variant", "median µs/call", "ratio", "spread", "target"], rows),
        "",
        f"![Hot-path cost as a ratio to a do-nothing handler]({CHART})",
        "",
        *(f"- `{name}`: {note}" for name, n in notes.items() for note in n.values()),
    ]


def _spans(data: dict[str, Any]) -> list[str]:
    rows = [
        [data["labels"][name], f"{row['median'] * 1e6:.2f}", _ratio(row), f"{_spread(row):.0%}"]
        for name, row in data["variants"].items()
    ]
    return [
        f"Batches of {data['batch']} SDK-built spans, {data['batches']} batches x "
        f"{data['rounds']} interleaved rounds; ratio to `{data['reference']}`.",
        "",
        *_table(["variant", "median µs/span", "ratio", "spread"], rows),
    ]


def _relay(data: dict[str, Any]) -> list[str]:
    rows = []
    for name, row in data["variants"].items():
        cpu = row.get("relay_cpu_per_event")
        per_core = f"{1 / cpu:,.0f}" if cpu else "n/a"
        rows.append(
            [
                data["labels"][name],
                f"{row['median'] * 1e6:.2f}",
                _ratio(row),
                per_core,
                f"{_spread(row):.0%}",
            ]
        )
    return [
        f"Batches of {data['batch']} tagged spans, {data['batches']} batches x "
        f"{data['rounds']} interleaved rounds, to a loopback sink; ratio to `{data['reference']}`.",
        "",
        *_table(["variant", "median µs/event", "ratio", "events/s per relay core", "spread"], rows),
    ]


def _cold_start(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            data["labels"][name],
            f"{row['median'] * 1e3:.0f}",
            _ratio(row),
            f"{_spread(row):.0%}",
            str(data["sdk_modules"][name]),
        ]
        for name, row in data["variants"].items()
    ]
    return [
        f"A fresh `python -X importtime` per variant, {data['rounds']} interleaved rounds; the",
        "cumulative time of the top-level `vf_otel` and `opentelemetry` imports; ratio to",
        f"`{data['reference']}`.",
        "",
        *_table(["variant", "median ms", "ratio", "spread", "SDK modules loaded"], rows),
    ]


def _throughput(data: dict[str, Any]) -> list[str]:
    rows = []
    for name, row in data["variants"].items():
        target = THROUGHPUT_TARGETS.get(name)
        verdict = ""
        if target is not None and row.get("ratio") is not None:
            verdict = f"≥ {target:g}x {'✅' if row['ratio'] >= target else '❌'}"
        median, noise = f"{row['median']:,.0f}", f"{_spread(row):.0%}"
        rows.append([data["labels"][name], median, _ratio(row), noise, verdict])
    steady = [
        [
            data["steady_labels"][name],
            f"{row['rate']:,.0f}",
            f"{row['delivery']:.1%}",
            f"{row['app_thread']:.1%}",
            f"{row['process']:.1%}",
        ]
        for name, row in data["steady"].items()
    ]
    return [
        f"{data['events']:,} tagged records logged then flushed, x {data['rounds']} interleaved "
        f"rounds; ratio to `{data['reference']}` (higher is faster).",
        "",
        *_table(["variant", "median events/s", "ratio", "spread", "target"], rows),
        "",
        f"CPU share at a steady {data['steady_rate']:,.0f} events/s (1 = one core):",
        "",
        *_table(["variant", "events/s", "delivery threads", "app thread", "whole process"], steady),
    ]


def _latency(data: dict[str, Any]) -> list[str]:
    targets = data["targets"]
    caps = targets["requests_per_second"]
    rows = []
    for name, result in data["variants"].items():
        for row in result["rates"]:
            rate = f"{row['rate']:g}"
            verdicts = []
            if name != LATENCY_TARGETED:
                pass  # the timer row is there for comparison: no target
            elif row["rate"] <= LATENCY_TARGET_RATES:
                ok = row["p50_ms"] <= targets["p50_ms"] and row["p99_ms"] <= targets["p99_ms"]
                verdicts.append(
                    f"p50 ≤ {targets['p50_ms']:g} ms, p99 ≤ {targets['p99_ms']:g} ms "
                    f"{'✅' if ok else '❌'}"
                )
            if name == LATENCY_TARGETED and rate in caps:
                ok = row["requests_per_second"] <= caps[rate]
                verdicts.append(f"≤ {caps[rate]:g} requests/s {'✅' if ok else '❌'}")
            rows.append(
                [
                    result["label"],
                    f"{row['rate']:,.0f}",
                    f"{row['p50_ms']:,.1f}",
                    f"{row['p99_ms']:,.1f}",
                    f"{row['max_ms']:,.1f}",
                    f"{row['requests_per_second']:.1f}",
                    f"{row['received']:,} / {row['emitted']:,}",
                    "; ".join(verdicts),
                ]
            )
    return [
        "Steady rates for a while each (paced every 10 ms), a fresh handler per rate, to a",
        "loopback sink in another process; latency is from the log call to the sink's receipt",
        "(`time.monotonic()`, one clock for both processes); nothing is flushed.",
        "",
        *_table(
            [
                "variant",
                "events/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "requests/s",
                "received / emitted",
                "target",
            ],
            rows,
        ),
    ]


def _outage(data: dict[str, Any]) -> list[str]:
    rows = []
    for row in data["variants"].values():
        peak_queued = max(s["queued"] for s in row["samples"])
        peak_backlog = max(s["backlog"] for s in row["samples"])
        dropped = ", ".join(f"{k} {v:,}" for k, v in row["dropped"].items()) or "none"
        rows.append(
            [
                row["label"],
                f"{row['rate']:,.0f}",
                f"{row['start_rss'] / MIB:.1f} → {row['peak_rss'] / MIB:.1f}",
                f"{row['start_traced'] / MIB:.1f} → {row['peak_traced'] / MIB:.1f}",
                f"{peak_queued:,} / {peak_backlog:,}",
                _parked_size(row["samples"]),
                f"{row['emitted']:,} / {row['received']:,}",
                dropped,
                "yes" if row["flushed"] else "no",
            ]
        )
    first = next(iter(data["variants"].values()), None)
    lines = []
    if first is not None:
        lines = [
            f"{first['outage_seconds']:.0f} s of 503 answers between a healthy start and a"
            " healthy recovery.",
            "",
        ]
    lines += _table(
        [
            "variant",
            "events/s",
            "RSS MiB (start → peak)",
            "traced heap MiB",
            "peak queued / backlog",
            "parked in memory (peak)",
            "emitted / received",
            "dropped",
            "all flushed after",
        ],
        rows,
    )
    for name, why in data.get("skipped", {}).items():
        lines += ["", f"Not measured: `{name}` — {why}."]
    return lines


def _parked_size(samples: list[dict[str, Any]]) -> str:
    """The peak of the parked requests' bytes, and per parked event ("—" if not sampled)."""
    peak = max(samples, key=lambda s: s.get("parked_bytes", 0))
    if not peak.get("parked_bytes") or not peak.get("parked"):
        return "—"
    per_event = peak["parked_bytes"] / peak["parked"]
    return f"{peak['parked_bytes'] / MIB:.1f} MiB ({per_event:.0f} B/event)"


def render(results: dict[str, Any]) -> str:
    """The whole of docs/benchmarks.md."""
    comparisons = results["comparisons"]
    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py (benchmarks/report.py): edit those, not this. -->",
        "",
        "Ratios measured side by side in one run, never absolute limits: every comparison runs",
        "in a process of its own, its variants take turns round by round (the order rotating),",
        "and each figure is the median over the rounds; a ratio is the median of the per-round",
        "ratios. *Spread* is the interquartile range of a variant's rounds over their median:",
        "how far apart the middle half of them was; above ~20% other work on the machine",
        "disturbed many rounds, and the ratio (paired round by round) is the figure to trust,",
        "not the absolute time.",
        "Servers run in another process on 127.0.0.1, and the benchmark refuses any",
        "connection that is not loopback.",
        "",
        "```bash",
        "pip install -e '.[bench]'",
        "python benchmarks/run.py            # full run; rewrites this page and its chart",
        "python benchmarks/run.py --quick    # shorter, for CI smoke runs",
        "```",
        "",
        *_machine(results),
        "",
    ]
    sections = {
        "hot_path": ("## Hot path: what one event costs the application thread", _hot_path),
        "spans": ("## Spans: cost of export per span", _spans),
        "relay": ("## Relay: events through `vf-otel relay`", _relay),
        "throughput": ("## Delivery throughput and delivery CPU", _throughput),
        "latency": ("## Delivery latency and requests per second", _latency),
        "outage": ("## Memory during a server outage", _outage),
        "cold_start": ("## Cold start: import time", _cold_start),
    }
    for name, (title, render_section) in sections.items():
        if name in comparisons:
            parts += [title, "", *render_section(comparisons[name]), "", *MEANING[name], ""]
    return "\n".join(parts).rstrip() + "\n"


MEANING: Final = {
    "hot_path": [
        "**What it means.** This is the latency a `logger.info(...)` adds to a request. A",
        "tagged record through `VibefollowHandler` costs little more than a handler that does",
        "nothing, because on the app thread it only checks the tags, snapshots the mappings and",
        "appends to a queue; validation, coercion, ids, timestamps, JSON and HTTP happen on the",
        "worker, which hands the GIL back every few events and steps back while the app's",
        "threads keep it (it works at full speed once the queue is half full, or a flush waits",
        "for it). A queued call is kept as plain fields, no object of its own for the garbage",
        "collector. Each round is a burst of calls that spans four full batches, so the",
        "worker's share of the GIL during a burst is in the figure.",
        "An untagged record returns before any lock, so adding the handler to the root logger",
        "costs the rest of your logging nothing. The OTel `LoggingHandler` builds a full",
        "OTel log record (attributes, resource, scope) per call, and posthog and Segment build",
        "and validate their message dict on the caller's thread. The OTel `LoggingHandler` of",
        "`opentelemetry-sdk` is deprecated in favour of `opentelemetry-instrumentation-logging`;",
        "it is measured as shipped in the SDK, exporting over OTLP/HTTP to the loopback sink.",
    ],
    "spans": [
        "**What it means.** The span exporter runs on the `BatchSpanProcessor`'s thread, not on",
        "requests. Untagged spans (most of a trace) are skipped after two lookups; a tagged span",
        "becomes a validated, coerced Event, and `export()` delivers the batch before it returns",
        "(the SDK's processor already buffers), so the tagged row includes the HTTP request to",
        "the local `VibefollowServer`. The OTLP row is encoding only (protobuf, no network) —",
        "the floor of what exporting the same spans over OTLP costs.",
        "The same batch is exported every round, so its events keep their ids and the server",
        "stores them once (a span exported twice is delivered once).",
    ],
    "relay": [
        "**What it means.** The same tagged spans reach the API either from the app's own",
        "span exporter or as OTLP through one `vf-otel relay` process (one uvicorn worker):",
        "the client's figure is request to answer, which includes the relay's delivery, since",
        "the relay answers only once the events are delivered or spooled. The per-core figure",
        "is the relay process's own CPU per event; `--workers` multiplies it. OTLP/JSON is read",
        "straight from the parsed document, not through protobuf's JSON support.",
    ],
    "throughput": [
        "**What it means.** One process delivers tens of thousands of events per second, far",
        "above what an app emits; against `VibefollowServer` the figure is bounded by that",
        "(Python, strictly validating) server, the sink row is the client's own ceiling. Every",
        "thread shares one GIL, so the figure is the sum of what one event costs the app's",
        "`logger.info` (about half), the worker (checks, JSON) and the HTTP senders (up to 4",
        "requests at once). At a busy but realistic 1,000 events/s the delivery threads use a",
        "small share of one core.",
    ],
    "latency": [
        "**What it means.** A quiet app's event reaches the API in milliseconds: the first",
        "event after a quiet spell goes out at once. While a request is out, or within a",
        "short gather window that grows with the rate (71 ms at 100 events/s), events gather",
        "into the next batch, so a busy app still sends full batches of 500 and the API's",
        "rate limits are not spent on tiny requests. `flush_interval` stays the upper bound.",
        "The timer row is how every earlier version batched: a partial batch waited for the",
        "5 s `flush_interval`.",
    ],
    "outage": [
        "**What it means.** When Vibefollow is unreachable the app keeps running at full speed:",
        "the queue is bounded (`max_queue_size` events, `max_queue_bytes`) and so is the retry",
        "backlog in memory (`max_backlog_bytes`, 64 MiB), which keeps parked requests",
        "compressed (the *parked in memory* column: bytes per event parked), so an outage of",
        "many minutes at hundreds of events/s fits in it; past it, the oldest events are",
        "dropped and counted (`stats().dropped`), user upserts and `priority_events` last,",
        "never blocking or raising. When the server is back, the backlog is re-sent with the",
        "same idempotency keys. A durable spool keeps parked requests on disk instead, so",
        "they survive a restart.",
    ],
    "cold_start": [
        "**What it means.** What a new process (a Lambda function's first invocation, a CLI",
        "job) pays to import vf-otel. The logging path loads none of the OpenTelemetry SDK:",
        "the exporters and `configure()` are imported at their first use, so only an app that",
        "exports spans or OTel log records loads the SDK's trace and export machinery. Most of",
        "what is left is httpx (the HTTP client) and wrapt (`@track`). Measured before the",
        "exporters became lazy (2026-12-06, same machine): the logging path took ~330 ms and",
        "loaded 22 SDK modules.",
    ],
}


def chart(results: dict[str, Any], path: Path) -> bool:
    """A horizontal bar chart of the hot-path ratios; False when matplotlib is missing."""
    matplotlib = optional_module("matplotlib")
    data = results["comparisons"].get("hot_path")
    if matplotlib is None or data is None:
        return False
    matplotlib.use("Agg")
    pyplot: Any = optional_module("matplotlib.pyplot")
    names = list(data["variants"])
    ratios = [data["variants"][name]["ratio"] for name in names]
    colours = ["#2b7a78" if name.startswith("vf_") else "#9aa5b1" for name in names]
    figure, axes = pyplot.subplots(figsize=(10, 0.5 * len(names) + 1.4), dpi=110)
    axes.barh([data["labels"][name] for name in names], ratios, color=colours)
    axes.invert_yaxis()
    axes.axvline(1.0, color="#333", linewidth=0.8)
    axes.axvline(TARGETS["vf_tagged"], color="#c0392b", linewidth=0.8, linestyle="--")
    for index, ratio in enumerate(ratios):
        axes.text(ratio, index, f" {ratio:.2f}x", va="center", fontsize=8)
    axes.set_xlabel("cost per call on the app thread / a do-nothing handler's")
    budget = TARGETS["vf_tagged"]
    axes.set_title(f"Hot path (lower is better; dashed: the {budget:g}x budget)", fontsize=10)
    axes.set_xlim(0, max(ratios) * 1.15)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return True


def write_docs(results: dict[str, Any], docs: Path) -> None:
    """Write benchmarks.md and the chart into ``docs``."""
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text(render(results))
    drawn = chart(results, docs / CHART)
    if not drawn and "hot_path" in results["comparisons"]:
        print("chart not drawn: matplotlib is not installed (pip install -e '.[bench]')")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parent / "docs"
    write_docs(json.loads(source.read_text()), target)
