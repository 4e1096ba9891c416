"""Where a request waits for a later attempt: the durable spool when configured, else memory.

A ``Job`` is a request on its way: the request, the batch it came from
(``seq``, for ``flush()``) and, when it was claimed from the spool, its row. A
job parked again whose row is still its own only gives the row back (it is not
stored twice); a narrowed one (poison events removed) replaces its row. A spool
that refuses a request (full, or unusable) leaves it in memory.

In memory a request is kept compressed (``Packed``): its body (zlib, the bytes that
were encoded once and are sent again as they are: requests on the wire stay plain
JSON) and what the body does not say about its events (ids, exact times, traits).
A long outage then costs a tenth of the memory the encoded requests would. Memory
holds at most ``limit`` bytes of them (``max_backlog_bytes``); past that the oldest
events go (``backlog_full``), user upserts and ``priority_events`` last: the oldest
request (by batch) with other events loses them (all of it, or all but its priority events,
which stay in its place as a request of their own); once only upserts and priority
events are left, the oldest of them go. The newest request always stays.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .._errors import UndeliveredError
from .._event.model import Event
from .._spool.store import Spool
from . import threads
from .ledger import Ledger, State
from .wire import EVENTS_PATH, USERS_PATH, Request, encode_event, events_request

__all__ = ["Job", "Parked"]

#: A spool lease outlives the longest delivery round by this much (seconds).
LEASE_MARGIN: Final = 60.0
#: Bytes counted per parked request on top of its compressed data (its objects).
PACKED_OVERHEAD: Final = 256
#: zlib's level for parked requests: most of level 9's ratio at a fraction of its time.
_LEVEL: Final = 6


@dataclass(slots=True, eq=False)
class Job:
    """One request on its way, and what it is tied to."""

    request: Request
    seq: int = 0
    row: int | None = None
    deadline: float = 0.0
    # Sent in order after this one, on the same thread: a batch's user upserts
    # go before its events.
    then: list[Job] = field(default_factory=list)
    done: Callable[[bool], None] | None = field(default=None, repr=False)
    # Called once at its first outcome (sent, refused, parked): a batch's events wait
    # for every user upsert of the batch sent side by side (jobs.Upserts).
    after: Callable[[], None] | None = field(default=None, repr=False)
    # Given to the spool (or reported) at shutdown while its request was still out: its
    # sender's outcome, if it ever comes, settles nothing more.
    handed_over: bool = False
    #: Where it went at its last outcome, for deliver()'s receipt: ``sent``, ``refused``,
    #: ``spooled``, ``parked`` (memory) or ``dropped``; empty until then.
    outcome: str = ""

    @property
    def weight(self) -> int:
        """How many events it stands for (1 for a user upsert)."""
        return self.request.weight


@dataclass(frozen=True, slots=True)
class Packed:
    """A request parked in memory, compressed (see the module docstring), and its batch."""

    seq: int
    path: str
    key: str
    #: zlib of the body, then the events' JSON the body does not hold.
    data: bytes
    body_length: int
    weight: int
    #: How many of its events a full backlog evicts last (a user upsert: all of it).
    priority: int

    @property
    def size(self) -> int:
        """The bytes it counts for against ``max_backlog_bytes``."""
        return len(self.data) + PACKED_OVERHEAD


def pack(job: Job, priority_events: Collection[str]) -> Packed:
    """``job``'s request compressed; :func:`unpack` gives back an equal request."""
    request = job.request
    upsert = request.path == USERS_PATH
    # An event's name, user and properties are in an events body; an upsert's body
    # is the merged traits, so its events are kept whole.
    meta = [_event_meta(event, whole=upsert) for event in request.events]
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
    data = zlib.compress(request.body + text, _LEVEL)
    priority = request.weight if upsert else sum(e.name in priority_events for e in request.events)
    return Packed(
        job.seq, request.path, request.key, data, len(request.body), request.weight, priority
    )


