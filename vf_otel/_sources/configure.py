"""``vf_otel.configure()``, and what it does for an app that has not configured logging."""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from typing_extensions import Unpack

from .._config import Settings
from .._delivery.pipeline import options_settings
from ..typing import Options
from .handler import VibefollowHandler, handler_delivers
from .otel import VibefollowSpanExporter, VibefollowUserSpanProcessor, exporter_delivers
from .sigterm import SigtermHook, install_sigterm_hook, remove_sigterm_hook

__all__ = [
    "Configuration",
    "LastResort",
    "UnconfiguredRoot",
    "configure",
    "is_configured",
    "warn_if_filtered",
]


# ``vf_otel.configure()``: the handler on the root logger, the exporter on the tracer provider.

_logger = logging.getLogger("vf_otel")


class Configuration:
    """What [`configure()`][vf_otel.configure] installed;
    [`shutdown()`][vf_otel.Configuration.shutdown] drains and removes it.
    """

    def __init__(
        self,
        handler: VibefollowHandler | None,
        logger: logging.Logger,
        span_exporter: VibefollowSpanExporter | None,
        span_processor: SpanProcessor | None,
    ) -> None:
        self.handler = handler
        self.span_exporter = span_exporter
        self._logger = logger
        self._span_processor = span_processor
        # Re-entrant: the SIGTERM hook may shut down from a signal handler that
        # interrupted this very thread inside shutdown() or configure().
        self._lock = threading.RLock()
        self._shut_down = False
        self._sigterm: SigtermHook | None = None
        self._root_changes: UnconfiguredRoot | None = None
        # What the handler and the exporter were built with (one set of options).
        self._settings: Settings | None = None

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
        _LIVE.forget(self)
        if self._sigterm is not None:
            self._sigterm.discard(self)
            remove_sigterm_hook(self._sigterm)
        if self._span_processor is not None:
            self._span_processor.shutdown()
        if self.handler is not None:
            self._logger.removeHandler(self.handler)
            self.handler.close()
        if self._root_changes is not None:
            self._root_changes.undo()

    def deliver_at_sigterm(self, *, final: bool) -> None:
        """SIGTERM arrived: flush both sides, or shut down when the process ends right after."""
        if final:
            self.shutdown()
        else:
            self.flush(self._shutdown_timeout())

    def _shutdown_timeout(self) -> float | None:
        if self._settings is None or (self.handler is None and self.span_exporter is None):
            return None
        return self._settings.shutdown_timeout

    def _handles_sigterm(self) -> bool:
        """The ``handle_sigterm`` option, and delivery on (else there is nothing to drain)."""
        if self._settings is None or not self._settings.handle_sigterm:
            return False
        if self.handler is not None:
            return handler_delivers(self.handler)
        return self.span_exporter is not None and exporter_delivers(self.span_exporter)

    def _watch_sigterm(self) -> None:
        """Drain at SIGTERM (see ``configure``); nothing when SIGTERM must be left alone."""
        self._sigterm = install_sigterm_hook()
        if self._sigterm is not None:
            self._sigterm.add(self)


