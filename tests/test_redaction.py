"""Secrets never leave the process: property redaction, the API key, TLS verification."""

from __future__ import annotations

import inspect
import logging
import ssl
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import vf_otel
from vf_otel._config import DEFAULTS, resolve_settings
from vf_otel._event.build import make_event
from vf_otel._event.values import DEFAULT_REDACTOR, REDACTED, Redactor, key_words
from vf_otel.testing import VibefollowServer

from .conftest import wait_until

SECRET = "sk_live_0123456789abcdefSECRETSECRETSECRET"
R = REDACTED


@pytest.fixture(scope="module")
def server() -> Iterator[VibefollowServer]:
    """One local Vibefollow API for the module; each test clears it."""
    with VibefollowServer() as running:
        yield running


@pytest.fixture
def api(server: VibefollowServer) -> VibefollowServer:
    """The module's server, emptied."""
    server.clear()
    return server


def _log_event(api: VibefollowServer, app_logger: logging.Logger, **extra: Any) -> None:
    handler = vf_otel.VibefollowHandler(api_key=api.api_key, base_url=api.base_url)
    app_logger.addHandler(handler)
    try:
        app_logger.info("signup", extra={"vf_user": "usr_1", **extra})
        assert handler.flush(5.0)
    finally:
        handler.close()


# -- matching -----------------------------------------------------------------------------


def test_flat_properties_redacts_as_properties_does_after_keys_are_learnt() -> None:
    """The shortcut for flat dicts (keys found clean before) still catches a new secret key."""
    redactor = Redactor(["plan_code"])
    clean = {"plan": "pro", "seats": 3}
    assert redactor.flat_properties(clean) is clean
    assert redactor.flat_properties(dict(clean)) == clean  # now from the learnt keys
    mixed = {"plan": "pro", "apiKey": SECRET, "plan_code": "x"}
    assert redactor.flat_properties(mixed) == redactor.properties(mixed)
    assert redactor.flat_properties(mixed) == {"plan": "pro", "apiKey": R, "plan_code": R}
    assert mixed["apiKey"] == SECRET  # the caller's dict is not changed
    off = Redactor(enabled=False)
    assert off.flat_properties(mixed) is mixed


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("password", ("password",)),
        ("userPassword", ("user", "password")),
        ("X-Api-Key", ("x", "api", "key")),
        ("xAPIKey", ("x", "api", "key")),
        ("card.number", ("card", "number")),
        ("SSN", ("ssn",)),
        ("__", ()),
    ],
)
def test_key_words_split_camel_snake_kebab(key: str, words: tuple[str, ...]) -> None:
    """Keys are compared word by word, whatever their casing style."""
    assert key_words(key) == words


def redacted(redactor: Redactor, key: str) -> bool:
    """Whether a value under ``key`` goes out replaced."""
    return redactor.properties({key: "value"})[key] == R


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "userPassword",
        "password-hash",
        "passwd",
        "pwd",
        "secret",
        "clientSecret",
        "token",
        "access_token",
        "refreshToken",
        "api_key",
        "apiKey",
        "X-API-KEY",
        "apikey",
        "Authorization",
        "auth",
        "authToken",
        "cookie",
        "Set-Cookie",
        "session",
        "sessionId",
        "card",
        "card_number",
        "cardNumber",
        "cc_number",
        "cvv",
        "CVC",
        "ssn",
        "private_key",
        "privateKey",
        "pass_word",
    ],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    """Every default pattern matches in any casing style and inside longer keys."""
    assert redacted(DEFAULT_REDACTOR, key)


@pytest.mark.parametrize(
    "key",
    ["plan", "author", "tokens_used", "discard", "keyboard", "email", "passage", "oauth_provider"],
)
def test_ordinary_keys_are_kept(key: str) -> None:
    """A pattern matches whole words, not any substring."""
    assert not redacted(DEFAULT_REDACTOR, key)


