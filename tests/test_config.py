"""Settings resolution: argument > environment > default, validation, base URL."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from vf_otel import Rule, load_rules
from vf_otel._config import DEFAULTS, ENV_VARS, NO_BASE_URL, Settings, resolve_settings

SECRET = "sk_live_0123456789abcdefSECRETSECRETSECRET"
RULES_FILE = str(Path(__file__).resolve().parent.parent / "examples" / "rules.toml")

# option: (argument value, environment string, value the environment string gives)
PRECEDENCE: dict[str, tuple[Any, str, Any]] = {
    "api_key": ("sk_live_from_argument", "sk_live_from_env", "sk_live_from_env"),
    "base_url": ("https://arg.example.com", "https://env.example.com", "https://env.example.com"),
    "batch_size": (10, "20", 20),
    "flush_interval": (1.5, "2.5", 2.5),
    "max_queue_size": (100, "200", 200),
    "max_queue_bytes": (1_000_000, "2000000", 2_000_000),
    "max_backlog_bytes": (3_000_000, "4000000", 4_000_000),
    "priority_events": (("from_argument",), " b_event, signed up ,", ("b_event", "signed up")),
    "adaptive_batching": (True, "off", False),
    "timeout": (3.0, "4", 4.0),
    "export_timeout": (7, "8.5", 8.5),
    "shutdown_timeout": (1.25, " 2 ", 2.0),
    # 0 and False are falsy: an explicit falsy argument must still win over the env.
    "max_retries": (0, "5", 5),
    "allow_insecure_http": (False, "TRUE", True),
    "redact": (True, "off", False),
    "redact_keys": (("from_argument",), " b_key, a-key ,", ("a-key", "b_key")),
    "spool_path": ("arg/spool.db", "env/spool.db", "env/spool.db"),
    "spool_max_bytes": (5_000_000, "6000000", 6_000_000),
    "enabled": (True, "false", False),
    "debug": (False, "1", True),
    "handle_sigterm": (True, "no", False),
    "rules": ((Rule(event="from_argument"),), RULES_FILE, load_rules(RULES_FILE)),
}


def test_precedence_table_covers_every_option() -> None:
    """The precedence table below names exactly the options in DEFAULTS."""
    assert set(PRECEDENCE) == set(DEFAULTS)
    assert set(ENV_VARS) == set(DEFAULTS)
    assert all(ENV_VARS[name] == "VIBEFOLLOW_" + name.upper() for name in DEFAULTS)


@pytest.mark.parametrize("field", dataclasses.fields(Settings), ids=lambda f: f.name)
def test_settings_field_is_a_valid_option(field: dataclasses.Field[Any]) -> None:
    """Each Settings field is an option: its default in DEFAULTS, passing its own check."""
    assert DEFAULTS[field.name] == field.default
    check = field.metadata["check"]
    if field.default is not None:  # None means "not set" (no API key, no spool)
        assert check(field.name, field.default) == field.default


@pytest.mark.parametrize("name", sorted(PRECEDENCE))
def test_default_when_nothing_given(name: str) -> None:
    """With no argument and no env var, an option takes its default."""
    assert getattr(resolve_settings(environ={}), name) == DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(PRECEDENCE))
def test_env_beats_default(name: str) -> None:
    """An env var overrides the default."""
    _, raw, from_env = PRECEDENCE[name]
    assert from_env != DEFAULTS[name]
    settings = resolve_settings(environ={ENV_VARS[name]: raw})
    assert getattr(settings, name) == from_env


@pytest.mark.parametrize("name", sorted(PRECEDENCE))
def test_argument_beats_env(name: str) -> None:
    """An explicit argument overrides the env var (even a falsy one)."""
    argument, raw, from_env = PRECEDENCE[name]
    assert argument != from_env
    settings = resolve_settings(environ={ENV_VARS[name]: raw}, **{name: argument})
    assert getattr(settings, name) == argument


@pytest.mark.parametrize("name", sorted(PRECEDENCE))
def test_none_argument_means_not_given(name: str) -> None:
    """Passing None for an option falls through to the env var."""
    _, raw, from_env = PRECEDENCE[name]
    settings = resolve_settings(environ={ENV_VARS[name]: raw}, **{name: None})
    assert getattr(settings, name) == from_env


def test_environ_argument_isolates_from_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit environ mapping is used instead of os.environ."""
    monkeypatch.setenv("VIBEFOLLOW_BATCH_SIZE", "7")
    assert resolve_settings(environ={}).batch_size == DEFAULTS["batch_size"]
    assert resolve_settings().batch_size == 7


def test_unknown_option_is_type_error() -> None:
    """A misspelt option name is refused."""
    with pytest.raises(TypeError, match="batchsize"):
        resolve_settings(environ={}, batchsize=10)


