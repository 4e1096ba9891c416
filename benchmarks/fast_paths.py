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

And a sender's fast paths, per request (one POST of a 500-event batch to the loopback
sink, CPU of the sending thread; in the JSON under ``per_request``):

- post_fast: ``Client.post`` as delivery sends (``vf_otel._delivery.client``: each
  request built from headers made once, answers without a cookie not parsed for one),
  held to the plain path by ``tests/test_post_fast_paths.py``;
- post_plain: the same client with ``fast_paths = False`` (``httpx.Request(content=...)``
  and httpx's own cookie parsing of every answer).

The ratios are to the slow path of each pair (make_event, dumps_to_wire, post_plain).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Final

from _common import (
    LOCAL_KEY,
    SIZES,
    ServerProcess,
    interleave,
    loopback_only,
    parse_args,
    per_call,
    print_table,
    summarise,
    write_results,
)

from vf_otel._config import resolve_settings
from vf_otel._delivery.client import Client
from vf_otel._delivery.ledger import Ledger
from vf_otel._delivery.wire import encode_event, prepare
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
    "post_plain": "post: Client.post, fast_paths off (slow path)",
    "post_fast": "post: Client.post (fast path)",
}
VARIANTS: Final = tuple(LABELS)
#: The sender's pair, timed per request rather than per event.
POSTS: Final = ("post_plain", "post_fast")
#: Requests per variant per round.
POSTS_PER_ROUND: Final = 100


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


class _PlainClient(Client):
    """The client with its fast paths off."""

    fast_paths = False


def cpu_per_call(call: Callable[[], object], calls: int) -> float:
    """CPU seconds of the calling thread per call of ``call``, over ``calls`` calls."""
    started = time.thread_time()
    for _ in range(calls):
        call()
    return (time.thread_time() - started) / calls


def post_rounds(
    items: list[PendingEvent], wanted: list[str], rounds: int
) -> dict[str, list[float]]:
    """CPU seconds per ``Client.post`` of one ``BATCH``-event request to the loopback
    sink, per round, for each of ``POSTS`` wanted (each its own client and connection)."""
    names = [name for name in POSTS if name in wanted]
    if not names:
        return {}
    loopback_only()
    with ServerProcess("sink") as sink:
        settings = resolve_settings(
            environ={}, api_key=LOCAL_KEY, base_url=sink.url, allow_insecure_http=True
        )
        request = prepare(build_batch(items)[0], settings, Ledger(lambda _e, _ev: None))[0]
        made = {"post_plain": _PlainClient(settings, None), "post_fast": Client(settings, None)}

        def post(client: Client) -> None:
            error = client.post(request, settings.timeout)
            if error is not None:
                raise error

        try:
            for name in names:
                for _ in range(20):  # a warm connection, the first request's set-up done
                    post(made[name])
            return interleave(
                {
                    name: functools.partial(
                        cpu_per_call, functools.partial(post, made[name]), POSTS_PER_ROUND
                    )
                    for name in names
                },
                rounds,
            )
        finally:
            for client in made.values():
                client.close()


def main() -> None:
    """Run the rounds, print the tables, write the JSON."""
    args = parse_args(__doc__, VARIANTS)
    sizes = SIZES[args.size]
    items = calls()
    work = variants(items)
    repeat = max(1, sizes.calls // BATCH)
    timed: dict[str, Callable[[], float]] = {
        name: functools.partial(per_call, work[name], repeat)
        for name in VARIANTS
        if name in args.wanted and name not in POSTS
    }
    samples = interleave(timed, sizes.hot_rounds) if timed else {}
    per_event = {name: [s / BATCH for s in values] for name, values in samples.items()}
    summary = {}
    for slow, fast in (("make_event", "build_batch"), ("dumps_to_wire", "encode_event")):
        pair = {name: per_event[name] for name in (slow, fast) if name in per_event}
        if pair:
            summary.update(summarise(pair, slow))
    if summary:
        print_table("Fast paths: cost per event on the worker", summary, "µs/event", 1e6, LABELS)
    posts = post_rounds(items, args.wanted, sizes.rounds)
    per_request = summarise(posts, "post_plain") if posts else {}
    if per_request:
        print_table(
            f"Fast paths: CPU per request on a sender ({BATCH}-event batch to the loopback sink)",
            per_request,
            "µs/request",
            1e6,
            LABELS,
        )
    write_results(
        args.json,
        {
            "size": args.size,
            "batch": BATCH,
            "rounds": sizes.hot_rounds,
            "unit": "seconds per event",
            "variants": summary,
            "labels": {name: LABELS[name] for name in summary},
            "per_request": {
                "rounds": sizes.rounds,
                "posts_per_round": POSTS_PER_ROUND,
                "unit": "CPU seconds of the sending thread per request",
                "variants": per_request,
                "labels": {name: LABELS[name] for name in per_request},
            },
        },
    )


if __name__ == "__main__":
    main()
