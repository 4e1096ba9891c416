"""vf-otel's own HTTP log records: off the app's logs, kept at DEBUG under ``vf_otel.http``.

httpx logs every request at INFO on the ``httpx`` logger ("HTTP Request: POST ...")
and httpcore logs connection details at DEBUG; an app at ``basicConfig(level=INFO)``
would print a line per batch vf-otel sends. httpx (0.25 to 0.28) has no per-client
logger and logs after its event hooks run, so the records are caught where they
are handled: a filter on those loggers takes the records made on a vf-otel thread
(a worker or a sender, or the app's thread while it closes vf-otel's client) and
hands a DEBUG copy of httpx's request line to the ``vf_otel.http`` logger instead
(httpcore's trace, which carries raw headers a server may echo the key into, is
dropped). The app's own requests, made on its own threads, log exactly as before.
The copy is the formatted line with every API key a client registered replaced
(``wire.scrub``): the status line's reason phrase is the server's text, and a
server may echo the key into it.

One filter object for the process, added once per logger (``addFilter`` ignores an
object already there, so installing again does nothing); it holds no lock and no
state beyond a thread-local mark, so a forked child keeps it as it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from .senders import on_delivery_thread
from .wire import scrub

__all__ = ["HTTP_LOGGER", "HTTP_LOGGERS", "own_http", "quiet_own_http_logs", "scrub_key"]

#: Where vf-otel's own HTTP records go, at DEBUG.
HTTP_LOGGER: Final = "vf_otel.http"
#: The loggers httpx and httpcore write to (a filter applies to its own logger only,
#: not to children, so each is named).
HTTP_LOGGERS: Final = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_own = threading.local()
#: The API keys of this process's clients, scrubbed from every line copied.
_KEYS: set[str] = set()


def scrub_key(key: str | None) -> None:
    """Scrub ``key`` from every HTTP log line vf-otel copies from now on."""
    if key:
        _KEYS.add(key)


@contextmanager
def own_http() -> Iterator[None]:
    """Mark HTTP work vf-otel does on the app's thread (closing its client) as vf-otel's."""
    previous = getattr(_own, "active", False)
    _own.active = True
    try:
        yield
    finally:
        _own.active = previous


class _OwnRequests(logging.Filter):
    """Keeps a record made by vf-otel's delivery out of the app's handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (on_delivery_thread() or getattr(_own, "active", False)):
            return True  # the app's own request: untouched
        if record.name != "httpx":
            # httpcore's trace carries raw headers, which a server may echo the API
            # key into: never copied anywhere.
            return False
        try:
            target = logging.getLogger(HTTP_LOGGER)
            if target.isEnabledFor(logging.DEBUG):
                moved = logging.makeLogRecord(record.__dict__)
                text = record.getMessage()
                for key in list(_KEYS):
                    text = scrub(text, key)
                moved.msg, moved.args = text, None
                moved.name = HTTP_LOGGER
                moved.levelno = logging.DEBUG
                moved.levelname = logging.getLevelName(logging.DEBUG)
                target.handle(moved)
        except Exception:  # noqa: BLE001, S110 - a log line is never worth a failed request
            pass
        return False


_FILTER: Final = _OwnRequests()


def quiet_own_http_logs() -> None:
    """Install the filter on httpx's and httpcore's loggers; calling again does nothing."""
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
