"""Mapping rules: untagged spans and log records become the events the rules describe."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import vf_otel
from vf_otel import Rule, load_rules
from vf_otel._config import resolve_settings
from vf_otel._event.build import Rejection
from vf_otel._event.model import Event
from vf_otel._rules import RuleSet
from vf_otel._sources.otel import event_id_for, translate_log, translate_span
from vf_otel.testing import VibefollowServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
START = 1_700_000_000_123_456_789

SIGNUP = Rule(
    name="signup",
    event="user_signed_up",
    kind="server",
    where={
        "http.request.method": "POST",
        "http.route": "/api/signup",
        "http.response.status_code": "2xx",
    },
    properties=["app.plan"],
)
SIGNUP_ATTRS: dict[str, Any] = {
    "http.request.method": "POST",
    "http.route": "/api/signup",
    "http.response.status_code": 201,
    "enduser.id": "usr_1",
    "app.plan": "pro",
    "app.email": "someone@example.com",
}


@dataclass
class LogRecord:
    """The part of an OTel log record translate_log reads."""

    body: object
    attributes: Mapping[str, Any]
    timestamp: int | None = START
    observed_timestamp: int | None = None


def span(
    name: str = "POST /api/signup",
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.SERVER,
    status: StatusCode = StatusCode.UNSET,
) -> ReadableSpan:
    """One finished span, recorded by the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attrs = SIGNUP_ATTRS if attributes is None else attributes
    made = provider.get_tracer("tests").start_span(
        name, kind=kind, attributes=attrs, start_time=START
    )
    made.set_status(Status(status))
    made.end()
    (finished,) = memory.get_finished_spans()
    return finished


def events(results: Sequence[Event | Rejection]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, user, properties) of each result, which must all be events."""
    assert all(isinstance(r, Event) for r in results), results
    return [(r.name, r.user_id, dict(r.properties)) for r in results if isinstance(r, Event)]


def translated(rules: Sequence[Rule], made: ReadableSpan, **kwargs: Any) -> list[Any]:
    """What translate_span makes of ``made`` under ``rules``."""
    return translate_span(made, rules=RuleSet(rules), **kwargs)


# -- matching -------------------------------------------------------------------------


def test_matching_span_becomes_the_event_with_allow_listed_properties_only() -> None:
    """The rule's event, the user from enduser.id, only app.plan of the attributes, and
    the span's start time and stable event id."""
    made = span()
    (result,) = translated([SIGNUP], made)
    assert events([result]) == [("user_signed_up", "usr_1", {"app.plan": "pro"})]
    assert result.event_id == event_id_for(made.context.trace_id, made.context.span_id, 0)
    assert result.occurred_at.isoformat() == "2023-11-14T22:13:20.123457+00:00"


@pytest.mark.parametrize(
    ("name", "changes", "kind"),
    [
        ("GET /api/signup", {"http.request.method": "GET"}, SpanKind.SERVER),
        ("POST /api/login", {"http.route": "/api/login"}, SpanKind.SERVER),
        ("POST /api/signup", {"http.response.status_code": 409}, SpanKind.SERVER),
        ("POST /api/signup", {"http.response.status_code": "201"}, SpanKind.SERVER),
        ("POST /api/signup", {}, SpanKind.CLIENT),
    ],
    ids=["method", "route", "status-4xx", "status-as-text", "kind"],
)
def test_a_span_differing_in_one_condition_makes_nothing(
    name: str, changes: dict[str, Any], kind: SpanKind
) -> None:
    """Every condition must hold: one differing attribute (or the kind) and no event."""
    assert translated([SIGNUP], span(name, SIGNUP_ATTRS | changes, kind=kind)) == []


def test_event_name_is_a_template_over_attributes_and_the_span_name() -> None:
    """{attribute} and {span.name} are filled in; {{ is a literal brace."""
    rule = Rule(event="{http.request.method} {http.route} ({span.name}) {{x}}")
    assert events(translated([rule], span("signup")))[0][0] == "POST /api/signup (signup) {x}"


