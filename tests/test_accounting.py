"""Where events are counted: the Ledger, the parked backlog, the queue's refusals, prepare()."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from vf_otel._config import Settings, resolve_settings
from vf_otel._delivery.ledger import DROP_REASONS, Ledger
from vf_otel._delivery.parked import Job, Parked, pack
from vf_otel._delivery.queue import RECORD_FIELDS, REFUSALS, EventQueue
from vf_otel._delivery.wire import (
    EVENTS_PATH,
    MAX_EVENT_BYTES,
    USERS_PATH,
    Request,
    encode_event,
    events_request,
    prepare,
    user_requests,
)
from vf_otel._errors import UndeliveredError, ValidationError, VibefollowError
from vf_otel._event.model import Event

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LOGGER = "vf_otel"


class Reported:
    """An on_error callback that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[VibefollowError, list[str]]] = []

    def __call__(self, exc: VibefollowError, events: Sequence[Event]) -> None:
        self.calls.append((exc, [e.event_id for e in events]))

    def ids(self) -> list[str]:
        return [event_id for _, ids in self.calls for event_id in ids]


def events(
    count: int, *, start: int = 0, user: str = "usr_1", traits: dict[str, Any] | None = None
) -> list[Event]:
    """Events ``e<start>``... whose id is also in their properties."""
    return [
        Event("feature_used", user, {"id": f"e{i}"}, WHEN, f"e{i}", traits)
        for i in range(start, start + count)
    ]


def batch(count: int, *, start: int = 0) -> Request:
    """An /events/batch request for ``events(count, start=start)``."""
    chosen = events(count, start=start)
    return events_request(chosen, [encode_event(e) for e in chosen])


def stats(ledger: Ledger) -> Any:
    """The ledger's counts with nothing queued or refused."""
    return ledger.snapshot(queued=0, refused={})


def settings(**options: Any) -> Settings:
    """Settings with a key and a loopback URL."""
    return resolve_settings(
        environ={}, api_key="sk_test_0123456789abcdef", base_url="http://127.0.0.1:9", **options
    )


def ids_of(request: Request) -> list[str]:
    """The event ids a request carries."""
    return [e.event_id for e in request.events]


# -- Ledger ------------------------------------------------------------------------------


def test_sent_counts_events_and_user_upserts_apart() -> None:
    """A batch adds its events to sent; a user upsert adds one to users_sent."""
    ledger = Ledger(None)
    ledger.sent(batch(3))
    (upsert,) = user_requests(events(2, traits={"plan": "pro"}))
    ledger.sent(upsert)
    assert (stats(ledger).sent, stats(ledger).users_sent) == (3, 1)


def test_dead_letter_counts_and_reports_the_events() -> None:
    """Dead-lettering a batch counts its events, reports them to on_error, keeps the error."""
    reported = Reported()
    ledger = Ledger(reported)
    error = ValidationError("HTTP 422", field="events[0].name")
    ledger.dead_letter(batch(2), error)
    assert stats(ledger).dead_lettered == 2
    assert reported.calls == [(error, ["e0", "e1"])]
    assert ledger.last_error is error
    assert ledger.failures == 2


def test_dead_lettered_user_upsert_counts_users_failed_only() -> None:
    """A refused user upsert counts users_failed; its events ride their batch, so none is lost."""
    reported = Reported()
    ledger = Ledger(reported)
    (upsert,) = user_requests(events(2, traits={"plan": "pro"}))
    ledger.dead_letter(upsert, ValidationError("HTTP 422", field="traits"))
    counts = stats(ledger)
    assert (counts.users_failed, counts.dead_lettered, counts.dropped_total) == (1, 0, 0)
    assert reported.calls == []
    assert ledger.failures == 0


