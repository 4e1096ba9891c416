"""``vf_otel.configure()``: the handler on the root logger, the exporter on the tracer provider."""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from typing_extensions import Unpack

from ..typing import Options
from .handler import VibefollowHandler
from .spans import VibefollowSpanExporter, VibefollowUserSpanProcessor

__all__ = ["Configuration", "configure"]

_logger = logging.getLogger("vf_otel")


class Configuration:
    """What :func:`configure` installed; :meth:`shutdown` drains and removes it."""

    def __init__(
        self,
        handler: VibefollowHandler | None,
        logger: logging.Logger,
        span_exporter: VibefollowSpanExporter | None,
        span_processor: BatchSpanProcessor | None,
    ) -> None:
        self.handler = handler
        self.span_exporter = span_exporter
        self._logger = logger
        self._span_processor = span_processor
        self._lock = threading.Lock()
        self._shut_down = False

    def __repr__(self) -> str:
        return f"<Configuration handler={self.handler!r} span_exporter={self.span_exporter!r}>"

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what both sides have queued; True if all of it landed."""
        results = []
        if self._span_processor is not None and self.span_exporter is not None:
            millis = 30_000 if timeout is None else int(timeout * 1000)
            # The processor hands its spans to the exporter, which then delivers them.
            results.append(self._span_processor.force_flush(millis))
            results.append(self.span_exporter.force_flush(millis))
        if self.handler is not None:
            results.append(self.handler.flush(timeout))
        return all(results)

    def shutdown(self) -> None:
        """Drain both sides (each within its ``shutdown_timeout``) and detach. Idempotent.

        The span processors stay registered (the SDK cannot remove one) but are
        shut down, so they no longer queue anything.
        """
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        if self._span_processor is not None:
            self._span_processor.shutdown()  # type: ignore[no-untyped-call]
        if self.handler is not None:
            self._logger.removeHandler(self.handler)
            self.handler.close()


def configure(
    *,
    include_error_spans: bool = False,
    logs: bool = True,
    spans: bool = True,
    logger: logging.Logger | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    **options: Unpack[Options],
) -> Configuration:
    """Send tagged log records and spans to Vibefollow in one call.

    Adds a :class:`VibefollowHandler` to ``logger`` (default: the root logger)
    and, on ``tracer_provider`` (default: the global one), a
    :class:`VibefollowUserSpanProcessor` plus a ``BatchSpanProcessor`` around a
    :class:`VibefollowSpanExporter`. With no SDK provider set globally, an SDK
    ``TracerProvider`` is created and made global; a non-SDK provider cannot
    take processors, so spans are then skipped with a warning. Options are
    those of the handler (arguments > ``VIBEFOLLOW_*`` variables > defaults).
    Call ``shutdown()`` on the result to drain both (idempotent).
    """
    if not isinstance(include_error_spans, bool):
        raise ValueError("include_error_spans must be a bool")
    # Build both first: a bad option raises before anything global is touched.
    handler = VibefollowHandler(**options) if logs else None
    exporter = (
        VibefollowSpanExporter(include_error_spans=include_error_spans, **options)
        if spans
        else None
    )
    processor = _install_exporter(exporter, tracer_provider) if exporter is not None else None
    target = logging.getLogger() if logger is None else logger
    if handler is not None:
        target.addHandler(handler)
    installed = exporter if processor is not None else None
    return Configuration(handler, target, installed, processor)


def _install_exporter(
    exporter: VibefollowSpanExporter, given: trace.TracerProvider | None
) -> BatchSpanProcessor | None:
    """Add the user processor and a batch processor for ``exporter``; None if impossible."""
    provider = _sdk_provider(given)
    if provider is None:
        exporter.shutdown()
        return None
    processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(VibefollowUserSpanProcessor())
    provider.add_span_processor(processor)
    return processor


def _sdk_provider(given: trace.TracerProvider | None) -> TracerProvider | None:
    provider = trace.get_tracer_provider() if given is None else given
    if isinstance(provider, TracerProvider):
        return provider
    if given is None and isinstance(provider, trace.ProxyTracerProvider):
        # Nothing was set yet: become the global provider. set_tracer_provider
        # refuses a second time, so read back whichever provider won.
        trace.set_tracer_provider(TracerProvider())
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
    _logger.warning(
        "vf-otel: %s is not an OpenTelemetry SDK TracerProvider; spans will not be sent "
        "(install VibefollowSpanExporter on your provider instead)",
        type(provider).__name__,
    )
    return None