BAD_ARGUMENTS: list[tuple[str, Any]] = [
    ("api_key", ""),
    ("api_key", "   "),
    ("api_key", "sk live"),
    ("api_key", 12345),
    ("api_key", "sk_live_é123"),
    ("api_key", "sk_live_\x7f123"),
    ("api_key", "sk_live_\u200b123"),
    ("base_url", ""),
    ("base_url", 5),
    ("base_url", "api.vibefollow.com"),
    ("base_url", "ftp://api.vibefollow.com"),
    ("base_url", "https://"),
    ("base_url", "https://user:pw@api.vibefollow.com"),
    ("base_url", "https://api.vibefollow.com?x=1"),
    ("base_url", "https://api.vibefollow.com#frag"),
    ("batch_size", True),
    ("batch_size", 0),
    ("batch_size", 501),
    ("batch_size", 10.0),
    ("batch_size", "10"),
    ("flush_interval", 0),
    ("flush_interval", -1.0),
    ("flush_interval", float("nan")),
    ("flush_interval", float("inf")),
    ("flush_interval", True),
    ("flush_interval", "5"),
    ("max_queue_size", 0),
    ("max_queue_bytes", 1024),
    ("max_backlog_bytes", True),
    ("max_backlog_bytes", 1024),
    ("priority_events", 5),
    ("priority_events", ["ok", 3]),
    ("adaptive_batching", "yes"),
    ("max_queue_size", False),
    ("max_queue_size", 10_000_001),
    ("timeout", 0.0),
    ("timeout", 601),
    ("export_timeout", -5),
    ("export_timeout", 3601),
    ("shutdown_timeout", 0),
    ("shutdown_timeout", "10"),
    ("max_retries", -1),
    ("max_retries", 101),
    ("max_retries", True),
    ("max_retries", 1.0),
    ("allow_insecure_http", 1),
    ("allow_insecure_http", "yes"),
    ("spool_path", ""),
    ("spool_path", 5),
    ("spool_path", "a\0b"),
    ("spool_max_bytes", 100),
    ("spool_max_bytes", True),
    ("spool_max_bytes", "1000000"),
    ("enabled", "false"),
    ("enabled", 0),
    ("debug", 1),
    ("handle_sigterm", "false"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGUMENTS)
def test_bad_argument_raises_value_error(name: str, value: Any) -> None:
    """A wrong type, range or bool-for-int argument raises ValueError naming the option."""
    with pytest.raises(ValueError, match=name):
        resolve_settings(environ={}, **{name: value})


def test_bad_argument_error_never_echoes_key() -> None:
    """An api_key argument refused for its shape is not quoted in the error."""
    with pytest.raises(ValueError, match="api_key") as info:
        resolve_settings(environ={}, api_key=SECRET + " x")
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


# Each would fail in the Authorization header of every request, not at construction.
UNSENDABLE_KEYS = [SECRET + "é", "é" + SECRET, SECRET + "\x00", SECRET + "\x7f", SECRET + "\u2028x"]
UNSENDABLE_IDS = ["non-ascii-end", "non-ascii-start", "nul", "del", "line-separator"]


@pytest.mark.parametrize("key", UNSENDABLE_KEYS, ids=UNSENDABLE_IDS)
def test_unsendable_api_key_argument_refused_without_echo(key: str) -> None:
    """An api_key argument that is not printable ASCII raises ValueError that never quotes it."""
    with pytest.raises(ValueError, match="api_key") as info:
        resolve_settings(environ={}, api_key=key)
    for text in (str(info.value), repr(info.value)):
        assert SECRET not in text
        assert key not in text


@pytest.mark.parametrize("key", UNSENDABLE_KEYS, ids=UNSENDABLE_IDS)
def test_unsendable_api_key_env_means_no_key_and_is_not_logged(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unsendable VIBEFOLLOW_API_KEY warns without the key and leaves no key (None)."""
    with caplog.at_level(logging.DEBUG, logger="vf_otel"):
        settings = resolve_settings(environ={"VIBEFOLLOW_API_KEY": key})
    assert settings.api_key is None
    (warning,) = caplog.records
    assert "VIBEFOLLOW_API_KEY" in warning.getMessage()
    assert SECRET not in caplog.text
    assert key not in caplog.text


@pytest.mark.parametrize("key", ["sk_live_AZaz09", "sk_test_-._~!#$%&'*+/=?^`|"])
def test_printable_ascii_api_key_accepted(key: str) -> None:
    """Any printable ASCII key without spaces is accepted, from an argument or the env."""
    assert resolve_settings(environ={}, api_key=key).api_key == key
    assert resolve_settings(environ={"VIBEFOLLOW_API_KEY": key}).api_key == key


BAD_ENV: list[tuple[str, str]] = [
    ("api_key", SECRET + " with spaces"),
    ("api_key", SECRET + "é"),
    ("api_key", SECRET + "\x1b"),
    ("api_key", SECRET + "\u200b"),
    ("batch_size", SECRET),
    ("batch_size", "0"),
    ("batch_size", "1.5"),
    ("flush_interval", SECRET),
    ("flush_interval", "nan"),
    ("flush_interval", "-1"),
    ("max_queue_size", SECRET),
    ("timeout", "inf"),
    ("export_timeout", SECRET),
    ("shutdown_timeout", "0"),
    ("max_retries", SECRET),
    ("max_retries", "101"),
    ("allow_insecure_http", SECRET),
    ("allow_insecure_http", "2"),
    ("spool_max_bytes", SECRET),
    ("spool_max_bytes", "12"),
    ("max_backlog_bytes", SECRET),
    ("max_queue_bytes", "12"),
    ("adaptive_batching", SECRET),
    ("enabled", "disabled"),
    ("debug", SECRET),
    ("handle_sigterm", "sometimes"),
]


@pytest.mark.parametrize(("name", "raw"), BAD_ENV)
def test_bad_env_warns_and_uses_default(
    name: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad env value logs a warning naming the variable and the default is used."""
    with caplog.at_level(logging.WARNING, logger="vf_otel.config"):
        settings = resolve_settings(environ={ENV_VARS[name]: raw})
    assert getattr(settings, name) == DEFAULTS[name]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert ENV_VARS[name] in warnings[0].getMessage()


@pytest.mark.parametrize(("name", "raw"), [(n, r) for n, r in BAD_ENV if SECRET in r])
def test_bad_env_warning_never_contains_value(
    name: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning about a bad env value does not quote the value (it may be a secret)."""
    with caplog.at_level(logging.DEBUG, logger="vf_otel"):
        resolve_settings(environ={ENV_VARS[name]: raw})
    assert caplog.records
    assert SECRET not in caplog.text


def test_bad_env_does_not_affect_other_options(caplog: pytest.LogCaptureFixture) -> None:
    """One bad env value falls back alone; the other env values still apply."""
    with caplog.at_level(logging.WARNING, logger="vf_otel.config"):
        settings = resolve_settings(
            environ={"VIBEFOLLOW_BATCH_SIZE": "lots", "VIBEFOLLOW_TIMEOUT": "3"}
        )
    assert settings.batch_size == DEFAULTS["batch_size"]
    assert settings.timeout == 3.0


def test_bad_env_ignored_when_argument_given(caplog: pytest.LogCaptureFixture) -> None:
    """An argument makes a bad env value irrelevant: no warning is logged."""
    with caplog.at_level(logging.WARNING, logger="vf_otel.config"):
        settings = resolve_settings(environ={"VIBEFOLLOW_BATCH_SIZE": "lots"}, batch_size=9)
    assert settings.batch_size == 9
    assert not caplog.records


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_api_key_env_means_none(raw: str) -> None:
    """An empty VIBEFOLLOW_API_KEY is the same as none."""
    assert resolve_settings(environ={"VIBEFOLLOW_API_KEY": raw}).api_key is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("yes", True), ("On", True), ("0", False), ("no", False), ("off", False)],
)
def test_bool_env_spellings(raw: str, expected: bool) -> None:
    """Boolean env values accept the usual spellings, case-insensitively."""
    settings = resolve_settings(environ={"VIBEFOLLOW_ALLOW_INSECURE_HTTP": raw})
    assert settings.allow_insecure_http is expected


@pytest.mark.parametrize(
    ("given", "base_url"),
    [
        ("https://api.vibefollow.com", "https://api.vibefollow.com"),
        ("https://api.vibefollow.com/", "https://api.vibefollow.com"),
        ("https://api.vibefollow.com/api/v1", "https://api.vibefollow.com"),
        ("https://api.vibefollow.com/api/v1/", "https://api.vibefollow.com"),
        ("  https://api.vibefollow.com  ", "https://api.vibefollow.com"),
        ("https://proxy.example.com/vf", "https://proxy.example.com/vf"),
        ("https://proxy.example.com/vf/api/v1", "https://proxy.example.com/vf"),
        ("https://api.vibefollow.com:8443", "https://api.vibefollow.com:8443"),
    ],
)
def test_base_url_normalised(given: str, base_url: str) -> None:
    """Trailing slashes and an existing /api/v1 are stripped; api_url appends /api/v1 once."""
    settings = resolve_settings(environ={}, base_url=given)
    assert settings.base_url == base_url
    assert settings.api_url == base_url + "/api/v1"
    assert settings.api_url.count("/api/v1") == 1


def test_base_url_from_env_normalised() -> None:
    """An env base URL gets the same normalisation."""
    settings = resolve_settings(environ={"VIBEFOLLOW_BASE_URL": "https://x.example.com/api/v1/"})
    assert settings.api_url == "https://x.example.com/api/v1"


def test_default_api_url() -> None:
    """By default requests go to https://api.vibefollow.com/api/v1."""
    assert resolve_settings(environ={}).api_url == "https://api.vibefollow.com/api/v1"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9",
        "http://127.0.0.1",
        "http://127.5.6.7:8080",
        "http://[::1]:8080",
        "http://[::1]",
        "http://localhost:3000",
        "http://LOCALHOST",
        "http://localhost.localdomain",
    ],
)
def test_http_to_loopback_allowed(url: str) -> None:
    """Plain http:// is accepted for loopback hosts without any opt-in."""
    settings = resolve_settings(environ={}, base_url=url)
    assert settings.api_url.startswith("http://")
    assert settings.api_url.endswith("/api/v1")


def test_ipv6_loopback_keeps_brackets() -> None:
    """An IPv6 loopback base URL keeps its brackets and port."""
    assert resolve_settings(environ={}, base_url="http://[::1]:8080/").base_url == (
        "http://[::1]:8080"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://api.vibefollow.com",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example",
        "http://[2001:db8::1]",
    ],
)
def test_http_to_other_hosts_refused(url: str) -> None:
    """Plain http:// to a non-loopback host raises unless allow_insecure_http."""
    with pytest.raises(ValueError, match="allow_insecure_http"):
        resolve_settings(environ={}, base_url=url)


