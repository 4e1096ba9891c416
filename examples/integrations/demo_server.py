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


def flush_root_handlers(timeout: float = 10.0) -> bool:
    """Deliver what the root logger's Vibefollow handlers hold; True if all of it landed."""
    handlers = logging.getLogger().handlers
    return all(
        h.flush(timeout=timeout) for h in handlers if isinstance(h, vf_otel.VibefollowHandler)
    )


def report(server: VibefollowServer | None) -> None:
    """Flush, then print what the local server received (nothing to show for the real API)."""
    print("flushed:", "all delivered" if flush_root_handlers() else "NOT all delivered")
    if server is None:
        return
    for user in server.users:
        print(f"user  {user}")
    for event in server.events:
        print(f"event {event['name']} user={event['external_user_id']} {event['properties']}")
