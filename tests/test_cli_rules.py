"""``vf-otel rules check`` and ``rules test``: output and exit statuses."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vf_otel._cli import ExitCode, main
from vf_otel._sources.otlp import decode_document as decode

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RULES = str(EXAMPLES / "rules.toml")
TRACE = "5b8efff798038103d269b633813fc60c"
WAIT = 60.0  # seconds: a bound on the subprocess, never an expected duration


def _value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 as a string, as the OTLP JSON spec says
    return {"stringValue": value}


def _attrs(values: dict[str, object]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in values.items()]


def otlp_span(name: str, span_id: str, attrs: dict[str, object], **fields: Any) -> dict[str, Any]:
    """One span in the OTLP JSON encoding: hex ids, enums as ints, int64 as strings."""
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": name,
        "kind": 2,  # SERVER
        "startTimeUnixNano": "1700000000123456789",
        "endTimeUnixNano": "1700000000223456789",
        "attributes": _attrs(attrs),
        **fields,
    }


SIGNUP = {
    "http.request.method": "POST",
    "http.route": "/api/signup",
    "http.response.status_code": 201,
    "enduser.id": "usr_1",
    "app.plan": "pro",
    "app.email": "someone@example.com",
}
BATCH = {
    "resourceSpans": [
        {
            "resource": {"attributes": _attrs({"service.name": "shop"})},
            "scopeSpans": [
                {
                    "scope": {"name": "opentelemetry.instrumentation.flask"},
                    "spans": [
                        otlp_span("POST /api/signup", "eee19b7ec3c1b174", SIGNUP),
                        otlp_span("GET /health", "eee19b7ec3c1b175", {"http.route": "/health"}),
                        otlp_span(
                            "POST /api/signup",
                            "eee19b7ec3c1b176",
                            {k: v for k, v in SIGNUP.items() if k != "enduser.id"},
                        ),
                        otlp_span(
                            "export",
                            "eee19b7ec3c1b177",
                            {"vf.event": "report_exported", "vf.user": "usr_2"},
                            unknownField={"ignored": True},
                        ),
                    ],
                }
            ],
        }
    ]
}


def _write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_rules_test_shows_each_spans_event_or_why_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line per span: the rule and the event (allow-listed properties only), no event,
    a refusal naming the rule, a tagged span; then the totals. Exit 0."""
    spans = _write(tmp_path, "spans.json", BATCH)
    assert main(["rules", "test", RULES, spans]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        'span "POST /api/signup": rule 1 (signup) -> "user_signed_up" for "usr_1" '
        '{"plan": "pro", "route": "/api/signup"}',
        'span "GET /health": no event',
        'span "POST /api/signup": rule 1 (signup) -> refused (missing_user): rule '
        "'signup' matched but no user attribute is set (enduser.id, user.id)",
        'span "export": tagged -> "report_exported" for "usr_2" {}',
        "4 spans, 0 log records: 2 events (1 by rules), 1 refused",
    ]


def test_rules_test_json_gives_the_wire_events_and_the_span_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one object per span, with each event as it would be sent (the time is the
    span's start)."""
    spans = _write(tmp_path, "spans.json", BATCH)
    assert main(["rules", "test", RULES, spans, "--json"]) == ExitCode.OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == [
        "POST /api/signup",
        "GET /health",
        "POST /api/signup",
        "export",
    ]
    assert lines[0]["results"] == [
        {
            "origin": "rule 1 (signup)",
            "event": {
                "external_user_id": "usr_1",
                "name": "user_signed_up",
                "properties": {"plan": "pro", "route": "/api/signup"},
                "occurred_at": "2023-11-14T22:13:20.123Z",
            },
        }
    ]
    assert lines[1]["results"] == []


def test_rules_test_reads_log_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """{"resourceLogs": ...}: untagged records go through the log rules."""
    rules = _write(
        tmp_path,
        "rules.toml",
        '[[rule]]\nevent = "invoice_paid"\nsignal = "log"\nbody = "invoice paid"\n'
        'properties = ["amount"]\n',
    )
    record = {
        "timeUnixNano": "1700000000000000000",
        "body": {"stringValue": "invoice paid"},
        "attributes": _attrs({"user.id": "usr_4", "amount": 12, "card": "4242"}),
    }
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    assert main(["rules", "test", rules, _write(tmp_path, "logs.json", logs)]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        'log "invoice paid": rule 1 (invoice_paid) -> "invoice_paid" for "usr_4" {"amount": 12}',
        "0 spans, 1 log record: 1 event (1 by rules), 0 refused",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "Expecting value"),
        ({"spans": []}, 'expected {"resourceSpans": [...]}'),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "AAAA", "spanId": "x"}]}]}]},
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex digits",
        ),
        (
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [otlp_span("x", "eee19b7ec3c1b174", {}, kind=9)]}]}
                ]
            },
            "unknown kind or status code",
        ),
        (
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    otlp_span("x", "eee19b7ec3c1b174", {}, startTimeUnixNano="soon")
                                ]
                            }
                        ]
                    }
                ]
            },
            "startTimeUnixNano: expected an integer",
        ),
    ],
    ids=["not-json", "not-otlp", "base64-id", "bad-kind", "bad-time"],
)
def test_rules_test_refuses_telemetry_it_cannot_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, message: str
) -> None:
    """A file that is not OTLP JSON: exit 1, a message saying where, nothing on stdout."""
    spans = _write(tmp_path, "spans.json", document)
    assert main(["rules", "test", RULES, spans]) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_rules_test_with_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A telemetry file that cannot be opened: exit 1, the reason on stderr."""
    assert main(["rules", "test", RULES, str(tmp_path / "none.json")]) == ExitCode.FAILED
    assert "No such file or directory" in capsys.readouterr().err


def test_rules_test_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TELEMETRY '-' reads the batch from standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(BATCH)))
    assert main(["rules", "test", RULES, "-"]) == ExitCode.OK
    assert capsys.readouterr().out.endswith(
        "4 spans, 0 log records: 2 events (1 by rules), 1 refused\n"
    )


def test_invalid_rules_exit_4_naming_the_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check and test: an invalid rules file exits 4 (bad configuration), saying which
    rule and which field; nothing on stdout."""
    rules = _write(tmp_path, "rules.toml", '[[rule]]\nname = "s"\nevent = "e"\nkind = "srv"\n')
    spans = _write(tmp_path, "spans.json", BATCH)
    for argv in (["rules", "check", rules], ["rules", "test", rules, spans]):
        assert main(argv) == ExitCode.BAD_CONFIG
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"{rules}: rule 1 (s): kind: each value must be one of" in captured.err


