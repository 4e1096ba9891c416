"""The OpenTelemetry side: span and log exporters, their translation, the auto-instrument hook."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode
from typing_extensions import Unpack

from .._compat import LogExporterBase, LogExportResult
from .._config import Settings
from .._delivery.ledger import Stats
from .._delivery.pipeline import pipeline_for
from .._event.build import Rejection, make_event
from .._event.model import Event, explicit_time, new_event_id
from .._event.values import KeyCollisions
from .._rules import RuleSet
from ..typing import Options
from .context import user_in
from .handler import is_library_logger

if TYPE_CHECKING:
    from .._rules import RuleMatch

__all__ = [
    "CONTEXT_USER_KEY",
    "EVENT_KEY",
    "USER_KEY",
    "VibefollowLogExporter",
    "VibefollowSpanExporter",
    "VibefollowUserSpanProcessor",
    "event_id_for",
    "exporter_delivers",
    "install_user_span_processor",
    "log_event_id",
    "rules_for",
    "translate_log",
    "translate_span",
]


# What the span and log exporters share: their pipeline, the export contract, the rest.
#
# The exporters translate batches the SDK's processor already built and deliver them
# at once (no second queue), so ``export()``'s result says whether they landed.
# Everything after translation (delivery, counts) is the pipeline the logging handler
# uses too: one way into delivery, one ``stats()`` shape.

_logger = logging.getLogger("vf_otel")


class _Exporter:
    """The pipeline of a span or log exporter, and the exporter methods that use only it."""

    def __init__(self, options: Options) -> None:
        self._pipeline = pipeline_for(options, source_kind="exporter")
        self._rules = rules_for(self._pipeline.settings)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._pipeline.settings.base_url}>"

    def _deliver(
        self, batch: Sequence[Any], translate: Callable[[KeyCollisions], list[Result]]
    ) -> bool:
        """Deliver what ``translate`` makes of ``batch``; True once every event landed.
        False after shutdown, and when translation failed (counted). Never raises."""
        if self._pipeline.is_shut_down:
            return False
        try:
            collisions = KeyCollisions()
            return self._pipeline.deliver(translate(collisions), collisions).all_sent
        except Exception:
            self._pipeline.lost(len(batch))
            _logger.debug("vf-otel could not translate an export batch", exc_info=True)
            return False

    def shutdown(self) -> None:
        """Deliver what is queued (up to ``shutdown_timeout``) and stop. Idempotent."""
        self._pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what is queued; True if all of it landed within ``timeout_millis``."""
        # None from an SDK that does not follow its own signature: shutdown_timeout.
        timeout = None if timeout_millis is None else max(0, timeout_millis) / 1000
        return self._pipeline.flush(timeout)

    def stats(self) -> Stats:
        """Counters: enqueued, sent, retried, dead-lettered, dropped by reason, queued."""
        return self._pipeline.stats()


def exporter_delivers(exporter: VibefollowSpanExporter | VibefollowLogExporter) -> bool:
    """Whether ``exporter`` delivers (with delivery off it only counts: no batching thread
    is needed, nothing waits at SIGTERM)."""
    return exporter._pipeline.delivers


def rules_for(settings: Settings) -> RuleSet | None:
    """The mapping rules of ``settings``, compiled once (for the exporters and the relay;
    the handler reads tags only)."""
    return RuleSet(settings.rules) if settings.rules else None


# The span side: ``VibefollowSpanExporter`` and ``VibefollowUserSpanProcessor``.


