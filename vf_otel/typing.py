"""Types for the options and hooks users pass to vf-otel.

Named like ``structlog.typing``. Import the names (``from vf_otel.typing import Options``)
rather than the module as ``from vf_otel import typing``, which would hide the standard
library's ``typing`` in the importing module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypedDict

import httpx

from ._rules import Rule

if TYPE_CHECKING:
    from ._errors import VibefollowError
    from ._event.model import Event

__all__ = ["BeforeSend", "ErrorCallback", "Options"]


class ErrorCallback(Protocol):
    """``on_error(exc, events)``: called for every event that will never be
    delivered — dead-lettered by the server, rejected by the client-side checks
    (``events`` is then empty: no Event could be built), or dropped at shutdown.
    For the handler it runs on a vf-otel thread, never the logging thread; for the
    exporters, also on the thread that called ``export()`` (the SDK processor's). It
    must not block; ``flush()`` called from it answers at once; what it raises is
    logged and ignored.
    """

    def __call__(self, exc: VibefollowError, events: Sequence[Event], /) -> None: ...


class BeforeSend(Protocol):
    """``before_send(event)``: the event to send instead (``dataclasses.replace`` it), or
    ``None`` to leave it out (counted as ``dropped["filtered"]``). Runs on a vf-otel
    thread before delivery — for sampling, or scrubbing beyond ``redact``. What it raises
    drops that event only (``dropped["before_send_failed"]``, reported to ``on_error``).
    """

    def __call__(self, event: Event, /) -> Event | None: ...


class Options(TypedDict, total=False):
    """Keyword options of ``VibefollowHandler``, both exporters and ``configure()``.

    Each may be omitted (or None): its ``VIBEFOLLOW_*`` environment variable
    applies, then the default. [Configuration](configuration.md) describes every one. Type
    checkers see these names and types through ``**options: Unpack[Options]``;
    at run time an unknown name raises ``TypeError`` and a bad value ``ValueError``.
    """

    # A static copy of the settings table (vf_otel/_config.py, Settings) for type
    # checkers, which cannot derive it; tests/test_options.py keeps the two in step.
    # One line each for the reference; docs/configuration.md has the whole story.
    api_key: str | None
    """Project API key (``sk_live_…``); ``VIBEFOLLOW_API_KEY``. Without one: counted, dropped."""
    base_url: str | None
    """API origin (``/api/v1`` is appended); ``VIBEFOLLOW_BASE_URL``."""
    batch_size: int | None
    """Events per request, 1 to 500; ``VIBEFOLLOW_BATCH_SIZE``, default 500."""
    flush_interval: float | None
    """Seconds between deliveries of a partial batch; ``VIBEFOLLOW_FLUSH_INTERVAL``, default 5."""
    max_queue_size: int | None
    """Most events queued; ``VIBEFOLLOW_MAX_QUEUE_SIZE``, default 10,000."""
    max_queue_bytes: int | None
    """Most bytes queued, as the worker measures them; ``VIBEFOLLOW_MAX_QUEUE_BYTES``, 64 MiB."""
    max_backlog_bytes: int | None
    """Cap on requests parked in memory, compressed; ``VIBEFOLLOW_MAX_BACKLOG_BYTES``, 64 MiB."""
    priority_events: Sequence[str] | str | None
    """Event names a full backlog evicts last; ``VIBEFOLLOW_PRIORITY_EVENTS`` (comma-separated)."""
    adaptive_batching: bool | None
    """Send at once when quiet, gather when busy; ``VIBEFOLLOW_ADAPTIVE_BATCHING``, default on."""
    timeout: float | None
    """Seconds one HTTP request may take, connect to last byte; ``VIBEFOLLOW_TIMEOUT``."""
    export_timeout: float | None
    """Deadline for one request, retries included; ``VIBEFOLLOW_EXPORT_TIMEOUT``, default 30."""
    shutdown_timeout: float | None
    """The longest ``flush()`` and the stop at exit wait; ``VIBEFOLLOW_SHUTDOWN_TIMEOUT``."""
    max_retries: int | None
    """Retries per request, 0 to 100; ``VIBEFOLLOW_MAX_RETRIES``, default 8."""
    allow_insecure_http: bool | None
    """Allow ``http://`` to a host that is not loopback; ``VIBEFOLLOW_ALLOW_INSECURE_HTTP``."""
    redact: bool | None
    """Redact secret-looking property and trait values; ``VIBEFOLLOW_REDACT``, default on."""
    redact_keys: Sequence[str] | str | None
    """More key patterns to redact; ``VIBEFOLLOW_REDACT_KEYS`` (comma-separated)."""
    spool_path: str | os.PathLike[str] | None
    """A SQLite file keeping undeliverable requests (off by default); ``VIBEFOLLOW_SPOOL_PATH``."""
    spool_max_bytes: int | None
    """Cap on the spool's requests in bytes; ``VIBEFOLLOW_SPOOL_MAX_BYTES``, default 100 MiB."""
    enabled: bool | None
    """``False`` counts events in ``stats().disabled`` and sends nothing; ``VIBEFOLLOW_ENABLED``."""
    debug: bool | None
    """Show each event as it is queued (redacted JSON); ``VIBEFOLLOW_DEBUG``."""
    handle_sigterm: bool | None
    """Deliver the queue at SIGTERM, then let it act; ``VIBEFOLLOW_HANDLE_SIGTERM``, default on."""
    rules: Sequence[Rule] | str | os.PathLike[str] | None
    """Mapping rules for untagged spans and log records (a TOML or YAML file's path, or ``Rule``
    objects); ``VIBEFOLLOW_RULES``. For the exporters: ``VibefollowHandler`` refuses them."""
    on_error: ErrorCallback | None
    """``on_error(exc, events)`` for every event that will never be delivered."""
    before_send: BeforeSend | None
    """``before_send(event)``: the event to send instead, or ``None`` to leave it out."""
    transport: httpx.BaseTransport | None
    """An ``httpx.BaseTransport`` (``httpx.MockTransport``) for tests."""