@pytest.mark.parametrize("reason", sorted(DROP_REASONS))
def test_drop_counts_by_reason_and_reports(reason: Any) -> None:
    """Every drop reason is counted under its name and its events reported to on_error."""
    reported = Reported()
    ledger = Ledger(reported)
    ledger.drop(reason, events(2))
    assert dict(stats(ledger).dropped) == {reason: 2}
    assert ledger.dropped(reason) == 2
    ((error, ids),) = reported.calls
    assert isinstance(error, UndeliveredError)
    assert ids == ["e0", "e1"]


def test_drop_keeps_the_given_error() -> None:
    """A drop with an error reports that error, not a generic one."""
    reported = Reported()
    ledger = Ledger(reported)
    error = ValidationError("not JSON", field="properties")
    ledger.drop("unserializable", events(1), error)
    assert reported.calls == [(error, ["e0"])]


def test_drop_of_nothing_counts_nothing() -> None:
    """Dropping no events changes no count and tells on_error nothing."""
    reported = Reported()
    ledger = Ledger(reported)
    ledger.drop("backlog_full", [])
    assert stats(ledger).dropped_total == 0
    assert reported.calls == []


def test_reject_counts_one_event_with_no_event_built() -> None:
    """A client-side refusal counts one drop and reports a ValidationError with no events."""
    reported = Reported()
    ledger = Ledger(reported)
    ledger.reject("invalid_name", "name", "bad name")
    assert dict(stats(ledger).dropped) == {"invalid_name": 1}
    ((error, ids),) = reported.calls
    assert isinstance(error, ValidationError)
    assert (error.field, error.code, ids) == ("name", "invalid_name", [])


def test_drop_requests_skips_user_upserts() -> None:
    """Dropping requests counts the batches' events; an upsert's events are counted with them."""
    ledger = Ledger(None)
    (upsert,) = user_requests(events(2, traits={"plan": "pro"}))
    ledger.drop_requests("shutdown", [upsert, batch(2)], UndeliveredError("closing"))
    assert dict(stats(ledger).dropped) == {"shutdown": 2}


def test_failing_on_error_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """An on_error that raises is logged at ERROR; the counts change and nothing propagates."""

    def explode(exc: VibefollowError, events: Sequence[Event]) -> None:
        raise RuntimeError("callback bug")

    ledger = Ledger(explode)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ledger.dead_letter(batch(1), ValidationError("HTTP 422"))
        ledger.drop("backlog_full", events(1))
    assert (stats(ledger).dead_lettered, stats(ledger).dropped_total) == (1, 1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].getMessage() == "on_error callback raised"
    assert errors[0].exc_info is not None


def test_loss_warnings_are_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Repeated drops for one reason warn once; another reason warns on its own."""
    ledger = Ledger(None)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for start in range(5):
            ledger.drop("backlog_full", events(1, start=start))
        ledger.drop("event_too_large", events(1))
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 2
    assert "backlog_full" in warnings[0]
    assert "event_too_large" in warnings[1]
    assert stats(ledger).dropped["backlog_full"] == 5


def test_upsert_failed_counts_users_failed() -> None:
    """A user upsert that could not be built counts users_failed, not a drop."""
    ledger = Ledger(None)
    ledger.upsert_failed(ValidationError("traits not JSON", field="traits"))
    counts = stats(ledger)
    assert (counts.users_failed, counts.dropped_total, counts.dead_lettered) == (1, 0, 0)


def test_warn_refused_logs_and_reports_without_counting() -> None:
    """Refusals counted on the app's thread are warned about and reported, not counted again."""
    reported = Reported()
    ledger = Ledger(reported)
    ledger.warn_refused("queue_full", 7)
    ((error, ids),) = reported.calls
    assert isinstance(error, UndeliveredError)
    assert "queue is full" in str(error)
    assert ids == []
    assert stats(ledger).dropped_total == 0


