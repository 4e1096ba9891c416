"""Types for the hooks users pass to vf-otel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypedDict

import httpx

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
    api_key: str | None
    base_url: str | None
    batch_size: int | None
    flush_interval: float | None
    max_queue_size: int | None
    timeout: float | None
    export_timeout: float | None
    shutdown_timeout: float | None
    max_retries: int | None
    allow_insecure_http: bool | None
    redact: bool | None
    redact_keys: Sequence[str] | str | None
    spool_path: str | os.PathLike[str] | None
    spool_max_bytes: int | None
    enabled: bool | None
    debug: bool | None
    handle_sigterm: bool | None
    on_error: ErrorCallback | None
    before_send: BeforeSend | None
    transport: httpx.BaseTransport | None