def test_nested_mappings_and_lists_are_redacted_without_touching_the_input() -> None:
    """Redaction recurses into dicts and lists and copies only what changes."""
    inner = {"password": "p", "ok": 1}
    props = {"plan": "pro", "db": inner, "items": [{"token": "t"}, 3], "flat": [1, 2]}
    out = DEFAULT_REDACTOR.properties(props)
    assert out == {
        "plan": "pro",
        "db": {"password": R, "ok": 1},
        "items": [{"token": R}, 3],
        "flat": [1, 2],
    }
    assert inner == {"password": "p", "ok": 1}
    assert out["flat"] is props["flat"]


def test_clean_properties_are_returned_as_they_are() -> None:
    """The common case allocates nothing: the same dict comes back."""
    props = {"plan": "pro", "seats": 3, "nested": {"a": [1, {"b": 2}]}}
    assert DEFAULT_REDACTOR.properties(props) is props


def test_top_level_email_trait_is_never_redacted() -> None:
    """The email upsert field survives even a pattern naming it; nested emails do not."""
    redactor = Redactor(["email"])
    traits = {"email": "a@example.com", "contact": {"email": "b@example.com"}, "pwd": "x"}
    assert redactor.traits(traits) == {"email": "a@example.com", "contact": {"email": R}, "pwd": R}


def test_disabled_redactor_changes_nothing() -> None:
    """redact=False sends every value as given."""
    redactor = Redactor(enabled=False)
    assert not redacted(redactor, "password")
    props = {"password": "p"}
    assert redactor.properties(props) is props


def test_make_event_redacts_by_default_and_not_when_told() -> None:
    """make_event applies the default redaction; redactor=None defers it to the caller."""
    fields: dict[str, Any] = {
        "name": "x",
        "user_id": "u",
        "properties": {"token": "t"},
        "traits": {"cvv": "1"},
        "occurred_at": datetime.now(UTC),
        "event_id": "e",
    }
    event = make_event(**fields)
    assert isinstance(event, vf_otel.Event)
    assert event.properties == {"token": R}
    assert event.traits == {"cvv": R}
    raw = make_event(**fields, redactor=None)
    assert isinstance(raw, vf_otel.Event)
    assert raw.properties == {"token": "t"}


# -- settings -----------------------------------------------------------------------------


def test_settings_default_to_redacting() -> None:
    """Redaction is on by default with no extra patterns."""
    settings = resolve_settings(environ={})
    assert settings.redact is True
    assert settings.redact_keys == ()


def test_env_adds_patterns_and_can_turn_redaction_off() -> None:
    """VIBEFOLLOW_REDACT_KEYS is comma-separated; VIBEFOLLOW_REDACT=false disables."""
    env = {"VIBEFOLLOW_REDACT_KEYS": "iban, otp,,", "VIBEFOLLOW_REDACT": "false"}
    settings = resolve_settings(environ=env)
    assert settings.redact_keys == ("iban", "otp")
    assert settings.redact is False


@pytest.mark.parametrize(("name", "value"), [("redact", "yes"), ("redact_keys", [1, 2])])
def test_bad_redaction_arguments_raise(name: str, value: object) -> None:
    """A non-bool redact or non-str patterns are refused at construction."""
    with pytest.raises(ValueError, match=name):
        resolve_settings(environ={}, **{name: value})


# -- end to end ---------------------------------------------------------------------------


def test_handler_redacts_properties_and_traits_on_the_wire(
    api: VibefollowServer, app_logger: logging.Logger
) -> None:
    """A logged password, nested token and trait cookie arrive as "[redacted]"; email stays."""
    props = {"plan": "pro", "password": "hunter2", "req": {"headers": {"Authorization": "B x"}}}
    traits = {"email": "a@example.com", "sessionCookie": "abc", "name": "Ann"}
    _log_event(api, app_logger, vf_properties=props, vf_traits=traits)
    (event,) = api.events
    assert event["properties"] == {
        "plan": "pro",
        "password": R,
        "req": {"headers": {"Authorization": R}},
    }
    (upsert,) = api.users
    assert upsert == {
        "external_user_id": "usr_1",
        "email": "a@example.com",
        "traits": {"sessionCookie": R, "name": "Ann"},
    }
    assert props["password"] == "hunter2"
    assert "hunter2" not in str([r.body for r in api.requests])


