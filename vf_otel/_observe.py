"""Self-observability: rate-limited warnings, and ``stats()`` as OpenTelemetry instruments."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ._compat import default_meter_provider
from ._version import __version__

if TYPE_CHECKING:
    from ._delivery.ledger import Stats

__all__ = [
    "COUNTERS",
    "QUEUE_GAUGE",
    "WARNING_INTERVAL",
    "RateLimitedLog",
    "StatsSource",
    "register_metrics",
]


# Warnings that say once per reason per interval what went wrong, then how often.

WARNING_INTERVAL: Final = 60.0


class RateLimitedLog:
    """Log at most once per reason per ``interval`` seconds; count what was held back."""

    __slots__ = ("_clock", "_interval", "_lock", "_logger", "_state")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = WARNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # reason -> (time of the last message, messages held back since)
        self._state: dict[str, tuple[float, int]] = {}

    def log(
        self,
        level: int,
        reason: str,
        msg: str,
        *args: object,
        exc_info: bool | BaseException = False,
    ) -> bool:
        """Log ``msg % args`` unless this reason was logged within the interval."""
        now = self._clock()
        with self._lock:
            last, held = self._state.get(reason, (None, 0))
            if last is not None and now - last < self._interval:
                self._state[reason] = (last, held + 1)
                return False
            self._state[reason] = (now, 0)
        if held:
            msg += " (%d more like this since the last message)"
            args = (*args, held)
        self._logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, reason: str, msg: str, *args: object) -> bool:
        """``log`` at WARNING."""
        return self.log(logging.WARNING, reason, msg, *args)

    def error(self, reason: str, msg: str, *args: object) -> bool:
        """``log`` at ERROR."""
        return self.log(logging.ERROR, reason, msg, *args)


# Visible loss: the ``stats()`` counters as OpenTelemetry instruments.
#
# When the app has a real MeterProvider, every handler and exporter reports its
# counters through one set of observable instruments per provider:
#
# - counters ``vibefollow.events.enqueued``, ``.sent``, ``.retried``,
#   ``.dead_lettered``, ``.dropped`` (attribute ``reason``) and ``.spooled``
#   (when the pipeline has a spool);
# - the gauge ``vibefollow.queue.length`` (queued + waiting for a retry).
#
# Each observation carries ``vibefollow.source`` (``handler`` or ``exporter``);
# several handlers of one kind are summed. Nothing is read or computed until the
# app's metric reader collects, so this costs the logging path nothing.

_logger = logging.getLogger("vf_otel")

METER_NAME: Final = "vf_otel"
SOURCE_ATTRIBUTE: Final = "vibefollow.source"
QUEUE_GAUGE: Final = "vibefollow.queue.length"
#: Stats field → (instrument name, unit, description).
COUNTERS: Final = {
    "enqueued": ("vibefollow.events.enqueued", "{event}", "Events accepted into the queue"),
    "sent": ("vibefollow.events.sent", "{event}", "Events the API accepted"),
    "retried": ("vibefollow.events.retried", "{request}", "HTTP requests retried"),
    "dead_lettered": (
        "vibefollow.events.dead_lettered",
        "{event}",
        "Events the API refused for good (reported to on_error)",
    ),
    "dropped": ("vibefollow.events.dropped", "{event}", "Events never delivered, by reason"),
    "spooled": ("vibefollow.events.spooled", "{event}", "Events written to the durable spool"),
    "users_sent": ("vibefollow.users.sent", "{upsert}", "User upserts the API accepted"),
    "users_failed": (
        "vibefollow.users.failed",
        "{upsert}",
        "User upserts refused or impossible to build (their events still go)",
    ),
    "key_collisions": (
        "vibefollow.properties.key_collisions",
        "{value}",
        "Property or trait values left out: two keys became the same string",
    ),
}


class StatsSource(Protocol):
    """Anything with a ``stats()`` method: a Pipeline."""

    def stats(self) -> Stats: ...


class _Instruments:
    """The instruments of one MeterProvider and the pipelines they report on.

    The SDK keeps one instrument per name per meter (a second registration only
    warns and drops its callback), so all pipelines share these.
    """

    def __init__(self, provider: MeterProvider) -> None:
        self._lock = threading.Lock()
        self._sources: weakref.WeakKeyDictionary[StatsSource, str] = weakref.WeakKeyDictionary()
        meter = provider.get_meter(METER_NAME, __version__)
        for name, (instrument, unit, description) in COUNTERS.items():
            meter.create_observable_counter(
                instrument, callbacks=[self._callback(name)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            QUEUE_GAUGE,
            callbacks=[self._callback("queue")],
            unit="{event}",
            description="Events waiting in memory: queued, or in the retry backlog",
        )

    def add(self, source: StatsSource, kind: str) -> None:
        with self._lock:
            self._sources[source] = kind

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            try:
                return self._observe(name)
            except Exception:  # a metrics read must never fail the reader
                _logger.debug("vf-otel could not read its counters", exc_info=True)
                return []

        return observe

    def _observe(self, name: str) -> list[Observation]:
        with self._lock:
            sources = list(self._sources.items())
        totals: Counter[tuple[str, str | None]] = Counter()
        for source, kind in sources:
            stats = source.stats()
            if name == "dropped":
                for reason, count in stats.dropped.items():
                    totals[kind, reason] += count
            elif name == "queue":
                totals[kind, None] += stats.queued + stats.backlog
            else:
                totals[kind, None] += int(getattr(stats, name, 0) or 0)
        return [
            Observation(
                value,
                {SOURCE_ATTRIBUTE: kind}
                if reason is None
                else {SOURCE_ATTRIBUTE: kind, "reason": reason},
            )
            for (kind, reason), value in totals.items()
        ]


# Instruments per provider; weak, so a provider the app drops is not kept alive.
_REGISTRY: Final[weakref.WeakKeyDictionary[MeterProvider, _Instruments]] = (
    weakref.WeakKeyDictionary()
)
_REGISTRY_LOCK: Final = threading.Lock()


def register_metrics(
    source: StatsSource, *, source_kind: str, meter_provider: MeterProvider | None = None
) -> bool:
    """Report ``source``'s counters on ``meter_provider`` or the global one, if it is real.

    Without an explicit provider the global one is used only when the app has
    set one: the API's default (a proxy, or the no-op provider) records
    nothing. Never raises; True when the instruments report on ``source``.
    """
    try:
        provider = meter_provider or metrics.get_meter_provider()
        if meter_provider is None and default_meter_provider(provider):
            return False
        with _REGISTRY_LOCK:
            instruments = _REGISTRY.get(provider)
            if instruments is None:
                instruments = _REGISTRY[provider] = _Instruments(provider)
        instruments.add(source, source_kind)
    except Exception:  # metrics are optional; the handler must still work
        _logger.debug("vf-otel could not register its metrics", exc_info=True)
        return False
    return True