def test_moves_between_states_are_counted() -> None:
    """in_flight and parked follow each move; backlog and waiting are their sum."""
    ledger = Ledger(None)
    ledger.enqueued(5)
    ledger.move(5, None, "in_flight")
    ledger.move(3, "in_flight", "parked")
    counts = stats(ledger)
    assert (counts.enqueued, counts.in_flight, counts.parked, counts.backlog) == (5, 2, 3, 5)
    assert ledger.waiting == 5
    ledger.move(3, "parked", None)
    ledger.move(2, "in_flight", None)
    assert ledger.waiting == 0


def test_snapshot_adds_queued_and_refusals() -> None:
    """Queued events count as enqueued; app-thread refusals are merged into dropped."""
    ledger = Ledger(None)
    ledger.enqueued(2)
    ledger.drop("backlog_full", events(1))
    snapshot = ledger.snapshot(queued=3, refused={"queue_full": 4, "shutdown": 0})
    assert (snapshot.enqueued, snapshot.queued) == (5, 3)
    assert dict(snapshot.dropped) == {"backlog_full": 1, "queue_full": 4}
    assert snapshot.dropped_total == 5
    with pytest.raises(TypeError):
        snapshot.dropped["x"] = 1  # type: ignore[index]


def test_after_fork_starts_from_zero() -> None:
    """A forked child's ledger counts only its own events."""
    ledger = Ledger(None)
    ledger.sent(batch(2))
    ledger.move(1, None, "parked")
    ledger.drop("shutdown", events(1))
    ledger.after_fork()
    counts = stats(ledger)
    assert (counts.sent, counts.parked, counts.dropped_total) == (0, 0, 0)


# -- Parked ---------------------------------------------------------------------------


def test_park_moves_events_from_in_flight_in_one_step() -> None:
    """Parking in memory moves the job's events from in_flight to parked."""
    ledger = Ledger(None)
    parked = Parked(ROOMY, ledger, None)
    job = Job(batch(3), seq=1)
    ledger.move(3, None, "in_flight")
    assert parked.park(job, source="in_flight") == "parked"
    counts = stats(ledger)
    assert (counts.in_flight, counts.parked, len(parked)) == (0, 3, 3)
    assert [held.seq for held in parked.take()] == [1]


#: A backlog bound (bytes) these tests never reach.
ROOMY = 1024 * 1024


def room_for(*requests: Request) -> int:
    """The bytes ``requests`` take parked in memory (compressed)."""
    return sum(pack(Job(request), ()).size for request in requests)


def test_backlog_bounded_oldest_evicted_as_backlog_full() -> None:
    """Past ``limit`` bytes the oldest jobs are dropped (backlog_full) and reported."""
    reported = Reported()
    ledger = Ledger(reported)
    parked = Parked(room_for(*(batch(1, start=i) for i in (2, 3, 4))), ledger, None)
    for i in range(5):
        parked.park(Job(batch(1, start=i), seq=i))
    assert len(parked) == 3
    assert stats(ledger).parked == 3
    assert dict(stats(ledger).dropped) == {"backlog_full": 2}
    assert reported.ids() == ["e0", "e1"]
    assert all(isinstance(error, UndeliveredError) for error, _ in reported.calls)
    assert [ids_of(job.request) for job in parked.take()] == [["e2"], ["e3"], ["e4"]]


def test_backlog_bound_holds_across_parks() -> None:
    """Parking batch after batch never lets memory hold more than ``limit`` bytes."""
    ledger = Ledger(None)
    parked = Parked(2 * max(room_for(batch(2, start=s)) for s in range(0, 12, 2)), ledger, None)
    for start in range(0, 12, 2):
        parked.park(Job(batch(2, start=start)))
        assert len(parked) <= 4
    assert stats(ledger).parked == 4
    assert stats(ledger).dropped["backlog_full"] == 8


def test_newest_job_stays_even_over_the_limit() -> None:
    """A job bigger than the limit is kept; the older ones make way for it."""
    ledger = Ledger(None)
    parked = Parked(room_for(batch(1)), ledger, None)
    parked.park(Job(batch(1)))
    parked.park(Job(batch(5, start=1)))
    assert len(parked) == 5
    assert dict(stats(ledger).dropped) == {"backlog_full": 1}