def test_handler_honours_the_environment(
    api: VibefollowServer, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extra patterns from VIBEFOLLOW_REDACT_KEYS apply to the handler."""
    monkeypatch.setenv("VIBEFOLLOW_REDACT_KEYS", "iban")
    _log_event(api, app_logger, vf_properties={"userIban": "DE00", "password": "p", "n": 1})
    assert api.events[0]["properties"] == {"userIban": R, "password": R, "n": 1}


def test_handler_sends_secrets_when_redaction_is_off(
    api: VibefollowServer, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VIBEFOLLOW_REDACT=false is an explicit opt-out."""
    monkeypatch.setenv("VIBEFOLLOW_REDACT", "false")
    _log_event(api, app_logger, vf_properties={"password": "p"})
    assert api.events[0]["properties"] == {"password": "p"}


def _span_exporter(api: VibefollowServer) -> vf_otel.VibefollowSpanExporter:
    return vf_otel.VibefollowSpanExporter(api_key=api.api_key, base_url=api.base_url)


def _send_span(exporter: vf_otel.VibefollowSpanExporter, **attrs: Any) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("tests").start_as_current_span("checkout", attributes=attrs):
        pass
    assert exporter.force_flush(5000)


@pytest.mark.parametrize(("env", "expected"), [("true", R), ("false", "s3cr3t")])
def test_span_exporter_redacts_per_its_settings(
    api: VibefollowServer, monkeypatch: pytest.MonkeyPatch, env: str, expected: str
) -> None:
    """vf.properties.* and vf.traits.* of spans follow the exporter's redact setting."""
    monkeypatch.setenv("VIBEFOLLOW_REDACT", env)
    exporter = _span_exporter(api)
    try:
        _send_span(
            exporter,
            **{"vf.user": "u", "vf.properties.api_key": "s3cr3t", "vf.properties.plan": "pro"},
            **{"vf.traits.email": "a@example.com", "vf.traits.password": "s3cr3t"},
        )
    finally:
        exporter.shutdown()
    assert api.events[0]["properties"] == {"api_key": expected, "plan": "pro"}
    assert api.users[0]["email"] == "a@example.com"
    assert api.users[0]["traits"] == {"password": expected}


def test_log_exporter_redacts(api: VibefollowServer) -> None:
    """Records from the OTel log pipeline are redacted like the handler's."""
    exporter = vf_otel.VibefollowLogExporter(api_key=api.api_key, base_url=api.base_url)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SDK 1.45 deprecates it
        handler = LoggingHandler(logger_provider=provider)
    try:
        record = logging.makeLogRecord(
            {"name": "app", "msg": "login", "levelno": logging.INFO, "levelname": "INFO"}
        )
        record.vf_user = "u"
        record.vf_properties = {"password": "p", "ok": True}
        handler.handle(record)
        assert exporter.force_flush(5000)
    finally:
        handler.close()
        exporter.shutdown()
    assert api.events[0]["properties"] == {"password": R, "ok": True}


# -- API key and TLS ----------------------------------------------------------------------


def test_api_key_is_absent_from_exporter_reprs_and_errors(
    api: VibefollowServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither exporter's repr, its errors nor its log output carry a refused key."""
    caplog.set_level(logging.DEBUG, logger="vf_otel")
    errors: list[BaseException] = []
    span = vf_otel.VibefollowSpanExporter(
        api_key=SECRET, base_url=api.base_url, on_error=lambda exc, events: errors.append(exc)
    )
    logs = vf_otel.VibefollowLogExporter(api_key=SECRET, base_url=api.base_url)
    try:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(span))
        with provider.get_tracer("t").start_as_current_span("x", attributes={"vf.user": "u"}):
            pass
        span.force_flush(2000)
        texts = [repr(span), str(span), repr(logs), repr(span.stats()), repr(logs.stats())]
        texts += [repr(e) + str(e) for e in errors] + [caplog.text]
        assert all(SECRET not in text for text in texts)
        assert api.rejected >= 1  # the server refused the key: the error path really ran
    finally:
        span.shutdown()
        logs.shutdown()


def test_https_client_verifies_certificates(
    monkeypatch: pytest.MonkeyPatch, app_logger: logging.Logger
) -> None:
    """The HTTP client the handler really sends with requires a valid certificate and host."""
    made: list[httpx.Client] = []
    original = httpx.Client.__init__

    def recording(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        assert kwargs.get("verify", True) is True
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(httpx.Client, "__init__", recording)
    # Nothing listens on port 9 of loopback: the attempt fails fast, but builds the client.
    handler = vf_otel.VibefollowHandler(
        api_key=SECRET, base_url="https://127.0.0.1:9", max_retries=0, shutdown_timeout=0.5
    )
    app_logger.addHandler(handler)
    try:
        app_logger.info("e", extra={"vf_user": "u"})
        handler.flush(0.0)  # sent now (it fails): the client is built for it
        wait_until(lambda: made)
    finally:
        handler.close()
    assert made
    for client in made:
        context: ssl.SSLContext = client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname


def test_no_option_turns_tls_verification_off() -> None:
    """There is no verify= option anywhere in the public surface."""
    assert not any("verify" in name or "ssl" in name for name in DEFAULTS)
    for public in (
        vf_otel.VibefollowHandler,
        vf_otel.VibefollowSpanExporter,
        vf_otel.VibefollowLogExporter,
        vf_otel.configure,
    ):
        assert not any("verify" in p or "ssl" in p for p in inspect.signature(public).parameters)


#: Ordinary product data a SaaS sends (issue 10): none of it may arrive as "[redacted]".
PRODUCT_KEYS = (
    "plan",
    "seats",
    "session_count",
    "sessions",
    "session_length_s",
    "session_duration",
    "auth_provider",
    "auth_method",
    "oauth_provider",
    "sso_enabled",
    "card_brand",
    "card_last4",
    "card_country",
    "card_expiry_month",
    "cards_added",
    "tokens_used",
    "token_count",
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "token_limit",
    "author",
    "author_id",
    "keyboard_layout",
    "feature",
    "step",
    "to",
    "from",
    "daysLeft",
    "invitedEmail",
    "trial_days",
    "mrr",
    "currency",
    "amount_cents",
    "coupon",
    "referrer",
    "utm_source",
    "utm_campaign",
    "browser",
    "os",
    "device_type",
    "country",
    "locale",
    "timezone",
    "team_size",
    "role",
    "workspace_id",
    "project_count",
    "invoice_id",
    "subscription_tier",
    "billing_interval",
    "is_admin",
    "login_count",
    "last_login_days",
    "signup_source",
    "report_format",
    "export_rows",
    "api_calls",
    "api_version",
    "key_count",
    "primary_key_type",
    "sort_key",
)
#: Keys whose values are secrets: every one is redacted.
SECRET_KEYS = (
    "password",
    "newPassword",
    "db_password",
    "passphrase",
    "secret",
    "client_secret",
    "stripeSecret",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "access_token",
    "refreshToken",
    "bearer_token",
    "id_token",
    "auth_token",
    "csrf_token",
    "github_token",
    "token",
    "session_token",
    "sessionId",
    "session",
    "auth",
    "authorization",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "credentials",
    "card",
    "card_number",
    "cardNumber",
    "cc_number",
    "cvv",
    "CVC",
    "ssn",
    "private_key",
    "privateKeyPem",
    "jwt",
    "pwd",
    "otp",
)


def test_at_least_fifty_product_property_names_arrive_as_written() -> None:
    """Broad words (session, auth, card, token) redact only as the whole key or a
    credential compound: the product data beside them passes untouched."""
    assert len(PRODUCT_KEYS) >= 50
    props = {key: f"value of {key}" for key in PRODUCT_KEYS}
    assert DEFAULT_REDACTOR.properties(props) == props
    assert [key for key in PRODUCT_KEYS if redacted(DEFAULT_REDACTOR, key)] == []


def test_the_secret_names_are_all_redacted() -> None:
    """Passwords, secrets, API keys, tokens, session ids, cookies, card numbers, CVVs,
    SSNs and private keys are replaced, whatever their casing style."""
    props = dict.fromkeys(SECRET_KEYS, "s3cr3t")
    assert set(DEFAULT_REDACTOR.properties(props).values()) == {R}
