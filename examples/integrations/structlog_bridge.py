"""structlog: events through structlog's stdlib bridge, with ``vf_*`` keys bound as context.

    pip install vf-otel structlog
    python examples/integrations/structlog_bridge.py

structlog hands each event to a stdlib logger (``structlog.stdlib.LoggerFactory``);
its last processor, ``render_to_log_kwargs``, turns the event dict into the logging
call's arguments: the event becomes the message and every other key (``vf_user``
bound with ``log.bind(...)``, ``vf_properties`` passed in the call) goes into
``extra=``. That is exactly the tagging contract ``VibefollowHandler`` reads. Keep
``render_to_log_kwargs`` last: a renderer that turns the dict into a string (JSON,
console) would hide the keys from the handler; render for humans with
``ProcessorFormatter`` on the console handler instead. To keep a renderer last, add
``vf_otel.structlog_processor`` before it (see structlog_renderer.py).
"""

from __future__ import annotations

import logging

import structlog
from demo_server import report, vibefollow_env

import vf_otel


def configure_structlog() -> None:
    """structlog → stdlib logging, with bound keys arriving as ``extra=``."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def run_app() -> None:
    """Application code: bind the user once, log events with properties."""
    log = structlog.stdlib.get_logger("shop.billing").bind(vf_user="usr_42")
    log.info("subscription_changed", vf_properties={"from": "trial", "to": "pro"})
    # Every record of a logger with vf_user bound is an event: log diagnostics elsewhere.
    anonymous = structlog.stdlib.get_logger("shop.billing")
    anonymous.info("cache warmed")  # untagged: not an event
    # Context-bound keys work as well, e.g. set by a web middleware for a request.
    structlog.contextvars.bind_contextvars(vf_user="usr_7")
    try:
        anonymous.info("feature_used", vf_properties={"feature": "share"})
    finally:
        structlog.contextvars.unbind_contextvars("vf_user")


def main() -> None:
    """Configure stdlib logging (with the handler) and structlog, log, show what arrived."""
    with vibefollow_env() as server:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger().addHandler(vf_otel.VibefollowHandler())  # VIBEFOLLOW_* settings
        configure_structlog()
        run_app()
        report(server)


if __name__ == "__main__":
    main()