def test_user_upsert_weighs_one_in_the_backlog() -> None:
    """A parked user upsert takes one slot, whatever the number of its events; it is
    counted as a user upsert parked, not as an event."""
    ledger = Ledger(None)
    parked = Parked(ROOMY, ledger, None)
    (upsert,) = user_requests(events(4, traits={"plan": "pro"}))
    parked.park(Job(upsert))
    assert len(parked) == 1
    assert (stats(ledger).parked, stats(ledger).users_parked) == (0, 1)


def test_take_returns_oldest_first_up_to_the_limit() -> None:
    """take(n) hands back the n oldest jobs; the rest stay parked."""
    parked = Parked(ROOMY, Ledger(None), None)
    for i in range(4):
        parked.park(Job(batch(1, start=i), seq=i + 1))
    taken = parked.take(2)
    assert [job.seq for job in taken] == [1, 2]
    assert len(parked) == 2
    assert [job.seq for job in parked.take()] == [3, 4]


def test_park_while_stopping_without_spool_reports_dropped() -> None:
    """Stopping with no spool: the job is not kept and its events leave in_flight."""
    ledger = Ledger(None)
    parked = Parked(ROOMY, ledger, None)
    ledger.move(2, None, "in_flight")
    assert parked.park(Job(batch(2)), source="in_flight", stopping=True) == "dropped"
    assert len(parked) == 0
    assert ledger.waiting == 0


def test_no_spool_means_nothing_to_claim() -> None:
    """Without a spool there are no rows to claim and none claimable."""
    parked = Parked(ROOMY, Ledger(None), None)
    assert parked.claim(5) == []
    assert parked.claimable() == 0


# -- EventQueue ----------------------------------------------------------------------


class Wakes:
    """A wake callback that counts its calls and can run something inside itself."""

    def __init__(self) -> None:
        self.calls = 0
        self.inside: Any = None

    def __call__(self) -> None:
        self.calls += 1
        if self.inside is not None:
            self.inside()


def test_full_queue_refuses_the_new_item_counted() -> None:
    """At ``limit`` items put() returns False, keeps the old items and counts queue_full."""
    queue: EventQueue[int] = EventQueue(3, 100, Wakes())
    assert [queue.put(i) for i in range(5)] == [True, True, True, False, False]
    assert queue.refusals() == {"queue_full": 2, "shutdown": 0, "no_api_key": 0}
    assert queue.take(10) == [0, 1, 2]


def test_closed_queue_refuses_as_shutdown() -> None:
    """A closed queue refuses every item, counted as shutdown."""
    queue: EventQueue[int] = EventQueue(3, 100, Wakes())
    queue.closed = True
    assert not queue.put(1)
    assert len(queue) == 0
    assert queue.refusals()["shutdown"] == 1


def test_refuse_counts_no_api_key() -> None:
    """refuse('no_api_key') counts an event refused before it was queued."""
    queue: EventQueue[int] = EventQueue(3, 100, Wakes())
    queue.refuse("no_api_key")
    queue.refuse("no_api_key")
    assert queue.refusals() == {"queue_full": 0, "shutdown": 0, "no_api_key": 2}
    assert tuple(queue.refusals()) == REFUSALS


def test_refusals_are_counted_from_inside_a_wake() -> None:
    """put() refuses and counts without a lock, even while this thread is inside wake()."""
    wakes = Wakes()
    queue: EventQueue[int] = EventQueue(1, 1, wakes)

    def signal_handler_logs() -> None:
        # As if a signal handler interrupted wake() and logged twice.
        assert not queue.put(98)
        queue.closed = True
        assert not queue.put(99)

    wakes.inside = signal_handler_logs
    assert queue.put(0)
    assert wakes.calls == 1
    assert queue.refusals() == {"queue_full": 1, "shutdown": 1, "no_api_key": 0}
    assert queue.take(10) == [0]