class VibefollowSpanExporter(_Exporter, SpanExporter):
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
        super().__init__(options)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Deliver the events the spans carry. Never raises.

        The SDK's processor already buffered the spans, so nothing is queued a
        second time: SUCCESS once every event landed; FAILURE when some were refused (counted,
        reported to ``on_error``) or wait parked for a later attempt (not lost), and
        after shutdown.
        """
        landed = self._deliver(spans, partial(self._translate, spans))
        return SpanExportResult.SUCCESS if landed else SpanExportResult.FAILURE

    def _translate(self, spans: Sequence[ReadableSpan], collisions: KeyCollisions) -> list[Result]:
        results: list[Result] = []
        include, rules = self._include_errors, self._rules
        for span in spans:
            results.extend(
                translate_span(span, include_errors=include, collisions=collisions, rules=rules)
            )
        return results


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


# ``VibefollowLogExporter``: the OTel log pipeline's way in, for apps that already use it.


class VibefollowLogExporter(_Exporter, LogExporterBase):
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
        super().__init__(options)

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        """Deliver the tagged records as events. Never raises.

        SUCCESS once every event landed; FAILURE when some were refused (counted,
        reported to ``on_error``) or wait parked for a later attempt (not lost), and
        after shutdown.

        ``batch`` holds ``ReadableLogRecord`` (SDK >= 1.39) or ``LogData``
        (older); both carry the record as ``.log_record``.
        """
        landed = self._deliver(batch, partial(_translate, batch, rules=self._rules))
        return LogExportResult.SUCCESS if landed else LogExportResult.FAILURE


def _translate(
    batch: Sequence[Any], collisions: KeyCollisions, *, rules: RuleSet | None
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


# Translate finished spans and OTel log records into Events.
#
# Runs on the SDK's export thread, never on the request path. The common case —
# a span or record with no ``vf`` tag — is decided by two dictionary lookups.

USER_KEY: Final = "vf.user"
EVENT_KEY: Final = "vf.event"
#: Where the user span processor records the context's user. A separate key on
#: purpose: ``vf.user`` marks a span as an event, and every span started inside
#: ``vf_otel.user(...)`` must not become one.
CONTEXT_USER_KEY: Final = "vf.context_user"
PROPERTIES_PREFIX: Final = "vf.properties."
TRAITS_PREFIX: Final = "vf.traits."
#: An explicit time for the event (backfills): epoch seconds or an ISO-8601 string.
OCCURRED_AT_KEY: Final = "vf.occurred_at"
LOG_OCCURRED_AT_KEYS: Final = ("vf_occurred_at", OCCURRED_AT_KEY)
#: The logging ``extra=`` names, as the OTel LoggingHandler copies them into attributes.
LOG_USER_KEYS: Final = ("vf_user", USER_KEY)
LOG_EVENT_KEYS: Final = ("vf_event", EVENT_KEY)
# Separates the parts hashed into a log record's id (cannot occur in a decimal or hex part).
_ID_SEPARATOR: Final = "\x1f"
# A stringified mapping longer than this is not parsed back (it would be rejected anyway).
_MAX_PARSED_TEXT: Final = 65_536

Attrs = Mapping[str, Any]
Result = Event | Rejection


class SpanContextLike(Protocol):
    """The ids of a span: ``SpanContext``, or the relay's decoded OTLP span's."""

    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...


class StatusLike(Protocol):
    """A span's status: only its code is read."""

    @property
    def status_code(self) -> StatusCode: ...


class SpanEventLike(Protocol):
    """The part of a span event read here."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def timestamp(self) -> int: ...


class SpanLike(Protocol):
    """The part of a finished span read here: the SDK's ``ReadableSpan``, or a span the
    relay decoded from OTLP (``vf_otel.relay.decode``)."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def events(self) -> Sequence[SpanEventLike]: ...
    @property
    def status(self) -> StatusLike: ...
    @property
    def context(self) -> SpanContextLike | None: ...
    @property
    def start_time(self) -> int | None: ...


class LogRecordLike(Protocol):
    """The part of an OTel ``LogRecord`` read here (the same from SDK 1.34 to 1.45)."""

    @property
    def attributes(self) -> Attrs | None: ...
    @property
    def body(self) -> Any: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def observed_timestamp(self) -> int | None: ...


# -- spans ----------------------------------------------------------------------------


def translate_span(
    span: SpanLike,
    *,
    include_errors: bool = False,
    collisions: KeyCollisions | None = None,
    rules: RuleSet | None = None,
) -> list[Result]:
    """The events a finished span carries: itself if tagged (else what the first matching
    mapping rule makes of it), then its tagged span events.

    Values lost because two keys became the same string are counted in ``collisions``
    (for the exporter's ledger).
    """
    attrs: Attrs = span.attributes or {}
    tagged = USER_KEY in attrs or EVENT_KEY in attrs
    span_events = span.events
    match = None
    if not tagged and rules is not None:
        match = rules.match_span(span, attrs, include_errors=include_errors)
    if not tagged and match is None and not span_events:
        return []
    context = span.context
    if context is None:
        return []
    results: list[Result] = []
    if match is not None:
        event_id = event_id_for(context.trace_id, context.span_id, 0)
        results.append(_from_rule(match, span.start_time, event_id, collisions))
    if not include_errors and span.status.status_code is StatusCode.ERROR:
        return results
    span_user = attrs.get(USER_KEY, attrs.get(CONTEXT_USER_KEY))
    if tagged:
        results.append(
            _from_attrs(
                attrs,
                default_name=span.name,
                user=span_user,
                nanos=span.start_time,
                event_id=event_id_for(context.trace_id, context.span_id, 0),
                collisions=collisions,
            )
        )
    for index, span_event in enumerate(span_events, start=1):
        event_attrs: Attrs = span_event.attributes or {}
        if USER_KEY in event_attrs or EVENT_KEY in event_attrs:
            results.append(
                _from_attrs(
                    event_attrs,
                    default_name=span_event.name,
                    user=event_attrs.get(USER_KEY, span_user),
                    nanos=span_event.timestamp,
                    event_id=event_id_for(context.trace_id, context.span_id, index),
                    collisions=collisions,
                )
            )
    return results