def test_hex_ids_decode_to_16_and_8_bytes() -> None:
    """Trace and span ids are hex (not base64, as proto3 JSON would read them): the
    decoded span carries the 128-bit and 64-bit ids, so event ids match the exporter's."""
    spans, logs = decode(BATCH)
    assert (spans[0].context.trace_id, spans[0].context.span_id) == (
        int(TRACE, 16),
        0xEEE19B7EC3C1B174,
    )
    assert (spans[0].attributes or {})["http.response.status_code"] == 201  # int64 "201"
    assert logs == []


@pytest.mark.parametrize("argv", [["rules"], ["rules", "check"], ["rules", "test"]])
def test_rules_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help works on rules and each action, and exits 0."""
    assert main([*argv, "--help"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith(f"usage: vf-otel {' '.join(argv)}")


def test_rules_check_lists_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """check: the file's rules, numbered, with what they read and make; exit 0."""
    assert main(["rules", "check", RULES]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == [
        f"{RULES}: 2 rules",
        "  rule 1 (signup): spans -> user_signed_up",
        "  rule 2 (report viewed): spans -> report_viewed",
    ]


@pytest.mark.parametrize("argv", [["rules"], ["rules", "test", RULES], ["rules", "lint", RULES]])
def test_rules_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing action or argument, or an unknown action, is a usage error (exit 2)."""
    assert main(argv) == ExitCode.USAGE
    assert "usage: vf-otel rules" in capsys.readouterr().err


@pytest.mark.slow
def test_rules_test_runs_as_the_installed_command(tmp_path: Path) -> None:
    """``python -m vf_otel rules test`` in a real process prints the same and exits 0."""
    spans = _write(tmp_path, "spans.json", BATCH)
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "vf_otel", "rules", "test", RULES, spans],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith('span "POST /api/signup": rule 1 (signup)')


def test_documented_output_is_the_real_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each ``$ vf-otel rules ...`` console block of docs/rules.md prints what it shows."""
    root = EXAMPLES.parent
    text = (root / "docs" / "rules.md").read_text()
    blocks = re.findall(r"^```console\n\$ vf-otel (rules .*?)\n(.*?)^```", text, re.M | re.S)
    assert blocks
    monkeypatch.chdir(root)
    for command, shown in blocks:
        assert main(command.split()) == ExitCode.OK
        assert capsys.readouterr().out == shown


def test_doctor_shows_the_rules_and_flags_a_broken_rules_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """doctor lists the rules VIBEFOLLOW_RULES loads; a broken file fails it with exit 4,
    naming the rule and field (the exporters would run without rules)."""
    for name in ("VIBEFOLLOW_API_KEY", "VIBEFOLLOW_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    broken = _write(tmp_path, "rules.toml", '[[rule]]\nname = "s"\nevent = "e"\nkind = "srv"\n')
    monkeypatch.setenv("VIBEFOLLOW_RULES", broken)
    assert main(["doctor"]) == ExitCode.BAD_CONFIG
    out = capsys.readouterr().out
    assert "VIBEFOLLOW_RULES is invalid" in out
    assert "rule 1 (s): kind: each value must be one of" in out
    monkeypatch.setenv("VIBEFOLLOW_RULES", RULES)
    assert main(["doctor"]) == ExitCode.NO_API_KEY
    assert "2 rule(s): signup, report viewed" in capsys.readouterr().out


def test_rules_test_needs_no_protobuf() -> None:
    """`vf-otel rules test` reads OTLP/JSON with the relay's decoder but imports no
    protobuf package: it works without the relay extra."""
    code = (
        "import sys; from vf_otel._cli import main; "
        "main(['rules', 'test', sys.argv[1], '-']); "
        "print(sorted(m for m in sys.modules if m.startswith(('google', 'opentelemetry.proto'))))"
    )
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", code, RULES],
        input=json.dumps(BATCH),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
    assert "2 events (1 by rules)" in done.stdout


def test_rules_test_takes_a_yaml_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vf-otel rules test rules.yaml spans.json` (docs/rules.md's YAML form of
    examples/rules.toml) prints exactly what the TOML file does."""
    pytest.importorskip("yaml", reason="PyYAML: the yaml extra")
    page = (EXAMPLES.parent / "docs" / "rules.md").read_text()
    (block,) = re.findall(r"^```yaml\n(.*?)^```", page, re.M | re.S)
    rules_yaml = _write(tmp_path, "rules.yaml", block)
    spans = _write(tmp_path, "spans.json", BATCH)
    assert main(["rules", "test", RULES, spans]) == ExitCode.OK
    from_toml = capsys.readouterr().out
    assert main(["rules", "test", rules_yaml, spans]) == ExitCode.OK
    assert capsys.readouterr().out == from_toml
    assert "user_signed_up" in from_toml
