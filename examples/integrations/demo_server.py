"""Where the integration examples send: ``VIBEFOLLOW_*`` from the environment, or a local server.

Every example configures vf-otel from the environment only, as a deployed app would.
When ``VIBEFOLLOW_API_KEY`` is unset, :func:`vibefollow_env` starts the local
Vibefollow-compatible server from ``vf_otel.testing`` and points the variables at it,
so each example runs with no account.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import vf_otel
from vf_otel.testing import VibefollowServer


@contextlib.contextmanager
def vibefollow_env() -> Iterator[VibefollowServer | None]:
    """Yield None when VIBEFOLLOW_API_KEY is set, else a started local server the env names."""
    if os.environ.get("VIBEFOLLOW_API_KEY"):
        yield None
        return
    with VibefollowServer() as server:
        os.environ["VIBEFOLLOW_API_KEY"] = server.api_key
        os.environ["VIBEFOLLOW_BASE_URL"] = server.base_url
        try:
            yield server
        finally:
            del os.environ["VIBEFOLLOW_API_KEY"], os.environ["VIBEFOLLOW_BASE_URL"]


def flush_root_handlers(timeout: float = 10.0) -> str:
    """Deliver what the root logger's Vibefollow handlers hold; say how that went."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, vf_otel.VibefollowHandler)]
    flushed = [h.flush(timeout=timeout) for h in handlers]  # every one, no short cut
    if all(flushed):
        return "all delivered"
    stats = [h.stats() for h in handlers]
    if any(s.queued or s.backlog for s in stats):
        return "NOT all delivered"
    # flush() is False when anything was dropped; these demos drop anonymous events.
    dropped = sorted({reason for s in stats for reason in s.dropped})
    return "all delivered but the dropped (" + ", ".join(dropped) + ")"


def report(server: VibefollowServer | None) -> None:
    """Flush, then print what the local server received (nothing to show for the real API)."""
    print("flushed:", flush_root_handlers())
    if server is None:
        return
    for user in server.users:
        print(f"user  {user}")
    for event in server.events:
        print(f"event {event['name']} user={event['external_user_id']} {event['properties']}")
