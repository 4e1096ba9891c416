"""The counts of one pipeline: the states and drop reasons, ``Stats``, and the ``Ledger``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

from .._errors import UndeliveredError, ValidationError, VibefollowError
from .._event.model import DropReason, Event
from .._event.values import KeyCollisions
from .._observe import RateLimitedLog
from ..typing import ErrorCallback
from . import threads
from .wire import USERS_PATH, Request

__all__ = [
    "DROP_REASONS",
    "REFUSAL_TEXT",
    "DropReason",
    "Ledger",
    "State",
    "Stats",
]


# The vocabulary of delivery: each state an event can be in, and why one is lost.
#
# The vocabulary, used alike in code, ``stats()``, metrics and the docs:
#
#     queued       in the handler's queue, not yet taken by the worker
#     in flight    in a request being attempted now (or waiting between its retries)
#     parked       waiting in memory for a later attempt (circuit open, key refused, ...)
#     spooled      written to the durable spool for a later attempt (this or another process)
#     delivered    accepted by the API                        -> ``sent``
#     dead-lettered  refused by the API for good              -> ``dead_lettered``
#     dropped      never delivered, for a ``DropReason``     -> ``dropped[reason]``
#
# Every event that is enqueued ends as exactly one of delivered, dead-lettered or
# dropped, or is still queued, in flight, parked or spooled. ``Stats`` is a snapshot
# of those counts and ``REFUSAL_TEXT`` words the refusals on the app's thread; the
# ``Ledger`` (below) is the only thing that changes the counts.

DROP_REASONS: Final[frozenset[str]] = frozenset(get_args(DropReason))
#: Where the ledger counts what is on its way: a request being attempted, or one waiting.
State = Literal["in_flight", "parked"]

#: The refusals on the app's thread, in words (any other reason is worded by its name).
REFUSAL_TEXT: Final[Mapping[str, str]] = {
    "queue_full": "the queue is full (raise max_queue_size or check delivery)",
    "shutdown": "the handler or exporter is closed",
    "no_api_key": "VIBEFOLLOW_API_KEY is not set",
}


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one handler's or exporter's counts.

    Every ``enqueued`` event ends up ``sent``, ``dead_lettered`` (the server
    refused it for good) or ``dropped`` (never delivered, by reason), or is
    still ``queued``, ``in_flight``, ``parked`` in memory, or spooled.
    ``dropped`` also counts events refused before they were enqueued.
    ``retried`` counts HTTP retries; ``spooled`` counts events written to the
    spool (cumulative); ``backlog`` is ``in_flight + parked``.
    ``disabled`` counts what was handed over while delivery is off (``enabled=False``):
    not enqueued, not sent, and no loss (never in ``dropped``, never reported).
    ``key_collisions`` counts property and trait values left out because two keys of
    one mapping became the same string (``1`` and ``"1"``; the last value wins): their
    events are still delivered, so it is warned about but is no drop.
    A user upsert is no event: ``users_in_flight`` and ``users_parked`` count the ones
    on their way (in a request, or waiting in memory), ``users_sent`` and
    ``users_failed`` how they ended.
    """

    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    users_sent: int = 0
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    queued: int = 0
    backlog: int = 0
    spooled: int = 0
    in_flight: int = 0
    parked: int = 0
    users_failed: int = 0
    disabled: int = 0
    key_collisions: int = 0
    users_in_flight: int = 0
    users_parked: int = 0

    @property
    def dropped_total(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())


# The ``Ledger``: the one place where the counts of one pipeline change.
#
# Every state change of an event (see the vocabulary above) goes through it:
# enqueued, moved between in flight and parked, spooled, sent, dead-lettered, dropped.
# Each loss is also warned about (at most once a minute per reason, on the ``vf_otel``
# logger) and reported to ``on_error``. It also counts what is lost from inside events
# that are still delivered (``key_collisions``): warned about, never a drop. Reading
# the counts (``snapshot`` and the properties the pipeline waits on) goes through it too.

_logger = logging.getLogger("vf_otel")

# A key or event name is quoted in a warning only this far (a key may be 16,384 characters).
_QUOTE_LENGTH: Final = 80


