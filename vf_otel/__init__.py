"""vf-otel: turn the logs and spans a Python app already emits into Vibefollow events.

import logging, vf_otel
logging.getLogger().addHandler(vf_otel.VibefollowHandler())
logging.getLogger("app").info("signup", extra={"vf_user": "usr_42"})
"""

from __future__ import annotations

from ._delivery.stats import Stats
from ._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    UndeliveredError,
    ValidationError,
    VibefollowError,
)
from ._event.model import Event
from ._event.validate import CANONICAL_EVENTS
from ._sources.configure import Configuration, configure
from ._sources.context import current_user, user
from ._sources.direct import event, identify
from ._sources.handler import VibefollowHandler
from ._sources.logs import VibefollowLogExporter
from ._sources.loguru_events import loguru_sink
from ._sources.sigterm import flush_on_sigterm
from ._sources.spans import VibefollowSpanExporter, VibefollowUserSpanProcessor
from ._sources.structlog_events import structlog_processor
from ._sources.track import track
from ._version import __version__

__all__ = [
    "CANONICAL_EVENTS",
    "AuthError",
    "Configuration",
    "Event",
    "NetworkError",
    "RateLimitError",
    "ServerError",
    "Stats",
    "UndeliveredError",
    "ValidationError",
    "VibefollowError",
    "VibefollowHandler",
    "VibefollowLogExporter",
    "VibefollowSpanExporter",
    "VibefollowUserSpanProcessor",
    "__version__",
    "configure",
    "current_user",
    "event",
    "flush_on_sigterm",
    "identify",
    "loguru_sink",
    "structlog_processor",
    "track",
    "user",
]
