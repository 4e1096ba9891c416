"""Exit statuses of the ``vf-otel`` command, one per failure it can tell apart (docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = ["DOCS_URL", "ExitCode", "docs_url"]

_DOCS: Final = "https://github.com/vibefollow/vf-otel/blob/main/docs/"


def docs_url(page: str) -> str:
    """The address of ``docs/<page>`` (``"rules.md"``, ``"runtimes.md#uwsgi"``): what the
    command prints to point at the docs, since a pip user has no docs/ folder."""
    return _DOCS + page


#: Where the statuses (and every command) are documented.
DOCS_URL: Final = docs_url("cli.md")


class ExitCode(IntEnum):
    """What the process exit status means; documented in docs/cli.md, kept stable."""

    OK = 0
    FAILED = 1  # send: not delivered; devserver: could not listen
    USAGE = 2  # argparse's own status for a bad command line
    NO_API_KEY = 3
    BAD_CONFIG = 4  # an invalid option or VIBEFOLLOW_* variable (base URL, http://, ...)
    CONNECTION = 5  # DNS failure, connection refused or broken
    TLS = 6
    TIMEOUT = 7
    PROXY = 8
    AUTH = 9  # 401 / 403
    WRONG_URL = 10  # 404 / 405 / a redirect / a 2xx that is not the Vibefollow API
    RATE_LIMITED = 11  # 429
    SERVER_ERROR = 12  # 5xx
    INVALID_EVENT = 13  # 409 / 422, or the client-side checks
    UNEXPECTED_RESPONSE = 14  # any other HTTP status
    INTERRUPTED = 130  # Ctrl-C during doctor or send (128 + SIGINT)
    BROKEN_PIPE = 141  # the reader of standard output went away (128 + SIGPIPE)