def event_id_for(trace_id: int, span_id: int, index: int) -> str:
    """A stable id: the same span exported twice yields the same idempotency key.

    ``index`` 0 is the span itself, ``i + 1`` its i-th span event.
    """
    return f"{trace_id:032x}{span_id:016x}-{index}"


def _from_attrs(
    attrs: Attrs,
    *,
    default_name: str,
    user: object,
    nanos: int | None,
    event_id: str,
    collisions: KeyCollisions | None,
) -> Result:
    traits = _prefixed(attrs, TRAITS_PREFIX)
    occurred_at = _occurred_at(attrs.get(OCCURRED_AT_KEY), nanos)
    if isinstance(occurred_at, Rejection):
        return occurred_at
    return make_event(
        name=attrs.get(EVENT_KEY, default_name),
        user_id=user,
        properties=_prefixed(attrs, PROPERTIES_PREFIX),
        traits=traits or None,
        occurred_at=occurred_at,
        event_id=event_id,
        redactor=None,  # the exporter redacts with its own settings (Pipeline.deliver)
        collisions=collisions,
    )


def _from_rule(
    match: RuleMatch, nanos: int | None, event_id: str, collisions: KeyCollisions | None
) -> Result:
    """The event a mapping rule made; with no user, a ``missing_user`` refusal naming the
    rule (counted and reported: the rule asked for this event)."""
    if match.user is None:
        keys = ", ".join(match.rule.user)
        message = f"rule {match.rule.label!r} matched but no user attribute is set ({keys})"
        return Rejection("missing_user", "external_user_id", message)
    return make_event(
        name=match.name,
        user_id=match.user,
        properties=match.properties,
        traits=None,
        occurred_at=utc_from_nanos(nanos),
        event_id=event_id,
        redactor=None,  # the exporter redacts with its own settings (Pipeline.deliver)
        collisions=collisions,
    )


def _prefixed(attrs: Attrs, prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in attrs.items() if key.startswith(prefix)}


def _occurred_at(explicit: object, nanos: int | None) -> datetime | Rejection:
    """The explicit ``vf.occurred_at`` when there is one (refused if unusable), else the
    span's, span event's or record's own time."""
    if explicit is None:
        return utc_from_nanos(nanos)
    moment = explicit_time(explicit)
    if isinstance(moment, str):
        return Rejection("invalid_occurred_at", "occurred_at", moment)
    return moment


