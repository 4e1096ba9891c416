"""What ``vf-otel spool`` reads from a spool: summaries, leases, and "is this a spool?".

Kept apart from the spool's delivery path (vf_otel/_spool/store.py): these read rows
without their bodies and never change a file that is not already a spool (only the
purge deletes, inside the write transaction the store opens for it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from .._delivery.wire import EVENTS_PATH
from .rows import DELETE

__all__ = [
    "Fact",
    "Lease",
    "Purged",
    "SpoolSummary",
    "leases_of",
    "purge_rows",
    "read_facts",
    "spool_file_problem",
    "summarize",
]

_FACTS: Final = "SELECT id, path, events, size, owner, lease_until FROM vf_requests ORDER BY id"
#: What a file must have to be taken for a spool (vf-otel spool checks before opening).
_COLUMNS: Final = frozenset(
    {"id", "path", "key", "body", "events", "weight", "size", "owner", "lease_until"}
)


@dataclass(frozen=True, slots=True)
class Lease:
    """The rows one process holds now: they are being sent and nobody else may claim them."""

    pid: int
    rows: int
    events: int
    #: Wall-clock time (``time.time()``) the last of these leases runs out.
    until: float


@dataclass(frozen=True, slots=True)
class SpoolSummary:
    """What a spool holds now (``vf-otel spool stats``)."""

    rows: int
    #: Events in ``/events/batch`` requests; a user upsert is counted in ``user_upserts``.
    events: int
    user_upserts: int
    #: The bytes counted against ``spool_max_bytes``.
    size: int
    #: The earliest and latest ``occurred_at`` of the spooled events (rows carry no
    #: write time, so this is how old the data is, not when it was spooled).
    oldest_event: datetime | None
    newest_event: datetime | None
    leases: tuple[Lease, ...]
    #: Wall-clock time of the snapshot.
    taken_at: float


@dataclass(frozen=True, slots=True)
class Purged:
    """What ``Spool.purge`` deleted, and the leases it spared (their rows stay)."""

    rows: int
    events: int
    user_upserts: int
    kept: tuple[Lease, ...]


@dataclass(frozen=True, slots=True)
class Fact:
    """One row as the summary and the purge see it, without its body."""

    row_id: int
    events: int
    upsert: bool
    size: int
    holder: int | None  # the pid whose lease is running now
    until: float


def read_facts(
    conn: sqlite3.Connection, now: float
) -> tuple[list[Fact], datetime | None, datetime | None]:
    """Every row's counts and lease holder, and the earliest and latest event time."""
    facts: list[Fact] = []
    times: list[datetime] = []
    for row_id, path, events, size, owner, lease_until in conn.execute(_FACTS):
        try:
            items = json.loads(events)
            times.extend(datetime.fromisoformat(item["at"]) for item in items)
            count = len(items)
        except (ValueError, TypeError, KeyError):
            count = 0  # unreadable: counted as a row; the next claim drops it
        holder = owner if owner is not None and lease_until > now else None
        facts.append(Fact(row_id, count, path != EVENTS_PATH, size, holder, lease_until))
    return facts, min(times, default=None), max(times, default=None)


def summarize(conn: sqlite3.Connection, now: float) -> SpoolSummary:
    """What the spool holds at ``now``."""
    facts, oldest, newest = read_facts(conn, now)
    return SpoolSummary(
        rows=len(facts),
        events=sum(f.events for f in facts if not f.upsert),
        user_upserts=sum(f.upsert for f in facts),
        size=sum(f.size for f in facts),
        oldest_event=oldest,
        newest_event=newest,
        leases=leases_of(facts),
        taken_at=now,
    )


def purge_rows(conn: sqlite3.Connection, now: float, keep: Callable[[int], bool]) -> Purged:
    """Delete every row except those leased now by a pid ``keep`` spares; in a write."""
    facts, _, _ = read_facts(conn, now)
    kept = tuple(lease for lease in leases_of(facts) if keep(lease.pid))
    spared = {lease.pid for lease in kept}
    doomed = [f for f in facts if f.holder is None or f.holder not in spared]
    conn.executemany(DELETE, [(f.row_id,) for f in doomed])
    return Purged(
        rows=len(doomed),
        events=sum(f.events for f in doomed if not f.upsert),
        user_upserts=sum(f.upsert for f in doomed),
        kept=kept,
    )


def leases_of(facts: list[Fact]) -> tuple[Lease, ...]:
    holders = sorted({f.holder for f in facts if f.holder is not None})
    return tuple(
        Lease(
            pid=pid,
            rows=sum(f.holder == pid for f in facts),
            events=sum(f.events for f in facts if f.holder == pid and not f.upsert),
            until=max(f.until for f in facts if f.holder == pid),
        )
        for pid in holders
    )


def spool_file_problem(path: str) -> str | None:
    """Why ``path`` is not a vf-otel spool, or None when it is; never creates or changes it."""
    file = Path(path)
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a regular file"
    try:
        # mode=ro: a file that is some other database must not get our table or WAL mode.
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open it: {exc}"
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(vf_requests)")}
    except sqlite3.Error as exc:
        return f"not a vf-otel spool ({exc})"
    finally:
        conn.close()
    if not columns:
        return "not a vf-otel spool (no vf_requests table)"
    missing = _COLUMNS - columns
    if missing:
        return f"not a vf-otel spool (vf_requests lacks {', '.join(sorted(missing))})"
    return None