def _event_meta(event: Event, *, whole: bool) -> list[Any]:
    traits = None if event.traits is None else dict(event.traits)
    meta: list[Any] = [event.event_id, event.occurred_at.isoformat(), traits]
    if whole:
        meta += [event.name, event.user_id, dict(event.properties)]
    return meta


def unpack(packed: Packed) -> Job:
    """The job ``packed`` was made from: the same path, key, body bytes and events."""
    raw = zlib.decompress(packed.data)
    body, meta = raw[: packed.body_length], json.loads(raw[packed.body_length :])
    if packed.path == USERS_PATH:
        events = tuple(
            Event(name, user, properties, datetime.fromisoformat(at), event_id, traits)
            for event_id, at, traits, name, user, properties in meta
        )
    else:
        wire = json.loads(body)["events"]
        events = tuple(
            Event(
                item["name"],
                item["external_user_id"],
                item["properties"],
                datetime.fromisoformat(at),
                event_id,
                traits,
            )
            for item, (event_id, at, traits) in zip(wire, meta, strict=True)
        )
    return Job(Request(packed.path, packed.key, body, events), packed.seq)


class Parked:
    """The parked requests of one pipeline; thread-safe."""

    def __init__(
        self,
        limit: int,
        ledger: Ledger,
        spool: Spool | None,
        priority_events: Collection[str] = (),
    ) -> None:
        #: Bytes of packed requests memory may hold (``max_backlog_bytes``).
        self._limit = limit
        self._priority_events = frozenset(priority_events)
        self._ledger = ledger
        self.spool = spool
        if spool is not None:
            spool.resume()  # a reopened pipeline uses the spool its shutdown closed
            spool.on_lost = self._spool_lost
        self._lock = threads.Lock()
        self._memory: deque[Packed] = deque()
        self._weight = 0
        self._bytes = 0
        # Whether the spool may hold rows this process could claim (checked lazily).
        self.spool_dirty = spool is not None
        #: Called for each job evicted from memory (``backlog_full``): its batch is
        #: settled there, or no flush() could ever finish again (the job runner sets it).
        self.on_evicted: Callable[[Job], None] = _nothing
        # Jobs a sender is running now, for the hand-over at shutdown.
        self._out: dict[int, tuple[Job, list[Job]]] = {}
        self._handed = False  # shutdown handed over what was out: later ones follow

    def after_fork(self) -> None:
        """In a forked child: nothing parked (the parent's jobs stay with the parent)."""
        self._lock = threads.Lock()
        self._out = {}
        self._handed = False
        self._memory = deque()
        self._weight = 0
        self._bytes = 0
        if self.spool is not None:
            self.spool.after_fork()
            self.spool_dirty = True

    def __len__(self) -> int:
        """Events parked in memory."""
        return self._weight

    @property
    def bytes(self) -> int:
        """What the requests parked in memory take, compressed (see ``Packed.size``)."""
        return self._bytes

    def park(
        self,
        job: Job,
        *,
        source: State | None = None,
        narrowed: bool = False,
        stopping: bool = False,
    ) -> str:
        """Keep ``job`` for later: ``spooled``, ``parked`` (memory) or ``dropped`` (stopping).

        ``source`` is the state its events leave (``in_flight``), in the same step.
        """
        spool = self.spool
        if job.row is not None and spool is not None:
            if not narrowed and spool.release(job.row):
                self._ledger.move_request(job.request, source, None)
                return "spooled"
            spool.finish(job.row)  # narrowed: the row holds events already settled
            job.row = None
        if spool is not None and spool.usable:
            stored, evicted = spool.add([job.request])
            self._ledger.drop_requests(
                "spool_evicted", evicted, UndeliveredError("spool full (spool_max_bytes)")
            )
            if stored:
                self.spool_dirty = True
                if job.request.path == EVENTS_PATH:
                    self._ledger.spooled(len(job.request.events))
                self._ledger.move_request(job.request, source, None)
                return "spooled"
        if stopping:
            self._ledger.move_request(job.request, source, None)
            return "dropped"
        packed = pack(job, self._priority_events)
        with self._lock:
            self._memory.append(packed)
            self._weight += packed.weight
            self._bytes += packed.size
            gone = self._make_room()
        self._ledger.move_request(job.request, source, "parked")
        for lost, whole in gone:
            self._ledger.move_request(lost, "parked", None)
            error = self._ledger.undelivered("retry backlog full (max_backlog_bytes)")
            self._ledger.drop_requests("backlog_full", [lost], error)
            if whole is not None:
                self.on_evicted(whole)
        return "parked"

    def _make_room(self) -> list[tuple[Request, Job | None]]:
        """Under the lock: evict until memory holds at most ``limit`` bytes.

        Returns what went: a whole job's request and the job (its batch is settled),
        or the events taken out of a request that keeps its priority ones (a new
        request, with its own key, stays in its place). The newest always stays,
        even when it alone is over the limit.
        """
        gone: list[tuple[Request, Job | None]] = []
        while self._bytes > self._limit and len(self._memory) > 1:
            index = self._victim()
            packed = self._memory[index]
            job = unpack(packed)
            if 0 < packed.priority < packed.weight:
                events = job.request.events
                kept = [e for e in events if e.name in self._priority_events]
                lost = tuple(e for e in events if e.name not in self._priority_events)
                request = events_request(kept, [encode_event(e) for e in kept])
                narrowed = pack(Job(request, packed.seq), self._priority_events)
                self._memory[index] = narrowed
                self._weight -= len(lost)
                self._bytes += narrowed.size - packed.size
                gone.append((Request(EVENTS_PATH, "", b"", lost), None))
            else:
                del self._memory[index]
                self._weight -= packed.weight
                self._bytes -= packed.size
                gone.append((job.request, job))
        return gone

    def _victim(self) -> int:
        """Which request makes room: the oldest with events that are not priority (it goes,
        or gives those up), else the oldest; never the one parked last.

        Oldest by batch (``seq``, in the order the worker took them), not by when it
        parked: a request that was out, retrying, while newer ones parked is older.
        """
        older = list(enumerate(itertools.islice(self._memory, len(self._memory) - 1)))
        plain = [(packed.seq, index) for index, packed in older if packed.priority < packed.weight]
        return min(plain or [(packed.seq, index) for index, packed in older])[1]

    def take(self, limit: int | None = None) -> list[Job]:
        """Up to ``limit`` jobs parked in memory, oldest first.

        Their events still count as parked: the caller moves them on (``Ledger.move``).
        """
        with self._lock:
            count = len(self._memory) if limit is None else min(limit, len(self._memory))
            taken = [self._memory.popleft() for _ in range(count)]
            self._weight -= sum(packed.weight for packed in taken)
            self._bytes -= sum(packed.size for packed in taken)
        jobs = [self._unpacked(packed) for packed in taken]
        return [job for job in jobs if job is not None]

    def _unpacked(self, packed: Packed) -> Job | None:
        """``packed``'s job; None (its events dropped as ``internal_error``, counted and its
        batch settled) if it cannot be read back, which nothing foreseen causes."""
        try:
            return unpack(packed)
        except Exception:  # noqa: BLE001 - never lost silently
            self._ledger.error("parked", "vf-otel could not read a parked request", exc_info=True)
            stub = Job(Request(packed.path, packed.key, b"", ()), packed.seq)
            if packed.path == USERS_PATH:
                self._ledger.move_request(stub.request, "parked", None)
                self._ledger.upsert_failed(UndeliveredError("internal error in the backlog"))
            else:
                self._ledger.move(packed.weight, "parked", None)
                error = UndeliveredError("internal error in the backlog")
                self._ledger.drop("internal_error", (), error, count=packed.weight)
            self.on_evicted(stub)
            return None

    def claim(self, limit: int) -> list[Job]:
        """A claim on the spool's oldest rows this process may send (none if no spool)."""
        if self.spool is None or not self.spool_dirty or limit <= 0:
            return []
        claimed = self.spool.claim(limit)
        if not claimed:
            self.spool_dirty = False
        return [Job(request, 0, row) for request, row in claimed]

    def done(self, job: Job) -> None:
        """``job`` was sent or refused for good: its spool row goes."""
        if job.row is not None and self.spool is not None:
            self.spool.finish(job.row)
            job.row = None

    def claimable(self) -> int:
        """Events in the spool this process could send now (0 without a spool)."""
        if self.spool is None:
            return 0
        return self.spool.claimable()

    def going(self, job: Job, rest: list[Job]) -> bool:
        """A sender starts ``job``'s request, ``rest`` of its chain to follow; False (not to
        be sent: spooled now) once shutdown handed what was out to the spool."""
        with self._lock:
            if not self._handed:
                self._out[id(job)] = (job, rest)
                return True
            job.handed_over = True
        self._hand_over_chain([(job, rest)])
        return False

    def back(self, job: Job) -> bool:
        """``job``'s request ended; False if it was handed over meanwhile (settle nothing)."""
        with self._lock:
            self._out.pop(id(job), None)
            return not job.handed_over

    def hand_over_in_flight(self) -> None:
        """Shutdown's deadline: the requests still out go to the spool.

        The same key and body as the request out: if that one landed too, the server
        deduplicates the replay. Without a usable spool they stay counted in flight (a
        late answer still settles them) and are reported to ``on_error``: their outcome
        is unknown, they may have landed.
        """
        spool = self.spool
        with self._lock:
            out = list(self._out.values())
            if spool is not None and spool.usable:
                self._handed = True
                self._out.clear()
                for job, _ in out:
                    job.handed_over = True
        if self._handed:
            self._hand_over_chain(out)
            return
        for job, _ in out:
            self._report_in_flight(job)

    def _hand_over_chain(self, out: list[tuple[Job, list[Job]]]) -> None:
        for job, rest in out:
            if not self._hand_over(job, source="in_flight"):
                self._report_in_flight(job)  # refused by the spool: still counted in flight
            for later in rest:  # never started, counted in flight since it was chained
                if not self._hand_over(later, source="in_flight"):
                    self._ledger.move_request(later.request, "in_flight", None)
                    error = self._ledger.undelivered("not delivered before shutdown")
                    self._ledger.drop_requests("shutdown", [later.request], error)

    def _report_in_flight(self, job: Job) -> None:
        if job.request.path == EVENTS_PATH:
            error = UndeliveredError(
                "still in flight at shutdown; outcome unknown (it may have landed)"
            )
            self._ledger.report_in_flight(error, job.request.events)

    def _hand_over(self, job: Job, *, source: State | None) -> bool:
        """``job`` into the spool, its events leaving ``source``; False if refused."""
        spool = self.spool
        if job.row is not None and spool is not None:
            # Its row is in the file already; close() gives it back for the next start.
            self._ledger.move_request(job.request, source, None)
            return True
        if spool is None or not spool.usable:
            return False
        stored, evicted = spool.add([job.request])
        self._ledger.drop_requests(
            "spool_evicted", evicted, UndeliveredError("spool full (spool_max_bytes)")
        )
        if not stored:
            return False
        if job.request.path == EVENTS_PATH:
            self._ledger.spooled(len(job.request.events))
        self._ledger.move_request(job.request, source, None)
        return True

    def _spool_lost(self, requests: list[Request], why: str) -> None:
        """Spooled requests this process can no longer send: counted and reported."""
        error = UndeliveredError(f"spooled events not delivered: {why}")
        self._ledger.drop_requests("spool_lost", requests, error)

    def close(self) -> None:
        """Close the spool (rows stay on disk for the next start)."""
        if self.spool is not None:
            self.spool.close()


def _nothing(job: Job) -> None:
    """No one to tell about an evicted job (before a job runner is attached)."""