def test_wake_at_batch_size_only() -> None:
    """The worker is woken once the queue holds batch_size items, not before."""
    wakes = Wakes()
    queue: EventQueue[int] = EventQueue(10, 3, wakes)
    queue.put(0)
    queue.put(1)
    assert wakes.calls == 0
    queue.put(2)
    assert wakes.calls == 1


def test_the_queue_wakes_the_worker_once_until_it_looks() -> None:
    """Past batch_size each put would wake the worker: once, until it clears ``woken``."""
    wakes = Wakes()
    queue: EventQueue[int] = EventQueue(10, 1, wakes)
    queue.put(0)
    queue.put(1)
    assert (wakes.calls, queue.woken) == (1, True)
    queue.woken = False  # the worker, before it looks at the queue's length
    queue.put(2)
    assert wakes.calls == 2
    queue.rewire(Wakes())  # a reopened pipeline's new worker has not been woken yet
    assert not queue.woken


class _WakeEvent:
    """The worker's wake event; ``on_clear`` runs at the start of ``clear()``."""

    def __init__(self) -> None:
        self.flag = False
        self.on_clear: Any = lambda: None

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.on_clear()
        self.flag = False


def test_a_record_woken_while_the_worker_rearms_is_never_left_unwoken() -> None:
    """An app thread waking the worker in the middle of rearm(): afterwards ``woken`` is
    set only if the event is, so the next record still wakes the worker."""
    event = _WakeEvent()
    queue: EventQueue[int] = EventQueue(10, 1, event.set)
    event.on_clear = lambda: queue.put(1)  # another thread logs just as the worker rearms
    queue.rearm(event.clear)
    assert not (queue.woken and not event.flag)
    event.on_clear = lambda: None
    queue.rearm(event.clear)
    queue.put(2)  # the next record wakes the worker
    assert (event.flag, queue.woken) == (True, True)


def test_wake_callback_is_not_reentered() -> None:
    """A put from inside the wake callback (a signal handler logging) queues but does not wake."""
    wakes = Wakes()
    queue: EventQueue[int] = EventQueue(10, 1, wakes)
    wakes.inside = lambda: queue.put(99)
    assert queue.put(1)
    assert wakes.calls == 1
    assert queue.take(10) == [1, 99]


def test_take_is_fifo_and_bounded() -> None:
    """take(n) returns up to n of the oldest items, fewer when fewer wait."""
    queue: EventQueue[int] = EventQueue(10, 100, Wakes())
    for i in range(5):
        queue.put(i)
    assert queue.take(2) == [0, 1]
    assert queue.take(10) == [2, 3, 4]
    assert queue.take(10) == []


def test_queue_keeps_records_flat_and_gives_items_back_as_they_were() -> None:
    """Records (RECORD_FIELDS-tuples) and other items come back in order, each counting once."""
    record = tuple(range(RECORD_FIELDS))
    short, box = (1, 2), {"an": "object"}
    queue: EventQueue[object] = EventQueue(4, 100, Wakes())
    assert [queue.put(item) for item in (record, short, box, None, record)] == [True] * 4 + [False]
    assert len(queue) == 4
    assert queue.refusals()["queue_full"] == 1
    assert queue.take(3) == [record, short, box]
    assert queue.take(3) == [None]


def test_queue_after_fork_is_empty_with_zero_counts() -> None:
    """A forked child's queue holds none of the parent's items or counts."""
    queue: EventQueue[int] = EventQueue(1, 100, Wakes())
    queue.put(0)
    queue.put(1)
    queue.after_fork()
    assert len(queue) == 0
    assert queue.refusals() == dict.fromkeys(REFUSALS, 0)


# -- prepare ------------------------------------------------------------------------


