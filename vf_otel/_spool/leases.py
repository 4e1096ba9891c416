"""Claims on spooled rows: leasing free rows to one process, giving them back, and
counting what a process could claim now.

A process *claims* rows inside a ``BEGIN IMMEDIATE`` transaction by writing its pid
and a lease expiry; a claimed row is deleted once sent or refused for good, released
when the attempt is parked again or the handle closed, and claimable by anyone once
the lease runs out or its holder is known to have ended (vf_otel/_spool/holders.py).
So each row is sent by one process at a time, and a request that landed before a
crash is deduplicated by the server (same key).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from typing import Final

from .._delivery.wire import Request
from .database import immediate
from .holders import Identity, gone_holders, reap, register
from .rows import decoded, row_events

_logger = logging.getLogger("vf_otel.spool")

__all__ = ["CLAIM_LIMIT", "claim_rows", "claimable_rows", "claimable_weight", "release_rows"]

#: Requests one claim takes at most (each holds up to 500 events).
CLAIM_LIMIT: Final = 20
_ANY_FREE: Final = "SELECT 1 FROM vf_requests WHERE lease_until <= ? LIMIT 1"
_FREE_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE lease_until <= ? ORDER BY id LIMIT ?"
)
_FREE_WEIGHT: Final = "SELECT COALESCE(SUM(weight), 0) FROM vf_requests WHERE lease_until <= ?"
_ALL_FREE_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE lease_until <= ? ORDER BY id"
)
_HELD_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE owner = ? AND lease_until > ?"
)
_HELD_WEIGHT: Final = (
    "SELECT COALESCE(SUM(weight), 0) FROM vf_requests WHERE owner = ? AND lease_until > ?"
)
_LEASE: Final = "UPDATE vf_requests SET owner = ?, lease_until = ? WHERE id = ?"
_RELEASE: Final = "UPDATE vf_requests SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?"


def claim_rows(
    conn: sqlite3.Connection, now: float, me: Identity, limit: int, until: float
) -> list[tuple[Request, int]]:
    """Lease up to ``limit`` free rows (or ended holders' rows), oldest first, to ``me``
    until ``until``; the requests with their row ids."""
    # A plain read first: the common case (nothing spooled) takes no write lock.
    if conn.execute(_ANY_FREE, (now,)).fetchone() is None and not gone_holders(conn, now, me):
        return []
    with immediate(conn):
        reap(conn, now, me)
        found = conn.execute(_FREE_ROWS, (now, limit)).fetchall()
        if found:
            register(conn, me)
            conn.executemany(_LEASE, [(me.pid, until, row[0]) for row in found])
        return decoded(conn, found)


def release_rows(conn: sqlite3.Connection, row_ids: Iterable[int], pid: int) -> None:
    """Free the rows among ``row_ids`` that ``pid`` leased (others are left alone)."""
    conn.executemany(_RELEASE, [(row_id, pid) for row_id in row_ids])


def claimable_weight(conn: sqlite3.Connection, now: float, me: Identity) -> int:
    """Events (and user upserts) in free rows and in rows of holders known to have ended."""
    (total,) = conn.execute(_FREE_WEIGHT, (now,)).fetchone()
    for pid in gone_holders(conn, now, me):
        (held,) = conn.execute(_HELD_WEIGHT, (pid, now)).fetchone()
        total += held
    return int(total)


def claimable_rows(conn: sqlite3.Connection, now: float, me: Identity) -> list[Request]:
    """The requests ``claimable_weight`` counts, read only (nothing is leased or deleted).

    For a spool this process can no longer use: what it would have sent.
    """
    found = list(conn.execute(_ALL_FREE_ROWS, (now,)).fetchall())
    for pid in gone_holders(conn, now, me):
        found.extend(conn.execute(_HELD_ROWS, (pid, now)).fetchall())
    requests = []
    for row_id, path, key, body, events in found:
        try:
            requests.append(Request(path, key, bytes(body), row_events(events)))
        except (ValueError, TypeError, KeyError, AttributeError):
            _logger.warning("vf-otel spool: row %s is unreadable; not counted", row_id)
    return requests
