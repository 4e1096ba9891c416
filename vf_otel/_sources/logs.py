"""``VibefollowLogExporter``: the OTel log pipeline's way in, for apps that already use it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from typing_extensions import Unpack

from .._compat import LogExporterBase, LogExportResult
from .._delivery.stats import Stats
from .._event.coerce import KeyCollisions
from .._rules import RuleSet
from ..typing import Options
from .handler import is_library_logger
from .sink import EventSink
from .translate import Result, translate_log

__all__ = ["VibefollowLogExporter"]

_logger = logging.getLogger("vf_otel")


class VibefollowLogExporter(LogExporterBase):
    """Send OTel log records tagged with ``vf_user`` / ``vf_event`` (or ``vf.user`` / ``vf.event``).

    For apps that route ``logging`` through an OTel ``LoggerProvider`` (the
    ``LoggingHandler`` copies ``extra=`` into attributes) or name it in
    ``OTEL_LOGS_EXPORTER=vibefollow``. The event name defaults to the record's
    body — the *formatted* message, since the OTel handler formats it; pass
    ``vf_event`` when the message has arguments. Apps without an OTel log
    pipeline should use [`VibefollowHandler`][vf_otel.VibefollowHandler], which is much cheaper.
    Untagged records become events only through mapping rules with ``signal = "log"``
    (``rules=``, docs/rules.md).
    """

    def __init__(self, **options: Unpack[Options]) -> None:
        self._sink = EventSink(options, source_kind="exporter")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._sink.pipeline.settings.base_url}>"

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        """Deliver the tagged records as events. Never raises.

        SUCCESS once every event landed; FAILURE when some were refused (counted,
        reported to ``on_error``) or wait parked for a later attempt (not lost), and
        after shutdown.

        ``batch`` holds ``ReadableLogRecord`` (SDK >= 1.39) or ``LogData``
        (older); both carry the record as ``.log_record``.
        """
        if self._sink.is_shut_down:
            return LogExportResult.FAILURE
        try:
            collisions = KeyCollisions()
            results = _translate(batch, collisions, self._sink.rules)
            delivered = self._sink.deliver(results, collisions)
        except Exception:
            self._sink.pipeline.ledger.drop("internal_error", (), count=len(batch))
            _logger.debug("vf-otel could not translate log records", exc_info=True)
            return LogExportResult.FAILURE
        return LogExportResult.SUCCESS if delivered else LogExportResult.FAILURE

    def shutdown(self) -> None:
        """Deliver what is queued (up to ``shutdown_timeout``) and stop. Idempotent."""
        self._sink.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what is queued; True if all of it landed within ``timeout_millis``."""
        return self._sink.flush(timeout_millis)

    def stats(self) -> Stats:
        """Counters: enqueued, sent, retried, dead-lettered, dropped by reason, queued."""
        return self._sink.stats()


def _translate(
    batch: Sequence[Any], collisions: KeyCollisions, rules: RuleSet | None
) -> list[Result]:
    results: list[Result] = []
    for item in batch:
        if _from_ignored_logger(item):
            continue
        result = translate_log(item.log_record, collisions, rules)
        if result is not None:
            results.append(result)
    return results


def _from_ignored_logger(item: Any) -> bool:
    # The OTel LoggingHandler names the scope after the logger; the library's own
    # loggers and its HTTP stack are never events, as with VibefollowHandler.
    scope = getattr(item, "instrumentation_scope", None)
    name = getattr(scope, "name", None) or ""
    return is_library_logger(name)
