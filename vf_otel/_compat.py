"""Every use of OpenTelemetry's private API lives here, each with a fallback.

vf-otel pins no upper bound on ``opentelemetry-api``/``-sdk``: an app must be
able to upgrade OpenTelemetry without waiting for us. So nothing else imports
a private OTel name, and each one used here degrades instead of breaking when a
release moves it (``.ci/run`` runs the tests with every fallback forced too,
``VF_OTEL_FORCE_COMPAT_FALLBACK=1``):

- the context keys that suppress instrumentation (so vf-otel's own HTTP
  requests are not traced): the plain string key ``suppress_instrumentation``,
  which opentelemetry-instrumentation also checks, is always set; the private
  keys are added when they exist;
- the log exporter base class and result enum, renamed in 1.39 (the old names
  stay as deprecated aliases that warn when subclassed): the newest available;
- the API's default meter provider (a private proxy class), told apart by its name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as _context
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider

__all__ = [
    "FALLBACK",
    "LogExportResult",
    "LogExporterBase",
    "default_meter_provider",
    "suppressed_instrumentation",
]

#: Set in the environment to take every fallback (CI tests the fallback path with it).
FALLBACK: Final = os.environ.get("VF_OTEL_FORCE_COMPAT_FALLBACK", "") == "1"


def _private(name: str) -> Any:
    return None if FALLBACK else getattr(_context, name, None)


# The plain string is the key opentelemetry-instrumentation also checks (kept there for
# backward compatibility), so it is always set; the private keys when they exist.
_SUPPRESS_KEYS: Final = (
    "suppress_instrumentation",
    *(
        key
        for key in (
            _private("_SUPPRESS_INSTRUMENTATION_KEY"),
            _private("_SUPPRESS_HTTP_INSTRUMENTATION_KEY"),
        )
        if key is not None
    ),
)

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter as LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as LogExportResult
else:

    def __getattr__(name: str) -> Any:
        # At the log exporter's first use: the SDK's export machinery is no part of the
        # logging handler's cold start (the delivery path imports this module too).
        if name not in ("LogExporterBase", "LogExportResult"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import opentelemetry.sdk._logs.export as logs_export  # noqa: PLC0415

        if name == "LogExporterBase":
            return getattr(logs_export, "LogRecordExporter", None) or logs_export.LogExporter
        return getattr(logs_export, "LogRecordExportResult", None) or logs_export.LogExportResult


@contextlib.contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """Run the block untraced: vf-otel's own HTTP requests must not become spans."""
    ctx = _context.get_current()
    for key in _SUPPRESS_KEYS:
        ctx = _context.set_value(key, True, ctx)
    token = _context.attach(ctx)
    try:
        yield
    finally:
        _context.detach(token)


def default_meter_provider(provider: MeterProvider) -> bool:
    """True for the API's default provider (no-op, or the proxy before one is set)."""
    # The proxy class is private to the API package; its name has been stable since 1.x.
    return isinstance(provider, NoOpMeterProvider) or type(provider).__name__ in (
        "_ProxyMeterProvider",
        "ProxyMeterProvider",
    )
