"""The span side: ``VibefollowSpanExporter`` and ``VibefollowUserSpanProcessor``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from typing_extensions import Unpack

from .._delivery.stats import Stats
from .._event.coerce import KeyCollisions
from ..typing import Options
from .context import user_in
from .sink import EventSink
from .translate import CONTEXT_USER_KEY, USER_KEY, Result, translate_span

__all__ = ["VibefollowSpanExporter", "VibefollowUserSpanProcessor"]

_logger = logging.getLogger("vf_otel")


class VibefollowSpanExporter(SpanExporter):
    """Send spans tagged with ``vf.user`` / ``vf.event`` (and their tagged span events).

    Use it like any OTel exporter, behind a ``BatchSpanProcessor``, or name it in
    ``OTEL_TRACES_EXPORTER=vibefollow``. Untagged spans are skipped after two
    dictionary lookups, unless a mapping rule (``rules=``, docs/rules.md) makes an
    event of them; spans with status ERROR emit nothing unless
    ``include_error_spans`` is set (or a rule asks for ``status = "error"``).
    Translated events go through the same delivery as
    [`VibefollowHandler`][vf_otel.VibefollowHandler], with an ``event_id`` derived
    from the trace id, span id and event index, so a span exported twice is
    delivered once. Options are those of the handler; every one may come from its
    ``VIBEFOLLOW_*`` environment variable instead.
    """

    def __init__(self, *, include_error_spans: bool = False, **options: Unpack[Options]) -> None:
        if not isinstance(include_error_spans, bool):
            raise ValueError("include_error_spans must be a bool")
        self._include_errors = include_error_spans
        self._sink = EventSink(options, source_kind="exporter")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._sink.pipeline.settings.base_url}>"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Deliver the events the spans carry. Never raises.

        The SDK's processor already buffered the spans, so nothing is queued a
        second time: SUCCESS once every event landed; FAILURE when some were refused (counted,
        reported to ``on_error``) or wait parked for a later attempt (not lost), and
        after shutdown.
        """
        if self._sink.is_shut_down:
            return SpanExportResult.FAILURE
        try:
            collisions = KeyCollisions()
            delivered = self._sink.deliver(self._translate(spans, collisions), collisions)
        except Exception:
            self._sink.pipeline.ledger.drop("internal_error", (), count=len(spans))
            _logger.debug("vf-otel could not translate spans", exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if delivered else SpanExportResult.FAILURE

    def _translate(self, spans: Sequence[ReadableSpan], collisions: KeyCollisions) -> list[Result]:
        results: list[Result] = []
        include, rules = self._include_errors, self._sink.rules
        for span in spans:
            results.extend(
                translate_span(span, include_errors=include, collisions=collisions, rules=rules)
            )
        return results

    def shutdown(self) -> None:
        """Deliver what is queued (up to ``shutdown_timeout``) and stop. Idempotent."""
        self._sink.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what is queued; True if all of it landed within ``timeout_millis``."""
        return self._sink.flush(timeout_millis)

    def stats(self) -> Stats:
        """Counters: enqueued, sent, retried, dead-lettered, dropped by reason, queued."""
        return self._sink.stats()


class VibefollowUserSpanProcessor(SpanProcessor):
    """Record the context's user on each span as it starts, for the exporter to fall back on.

    A finished span carries no context, so the user from ``vf_otel.user(...)``
    or the baggage entry ``vf.user`` (set in this process or received in a W3C
    ``baggage`` header) is copied at span start — to the attribute
    ``vf.context_user``, not ``vf.user``: ``vf.user`` marks a span as an event,
    and every span inside a user's request must not become one. The exporter
    reads ``vf.context_user`` only for spans tagged with ``vf.event``.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Copy the user, unless the span names one itself. Never raises."""
        try:
            attrs = span.attributes or {}
            if USER_KEY in attrs or not span.is_recording():
                return
            user = user_in(parent_context)
            if user:
                span.set_attribute(CONTEXT_USER_KEY, user)
        except Exception:
            _logger.debug("vf-otel could not read the user from the context", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do: the exporter reads the attribute."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here."""
        return True
