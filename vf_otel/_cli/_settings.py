"""Settings for the commands: resolved like the library's, plus where each value came from."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._config import DEFAULTS, ENV_VARS, Settings, resolve_settings

__all__ = [
    "SourcedSettings",
    "add_connection_options",
    "captured_records",
    "hide_key",
    "quiet_logger",
    "redact_key",
    "resolve_sourced",
    "seconds",
]

_KEY_PREFIX: Final = re.compile(r"sk_(?:live|test)_")
#: A key's last 4 characters are shown only when at least this many stay hidden.
_MIN_HIDDEN_CHARS: Final = 8
_OPTION_FOR_ENV: Final = {env: name for name, env in ENV_VARS.items()}


@dataclass(frozen=True, slots=True)
class SourcedSettings:
    """Resolved settings, each option's source, and the VIBEFOLLOW_* variables ignored."""

    settings: Settings
    sources: Mapping[str, str]
    #: option name -> why its environment variable was ignored (the default was used).
    ignored: Mapping[str, str]


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--api-key``, ``--base-url`` and ``--allow-insecure-http``: arguments beat VIBEFOLLOW_*."""
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="project API key (default: $VIBEFOLLOW_API_KEY, which is safer: "
        "arguments are visible to other users in the process list)",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="API origin (default: $VIBEFOLLOW_BASE_URL, else https://api.vibefollow.com)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_const",
        const=True,
        default=None,
        help="allow http:// to a host that is not loopback (sends the key unencrypted)",
    )


def seconds(text: str) -> float:
    """A positive number of seconds, for argparse (the upper bound is the settings' check)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def redact_key(key: str | None) -> str:
    """``sk_live_…abcd``: the known prefix and, for a long enough key, its last 4 characters."""
    if key is None:
        return "(not set)"
    match = _KEY_PREFIX.match(key)
    prefix = match.group(0) if match else ""
    hidden = len(key) - len(prefix) - 4
    return prefix + "…" + (key[-4:] if hidden >= _MIN_HIDDEN_CHARS else "")


def hide_key(text: str, key: str | None) -> str:
    """``text`` with every copy of ``key`` redacted (a server or proxy might echo it)."""
    return text.replace(key, redact_key(key)) if key else text


def resolve_sourced(
    explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> SourcedSettings:
    """Resolve like the library (argument > env > default); raises ValueError like it."""
    with captured_records("vf_otel.config") as records:
        settings = resolve_settings(environ, **explicit)
    ignored: dict[str, str] = {}
    for record in records:
        # resolve_settings logs ("ignoring %s (%s); ...", ENV_VAR, reason) per ignored variable.
        if isinstance(record.args, tuple) and len(record.args) == 2:
            name = _OPTION_FOR_ENV.get(str(record.args[0]))
            if name is not None:
                ignored[name] = str(record.args[1])
    env = os.environ if environ is None else environ
    sources = {name: _source(name, explicit, env, ignored) for name in DEFAULTS}
    return SourcedSettings(settings, sources, ignored)


def _source(
    name: str, explicit: Mapping[str, Any], env: Mapping[str, str], ignored: Mapping[str, str]
) -> str:
    if explicit.get(name) is not None:
        return "argument"
    variable = ENV_VARS[name]
    if name in ignored:
        return f"default ({variable} ignored: {ignored[name]})"
    if env.get(variable, "").strip():
        return f"env {variable}"
    return "default"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_records(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    """Collect WARNING+ records of ``logger_name`` (and children) while the block runs.

    With a handler in the tree, logging's last-resort stderr printer stays quiet, so the
    command decides what the user sees.
    """
    logger = logging.getLogger(logger_name)
    collector = _Collector()
    logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        logger.removeHandler(collector)


@contextlib.contextmanager
def quiet_logger(logger_name: str) -> Iterator[None]:
    """Keep logging's last-resort stderr printer off ``logger_name`` while the block runs.

    A command reads delivery's results as objects (counts, errors) and says itself
    what went wrong; the library's warnings would only repeat it, in the words meant
    for a long-running app. Handlers an app configured still get every record.
    """
    logger = logging.getLogger(logger_name)
    silent = logging.NullHandler()
    logger.addHandler(silent)
    try:
        yield
    finally:
        logger.removeHandler(silent)
