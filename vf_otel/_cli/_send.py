"""``vf-otel send``: deliver one event from a shell script, through the library's own path."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from .._config import Settings, resolve_settings
from .._delivery.delivery import Delivery
from .._delivery.stats import Counters
from .._errors import ValidationError, VibefollowError
from .._event.model import Event, new_event_id
from .._event.validate import Rejection, make_event
from ._exit import ExitCode
from ._settings import add_connection_options, captured_records, hide_key, seconds
from ._terminal import printable, to_json

__all__ = ["add_parser", "parse_pair", "parse_value", "run", "warning_reason"]

_DOCTOR_HINT: Final = "Run `vf-otel doctor` to find out why."


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``send``."""
    parser = commands.add_parser(
        "send",
        help="send one event (for shell scripts)",
        description=(
            "Send one event through the library's validation and delivery (retries "
            "included). Exit status 0 only when it was delivered."
        ),
        epilog='Values are JSON when they parse as JSON (42, true, null, "42"), else strings.',
    )
    parser.add_argument("event", metavar="EVENT", help="event name, e.g. user_signed_up")
    parser.add_argument("--user", required=True, metavar="ID", help="external user id")
    parser.add_argument(
        "--prop",
        action="append",
        type=parse_pair,
        default=[],
        metavar="K=V",
        help="an event property (repeatable)",
    )
    parser.add_argument(
        "--trait",
        action="append",
        type=parse_pair,
        default=[],
        metavar="K=V",
        help="a user trait, which also upserts the user (repeatable; email goes top-level)",
    )
    add_connection_options(parser)
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="give up after S seconds, retries included "
        "(default: $VIBEFOLLOW_EXPORT_TIMEOUT, else 30)",
    )
    parser.set_defaults(run=run)


def parse_value(text: str) -> Any:
    """JSON when ``text`` is JSON (NaN and Infinity are not), else the text itself."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_pair(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, parsed value); argparse turns the error into a usage message."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, parse_value(value)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one delivery attempt did: counters, refusals, and the library's warnings."""

    sent: bool
    user_sent: bool
    refused: tuple[VibefollowError, ...]
    reasons: tuple[str, ...]


def run(args: argparse.Namespace) -> int:
    """Validate, deliver, report; the exit status says whether the event landed."""
    explicit = {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "allow_insecure_http": args.allow_insecure_http,
        "export_timeout": args.timeout,
    }
    try:
        settings = resolve_settings(**explicit)
    except ValueError as exc:
        return _fail(ExitCode.BAD_CONFIG, f"invalid option: {exc}")
    if settings.api_key is None:
        return _fail(ExitCode.NO_API_KEY, "not sent: no API key; set VIBEFOLLOW_API_KEY")
    event = make_event(
        name=args.event,
        user_id=args.user,
        properties=dict(args.prop),
        traits=dict(args.trait) if args.trait else None,
        occurred_at=datetime.now(UTC),
        event_id=new_event_id(),
    )
    if isinstance(event, Rejection):
        return _fail(ExitCode.INVALID_EVENT, f"not sent: {event.message} (field {event.field})")
    return _report(event, _deliver(settings, event), settings)


def _deliver(settings: Settings, event: Event) -> _Outcome:
    counters = Counters()
    refused: list[VibefollowError] = []
    delivery = Delivery(settings, counters, on_error=lambda error, _: refused.append(error))
    with captured_records("vf_otel") as records:
        try:
            delivery.export([event])
            # Taken before close(), which reports what is still parked as "shutdown".
            reasons = tuple(dict.fromkeys(warning_reason(record) for record in records))
            errors = tuple(refused)
        finally:
            delivery.close()
    stats = counters.snapshot()
    return _Outcome(stats.sent == 1, stats.users_sent == 1, errors, reasons)


def warning_reason(record: logging.LogRecord) -> str:
    """Why the delivery logged ``record``: the error it carries, else its first sentence."""
    # The delivery's warnings carry the error itself when there is one; otherwise its
    # first sentence is the reason (the rest is about a long-running process's backlog).
    args = record.args if isinstance(record.args, tuple) else ()
    error = next((arg for arg in args if isinstance(arg, VibefollowError)), None)
    if error is not None:
        return str(error)
    return record.getMessage().split(". ", 1)[0]


def _report(event: Event, outcome: _Outcome, settings: Settings) -> int:
    wants_user, key = event.traits is not None, settings.api_key
    what = f"{printable(event.name)} for user {printable(event.user_id)}"
    if outcome.sent and (outcome.user_sent or not wants_user):
        upserted = " (user traits upserted)" if wants_user else ""
        print(f"sent {what}{upserted}: {to_json(dict(event.properties))}", flush=True)
        return ExitCode.OK
    if outcome.refused:
        error = outcome.refused[0]
        field = getattr(error, "field", None)
        where = f" (field {field})" if field else ""
        by = "the server refused" if error.status else "could not send"  # 0: no answer
        message = f"not sent: {by} {what}: {error}{where}"
        if isinstance(error, ValidationError):
            return _fail(ExitCode.INVALID_EVENT, message, secret=key)
        return _fail(ExitCode.FAILED, message, _DOCTOR_HINT, secret=key)
    reasons = "; ".join(outcome.reasons) or f"no answer within {settings.export_timeout:g} s"
    if outcome.sent:
        message = f"sent {what}, but the user upsert failed: {reasons}"
        return _fail(ExitCode.FAILED, message, secret=key)
    message = f"not delivered: {reasons}"
    return _fail(ExitCode.FAILED, message, _DOCTOR_HINT, secret=key)


def _fail(code: ExitCode, message: str, hint: str = "", *, secret: str | None = None) -> int:
    print(f"vf-otel send: {hide_key(message, secret)}", file=sys.stderr, flush=True)
    if hint:
        print(hint, file=sys.stderr, flush=True)
    return code
