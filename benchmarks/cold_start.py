"""Cold start: what ``import vf_otel`` costs a new process, for logging only and for spans.

    python benchmarks/cold_start.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

Each variant is a fresh interpreter run with ``python -X importtime -c ...``; each
round runs every variant once, rotating the order. Figures: the import time of
vf-otel and of what it pulled in (the cumulative microseconds ``-X importtime``
reports for the top-level imports the snippet makes), and how many OpenTelemetry
SDK modules were loaded. The figure a Lambda function's first invocation pays.

Variants:
- logging: ``import vf_otel`` and a ``VibefollowHandler`` (the logging path);
- spans: the same plus ``vf_otel.VibefollowSpanExporter`` and the SDK's
  ``TracerProvider`` (the spans path loads the SDK's trace and export machinery).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Final

from _common import SIZES, interleave, parse_args, print_table, summarise, write_results

#: Top-level imports counted: vf-otel's own, and the SDK the spans path imports itself.
_COUNTED: Final = ("vf_otel", "opentelemetry")
_HANDLER: Final = (
    "import vf_otel\n"
    "vf_otel.VibefollowHandler(api_key='k' * 24, base_url='http://127.0.0.1:9', enabled=False)\n"
)
SNIPPETS: Final = {
    "logging": _HANDLER,
    "spans": _HANDLER + "vf_otel.VibefollowSpanExporter\n"
    "from opentelemetry.sdk.trace import TracerProvider\n",
}
_REPORT: Final = (
    "import json, sys\n"
    "print(json.dumps(sum(m.startswith('opentelemetry.sdk') for m in sys.modules)))\n"
)
LABELS: Final = {
    "logging": "import vf_otel + VibefollowHandler() (logging path)",
    "spans": "... + VibefollowSpanExporter + TracerProvider (spans path)",
}


def import_time(snippet: str) -> tuple[float, int]:
    """Seconds of top-level imports ``-X importtime`` reports, and the SDK modules loaded."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", snippet + _REPORT],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    micros = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith(" ") and name[1:].startswith(_COUNTED) and cumulative.strip().isdigit():
            micros += int(cumulative)
    return micros / 1e6, int(json.loads(done.stdout))


def main() -> None:
    """Run the variants, print a table, write JSON."""
    args = parse_args(__doc__, list(SNIPPETS))
    rounds = SIZES[args.size].rounds
    sdk_modules: dict[str, int] = {}

    def variant(name: str) -> float:
        seconds, sdk_modules[name] = import_time(SNIPPETS[name])
        return seconds

    samples = interleave({name: functools.partial(variant, name) for name in args.wanted}, rounds)
    summary = summarise(samples, args.wanted[0])
    print_table(
        "import time (top-level vf_otel and opentelemetry imports)", summary, "ms", 1e3, LABELS
    )
    for name in args.wanted:
        print(f"{LABELS[name]:60} {sdk_modules[name]:>14} SDK modules")
    write_results(
        args.json,
        {
            "rounds": rounds,
            "reference": args.wanted[0],
            "variants": summary,
            "sdk_modules": sdk_modules,
            "labels": {name: LABELS[name] for name in args.wanted},
        },
    )


if __name__ == "__main__":
    main()