def utc_from_nanos(nanos: int | None) -> datetime:
    """An OTel timestamp (ns since the epoch) as an aware UTC datetime; now if missing."""
    if nanos is None:
        return datetime.now(UTC)
    # Rounded to the microsecond: a log record's float ``created`` reaches us as
    # e.g. ...249999872 ns, which must not become the previous millisecond.
    seconds, micros = divmod((nanos + 500) // 1000, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


# -- log records ------------------------------------------------------------------------


def translate_log(
    record: LogRecordLike,
    collisions: KeyCollisions | None = None,
    rules: RuleSet | None = None,
    *,
    event_id: Callable[[LogRecordLike], str] | None = None,
) -> Result | None:
    """A tagged log record as an Event (or why not); None when it carries no tag and
    no mapping rule matches it.

    Accepts the logging ``extra=`` names (``vf_user``, ``vf_event``,
    ``vf_properties``, ``vf_traits``) and the span-style dotted names. The
    SDK keeps mapping values as dicts (sequences become tuples, which coerce
    back to lists); a mapping that some pipeline stringified is parsed back.
    Values lost because two keys became the same string are counted in ``collisions``.
    ``event_id`` makes the id of a tagged record (the relay's ``log_event_id``:
    the same record relayed twice is one event); by default a random one.
    """
    attrs: Attrs = record.attributes or {}
    if not any(key in attrs for key in (*LOG_USER_KEYS, *LOG_EVENT_KEYS)):
        match = None if rules is None else rules.match_log(record.body, attrs)
        if match is None:
            return None
        nanos = record.timestamp or record.observed_timestamp
        made_id = new_event_id() if event_id is None else event_id(record)
        return _from_rule(match, nanos, made_id, collisions)
    name = _first(attrs, LOG_EVENT_KEYS)
    nanos = record.timestamp or record.observed_timestamp
    occurred_at = _occurred_at(_first(attrs, LOG_OCCURRED_AT_KEYS), nanos)
    if isinstance(occurred_at, Rejection):
        return occurred_at
    return make_event(
        name=record.body if name is None else name,
        user_id=_first(attrs, LOG_USER_KEYS),
        properties=_log_mapping(attrs, "properties"),
        traits=_log_mapping(attrs, "traits") or None,
        occurred_at=occurred_at,
        event_id=new_event_id() if event_id is None else event_id(record),
        redactor=None,  # the exporter redacts with its own settings (Pipeline.deliver)
        collisions=collisions,
    )


def log_event_id(record: LogRecordLike, trace_id: int = 0, span_id: int = 0) -> str:
    """A stable id for a log record, from everything that tells two records apart.

    Its trace and span ids, times, body and attributes: a Collector that sends a batch
    again, or two relays that both get it, make the same id, hence the same idempotency
    key. Two records equal in every one of these are one event.
    """
    parts = [
        f"{trace_id:032x}{span_id:016x}",
        str(record.timestamp or 0),
        str(record.observed_timestamp or 0),
        json.dumps(record.body, sort_keys=True, default=repr),
        json.dumps(dict(record.attributes or {}), sort_keys=True, default=repr),
    ]
    digest = hashlib.sha256(_ID_SEPARATOR.join(parts).encode()).hexdigest()
    return f"log-{digest[:32]}"


def _first(attrs: Attrs, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _log_mapping(attrs: Attrs, kind: str) -> Any:
    """``vf_<kind>`` (a mapping, or one rendered as text) merged with ``vf.<kind>.<key>``."""
    whole = _first(attrs, (f"vf_{kind}", f"vf.{kind}"))
    if isinstance(whole, str):
        whole = _parse_mapping(whole)
    dotted = _prefixed(attrs, f"vf.{kind}.")
    if whole is None:
        return dotted
    if not isinstance(whole, Mapping):
        return whole  # make_event rejects it with a clear reason
    return {**whole, **dotted}


def _parse_mapping(text: str) -> Any:
    """JSON, or a Python ``str(dict)``; the text itself when it is neither."""
    if len(text) > _MAX_PARSED_TEXT:
        return text
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, Mapping):
            return value
    return text


# The ``opentelemetry-instrument`` hook that adds the user span processor.
#
# ``OTEL_TRACES_EXPORTER=vibefollow`` makes the SDK build the exporter, but the SDK
# has no setting for extra span processors, and without
# ``VibefollowUserSpanProcessor`` a span tagged only with ``vf.event`` could not
# take its user from ``vf_otel.user(...)`` or a W3C ``baggage`` header. So vf-otel
# registers this function in the ``opentelemetry_post_instrument`` entry-point
# group, which ``opentelemetry-instrument`` calls after configuring the SDK. It
# acts only when ``OTEL_TRACES_EXPORTER`` names ``vibefollow``: merely installing
# vf-otel must not add an attribute to the spans of an app that does not use it.

EXPORTER_NAME: Final = "vibefollow"
TRACES_EXPORTER_ENV: Final = "OTEL_TRACES_EXPORTER"


def install_user_span_processor() -> bool:
    """Add the user span processor to the global SDK provider; True if it was added."""
    try:
        names = os.environ.get(TRACES_EXPORTER_ENV, "").split(",")
        if EXPORTER_NAME not in (name.strip().lower() for name in names):
            return False
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            _logger.warning("vf-otel: no SDK TracerProvider; spans take no user from baggage")
            return False
        provider.add_span_processor(VibefollowUserSpanProcessor())
    except Exception:
        # A hook that raises would stop opentelemetry-instrument from starting the app.
        _logger.warning("vf-otel could not add its user span processor", exc_info=True)
        return False
    return True