class _Live:
    """The one Configuration ``configure`` installed and not yet shut down.

    Process-wide on purpose, like the root logger it installs on: a second
    ``configure()`` must find the first, or every event would be sent twice.
    """

    __slots__ = ("arguments", "configuration", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: see Configuration._lock
        self.configuration: Configuration | None = None
        self.arguments: dict[str, Any] = {}

    def forget(self, configuration: Configuration) -> None:
        """``configuration`` was shut down: the next configure() installs anew."""
        with self.lock:
            if self.configuration is configuration:
                self.configuration = None
                self.arguments = {}


_LIVE: Final = _Live()


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

    Adds a [`VibefollowHandler`][vf_otel.VibefollowHandler] to ``logger`` (default: the
    root logger) and, on ``tracer_provider`` (default: the global one), a
    [`VibefollowUserSpanProcessor`][vf_otel.VibefollowUserSpanProcessor] plus a
    ``BatchSpanProcessor`` around a
    [`VibefollowSpanExporter`][vf_otel.VibefollowSpanExporter]. With no SDK provider
    set globally, an SDK ``TracerProvider`` is created and made global; a non-SDK provider cannot
    take processors, so spans are then skipped with a warning. Options are
    those of the handler (arguments > ``VIBEFOLLOW_*`` variables > defaults).
    Call ``shutdown()`` on the result to drain both (idempotent).

    On the root logger of an app that has not configured logging (no handler of
    its own there), it also sets the root level to INFO, so tagged INFO records
    arrive, and keeps Python's printing of WARNING and above to stderr; when the
    app has configured logging, it warns once if INFO records are filtered.

    Once per process: while the result is live (not shut down), calling again
    installs nothing and returns the same ``Configuration``, with a warning when
    the arguments differ. To change them, ``shutdown()`` it and call again.

    With the ``handle_sigterm`` option (on by default; ``VIBEFOLLOW_HANDLE_SIGTERM``),
    on the main thread, SIGTERM first delivers what is queued, spans included (within
    ``shutdown_timeout``), then does what it did before: calls the Python handler
    installed earlier, or ends the process with SIGTERM's status (see
    ``vf_otel.flush_on_sigterm``). ``shutdown()`` puts the previous SIGTERM handling
    back.

    With delivery off (``enabled=False`` or ``VIBEFOLLOW_ENABLED=false``) events are
    only counted (``stats().disabled``): no delivery thread, no batching thread for
    spans (a ``SimpleSpanProcessor`` counts them at once), no SIGTERM handler.
    """
    if not isinstance(include_error_spans, bool):
        raise ValueError("include_error_spans must be a bool")
    arguments: dict[str, Any] = {
        "include_error_spans": include_error_spans,
        "logs": logs,
        "spans": spans,
        "logger": logger,
        "tracer_provider": tracer_provider,
        "options": options,
    }
    with _LIVE.lock:
        live = _LIVE.configuration
        if live is not None:
            if arguments != _LIVE.arguments:
                _logger.warning(
                    "vf_otel.configure() was called again with other arguments; the first "
                    "configuration stays (shutdown() it first to change it)"
                )
            return live
        configured = _install(
            include_error_spans,
            logs=logs,
            spans=spans,
            logger=logger,
            tracer_provider=tracer_provider,
            options=options,
        )
        if configured._handles_sigterm():
            configured._watch_sigterm()
        _LIVE.configuration, _LIVE.arguments = configured, arguments
        return configured


def _install(
    include_error_spans: bool,
    *,
    logs: bool,
    spans: bool,
    logger: logging.Logger | None,
    tracer_provider: trace.TracerProvider | None,
    options: Options,
) -> Configuration:
    """Build the handler and the exporter, then install them (see ``configure``)."""
    # Build both first: a bad option raises before anything global is touched.
    settings = options_settings(options)
    handler_options: Options = {**options}
    handler_options.pop("rules", None)  # for the span exporter: the handler reads tags only
    handler = VibefollowHandler(**handler_options) if logs else None
    exporter = (
        VibefollowSpanExporter(include_error_spans=include_error_spans, **options)
        if spans
        else None
    )
    processor = _install_exporter(exporter, tracer_provider) if exporter is not None else None
    target = logging.getLogger() if logger is None else logger
    root_changes = None
    if handler is not None:
        if target is logging.getLogger() and not is_configured(target):
            # An app that configured no logging keeps its console as it was, and its
            # tagged INFO records reach the handler (``UnconfiguredRoot`` below).
            root_changes = UnconfiguredRoot(target)
        else:
            warn_if_filtered(target)
        target.addHandler(handler)
    installed = exporter if processor is not None else None
    configured = Configuration(handler, target, installed, processor)
    configured._root_changes = root_changes
    configured._settings = settings
    return configured


def _install_exporter(
    exporter: VibefollowSpanExporter, given: trace.TracerProvider | None
) -> SpanProcessor | None:
    """Add the user processor and a batch processor for ``exporter``; None if impossible."""
    provider = _sdk_provider(given)
    if provider is None:
        exporter.shutdown()
        return None
    # Delivery off: the exporter only counts, at once, so no batching thread is needed.
    delivers = exporter_delivers(exporter)
    processor = BatchSpanProcessor(exporter) if delivers else SimpleSpanProcessor(exporter)
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


# What ``configure()`` does for an app that has not configured logging: keep it as it was.
#
# Python prints WARNING and above to stderr (``logging.lastResort``) only while no handler
# at all is found for a record, and the root logger's default level, WARNING, stops INFO
# records before any handler. The Vibefollow handler on the root logger would end the
# first and suffer from the second. So, for an unconfigured app, ``configure()`` lowers
# the root logger to INFO (tagged ``log.info(...)`` calls become events) and adds
# ``LastResort``, which prints what Python would have printed: WARNING and above,
# for records no other handler takes. An app that configures logging later is left to
# its own handlers.

#: The level tagged records need to reach the handler.
EVENT_LEVEL: Final = logging.INFO


class LastResort(logging.Handler):
    """Pass a WARNING+ record to ``logging.lastResort`` when no handler of the app takes it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def handle(self, record: logging.LogRecord) -> bool:
        """Print as Python would with no handler at all: only when no other handler is found."""
        resort = logging.lastResort
        if resort is None or record.levelno < resort.level or _app_handles(record.name):
            return False
        resort.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Unused: ``handle`` decides and prints."""


def _app_handles(name: str) -> bool:
    """Whether a logger on the record's way up has a handler that is not vf-otel's."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(not isinstance(h, VibefollowHandler | LastResort) for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


def is_configured(root: logging.Logger) -> bool:
    """Whether the app configured logging: a handler of its own on the root logger."""
    return any(not isinstance(h, VibefollowHandler | LastResort) for h in root.handlers)


class UnconfiguredRoot:
    """The changes made to the root logger of an unconfigured app; ``undo`` reverts them."""

    def __init__(self, root: logging.Logger) -> None:
        self._root = root
        self._level = root.level
        self._lowered = root.getEffectiveLevel() > EVENT_LEVEL
        self.last_resort = LastResort()
        if self._lowered:
            root.setLevel(EVENT_LEVEL)
        root.addHandler(self.last_resort)

    def undo(self) -> None:
        """Remove the stand-in, and the level if nobody changed it since."""
        self._root.removeHandler(self.last_resort)
        if self._lowered and self._root.level == EVENT_LEVEL:
            self._root.setLevel(self._level)


def warn_if_filtered(target: logging.Logger) -> None:
    """Say once that INFO records never reach the handler on ``target``, when they do not."""
    level = target.getEffectiveLevel()
    if level > EVENT_LEVEL:
        _logger.warning(
            "vf-otel: logger %r is at level %s, so tagged INFO records "
            "(log.info(..., extra={'vf_user': ...})) never reach the Vibefollow handler; "
            "set the level of the loggers you tag to INFO, or log events at %s",
            target.name,
            logging.getLevelName(level),
            logging.getLevelName(level),
        )
