"""Run every benchmark, each comparison in its own process, and regenerate the docs.

    python benchmarks/run.py            # full run (~10 minutes); rewrites docs/benchmarks.md
    python benchmarks/run.py --quick    # shorter (10 s outage), for CI smoke runs

Writes benchmarks/results.json, docs/benchmarks.md and docs/benchmarks-hot-path.png
(``--results`` / ``--docs`` write elsewhere). Peers that are not installed
(``pip install -e '.[bench]'``) are skipped and listed as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from _common import HERE
from report import write_docs

COMPARISONS: Final = ("hot_path", "spans", "relay", "throughput", "latency", "outage", "cold_start")
PACKAGES: Final = (
    "vf-otel",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "httpx",
    "posthog",
    "segment-analytics-python",
    "requests",
)
FLAGS: Final = {"full": "", "quick": "--quick", "smoke": "--smoke"}
#: A comparison taking longer than this is stuck: stop it.
COMPARISON_TIMEOUT: Final = 1_800


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "packages": versions,
    }


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages, where the OS has them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def run_comparison(name: str, size: str, variants: str | None) -> dict[str, Any]:
    """Run benchmarks/<name>.py in a fresh interpreter and return its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(HERE / f"{name}.py"), "--size", size, "--json", str(out)]
        if variants:
            command += ["--variants", variants]
        started = time.monotonic()
        subprocess.run(command, check=True, timeout=COMPARISON_TIMEOUT)  # noqa: S603
        result: dict[str, Any] = json.loads(out.read_text())
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        result["load_after"] = load_average()
        return result


def main() -> None:
    """Parse options, run the comparisons in turn, write results and docs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, for CI")
    parser.add_argument("--smoke", action="store_true", help="a few calls only: proves it runs")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(COMPARISONS)}")
    parser.add_argument(
        "--variants", action="append", default=[], metavar="COMPARISON=A,B",
        help="restrict one comparison's variants, e.g. hot_path=baseline,vf_tagged",
    )  # fmt: skip
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--docs", type=Path, default=HERE.parent / "docs")
    args = parser.parse_args()
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    only = args.only.split(",") if args.only else list(COMPARISONS)
    chosen = dict(item.split("=", 1) for item in args.variants)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "size": size,
        "command": f"python benchmarks/run.py {FLAGS[size]}".strip(),
        "machine": machine(),
        "load_before": load_average(),
        "comparisons": {},
    }
    for name in COMPARISONS:
        if name in only:
            print(f"\n=== {name} ({size}) ===", flush=True)
            results["comparisons"][name] = run_comparison(name, size, chosen.get(name))
    results["load_after"] = load_average()
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_docs(results, args.docs)
    print(f"\nwrote {args.results} and {args.docs}/benchmarks.md (+ chart)")


if __name__ == "__main__":
    main()
