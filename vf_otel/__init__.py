"""vf-otel: turn the logs and spans a Python app already emits into Vibefollow events.

import logging, vf_otel
logging.getLogger().addHandler(vf_otel.VibefollowHandler())
logging.getLogger("app").info("signup", extra={"vf_user": "usr_42"})
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._delivery.ledger import Stats
from ._delivery.runtime import flush_after
from ._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    UndeliveredError,
    ValidationError,
    VibefollowError,
)
from ._event.build import CANONICAL_EVENTS
from ._event.model import Event
from ._rules import Rule, load_rules
from ._sources.context import current_user, user
from ._sources.handler import VibefollowHandler, loguru_sink
from ._sources.sigterm import flush_on_sigterm
from ._sources.track import event, identify, structlog_processor, track
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._sources.configure import Configuration, configure
    from ._sources.otel import (
        VibefollowLogExporter,
        VibefollowSpanExporter,
        VibefollowUserSpanProcessor,
    )

#: Loaded at first use, not by ``import vf_otel``: they import the OpenTelemetry SDK's
#: trace and export machinery, a cold start the logging path (a Lambda function's) never needs.
_LAZY: _typing.Final = {
    "Configuration": "._sources.configure",
    "configure": "._sources.configure",
    "VibefollowLogExporter": "._sources.otel",
    "VibefollowSpanExporter": "._sources.otel",
    "VibefollowUserSpanProcessor": "._sources.otel",
}

__all__ = [
    "CANONICAL_EVENTS",
    "AuthError",
    "Configuration",
    "Event",
    "NetworkError",
    "RateLimitError",
    "Rule",
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
    "flush_after",
    "flush_on_sigterm",
    "identify",
    "load_rules",
    "loguru_sink",
    "structlog_processor",
    "track",
    "user",
]


def _public(value: _typing.Any) -> _typing.Any:
    """Name ``vf_otel`` as the module of a class or function exported here, as httpx does:
    reprs, pickles and tracebacks then show the public name, not the private layout."""
    if not (isinstance(value, type) or (callable(value) and hasattr(value, "__code__"))):
        return value
    if not value.__module__.startswith(f"{__name__}."):
        return value
    own = vars(value).get("__annotations__") if isinstance(value, type) else None
    if own:
        # String annotations resolve in the defining module's namespace, found through
        # __module__: resolve them first, so typing.get_type_hints() still works after.
        hints = _typing.get_type_hints(value, include_extras=True)
        value.__annotations__ = {key: hints[key] for key in own}
    value.__module__ = __name__
    return value


def __getattr__(name: str) -> _typing.Any:
    """Import a name of ``_LAZY`` at its first use (then it is a plain attribute)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _public(getattr(_importlib.import_module(module, __name__), name))
    globals()[name] = value
    return value


for _name in __all__:
    if _name in globals():
        _public(globals()[_name])
del _name


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
