"""Relayed spans and log records: translated as the exporters translate them, then delivered.

The relay's one rule: a batch is acknowledged only once nothing a crash could lose
is left of it. ``Relay.forward_spans`` and ``forward_logs`` accept a batch when every
event was delivered, written to the spool, or refused for good (counted, reported and
returned to the client as rejected); they refuse it (503) when some wait in memory or
had no answer in time, so that the client (a Collector's retry and sending queue)
keeps the batch and sends it again. Sent again, a batch makes the same events with
the same ids, hence requests with the same idempotency keys: the API delivers once.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal

from typing_extensions import Unpack

from .._delivery.ledger import Stats
from .._delivery.pipeline import pipeline_for
from .._errors import VibefollowError
from .._event.build import Rejection
from .._event.model import Event
from .._event.values import KeyCollisions
from .._sources.handler import is_library_logger
from .._sources.otel import Result, log_event_id, rules_for, translate_log, translate_span
from ..typing import Options
from .decode import LogRecord, Span

__all__ = ["DEFAULT_WAIT", "Outcome", "Relay"]

_logger = logging.getLogger("vf_otel")

#: How long a request waits for its events to be delivered or spooled (seconds): well
#: under the Collector's own export timeout (30 s), so it hears 503 rather than nothing.
DEFAULT_WAIT: Final = 10.0
#: Retry-After when the API's circuit gives no time of its own (seconds), and the most.
_RETRY_AFTER: Final = 5
_MAX_RETRY_AFTER: Final = 60

Signal = Literal["traces", "logs"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the relay answers for one export request."""

    accepted: bool
    rejected: int = 0
    message: str = ""
    retry_after: int = 0


class Relay:
    """Translates and delivers relayed telemetry through one pipeline (its own ``stats()``).

    ``options`` are the handler's and exporters' (``api_key``, ``spool_path``, ...),
    each from its ``VIBEFOLLOW_*`` variable when not given; ``rules`` (``VIBEFOLLOW_RULES``)
    make events of untagged spans and log records, as in the exporters (docs/rules.md).
    """

    def __init__(
        self,
        *,
        include_error_spans: bool = False,
        wait: float = DEFAULT_WAIT,
        **options: Unpack[Options],
    ) -> None:
        if not isinstance(include_error_spans, bool):
            raise ValueError("include_error_spans must be a bool")
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= 3600:
            raise ValueError("wait must be a number of seconds in (0, 3600]")
        self._include_errors = include_error_spans
        self._wait = float(wait)
        # The batches being delivered, each watching on_error for its own events: what the
        # API refuses is known per batch (for partial_success) whatever runs beside it.
        self._watches: list[_Watch] = []
        self._on_error = options.get("on_error")
        if self._on_error is not None and not callable(self._on_error):
            raise ValueError("on_error must be callable")
        self._pipeline = pipeline_for({**options, "on_error": self._refused}, source_kind="relay")
        if not self._pipeline.has_key:
            self._pipeline.shutdown()
            raise ValueError("the relay needs a Vibefollow API key: set VIBEFOLLOW_API_KEY")
        self._rules = rules_for(self._pipeline.settings)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._pipeline.settings.base_url}>"

    def is_api_key(self, text: str) -> bool:
        """Whether ``text`` is the Vibefollow API key (compared in constant time)."""
        key = self._pipeline.settings.api_key
        return key is not None and hmac.compare_digest(text.encode(), key.encode())

    @property
    def ready(self) -> bool:
        """Whether it takes batches now: not shut down, and a key is set."""
        return not self._pipeline.is_shut_down and self._pipeline.has_key

    def forward_spans(self, spans: Sequence[Span]) -> Outcome:
        """Deliver the events the spans carry (tagged spans and span events)."""
        collisions = KeyCollisions()
        results: list[Result] = []
        refused: Counter[str] = Counter()
        include, rules = self._include_errors, self._rules
        for span in spans:
            if span.context is None or span.start_time is None:
                refused["a span has no trace id, span id or start time"] += 1
                continue
            got = translate_span(span, include_errors=include, collisions=collisions, rules=rules)
            _note_rejections(got, refused)
            results.extend(got)
        return self._deliver(results, collisions, refused, len(spans), "spans")

    def forward_logs(self, records: Sequence[LogRecord]) -> Outcome:
        """Deliver the tagged log records as events, each with an id made from the record."""
        collisions = KeyCollisions()
        results: list[Result] = []
        refused: Counter[str] = Counter()
        for record in records:
            if is_library_logger(record.instrumentation_scope.name):
                continue  # vf-otel's own loggers are never events, as in-process
            result = translate_log(
                record, collisions, self._rules, event_id=partial(_log_id, record)
            )
            if result is None:
                continue
            if record.timestamp is None and record.observed_timestamp is None:
                # Its event time would be "now", another one at each re-send: not one event.
                refused["a tagged log record has no time"] += 1
                continue
            _note_rejections([result], refused)
            results.append(result)
        return self._deliver(results, collisions, refused, len(records), "log records")

    def _deliver(
        self,
        results: list[Result],
        collisions: KeyCollisions,
        refused: Counter[str],
        total: int,
        what: str,
    ) -> Outcome:
        watch = _Watch(result.event_id for result in results if isinstance(result, Event))
        self._watches.append(watch)
        try:
            receipt = self._pipeline.deliver(results, collisions, self._wait)
        except Exception:  # counted; the client keeps the batch and tries again
            self._pipeline.lost(len(results))
            _logger.debug("vf-otel relay could not deliver a batch", exc_info=True)
            return Outcome(accepted=False, retry_after=_RETRY_AFTER)
        finally:
            self._watches.remove(watch)
        if not receipt.durable:
            return Outcome(accepted=False, retry_after=self._retry_after())
        if watch.hits:
            refused["refused by Vibefollow or dropped (see on_error, stats())"] += len(watch.hits)
        count = min(total, sum(refused.values()))
        if not count:
            return Outcome(accepted=True)
        reasons = "; ".join(f"{reason} ({n})" for reason, n in refused.most_common())
        return Outcome(accepted=True, rejected=count, message=f"{count} {what} refused: {reasons}")

    def _refused(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """on_error: note the events of batches being delivered, then the app's own hook."""
        for watch in list(self._watches):
            watch.saw(events)
        if self._on_error is not None:
            self._on_error(error, events)

    def _retry_after(self) -> int:
        seconds = self._pipeline.seconds_until_ready()
        if not math.isfinite(seconds) or seconds <= 0:
            return _RETRY_AFTER
        return min(_MAX_RETRY_AFTER, max(1, math.ceil(seconds)))

    def stats(self) -> Stats:
        """Counters: enqueued, sent, retried, dead-lettered, dropped by reason, spooled."""
        return self._pipeline.stats()

    def shutdown(self) -> None:
        """Deliver what waits (up to ``shutdown_timeout``), spool the rest, stop. Idempotent."""
        self._pipeline.shutdown()


def _log_id(record: LogRecord, _: object) -> str:
    return log_event_id(record, record.trace_id, record.span_id)


class _Watch:
    """The event ids of one batch, and those of them reported as never to be delivered."""

    __slots__ = ("hits", "ids")

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = frozenset(ids)
        self.hits: set[str] = set()

    def saw(self, events: Sequence[Event]) -> None:
        self.hits.update(event.event_id for event in events if event.event_id in self.ids)


def _note_rejections(results: list[Result], refused: Counter[str]) -> None:
    for result in results:
        if isinstance(result, Rejection):
            refused[f"{result.reason} ({result.field}): {result.message}"] += 1