@pytest.mark.parametrize(
    "environ",
    [{}, {"VIBEFOLLOW_ALLOW_INSECURE_HTTP": "true"}],
    ids=["argument", "env"],
)
def test_http_to_other_host_with_opt_in(environ: dict[str, str]) -> None:
    """allow_insecure_http (argument or env) permits http:// to any host."""
    explicit = {} if environ else {"allow_insecure_http": True}
    settings = resolve_settings(environ=environ, base_url="http://vf.internal", **explicit)
    assert settings.api_url == "http://vf.internal/api/v1"


BAD_ENV_BASE_URLS = [
    SECRET,
    "http://vf.internal",
    "http://" + SECRET + ".example.com",
    "https://" + SECRET + ":pw@example.com",
    "https://api.vibefollow.com?key=" + SECRET,
    "ftp://api.vibefollow.com",
]


@pytest.mark.parametrize("raw", BAD_ENV_BASE_URLS)
def test_bad_env_base_url_stops_sending_never_falls_back(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad VIBEFOLLOW_BASE_URL: no base URL at all (not the default), one error, no value."""
    with caplog.at_level(logging.DEBUG, logger="vf_otel"):
        settings = resolve_settings(environ={"VIBEFOLLOW_BASE_URL": raw})
    assert settings.base_url == NO_BASE_URL
    assert not settings.has_base_url
    assert settings.base_url != DEFAULTS["base_url"]
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "VIBEFOLLOW_BASE_URL is invalid" in record.getMessage()
    assert "sends nothing" in record.getMessage()
    assert SECRET not in caplog.text
    assert "vf.internal" not in caplog.text


def test_bad_base_url_argument_still_raises_even_with_a_good_env() -> None:
    """A bad base_url argument raises ValueError; the environment does not rescue it."""
    environ = {"VIBEFOLLOW_BASE_URL": "https://api.vibefollow.com"}
    with pytest.raises(ValueError, match="only to loopback"):
        resolve_settings(environ=environ, base_url="http://vf.internal")


def test_good_settings_have_a_base_url() -> None:
    """Valid settings, from an argument, the env or the default, can send."""
    assert resolve_settings(environ={}).has_base_url
    assert resolve_settings(environ={"VIBEFOLLOW_BASE_URL": "https://x.example"}).has_base_url
    assert resolve_settings(environ={}, base_url="http://127.0.0.1:8080").has_base_url


def test_settings_repr_hides_key() -> None:
    """Neither repr nor str of Settings contains the API key."""
    settings = resolve_settings(environ={}, api_key=SECRET)
    assert settings.api_key == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert "batch_size=500" in repr(settings)


def test_settings_repr_hides_key_from_env() -> None:
    """A key taken from the environment is hidden the same way."""
    settings = resolve_settings(environ={"VIBEFOLLOW_API_KEY": SECRET})
    assert settings.api_key == SECRET
    assert SECRET not in repr(settings)


def test_settings_is_frozen() -> None:
    """Resolved settings cannot be changed afterwards."""
    settings = resolve_settings(environ={})
    assert isinstance(settings, Settings)
    with pytest.raises(AttributeError):
        settings.batch_size = 1  # type: ignore[misc]
