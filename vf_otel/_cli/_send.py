"""``vf-otel send``: deliver one event from a shell script, through the library's own path."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .._config import Settings, resolve_settings
from .._delivery.client import NOT_THE_API, REDIRECT, describe
from .._delivery.pipeline import Delivery, open_pipeline
from .._errors import AuthError, ValidationError, VibefollowError
from .._event.build import Rejection, make_event
from .._event.model import Event, new_event_id
from ._exit import ExitCode
from ._settings import add_connection_options, hide_key, quiet_logger, seconds
from ._terminal import printable, to_json

__all__ = ["CLOSE_TIMEOUT", "add_parser", "failure_reason", "parse_pair", "parse_value", "run"]

#: Seconds shutdown() may spend delivering once the command has its answer: none, it
#: only stops the threads and gives back what it holds.
CLOSE_TIMEOUT: Final = 0.0
#: Seconds without an answer before ``send`` says on stderr what it is waiting for: a
#: reachable API answers well within it; an unreachable one is retried for ``--timeout``.
WAITING_NOTICE_AFTER: Final = 1.0
_DOCTOR_HINT: Final = "Run `vf-otel doctor` to find out why."
#: What turned delivery off: the command has no option for it, only the variable.
_OFF: Final = "VIBEFOLLOW_ENABLED=false"
#: The code of the error the library records when VIBEFOLLOW_BASE_URL is invalid.
INVALID_BASE_URL: Final = "invalid_base_url"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``send``."""
    parser = commands.add_parser(
        "send",
        help="send one event (for shell scripts)",
        description=(
            "Send one event through the library's validation and delivery (retries "
            "included). Exit status 0 only when it was delivered, or when delivery is "
            "off (VIBEFOLLOW_ENABLED=false): then it is checked, not sent, and stderr says so."
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
    """What delivering the event did: counts, refusals reported to on_error, the last error."""

    sent: bool
    user_sent: bool
    refused: tuple[VibefollowError, ...]
    last_error: VibefollowError | None
    #: Delivery is off (VIBEFOLLOW_ENABLED=false): the event was counted, never sent.
    disabled: bool = False


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
    if settings.api_key is None and settings.enabled:  # with delivery off none is needed
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
    refused: list[VibefollowError] = []
    # No spool: exit status 1 means "not delivered", not "kept for an app to send later"
    # (a script that runs the command again would then send the event twice); nor does
    # a one-off send replay what the app spooled.
    one_off = replace(settings, spool_path=None)
    with quiet_logger("vf_otel"):
        # The library's own choice: a pipeline that delivers, or with delivery off one
        # that only counts (stats().disabled).
        pipeline = open_pipeline(one_off, on_error=lambda error, _: refused.append(error))
        try:
            # The handler's path: queued, then sent by the worker (user upsert first).
            # flush() rather than deliver(): it also returns early when nothing can be
            # sent before the deadline (a refused key holds sending for a minute).
            pipeline.submit(event)
            _wait_for_delivery(pipeline, settings)
            # Taken before shutdown(), which reports what is still parked as dropped.
            stats, errors = pipeline.stats(), tuple(refused)
        finally:
            pipeline.shutdown(CLOSE_TIMEOUT)
    last_error = pipeline.ledger.last_error
    sent, user_sent, disabled = stats.sent == 1, stats.users_sent == 1, stats.disabled == 1
    return _Outcome(sent, user_sent, errors, last_error, disabled)


def _wait_for_delivery(pipeline: Delivery, settings: Settings) -> None:
    """Wait up to ``export_timeout``; when the first second brings no answer, say on stderr
    what the command is waiting for, and until when, instead of a silent wait (under 2 s
    of ``--timeout``, one wait and no notice: no time would be left to retry)."""
    deadline = time.monotonic() + settings.export_timeout
    if settings.export_timeout < 2 * WAITING_NOTICE_AFTER:
        pipeline.flush(settings.export_timeout)  # over before a notice could help
        return
    if pipeline.flush(WAITING_NOTICE_AFTER):
        return
    stats = pipeline.stats()
    if stats.queued + stats.in_flight + stats.parked == 0:
        return  # settled already: sent, or refused (the report says which)
    remaining = max(0.0, deadline - time.monotonic())
    until = (datetime.now(UTC) + timedelta(seconds=remaining)).strftime("%H:%M:%S UTC")
    tries = f" after {stats.retried + 1} attempts" if stats.retried else ""
    print(
        f"vf-otel send: no answer from {settings.api_url} yet{tries}; retrying until "
        f"{until} (--timeout {settings.export_timeout:g} s; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    pipeline.flush(remaining)


def failure_reason(error: VibefollowError) -> str:
    """Why a request did not land, in the words the library uses for ``error``."""
    if isinstance(error, AuthError):
        answer = " ".join(part for part in (str(error.status), error.code) if part)
        return f"Vibefollow refused the API key ({answer}): check VIBEFOLLOW_API_KEY"
    return describe(error)


def _report(event: Event, outcome: _Outcome, settings: Settings) -> int:
    wants_user, key = event.traits is not None, settings.api_key
    what = f"{printable(event.name)} for user {printable(event.user_id)}"
    if outcome.disabled:
        # As in the library: delivery off is no failure (flush() is True), so a script
        # run where the app's events are not sent (CI) goes on; stdout stays empty.
        checked = f"{what} passes the checks: {to_json(dict(event.properties))}"
        print(f"vf-otel send: not sent: delivery is off ({_OFF}); {checked}", file=sys.stderr)
        return ExitCode.OK
    if outcome.sent and (outcome.user_sent or not wants_user):
        upserted = " (user traits upserted)" if wants_user else ""
        print(f"sent {what}{upserted}: {to_json(dict(event.properties))}", flush=True)
        return ExitCode.OK
    no_answer = f"no answer within {settings.export_timeout:g} s"
    if outcome.sent:  # what went wrong concerns the upsert: the event itself landed
        error = outcome.refused[0] if outcome.refused else outcome.last_error
        reason = failure_reason(error) if error else no_answer
        message = f"sent {what}, but the user upsert failed: {reason}"
        return _fail(ExitCode.FAILED, message, secret=key)
    if outcome.refused:
        error = outcome.refused[0]
        field = getattr(error, "field", None)
        where = f" (field {field})" if field else ""
        by = "the server refused" if error.status else "could not send"  # 0: no answer
        message = f"not sent: {by} {what}: {error}{where}"
        code = exit_code_for(error)
        hint = "" if code == ExitCode.INVALID_EVENT else _DOCTOR_HINT
        return _fail(code, message, hint, secret=key)
    error = outcome.last_error
    reason = failure_reason(error) if error else no_answer
    return _fail(exit_code_for(error), f"not delivered: {reason}", _DOCTOR_HINT, secret=key)


def exit_code_for(error: VibefollowError | None) -> ExitCode:
    """The status ``vf-otel doctor`` gives the same failure (docs/cli.md); ``None``: no
    answer at all before the deadline."""
    if error is None:
        return ExitCode.TIMEOUT
    status, code, text = error.status, error.code, str(error).lower()
    if code == INVALID_BASE_URL:
        return ExitCode.BAD_CONFIG
    if isinstance(error, AuthError):
        return ExitCode.AUTH
    if code in (NOT_THE_API, REDIRECT) or status in (404, 405) or 300 <= status < 400:
        return ExitCode.WRONG_URL
    if isinstance(error, ValidationError) or status in (409, 422):
        return ExitCode.INVALID_EVENT
    if status == 429:
        return ExitCode.RATE_LIMITED
    if status >= 500:
        return ExitCode.SERVER_ERROR
    if status:
        return ExitCode.UNEXPECTED_RESPONSE
    # No answer (status 0): told apart by what the library says of it.
    if "timed out" in text or "timeout" in text:
        return ExitCode.TIMEOUT
    if "proxy" in text:
        return ExitCode.PROXY
    if "ssl" in text or "certificate" in text or "tls" in text:
        return ExitCode.TLS
    return ExitCode.CONNECTION


def _fail(code: ExitCode, message: str, hint: str = "", *, secret: str | None = None) -> int:
    print(f"vf-otel send: {hide_key(message, secret)}", file=sys.stderr, flush=True)
    if hint:
        print(hint, file=sys.stderr, flush=True)
    return code