def test_prepare_upserts_first_then_batches_of_batch_size() -> None:
    """User upserts come first (one per user); the events follow in batch_size chunks."""
    ledger = Ledger(None)
    chosen = events(3, traits={"plan": "pro"}) + events(2, start=3, user="usr_2")
    requests = prepare(chosen, settings(batch_size=2), ledger)
    assert [r.path for r in requests] == [USERS_PATH, EVENTS_PATH, EVENTS_PATH, EVENTS_PATH]
    assert [ids_of(r) for r in requests[1:]] == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert len({r.key for r in requests}) == 4


def test_events_reported_in_flight_at_shutdown_are_counted_later_but_reported_once() -> None:
    """What on_error heard of as in flight at shutdown is not reported again when its
    request fails or is refused later (still counted); other events are, and so is a
    report with no events (a refusal counted on the app's thread)."""
    reported = Reported()
    ledger = Ledger(reported)
    out, other = events(2), events(1, start=2)
    ledger.report_in_flight(UndeliveredError("still in flight"), out)
    ledger.drop("shutdown", out[:1], UndeliveredError("late failure"))
    ledger.dead_letter_events([out[1], *other], ValidationError("refused", status=400))
    ledger.warn_refused("queue_full", 3)
    assert [ids for _, ids in reported.calls] == [["e0", "e1"], ["e2"], []]
    counts = stats(ledger)
    assert (counts.dropped_total, counts.dead_lettered) == (1, 2)


def test_prepare_nothing_gives_no_request() -> None:
    """No events, no requests."""
    assert prepare([], settings(), Ledger(None)) == []


def test_unserialisable_event_dropped_alone() -> None:
    """An event that is not strict JSON is dropped (unserializable) and reported; others go."""
    reported = Reported()
    ledger = Ledger(reported)
    bad = Event("x", "usr_1", {"nan": math.nan}, WHEN, "bad")
    (request,) = prepare([*events(1), bad, *events(1, start=1)], settings(), ledger)
    assert ids_of(request) == ["e0", "e1"]
    assert dict(stats(ledger).dropped) == {"unserializable": 1}
    ((error, ids),) = reported.calls
    assert isinstance(error, ValidationError)
    assert (error.field, ids) == ("properties", ["bad"])


def test_unencodable_event_dropped_alone() -> None:
    """An event whose encoding fails with any exception is dropped as unserializable."""
    ledger = Ledger(None)
    broken = Event("x", "usr_1", {}, None, "bad")  # type: ignore[arg-type]
    (request,) = prepare([broken, *events(2)], settings(), ledger)
    assert ids_of(request) == ["e0", "e1"]
    assert dict(stats(ledger).dropped) == {"unserializable": 1}


def sized(size: int, event_id: str) -> Event:
    """An event whose wire JSON is exactly ``size`` bytes."""
    base = Event("x", "usr_1", {"blob": ""}, WHEN, event_id)
    pad = size - len(encode_event(base))
    return Event("x", "usr_1", {"blob": "y" * pad}, WHEN, event_id)


def test_oversized_event_dropped_alone() -> None:
    """An event over MAX_EVENT_BYTES is dropped (event_too_large); one at the limit goes."""
    reported = Reported()
    ledger = Ledger(reported)
    at_limit, over = sized(MAX_EVENT_BYTES, "fits"), sized(MAX_EVENT_BYTES + 1, "huge")
    assert len(encode_event(at_limit)) == MAX_EVENT_BYTES
    (request,) = prepare([over, at_limit, *events(1)], settings(), ledger)
    assert ids_of(request) == ["fits", "e0"]
    assert dict(stats(ledger).dropped) == {"event_too_large": 1}
    assert reported.ids() == ["huge"]