def test_a_template_attribute_that_is_missing_means_no_match() -> None:
    """A rule whose template names an absent attribute does not apply to the span."""
    rule = Rule(event="viewed {app.report}")
    assert translated([rule], span()) == []


def test_first_matching_rule_wins_across_the_indexes() -> None:
    """Rules indexed by span name, by route and neither: the earliest matching one wins."""
    rules = [
        Rule(event="generic", where={"http.request.method": "POST"}),
        Rule(event="by_route", where={"http.route": "/api/signup"}),
        Rule(event="by_name", span_name="POST /api/signup"),
    ]
    for order in ([0, 1, 2], [1, 2, 0], [2, 0, 1]):
        ordered = [rules[i] for i in order]
        assert events(translated(ordered, span()))[0][0] == ordered[0].event


def test_tagged_spans_keep_their_own_translation() -> None:
    """A span tagged with vf.event is translated as before; no rule applies to it."""
    made = span(attributes=SIGNUP_ATTRS | {"vf.event": "tagged", "vf.user": "usr_9"})
    assert events(translated([SIGNUP], made)) == [("tagged", "usr_9", {})]


def test_error_spans_match_only_when_asked() -> None:
    """A rule without status skips ERROR spans unless include_error_spans; status = "error"
    matches them."""
    failed = span(status=StatusCode.ERROR)
    loose = Rule(event="tried", where={"http.route": "/api/signup"})
    assert translated([loose], failed) == []
    assert events(translated([loose], failed, include_errors=True))[0][0] == "tried"
    strict = Rule(event="signup_failed", status="error")
    assert events(translated([strict], failed))[0][0] == "signup_failed"
    assert translated([strict], span()) == []


def test_matching_span_without_a_user_is_refused_naming_the_rule() -> None:
    """No user attribute: a missing_user refusal (counted), naming the rule and the keys."""
    attrs = {k: v for k, v in SIGNUP_ATTRS.items() if k != "enduser.id"}
    (result,) = translated([SIGNUP], span(attributes=attrs))
    assert isinstance(result, Rejection)
    assert result.reason == "missing_user"
    assert "'signup'" in result.message
    assert "enduser.id, user.id" in result.message


def test_user_keys_are_tried_in_order_and_configurable() -> None:
    """The first user attribute set wins; a rule may name its own."""
    attrs = SIGNUP_ATTRS | {"user.id": "usr_2", "app.account": "acct_3"}
    assert events(translated([Rule(event="e")], span(attributes=attrs)))[0][1] == "usr_1"
    own = Rule(event="e", user=["app.account"])
    assert events(translated([own], span(attributes=attrs)))[0][1] == "acct_3"


def test_properties_may_be_renamed() -> None:
    """properties = {name: attribute} copies under the new names; absent ones are left out."""
    rule = Rule(event="e", properties={"plan": "app.plan", "seats": "app.seats"})
    assert events(translated([rule], span()))[0][2] == {"plan": "pro"}


@pytest.mark.parametrize(
    ("condition", "value", "matches"),
    [
        (["POST", "PUT"], "PUT", True),
        (["POST", "PUT"], "GET", False),
        ({"prefix": "/api/"}, "/api/x", True),
        ({"prefix": "/api/"}, 3, False),
        ({"min": 200, "max": 299}, 204, True),
        ({"min": 200, "max": 299}, 300, False),
        ({"exists": True}, "x", True),
        ({"exists": False}, None, True),
        ({"not": ["GET", "HEAD"]}, "POST", True),
        ({"not": ["GET", "HEAD"]}, "GET", False),
        ({"not": "GET"}, None, False),
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (200, 200.0, True),
        ("5xx", 503, True),
        ("5xx", "5xx", True),
    ],
)
def test_where_condition_forms(condition: object, value: object, matches: bool) -> None:
    """Lists, prefix, min/max, exists, not, status classes; a bool is never a number."""
    attrs = {"enduser.id": "u"} | ({} if value is None else {"a": value})
    rule = Rule(event="e", where={"a": condition})
    assert bool(translated([rule], span(attributes=attrs))) is matches


