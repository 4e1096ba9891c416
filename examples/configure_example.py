"""``vf_otel.configure()``: tagged log records and spans to Vibefollow in one call.

    python examples/configure_example.py                        # embedded local server
    VIBEFOLLOW_API_KEY=sk_live_... python examples/configure_example.py

Without ``VIBEFOLLOW_API_KEY`` the example starts ``vf_otel.testing.VibefollowServer``
on loopback and prints what it received, so it runs with no account.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace

import vf_otel
from vf_otel.testing import VibefollowServer

log = logging.getLogger("shop")


def run_app(**options: Any) -> None:
    """What an app does: configure once at startup, then log and trace as usual."""
    configured = vf_otel.configure(**options)
    tracer = trace.get_tracer("shop")

    # A log record tagged with vf_user is an event; vf_traits also upserts the user.
    log.info(
        "user_signed_up",
        extra={"vf_user": "usr_42", "vf_traits": {"email": "ada@example.com", "plan": "trial"}},
    )
    log.info("cache warmed")  # untagged: not an event

    # A span tagged with vf.event takes its user from vf_otel.user(...).
    with vf_otel.user("usr_42"), tracer.start_as_current_span("POST /billing") as span:
        span.set_attribute("vf.event", "subscription_changed")
        span.set_attribute("vf.properties.to", "pro")

    # At exit: deliver everything still queued (also done by logging/OTel atexit hooks).
    configured.shutdown()


def main() -> None:
    """Run against VIBEFOLLOW_* settings, or the embedded server when no key is set."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("VIBEFOLLOW_API_KEY"):
        run_app()
        return
    with VibefollowServer() as server:
        run_app(api_key=server.api_key, base_url=server.base_url)
        for event in server.events:
            print("event:", event["name"], event["external_user_id"], event["properties"])
        for user in server.users:
            print("user:", user)


if __name__ == "__main__":
    main()
