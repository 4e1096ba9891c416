"""What each fast path of the delivery worker buys, beside the slow path it mirrors.

    python benchmarks/fast_paths.py [--size full|quick|smoke] [--variants a,b] [--json PATH]

Each fast path has a differential test that holds it to the slow path's output; this
script shows the price of the slow path it saves, per event, on the worker's thread:

- build_batch: ``vf_otel._event.build.build_batch`` on queued log calls (the common
  case: str name and user, a dict of properties, the record's float time), held to
  ``make_event`` by ``tests/test_properties_hypothesis.py::
  test_build_batch_builds_what_make_event_builds``;
- make_event: the same calls through ``build_pending`` one by one (``make_event``: every
  check and coercion a call of its own), the path build_batch skips;
- encode_event: ``vf_otel._delivery.wire.encode_event``, the event's wire JSON written
  around its encoded properties, held to ``json.dumps`` by ``tests/
  test_properties_hypothesis.py::test_encode_event_writes_the_bytes_of_json_dumps``;
- dumps_to_wire: ``json.dumps(event.to_wire())``, the path encode_event replaces.

The ratios are to the slow path of each pair (make_event, dumps_to_wire).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Final

from _common import SIZES, interleave, parse_args, per_call, print_table, summarise, write_results

from vf_otel._delivery.wire import encode_event
from vf_otel._event.build import PendingEvent, build_batch, build_pending
from vf_otel._event.model import Event
from vf_otel._event.values import DEFAULT_REDACTOR

#: Queued log calls per timed call (a batch, as the worker takes them).
BATCH: Final = 500
LABELS: Final = {
    "make_event": "build: each call through build_pending/make_event (slow path)",
    "build_batch": "build: build_batch (fast path)",
    "dumps_to_wire": "encode: json.dumps(event.to_wire()) (slow path)",
    "encode_event": "encode: encode_event (fast path)",
}
VARIANTS: Final = tuple(LABELS)


def calls() -> list[PendingEvent]:
    """``BATCH`` queued log calls as the handler queues a tagged record (with its redactor)."""
    now = time.time()
    properties = [{"plan": "trial", "seats": i, "ok": True} for i in range(BATCH)]
    return [
        ("signup", f"usr_{i}", properties[i], None, now, DEFAULT_REDACTOR) for i in range(BATCH)
    ]


def variants(items: list[PendingEvent]) -> dict[str, Callable[[], object]]:
    """One batch's worth of work per variant."""
    ids = [f"e{i}" for i in range(BATCH)]
    events: list[Event] = build_batch(items, event_ids=ids)[0]
    return {
        "make_event": lambda: [build_pending(item, i) for item, i in zip(items, ids, strict=True)],
        "build_batch": lambda: build_batch(items, event_ids=ids),
        "dumps_to_wire": lambda: [
            json.dumps(e.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()
            for e in events
        ],
        "encode_event": lambda: [encode_event(e) for e in events],
    }


def main() -> None:
    """Run the rounds, print the table, write the JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    work = variants(calls())
    repeat = max(1, sizes.calls // BATCH)
    samples = interleave(
        {
            name: functools.partial(per_call, work[name], repeat)
            for name in VARIANTS
            if name in args.wanted
        },
        sizes.hot_rounds,
    )
    per_event = {name: [s / BATCH for s in values] for name, values in samples.items()}
    summary = {}
    for slow, fast in (("make_event", "build_batch"), ("dumps_to_wire", "encode_event")):
        pair = {name: per_event[name] for name in (slow, fast) if name in per_event}
        if pair:
            summary.update(summarise(pair, slow))
    print_table("Fast paths: cost per event on the worker", summary, "µs/event", 1e6, LABELS)
    write_results(
        args.json,
        {
            "size": args.size,
            "batch": BATCH,
            "rounds": sizes.hot_rounds,
            "unit": "seconds per event",
            "variants": summary,
            "labels": {name: LABELS[name] for name in summary},
        },
    )


if __name__ == "__main__":
    main()
