"""What the handler and the exporters share: settings, one Pipeline, the exporter contract.

The span and log exporters translate batches the SDK's processor already built
and deliver them at once (no second queue), so ``export()``'s result says
whether they landed. Everything after translation (delivery, counts) is the
same Pipeline the logging handler uses: one delivery path, one ``stats()`` shape.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from collections.abc import Iterable
from typing import Any

from .._config import resolve_settings
from .._delivery.pipeline import Pipeline
from .._delivery.stats import Stats
from .._delivery.worker import Receipt
from .._event.coerce import KeyCollisions
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
        on_error = settings_options.pop("on_error", None)
        before_send = settings_options.pop("before_send", None)
        transport = settings_options.pop("transport", None)
        if on_error is not None and not callable(on_error):
            raise ValueError("on_error must be callable")
        if before_send is not None and not callable(before_send):
            raise ValueError("before_send must be callable")
        settings = resolve_settings(**settings_options)
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
        return self.deliver_counted(results, collisions).all_sent

    def deliver_counted(
        self,
        results: Iterable[Event | Rejection],
        collisions: KeyCollisions | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Deliver the events now (waiting up to ``timeout``), count the rejections; what
        became of them, rejections in ``refused``."""
        if not self.pipeline.settings.enabled:  # counted in stats().disabled, never sent
            for result in results:
                self.pipeline.submit(
                    self.redactor.event(result) if isinstance(result, Event) else result
                )
            return Receipt()
        events: list[Event] = []
        ledger = self.pipeline.ledger
        if collisions is not None:
            ledger.keys_collided(collisions)
        refused = 0
        for result in results:
            if isinstance(result, Rejection):
                ledger.reject(result.reason, result.field, result.message)  # type: ignore[arg-type]
                refused += 1
            elif not self.has_key:
                ledger.drop("no_api_key", [result])
                refused += 1
            else:
                events.append(self.redactor.event(result))
        receipt = self.pipeline.deliver_counted(events, timeout) if events else Receipt()
        return dataclasses.replace(receipt, refused=receipt.refused + refused)

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
