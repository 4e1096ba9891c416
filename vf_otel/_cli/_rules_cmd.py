"""``vf-otel rules``: check a mapping-rules file, and test it on recorded telemetry.

``rules test`` runs the exporters' own translation (``translate_span`` /
``translate_log`` with the rules) on the spans and log records of an OTLP JSON file
(read by the relay's own OTLP/JSON decoder, ``vf_otel._sources.otlp``),
and shows, for each, the event it would send or why none: tagged telemetry keeps its
own translation, as in the exporters. Nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._event.build import Rejection
from .._event.model import Event
from .._event.values import DEFAULT_REDACTOR
from .._rules import RuleMatch, RuleSet, load_rules
from .._sources.otel import (
    EVENT_KEY,
    LOG_EVENT_KEYS,
    LOG_USER_KEYS,
    USER_KEY,
    translate_log,
    translate_span,
)
from .._sources.otlp import LogRecord, Span, decode_document
from ._exit import ExitCode, docs_url
from ._terminal import counted, printable, to_json

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``rules check`` and ``rules test``."""
    parser = commands.add_parser(
        "rules",
        help="check mapping rules, or test them on recorded spans and log records",
        description="Mapping rules turn spans and log records nobody tagged into events "
        f"({docs_url('rules.md')}).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="load a rules file and list its rules",
        description="Load RULES as the exporters would; exit 4 with the rule and field "
        "at fault if it is invalid.",
    )
    check.add_argument("rules", metavar="RULES", help="a rules file (TOML, or YAML: *.yaml, *.yml)")
    check.set_defaults(run=run_check)
    test = actions.add_parser(
        "test",
        help="show the events recorded telemetry would produce",
        description="Apply RULES to the spans and log records of TELEMETRY, an OTLP JSON "
        'file ({"resourceSpans": [...]} or {"resourceLogs": [...]}), and show the event '
        "each would produce (after the default redaction), or why none. Nothing is sent.",
    )
    test.add_argument("rules", metavar="RULES", help="a rules file (TOML, or YAML: *.yaml, *.yml)")
    test.add_argument("telemetry", metavar="TELEMETRY", help="an OTLP JSON file ('-': stdin)")
    test.add_argument(
        "--include-error-spans",
        action="store_true",
        help="as the exporter option: ERROR spans match rules that name no status",
    )
    test.add_argument("--json", action="store_true", help="one JSON object per span or record")
    test.set_defaults(run=run_test)


def run_check(args: argparse.Namespace) -> int:
    """List the rules of a valid file; exit 4 (bad configuration) naming what is wrong."""
    try:
        rules = load_rules(args.rules)
    except ValueError as exc:
        print(f"vf-otel rules check: {printable(str(exc))}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    print(f"{printable(args.rules)}: {counted(len(rules), 'rule')}")
    for number, rule in enumerate(rules, 1):
        print(f"  rule {number} ({printable(rule.label)}): {rule.signal}s -> {rule.event}")
    return ExitCode.OK


@dataclass(slots=True)
class _Outcome:
    """What one span or log record makes: each result with where it came from."""

    source: str
    name: str
    results: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def count(self, kind: str, origin_prefix: str = "") -> int:
        """How many results are ``event`` / ``refused`` (from an origin starting so)."""
        return sum(
            1 for origin, r in self.results if kind in r and origin.startswith(origin_prefix)
        )


def run_test(args: argparse.Namespace) -> int:
    """Show what each recorded span and record would produce; 1 if TELEMETRY is unreadable."""
    try:
        rules = RuleSet(load_rules(args.rules))
    except ValueError as exc:
        print(f"vf-otel rules test: {printable(str(exc))}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    try:
        spans, logs = decode_document(_read_json(args.telemetry))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"vf-otel rules test: {printable(args.telemetry)}: {reason}", file=sys.stderr)
        return ExitCode.FAILED
    outcomes = [_span_outcome(s, rules, args.include_error_spans) for s in spans]
    outcomes += [_log_outcome(record, rules) for record in logs]
    if args.json:
        for outcome in outcomes:
            print(to_json(_as_json(outcome)))
    else:
        _print(outcomes, len(spans), len(logs))
    return ExitCode.OK


def _read_json(path: str) -> object:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _span_outcome(span: Span, rules: RuleSet, include_errors: bool) -> _Outcome:
    attrs = span.attributes or {}
    tagged = USER_KEY in attrs or EVENT_KEY in attrs
    match = None if tagged else rules.match_span(span, include_errors=include_errors)
    results = translate_span(span, include_errors=include_errors, rules=rules)
    # The span's own event comes first (tagged, or made by a rule), then its span events.
    first = "tagged" if tagged else _rule_origin(match)
    origins = ([first] if first else []) + ["tagged span event"] * len(results)
    return _outcome("span", span.name, zip(origins, results, strict=False))


def _log_outcome(record: LogRecord, rules: RuleSet) -> _Outcome:
    tagged = any(key in record.attributes for key in (*LOG_USER_KEYS, *LOG_EVENT_KEYS))
    match = None if tagged else rules.match_log(record.body, record.attributes)
    result = translate_log(record, rules=rules)
    origin = "tagged" if tagged else _rule_origin(match) or ""
    return _outcome("log", str(record.body), [] if result is None else [(origin, result)])


def _rule_origin(match: RuleMatch | None) -> str | None:
    return None if match is None else f"rule {match.index + 1} ({match.rule.label})"


def _outcome(source: str, name: str, results: Iterable[tuple[str, Event | Rejection]]) -> _Outcome:
    outcome = _Outcome(source, name)
    for origin, result in results:
        if isinstance(result, Rejection):
            refused = {"reason": result.reason, "message": result.message}
            outcome.results.append((origin, {"refused": refused}))
        else:
            event = DEFAULT_REDACTOR.event(result).to_wire()
            outcome.results.append((origin, {"event": event}))
    return outcome


def _as_json(outcome: _Outcome) -> dict[str, Any]:
    return {
        "source": outcome.source,
        "name": outcome.name,
        "results": [{"origin": origin, **result} for origin, result in outcome.results],
    }


def _print(outcomes: Sequence[_Outcome], spans: int, logs: int) -> None:
    for outcome in outcomes:
        head = f"{outcome.source} {to_json(outcome.name)}"
        if not outcome.results:
            print(f"{head}: no event")
        for origin, result in outcome.results:
            print(f"{head}: {origin} -> {_shown(result)}")
    made = sum(o.count("event") for o in outcomes)
    by_rules = sum(o.count("event", "rule ") for o in outcomes)
    refused = sum(o.count("refused") for o in outcomes)
    print(
        f"{counted(spans, 'span')}, {counted(logs, 'log record')}: {counted(made, 'event')} "
        f"({by_rules} by rules), {refused} refused"
    )


def _shown(result: dict[str, Any]) -> str:
    if "refused" in result:
        refused = result["refused"]
        return f"refused ({refused['reason']}): {printable(refused['message'])}"
    event = result["event"]
    user, properties = event["external_user_id"], event["properties"]
    return f"{to_json(event['name'])} for {to_json(user)} {to_json(properties)}"
