"""loguru: events from ``bind()``, keywords and ``extra=``, through ``vf_otel.loguru_sink``.

    pip install vf-otel loguru
    python examples/integrations/loguru_app.py

``vf_otel.configure()`` puts a ``VibefollowHandler`` on the root logger; the sink
``vf_otel.loguru_sink()`` hands loguru's tagged messages to it. The event name is
``vf_event``, else loguru's message. ``logger.add(vf_otel.VibefollowHandler())``
works the same way, at a higher cost per message (docs/integrations/loguru.md).
"""

from __future__ import annotations

from demo_server import report, vibefollow_env
from loguru import logger

import vf_otel


def run_app() -> None:
    """Application code: a user bound for a request, events with properties."""
    request_log = logger.bind(vf_user="usr_42")
    request_log.info("subscription_changed", vf_properties={"from": "trial", "to": "pro"})
    logger.info("cache warmed")  # untagged: not an event
    logger.info("invited {count} people", count=3, vf_user="usr_7", vf_event="team_invited")
    logger.info("feature_used", extra={"vf_user": "usr_7", "vf_properties": {"feature": "csv"}})


def main() -> None:
    """Configure vf-otel, add the sink to loguru, log, show what arrived."""
    with vibefollow_env() as server:
        vf_otel.configure(spans=False)  # VIBEFOLLOW_* settings
        logger.add(vf_otel.loguru_sink(), format="{message}")
        run_app()
        report(server)


if __name__ == "__main__":
    main()
