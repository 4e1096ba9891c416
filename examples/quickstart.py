"""vf-otel quickstart: tagged log lines become Vibefollow events.

Run it with no account: when VIBEFOLLOW_API_KEY is unset it starts the local
Vibefollow-compatible server from ``vf_otel.testing`` and sends there. With the
key set (and optionally VIBEFOLLOW_BASE_URL) it sends to the real API.

    python examples/quickstart.py
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
from collections.abc import Iterator
from typing import Any

import vf_otel
from vf_otel.testing import VibefollowServer


def logging_config(**handler_options: Any) -> dict[str, Any]:
    """An ordinary dictConfig: vf-otel is one more handler next to the console."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
            "vibefollow": {"class": "vf_otel.VibefollowHandler", **handler_options},
        },
        "root": {"level": "INFO", "handlers": ["console", "vibefollow"]},
    }


def run_app() -> None:
    """What application code looks like: plain logging calls with a few tags."""
    log = logging.getLogger("myapp.accounts")
    log.info(
        "user_signed_up",
        extra={
            "vf_user": "usr_42",
            "vf_properties": {"plan": "trial"},
            "vf_traits": {"email": "ada@example.com", "name": "Ada"},
        },
    )
    log.info("trial_started", extra={"vf_user": "usr_42", "vf_properties": {"trialDays": 14}})
    with vf_otel.user("usr_42"):  # the user for everything logged in this block
        log.info(
            "feature_used",
            extra={"vf_event": "feature_used", "vf_properties": {"feature": "csv_export"}},
        )
    log.info("cache warmed in %d ms", 12)  # untagged: only the console sees it


@contextlib.contextmanager
def destination() -> Iterator[tuple[dict[str, Any], VibefollowServer | None]]:
    """Handler options for the real API, or for an embedded local server."""
    if os.environ.get("VIBEFOLLOW_API_KEY"):
        yield {}, None  # env-only configuration: VIBEFOLLOW_API_KEY, VIBEFOLLOW_BASE_URL
        return
    with VibefollowServer() as server:
        yield {"api_key": server.api_key, "base_url": server.base_url}, server


def main() -> int:
    """Configure logging, log, flush, and show what Vibefollow received."""
    with destination() as (options, server):
        logging.config.dictConfig(logging_config(**options))
        run_app()
        handler = next(
            h for h in logging.getLogger().handlers if isinstance(h, vf_otel.VibefollowHandler)
        )
        delivered = handler.flush(timeout=10)
        print(f"\nflushed: {'all delivered' if delivered else 'NOT all delivered'}")
        print(f"stats:   {handler.stats()}")
        if server is not None:
            print(f"\nthe local server at {server.base_url} received:")
            for user in server.users:
                print(f"  user  {user}")
            for event in server.events:
                print(
                    f"  event {event['name']:<15} user={event['external_user_id']} "
                    f"properties={event['properties']} at {event['occurred_at']}"
                )
        logging.shutdown()
        return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