def test_log_rules_match_untagged_records_by_body_and_attributes() -> None:
    """signal = "log": the body and attributes of an untagged record; spans are untouched."""
    rules = RuleSet(
        [Rule(event="exported {log.body}", signal="log", body="report", properties=["fmt"])]
    )
    attrs = {"user.id": "usr_5", "fmt": "pdf", "other": 1}
    record = LogRecord(body="report", attributes=attrs)
    result = translate_log(record, rules=rules)
    assert result is not None
    assert events([result]) == [("exported report", "usr_5", {"fmt": "pdf"})]
    assert translate_log(LogRecord(body="other", attributes=attrs), rules=rules) is None
    assert translate_span(span(attributes=attrs), rules=rules) == []


# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event": ""}, "event"),
        ({"event": "{a!r}"}, "event"),
        ({"event": "{a"}, "event"),
        ({"event": "e", "name": 3}, "name"),
        ({"event": "e", "signal": "metric"}, "signal"),
        ({"event": "e", "kind": "srv"}, "kind"),
        ({"event": "e", "status": ["ok", "failed"]}, "status"),
        ({"event": "e", "span_name": []}, "span_name"),
        ({"event": "e", "body": "x"}, "body"),
        ({"event": "e", "signal": "log", "kind": "server"}, "kind"),
        ({"event": "e", "where": [("a", 1)]}, "where"),
        ({"event": "e", "where": {"a": None}}, "where['a']"),
        ({"event": "e", "where": {"a": []}}, "where['a']"),
        ({"event": "e", "where": {"a": {"prefx": "/"}}}, "where['a']"),
        ({"event": "e", "where": {"a": {"min": "1"}}}, "where['a'].min"),
        ({"event": "e", "user": []}, "user"),
        ({"event": "e", "properties": ["app.plan", 3]}, "properties"),
        ({"event": "e", "properties": {"plan": 1}}, "properties"),
    ],
)
def test_bad_rule_fields_raise_naming_the_rule_and_field(
    fields: dict[str, Any], field: str
) -> None:
    """Rule(...) refuses a bad field at once: a ValueError naming the rule and the field."""
    with pytest.raises(ValueError, match=r"^rule '[^']*': " + re.escape(field) + ": "):
        Rule(**fields)


def test_properties_are_never_everything_by_default() -> None:
    """With no properties listed, none of the span's attributes is copied."""
    assert events(translated([Rule(event="e")], span()))[0][2] == {}


def test_rule_is_a_frozen_comparable_value() -> None:
    """A Rule cannot be changed, compares by value, and normalises lists to tuples."""
    rule = Rule(event="e", kind=["server"], properties=["a"])
    assert rule == Rule(event="e", kind=("server",), properties=("a",))
    assert rule.kind == ("server",)
    with pytest.raises(AttributeError):
        rule.event = "other"  # type: ignore[misc]
    same = Rule(event="e", kind="server", properties=("a",), where={"x": 1})
    assert hash(same) == hash(Rule(event="e", kind="server", properties=["a"], where={"x": 1}))
    assert len({rule, Rule(event="e", kind=["server"], properties=["a"])}) == 1


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rule]]\nevent = "a"\n[[rule]]\nname = "b"\nevent = "x"\nkind = "s"\n',
            "rule 2 (b): kind: ",
        ),
        ('[[rule]]\nevent = "a"\nevnt = "x"\n', "rule 1: unknown field 'evnt'"),
        ('[[rule]]\nname = "n"\n', "rule 1 (n): event: is required"),
        ('[[rules]]\nevent = "a"\n', "unknown top-level key 'rules'"),
        ('user = 3\n[[rule]]\nevent = "a"\n', "user: must be a list of attribute names"),
        ("rule = 3\n", "rules are [[rule]] tables"),
        ("[[rule]\n", "not valid TOML"),
        ('[[rule]]\nevent = "a"\nwhere = { "x" = { min = "1" } }\n', "rule 1: where['x'].min: "),
    ],
)
def test_rules_file_errors_name_the_file_rule_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    """load_rules raises a ValueError naming the file, the rule (number and name), the field."""
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ")) as raised:
        load_rules(path)
    assert message in str(raised.value)