def test_unserialisable_and_oversized_events_in_one_batch_each_dropped_alone() -> None:
    """Both kinds in one batch, with good events around them: each bad one dropped for its
    reason, the rest in order; ``measured`` told the size of every event that was encoded
    (the oversized one too), in the chunks the caller's in_steps made."""
    reported = Reported()
    ledger = Ledger(reported)
    bad = Event("x", "usr_1", {"nan": math.nan}, WHEN, "bad")
    over = sized(MAX_EVENT_BYTES + 1, "huge")
    batch = [*events(1), bad, over, *events(2, start=1)]
    told: list[tuple[int, int]] = []

    def in_steps(build: Callable[[list[Event]], list[Any]], items: list[Event]) -> list[Any]:
        return build(items[:2]) + build(items[2:])

    (request,) = prepare(batch, settings(), ledger, in_steps, lambda n, b: told.append((n, b)))
    assert ids_of(request) == ["e0", "e1", "e2"]
    assert dict(stats(ledger).dropped) == {"unserializable": 1, "event_too_large": 1}
    assert reported.ids() == ["bad", "huge"]  # in the batch's order
    good = [len(encode_event(e)) for e in events(3)]
    assert told == [(2, good[0]), (3, MAX_EVENT_BYTES + 1 + good[1] + good[2])]


def test_drops_are_reported_in_the_batchs_order_whatever_their_reasons() -> None:
    """An oversized event before an unencodable one is reported first (each on its own)."""
    reported = Reported()
    ledger = Ledger(reported)
    bad = Event("x", "usr_1", {"nan": math.nan}, WHEN, "bad")
    batch = [sized(MAX_EVENT_BYTES + 1, "huge"), bad, *events(1)]
    (request,) = prepare(batch, settings(), ledger)
    assert ids_of(request) == ["e0"]
    assert reported.ids() == ["huge", "bad"]


def test_dropped_event_gets_no_upsert() -> None:
    """An event dropped while preparing does not upsert its user either."""
    ledger = Ledger(None)
    bad = Event("x", "usr_9", {"nan": math.nan}, WHEN, "bad", {"plan": "pro"})
    requests = prepare([bad, *events(1)], settings(), ledger)
    assert [r.path for r in requests] == [EVENTS_PATH]


def test_unencodable_traits_lose_only_their_upsert() -> None:
    """Traits that are not JSON cost that user's upsert (users_failed); every event still goes."""
    ledger = Ledger(None)
    good = events(1, traits={"plan": "pro"})
    bad = events(1, start=1, user="usr_2", traits={"score": math.nan})
    requests = prepare(good + bad, settings(), ledger)
    assert [r.path for r in requests] == [USERS_PATH, EVENTS_PATH]
    assert json.loads(requests[0].body)["external_user_id"] == "usr_1"
    assert ids_of(requests[1]) == ["e0", "e1"]
    counts = stats(ledger)
    assert (counts.users_failed, counts.dropped_total, counts.dead_lettered) == (1, 0, 0)


def test_other_users_keep_one_merged_upsert_when_one_user_fails() -> None:
    """One user's bad traits do not split the other users' upserts: still one per user, merged."""
    ledger = Ledger(None)
    good = [
        Event("a", "usr_1", {}, WHEN, "a1", {"plan": "pro"}),
        Event("a", "usr_1", {}, WHEN, "a2", {"seats": 3}),
    ]
    bad = events(1, start=1, user="usr_2", traits={"score": math.nan})
    upserts = [r for r in prepare(good + bad, settings(), ledger) if r.path == USERS_PATH]
    assert [json.loads(r.body) for r in upserts] == [
        {"external_user_id": "usr_1", "traits": {"plan": "pro", "seats": 3}}
    ]


def test_users_failed_counts_one_per_user_not_per_event() -> None:
    """A user whose traits cannot be encoded costs one upsert, however many events carry them."""
    ledger = Ledger(None)
    bad = events(3, user="usr_2", traits={"score": math.nan})
    prepare(bad, settings(), ledger)
    assert stats(ledger).users_failed == 1


def test_on_error_not_told_events_lost_when_only_the_upsert_is() -> None:
    """A failed upsert does not report its events to on_error as lost: they are delivered."""
    reported = Reported()
    ledger = Ledger(reported)
    requests = prepare(events(2, traits={"score": math.nan}), settings(), ledger)
    assert ids_of(requests[-1]) == ["e0", "e1"]
    assert reported.ids() == []
