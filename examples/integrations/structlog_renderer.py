"""structlog with a renderer last (the usual set-up): add ``vf_otel.structlog_processor``.

    pip install vf-otel structlog
    python examples/integrations/structlog_renderer.py

The last processor turns the event dict into a string (here ``JSONRenderer``), so the
``vf_*`` keys never reach logging as ``extra=``. ``vf_otel.structlog_processor``, put
before the renderer, reads them from the event dict, takes them out of it, and hands
the event to the Vibefollow handler that ``vf_otel.configure()`` put on the root logger.
The console shows structlog's JSON lines only.
"""

from __future__ import annotations

import logging
import sys

import structlog
from demo_server import report, vibefollow_env

import vf_otel


def configure_structlog() -> None:
    """structlog renders JSON through stdlib logging, with vf-otel's processor before it."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,  # first: context-bound keys count
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            vf_otel.structlog_processor,  # before the renderer
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def run_app() -> None:
    """Application code: tags as keyword arguments, bound, or bound in the context."""
    log = structlog.stdlib.get_logger("shop.billing")
    log.info("subscription_changed", vf_user="usr_42", vf_properties={"from": "trial", "to": "pro"})
    log.info("cache warmed")  # untagged: not an event
    structlog.contextvars.bind_contextvars(vf_user="usr_7")
    try:
        log.info("feature_used", vf_properties={"feature": "share"})
    finally:
        structlog.contextvars.unbind_contextvars("vf_user")


def main() -> None:
    """Configure logging, vf-otel and structlog, log, show what arrived."""
    with vibefollow_env() as server:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        vf_otel.configure(spans=False)  # the Vibefollow handler on the root logger
        configure_structlog()
        run_app()
        report(server)


if __name__ == "__main__":
    main()
