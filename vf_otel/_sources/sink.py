"""What the OTel exporters share: settings, one Pipeline, and the exporter contract's rules.

The span and log exporters translate batches the SDK already built; everything
after translation (queue, delivery, counters) is the same Pipeline the logging
handler uses, so there is one delivery path and one ``stats()`` shape.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .._config import resolve_settings
from .._delivery.pipeline import Pipeline
from .._delivery.stats import Stats
from .._event.model import Event
from .._event.redact import redactor_for
from .._event.validate import Rejection
from .._observe.metrics import register_metrics
from ..typing import Options

__all__ = ["EventSink"]

_logger = logging.getLogger("vf_otel")


class EventSink:
    """Owns the Pipeline of one handler or exporter; ``shutdown`` is idempotent, never raises."""

    def __init__(self, options: Options, *, source_kind: str) -> None:
        settings_options: dict[str, Any] = dict(options)
        on_error = options.get("on_error")
        transport = options.get("transport")
        settings_options.pop("on_error", None)
        settings_options.pop("transport", None)
        if on_error is not None and not callable(on_error):
            raise ValueError("on_error must be callable")
        settings = resolve_settings(**settings_options)
        self.has_key = settings.api_key is not None
        if not self.has_key:
            _logger.warning("VIBEFOLLOW_API_KEY is not set: vf-otel will count and drop events")
        self.pipeline = Pipeline(settings, on_error=on_error, transport=transport)
        self.redactor = redactor_for(settings)
        register_metrics(self.pipeline, source_kind=source_kind)
        self._lock = threading.Lock()
        self._shut_down = False

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._shut_down

    def accept(self, results: Iterable[Event | Rejection]) -> None:
        """Queue the events, count the rejections; without an API key, count and drop all."""
        for result in results:
            if not self.has_key:
                self.pipeline.drop("no_api_key", "VIBEFOLLOW_API_KEY is not set")
            elif isinstance(result, Event):
                self.pipeline.submit(self.redactor.event(result))
            else:
                self.pipeline.reject(result)

    def flush(self, timeout_millis: int | None) -> bool:
        """Deliver what is queued; True when all of it landed in time."""
        timeout = None if timeout_millis is None else max(0, timeout_millis) / 1000
        try:
            return self.pipeline.flush(timeout)
        except Exception:
            _logger.debug("vf-otel flush failed", exc_info=True)
            return False

    def shutdown(self) -> bool:
        """Drain within ``shutdown_timeout`` and stop; later calls do nothing."""
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
        try:
            return self.pipeline.shutdown()
        except Exception:
            _logger.debug("vf-otel shutdown failed", exc_info=True)
            return False

    def stats(self) -> Stats:
        """The pipeline's counters."""
        return self.pipeline.stats()