def _write_yaml(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _yaml_block_of_the_rules_page() -> str:
    (block,) = re.findall(r"^```yaml\n(.*?)^```", (DOCS / "rules.md").read_text(), re.M | re.S)
    return block


def test_yaml_rules_file_is_read_like_the_toml_one(tmp_path: Path) -> None:
    """docs/rules.md's YAML block (*.yaml or *.yml) loads to exactly the rules of
    examples/rules.toml."""
    pytest.importorskip("yaml", reason="PyYAML: the yaml extra")
    toml_rules = load_rules(EXAMPLES / "rules.toml")
    for name in ("rules.yaml", "rules.YML"):
        path = _write_yaml(tmp_path, _yaml_block_of_the_rules_page(), name)
        assert load_rules(path) == toml_rules
    assert load_rules(_write_yaml(tmp_path, "")) == ()  # an empty file is no rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rule:\n  - event: a\n  - name: b\n    event: x\n    kind: s\n", "rule 2 (b): kind: "),
        ("rule:\n  - event: a\n    evnt: x\n", "rule 1: unknown field 'evnt'"),
        ("rule:\n  - event: a\n    200: x\n", "rule 1: unknown field 200"),
        ("rules:\n  - event: a\n", "unknown top-level key 'rules'"),
        ("- event: a\n", "a rules file is a mapping"),
        ("1: 2\n", "a rules file is a mapping"),
        ("rule: [{event: a, where: {day: 2026-01-02}}]\n", "rule 1: where['day']: "),
        ("rule: [\n", "not valid YAML"),
        ("rule: !!python/object:os.system {}\n", "not valid YAML"),  # safe_load only
        # A key given twice: TOML refuses it, YAML would keep the last one silently.
        ("rule:\n  - event: a\n    event: b\n", "the key 'event' is given twice"),
        ("user: [a]\nuser: [b]\nrule: []\n", "the key 'user' is given twice"),
    ],
)
def test_yaml_rules_file_errors_name_the_file_rule_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    """A YAML rules file is checked as a TOML one: a ValueError naming file, rule, field."""
    pytest.importorskip("yaml", reason="PyYAML: the yaml extra")
    path = _write_yaml(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ")) as raised:
        load_rules(path)
    assert message in str(raised.value)


def test_yaml_rules_without_pyyaml_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PyYAML, a YAML rules file is a ValueError naming the extra; TOML still loads."""
    import sys

    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    path = _write_yaml(tmp_path, "rule: []\n")
    with pytest.raises(ValueError, match=re.escape("pip install 'vf-otel[yaml]'")):
        load_rules(path)
    assert load_rules(EXAMPLES / "rules.toml")


def test_missing_rules_file_is_a_value_error(tmp_path: Path) -> None:
    """A path that cannot be read is a ValueError naming it."""
    with pytest.raises(ValueError, match="cannot read the rules"):
        load_rules(tmp_path / "missing.toml")


def test_file_level_user_is_the_default_a_rule_may_override(tmp_path: Path) -> None:
    """The top-level user list applies to every rule that names none."""
    path = _write(
        tmp_path,
        'user = ["app.user"]\n[[rule]]\nevent = "a"\n[[rule]]\nevent = "b"\nuser = ["u"]\n',
    )
    assert [rule.user for rule in load_rules(path)] == [("app.user",), ("u",)]


def test_example_rules_file_loads() -> None:
    """examples/rules.toml (used by the docs and the process test) is valid."""
    assert [rule.label for rule in load_rules(EXAMPLES / "rules.toml")] == [
        "signup",
        "report viewed",
    ]


# -- configuration --------------------------------------------------------------------


def test_rules_option_takes_a_path_or_rules() -> None:
    """rules= accepts a str or Path (loaded) or a sequence of Rule; anything else is refused."""
    path = EXAMPLES / "rules.toml"
    expected = load_rules(path)
    assert resolve_settings(environ={}, rules=str(path)).rules == expected
    assert resolve_settings(environ={}, rules=path).rules == expected
    assert resolve_settings(environ={}, rules=[SIGNUP]).rules == (SIGNUP,)
    with pytest.raises(ValueError, match=r"rules\[1\] must be a vf_otel.Rule"):
        resolve_settings(environ={}, rules=[SIGNUP, {"event": "e"}])
    with pytest.raises(ValueError, match="rules must be a rules file path"):
        resolve_settings(environ={}, rules=3)


def test_bad_rules_file_in_the_environment_warns_and_loads_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken VIBEFOLLOW_RULES file: a warning naming the rule and field, no rules."""
    path = _write(tmp_path, '[[rule]]\nevent = "a"\nkind = "s"\n')
    with caplog.at_level(logging.WARNING, logger="vf_otel.config"):
        settings = resolve_settings(environ={"VIBEFOLLOW_RULES": str(path)})
    assert settings.rules == ()
    assert "VIBEFOLLOW_RULES" in caplog.text
    assert "rule 1: kind: " in caplog.text


def test_the_logging_handler_refuses_rules() -> None:
    """VibefollowHandler(rules=...) is a ValueError: it reads tags, rules would do nothing."""
    with pytest.raises(ValueError, match="VibefollowHandler reads vf_\\* tags only"):
        vf_otel.VibefollowHandler(api_key="sk_test_" + "0" * 32, rules=[SIGNUP])


def test_bad_rules_argument_fails_the_exporter_construction(tmp_path: Path) -> None:
    """An exporter given a broken rules file raises at construction, naming the field."""
    path = _write(tmp_path, '[[rule]]\nevent = "a"\nstatus = "fine"\n')
    with pytest.raises(ValueError, match="rule 1: status: "):
        vf_otel.VibefollowSpanExporter(api_key="sk_test_" + "0" * 32, rules=path)


# -- over real HTTP -------------------------------------------------------------------


def test_span_exporter_delivers_rule_events_and_counts_missing_users(
    server: VibefollowServer,
) -> None:
    """Through the exporter: the rule's event arrives; a match with no user is counted as
    missing_user and reported to on_error, naming the rule; other spans send nothing."""
    reported: list[str] = []
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=server.api_key,
        base_url=server.base_url,
        rules=EXAMPLES / "rules.toml",
        on_error=lambda exc, _events: reported.append(str(exc)),
    )
    try:
        anonymous = {k: v for k, v in SIGNUP_ATTRS.items() if k != "enduser.id"}
        health = {"http.request.method": "GET", "http.route": "/health", "enduser.id": "u"}
        assert exporter.export([span(), span("GET /health", health)]) is SpanExportResult.SUCCESS
        assert exporter.export([span(attributes=anonymous)]) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in server.events] == [
        ("user_signed_up", "usr_1", {"plan": "pro", "route": "/api/signup"})
    ]
    assert exporter.stats().dropped == {"missing_user": 1}
    assert len(reported) == 1
    assert "rule 'signup' matched but no user attribute is set" in reported[0]