class Ledger:
    """The counts of one pipeline; thread-safe. The only place they change.

    The lock is re-entrant: a signal handler that logs or calls ``stats()``
    while the interrupted thread holds it must not deadlock. (The app thread
    itself never takes it: refusals there are plain counters, see Pipeline.)
    """

    def __init__(self, on_error: ErrorCallback | None) -> None:
        self._on_error = on_error
        self._log = RateLimitedLog(_logger)
        self._lock = threads.RLock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._in_flight = 0
        self._parked = 0
        # User upserts on their way, apart from events: an upsert is no event (issue 22).
        self._users_in_flight = 0
        self._users_parked = 0
        self.last_error: VibefollowError | None = None
        # Events reported to on_error as in flight at shutdown (outcome unknown): a later
        # failure or refusal of their request counts them, but tells on_error no more.
        self._told: set[str] = set()

    def after_fork(self) -> None:
        """A forked child counts only its own events."""
        self._lock = threads.RLock()
        self._counts = Counter()
        self._dropped = Counter()
        self._in_flight = self._parked = 0
        self._users_in_flight = self._users_parked = 0

    # -- states -----------------------------------------------------------------

    def enqueued(self, count: int) -> None:
        """``count`` events entered delivery (taken from the queue, or handed to an exporter)."""
        with self._lock:
            self._counts["enqueued"] += count

    def move(self, weight: int, source: State | None, target: State | None) -> None:
        """``weight`` events went from ``source`` to ``target`` (``in_flight``/``parked``/None)."""
        with self._lock:
            if source == "in_flight":
                self._in_flight -= weight
            elif source == "parked":
                self._parked -= weight
            if target == "in_flight":
                self._in_flight += weight
            elif target == "parked":
                self._parked += weight

    def move_request(self, request: Request, source: State | None, target: State | None) -> None:
        """``request`` went from ``source`` to ``target``: its events, or one user upsert."""
        if request.path != USERS_PATH:
            self.move(len(request.events), source, target)
            return
        with self._lock:
            if source == "in_flight":
                self._users_in_flight -= 1
            elif source == "parked":
                self._users_parked -= 1
            if target == "in_flight":
                self._users_in_flight += 1
            elif target == "parked":
                self._users_parked += 1

    def spooled(self, count: int) -> None:
        """``count`` events were written to the spool."""
        with self._lock:
            self._counts["spooled"] += count

    def retried(self) -> None:
        """One HTTP request is being tried again."""
        with self._lock:
            self._counts["retried"] += 1

    def sent(self, request: Request) -> None:
        """The API accepted ``request``."""
        with self._lock:
            self._counts["requests_sent"] += 1
            if request.path == USERS_PATH:
                self._counts["users_sent"] += 1
            else:
                self._counts["sent"] += len(request.events)

    # -- losses ---------------------------------------------------------------

    def dead_letter(self, request: Request, error: VibefollowError) -> None:
        """The API refused ``request`` for good."""
        self.last_error = error
        if request.path == USERS_PATH:
            with self._lock:
                self._counts["users_failed"] += 1
            self._log.warning(
                f"user-{error.status}", "Vibefollow refused a user upsert: %s", _describe(error)
            )
            return
        self.dead_letter_events(request.events, error)

    def upsert_failed(self, error: VibefollowError) -> None:
        """A user upsert could not be built; its events still go (so none is reported lost)."""
        with self._lock:
            self._counts["users_failed"] += 1
        self._log.warning("user-build", "vf-otel skipped a user upsert: %s", error)
        self.report(error, ())

    def dead_letter_events(self, events: Sequence[Event], error: VibefollowError) -> None:
        """The API refused these events for good."""
        self.last_error = error
        with self._lock:
            self._counts["dead_lettered"] += len(events)
        self._log.warning(
            f"dead-{error.status}-{error.code}",
            "Vibefollow refused %d event(s) for good: %s",
            len(events),
            _describe(error),
        )
        self.report(error, events)

    def drop(
        self,
        reason: DropReason,
        events: Sequence[Event],
        error: VibefollowError | None = None,
        *,
        count: int | None = None,
    ) -> None:
        """``events`` (or ``count`` events with none built) will never be delivered."""
        n = len(events) if count is None else count
        if n <= 0:
            return
        error = error or UndeliveredError(REFUSAL_TEXT.get(reason, reason.replace("_", " ")))
        with self._lock:
            self._dropped[reason] += n
        self._log.warning(reason, "vf-otel dropped %d event(s) (%s): %s", n, reason, error)
        self.report(error, events)

    def drop_requests(
        self, reason: DropReason, requests: Sequence[Request], error: VibefollowError
    ) -> None:
        """Drop the events of ``requests``; a user upsert lost counts in ``users_failed``
        (its events are counted with their own batch)."""
        for request in requests:
            if request.path != USERS_PATH:
                self.drop(reason, request.events, error)
            else:
                with self._lock:
                    self._counts["users_failed"] += 1

    def keys_collided(self, collisions: KeyCollisions) -> None:
        """Values were left out of built events: two keys became the same string.

        Not a loss of events (they are still delivered, with the last value): counted
        in ``key_collisions`` and warned about, naming the first key (never a value),
        but neither a drop nor reported to ``on_error``.
        """
        if collisions.count <= 0:
            return
        with self._lock:
            self._counts["key_collisions"] += collisions.count
        self._log.warning(
            "key_collision",
            "vf-otel kept only the last of %d property/trait value(s) whose keys became "
            "the same string, e.g. key %.*r in event %.*r (use distinct str keys)",
            collisions.count,
            _QUOTE_LENGTH,
            collisions.key,
            _QUOTE_LENGTH,
            collisions.event,
        )

    def filtered(self, count: int) -> None:
        """The app's before_send left ``count`` events out: counted, neither warned about nor
        reported (it is the app's choice, e.g. sampling)."""
        with self._lock:
            self._dropped["filtered"] += count

    def reject(self, reason: DropReason, field_name: str, message: str) -> None:
        """The client-side checks refused an event (no Event could be built)."""
        error = ValidationError(message, status=0, code=reason, field=field_name)
        self.drop(reason, (), error, count=1)

    def warn_refused(self, reason: str, count: int) -> None:
        """Warn about (and report) ``count`` refusals the app's thread counted (see EventQueue)."""
        text = REFUSAL_TEXT.get(reason, reason)
        self._log.warning(reason, "vf-otel dropped %d event(s): %s", count, text)
        self.report(UndeliveredError(text), ())

    def report_in_flight(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """Tell ``on_error`` about events whose request is still out at shutdown (outcome
        unknown); whatever becomes of them later is counted but not reported again."""
        with self._lock:
            self._told.update(event.event_id for event in events)
        self._tell(error, events)

    def report(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """Tell ``on_error`` about events that will never be delivered (none it was told
        about as in flight at shutdown); never raises."""
        if self._told and events:
            with self._lock:
                events = [event for event in events if event.event_id not in self._told]
            if not events:
                return
        self._tell(error, events)

    def _tell(self, error: VibefollowError, events: Sequence[Event]) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error, events)
        except Exception:  # noqa: BLE001 - a user callback must not stop delivery
            self._log.log(logging.ERROR, "on_error", "on_error callback raised", exc_info=True)

    def undelivered(self, message: str) -> UndeliveredError:
        """An error for events given up on, carrying the last error the API gave as its cause.

        Without it, events held back by a refused key (or a redirect) would be reported
        at shutdown with no word about why they could not go.
        """
        last = self.last_error
        if last is None:
            return UndeliveredError(message)
        error = UndeliveredError(f"{message}; the last error was: {last}")
        error.__cause__ = last
        return error

    def warn(self, reason: str, message: str, *args: object) -> None:
        """A rate-limited warning on the ``vf_otel`` logger."""
        self._log.warning(reason, message, *args)

    def error(
        self, reason: str, message: str, *args: object, exc_info: bool | BaseException = False
    ) -> None:
        """A rate-limited error on the ``vf_otel`` logger (``exc_info``: as logging takes it)."""
        self._log.log(logging.ERROR, reason, message, *args, exc_info=exc_info)

    # -- reading --------------------------------------------------------------

    @property
    def failures(self) -> int:
        """Events dead-lettered or dropped so far (refusals on the app thread excluded;
        events the app's before_send left out are its choice, not a loss)."""
        with self._lock:
            lost = sum(self._dropped.values()) - self._dropped["filtered"]
            return self._counts["dead_lettered"] + lost

    @property
    def requests_sent(self) -> int:
        """Requests the API accepted (a batch counts once)."""
        with self._lock:
            return self._counts["requests_sent"]

    def dropped(self, reason: DropReason) -> int:
        """Events dropped for ``reason`` after they were enqueued."""
        with self._lock:
            return self._dropped[reason]

    @property
    def waiting(self) -> int:
        """Events and user upserts in flight or parked in memory."""
        with self._lock:
            return self._in_flight + self._parked + self._users_in_flight + self._users_parked

    def snapshot(self, *, queued: int, refused: Mapping[str, int]) -> Stats:
        """An immutable copy; ``queued`` events count as enqueued already."""
        with self._lock:
            counts = dict(self._counts)
            dropped = Counter(self._dropped)
            in_flight, parked = self._in_flight, self._parked
            users_in_flight, users_parked = self._users_in_flight, self._users_parked
        dropped.update({k: v for k, v in refused.items() if v})
        return Stats(
            enqueued=counts.get("enqueued", 0) + queued,
            sent=counts.get("sent", 0),
            retried=counts.get("retried", 0),
            dead_lettered=counts.get("dead_lettered", 0),
            users_sent=counts.get("users_sent", 0),
            users_failed=counts.get("users_failed", 0),
            dropped=MappingProxyType(dict(dropped)),
            queued=queued,
            backlog=in_flight + parked,
            spooled=counts.get("spooled", 0),
            in_flight=in_flight,
            parked=parked,
            key_collisions=counts.get("key_collisions", 0),
            users_in_flight=users_in_flight,
            users_parked=users_parked,
        )


def _describe(error: VibefollowError) -> str:
    field_name = getattr(error, "field", None)
    return f"{error}" + (f" (field {field_name})" if field_name else "")
