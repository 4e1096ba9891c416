"""What the handler and the exporters share: settings, one Pipeline, the exporter contract.

The span and log exporters translate batches the SDK's processor already built
and deliver them at once (no second queue), so ``export()``'s result says
whether they landed. Everything after translation (delivery, counts) is the
same Pipeline the logging handler uses: one delivery path, one ``stats()`` shape.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable
from typing import Any

from .._config import Settings, resolve_settings
from .._delivery.pipeline import Pipeline
from .._delivery.stats import Stats
from .._event.build import Rejection
from .._event.model import Event
from .._event.values import KeyCollisions, redactor_for
from .._observe import register_metrics
from ..typing import Options

__all__ = ["EventSink", "options_settings"]

_logger = logging.getLogger("vf_otel")


def options_settings(options: Options) -> Settings:
    """The settings ``options`` resolve to (the hooks and the transport are no settings)."""
    settings_options: dict[str, Any] = dict(options)
    for hook in ("on_error", "before_send", "transport"):
        settings_options.pop(hook, None)
    return resolve_settings(**settings_options)


class EventSink:
    """Owns the Pipeline of one handler or exporter; ``shutdown`` is idempotent, never raises."""

    def __init__(self, options: Options, *, source_kind: str) -> None:
        on_error = options.get("on_error")
        before_send = options.get("before_send")
        transport = options.get("transport")
        if on_error is not None and not callable(on_error):
            raise ValueError("on_error must be callable")
        if before_send is not None and not callable(before_send):
            raise ValueError("before_send must be callable")
        settings = options_settings(options)
        # Whether events may go on: a key is set, or delivery is off (enabled=False), when
        # they are only counted and nothing needs a key (so nothing warns about one).
        self.has_key = settings.api_key is not None or not settings.enabled
        if not self.has_key:
            _logger.warning("VIBEFOLLOW_API_KEY is not set: vf-otel will count and drop events")
        self.redactor = redactor_for(settings)
        # The handler's pipeline opens again at its next record after close() (as
        # FileHandler does); the exporters follow OTel's contract: shut down is final.
        self.pipeline = Pipeline(
            settings,
            on_error=on_error,
            before_send=before_send,
            transport=transport,
            reopenable=source_kind == "handler",
        )
        try:
            register_metrics(self.pipeline, source_kind=source_kind)
        except BaseException:
            self.pipeline.shutdown(0)  # no worker thread left behind by a failed constructor
            raise
        self._lock = threading.Lock()
        self._shut_down = False
        self._drains_at_exit = False

    @property
    def is_shut_down(self) -> bool:
        """Whether ``shutdown`` was called."""
        return self._shut_down

    def deliver(
        self, results: Iterable[Event | Rejection], collisions: KeyCollisions | None = None
    ) -> bool:
        """Deliver the events now, count the rejections; True only if every event landed.

        ``collisions``: values translation lost to keys that became one string (counted).
        """
        if not self.pipeline.settings.enabled:  # counted in stats().disabled, never sent
            for result in results:
                self.pipeline.submit(
                    self.redactor.event(result) if isinstance(result, Event) else result
                )
            return True
        events: list[Event] = []
        ledger = self.pipeline.ledger
        if collisions is not None:
            ledger.keys_collided(collisions)
        refused = False
        for result in results:
            if isinstance(result, Rejection):
                ledger.reject(result.reason, result.field, result.message)  # type: ignore[arg-type]
                refused = True
            elif not self.has_key:
                ledger.drop("no_api_key", [result])
                refused = True
            else:
                events.append(self.redactor.event(result))
        delivered = self.pipeline.deliver(events) if events else True
        return delivered and not refused

    def flush(self, timeout_millis: int | None) -> bool:
        """Deliver what is waiting; True when all of it landed in time."""
        timeout = None if timeout_millis is None else max(0, timeout_millis) / 1000
        try:
            return self.pipeline.flush(timeout)
        except Exception:
            _logger.debug("vf-otel flush failed", exc_info=True)
            return False

    def shutdown(self) -> bool:
        """Deliver within ``shutdown_timeout`` and stop; later calls do nothing."""
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
        try:
            return self.pipeline.shutdown()
        except Exception:
            _logger.debug("vf-otel shutdown failed", exc_info=True)
            return False

    def drain_at_exit(self) -> None:
        """Shut the pipeline down at interpreter exit (registered once).

        For a handler that ``dictConfig`` closed and removed from the list
        ``logging.shutdown()`` drains at exit, while it may still be attached.
        """
        with self._lock:
            if self._drains_at_exit:
                return
            self._drains_at_exit = True
        atexit.register(self.pipeline.shutdown)

    def stats(self) -> Stats:
        """The pipeline's counts."""
        return self.pipeline.stats()