def test_configure_passes_rules_and_the_context_user_fills_them(
    server: VibefollowServer,
) -> None:
    """configure(rules=...): an untagged span inside vf_otel.user(...) becomes the rule's
    event for that user (the user span processor records it as vf.context_user)."""
    provider = TracerProvider(shutdown_on_exit=False)
    logger = logging.getLogger("tests.rules.configure")
    logger.propagate = False
    configured = vf_otel.configure(
        api_key=server.api_key,
        base_url=server.base_url,
        logger=logger,
        tracer_provider=provider,
        rules=[Rule(event="checkout_completed", span_name="checkout")],
    )
    try:
        tracer = provider.get_tracer("tests")
        with vf_otel.user("usr_3"), tracer.start_as_current_span("checkout"):
            pass
        with tracer.start_as_current_span("browse"):
            pass
    finally:
        configured.shutdown()
        logger.handlers.clear()
        logger.propagate = True
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("checkout_completed", "usr_3")
    ]


def test_log_exporter_applies_log_rules(server: VibefollowServer) -> None:
    """Through the OTel log pipeline: an untagged record a log rule names becomes its event."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    rule = Rule(event="invoice_paid", signal="log", body="invoice paid", properties=["amount"])
    exporter = vf_otel.VibefollowLogExporter(
        api_key=server.api_key, base_url=server.base_url, rules=[rule]
    )
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SDK 1.45's LoggingHandler
        handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger("tests.rules.billing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("invoice paid", extra={"user.id": "usr_4", "amount": 12, "card": "4242"})
        logger.info("invoice sent", extra={"user.id": "usr_4"})
        assert exporter.force_flush(10_000)
    finally:
        logger.removeHandler(handler)
        handler.close()
        exporter.shutdown()
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in server.events] == [
        ("invoice_paid", "usr_4", {"amount": 12})
    ]


# -- the index, against a plain scan -----------------------------------------------------


def test_rules_indexed_by_any_equality_attribute_keep_their_order() -> None:
    """Rules indexed by an attribute other than http.route, by a list of values, by span
    name and not at all: the first matching one in the given order wins."""
    rules = [
        Rule(event="by_feature", where={"app.feature": ["export", "import"]}),
        Rule(event="by_name", span_name="POST /api/signup"),
        Rule(event="scan", where={"http.response.status_code": {"min": 200}}),
    ]
    attrs = SIGNUP_ATTRS | {"app.feature": "import"}
    assert events(translated(rules, span(attributes=attrs)))[0][0] == "by_feature"
    assert events(translated(rules, span()))[0][0] == "by_name"
    assert events(translated(rules, span("other")))[0][0] == "scan"
    assert events(translated(rules[::-1], span(attributes=attrs)))[0][0] == "scan"


# -- the docs -----------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_toml_block_of_the_rules_page_loads(tmp_path: Path) -> None:
    """Each complete TOML example in docs/rules.md is a valid rules file."""
    text = (DOCS / "rules.md").read_text()
    blocks = [b for b in re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S) if "--8<--" not in b]
    assert len(blocks) >= 3
    for block in blocks:
        assert load_rules(_write(tmp_path, block)), block


def test_documented_load_error_is_the_real_one(tmp_path: Path) -> None:
    """The error docs/rules.md shows is what a bad kind in a second rule raises."""
    text = (DOCS / "rules.md").read_text()
    (shown,) = re.findall(r"^ValueError: rules\.toml: (.*)$", text, re.M)
    path = _write(
        tmp_path, '[[rule]]\nevent = "a"\n[[rule]]\nname = "signup"\nevent = "b"\nkind = "srv"\n'
    )
    with pytest.raises(ValueError, match=re.escape(shown)) as raised:
        load_rules(path)
    assert str(raised.value) == f"{path}: {shown}"


def test_a_span_without_a_kind_matches_only_rules_that_name_none() -> None:
    """A span shape with no ``kind`` (as a relay may decode) never raises: rules naming a
    kind do not match it, the others do."""

    @dataclass
    class Status:
        status_code: StatusCode

    @dataclass
    class KindlessSpan:
        name: str
        attributes: Mapping[str, Any]
        status: Status

    made = KindlessSpan("POST /api/signup", SIGNUP_ATTRS, Status(StatusCode.UNSET))
    assert RuleSet([SIGNUP]).match_span(made) is None
    match = RuleSet([SIGNUP, Rule(event="any")]).match_span(made)
    assert match is not None
    assert match.name == "any"
