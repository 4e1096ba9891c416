"""The ``opentelemetry-instrument`` hook that adds the user span processor.

``OTEL_TRACES_EXPORTER=vibefollow`` makes the SDK build the exporter, but the SDK
has no setting for extra span processors, and without
``VibefollowUserSpanProcessor`` a span tagged only with ``vf.event`` could not
take its user from ``vf_otel.user(...)`` or a W3C ``baggage`` header. So vf-otel
registers this function in the ``opentelemetry_post_instrument`` entry-point
group, which ``opentelemetry-instrument`` calls after configuring the SDK. It
acts only when ``OTEL_TRACES_EXPORTER`` names ``vibefollow``: merely installing
vf-otel must not add an attribute to the spans of an app that does not use it.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from .spans import VibefollowUserSpanProcessor

__all__ = ["install_user_span_processor"]

EXPORTER_NAME: Final = "vibefollow"
TRACES_EXPORTER_ENV: Final = "OTEL_TRACES_EXPORTER"
_logger = logging.getLogger("vf_otel")


def install_user_span_processor() -> bool:
    """Add the user span processor to the global SDK provider; True if it was added."""
    try:
        names = os.environ.get(TRACES_EXPORTER_ENV, "").split(",")
        if EXPORTER_NAME not in (name.strip().lower() for name in names):
            return False
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            _logger.warning("vf-otel: no SDK TracerProvider; spans take no user from baggage")
            return False
        provider.add_span_processor(VibefollowUserSpanProcessor())
    except Exception:
        # A hook that raises would stop opentelemetry-instrument from starting the app.
        _logger.warning("vf-otel could not add its user span processor", exc_info=True)
        return False
    return True
