"""Settings, resolved once: explicit argument > environment variable > default.

The option table is declared once, as the fields of ``Settings``: each field's
default is the option's default and its metadata carries the check a value must
pass; the environment variable is ``VIBEFOLLOW_`` + the upper-cased name.
``DEFAULTS``, ``ENV_VARS`` and the checks are derived from those fields. The
``Options`` TypedDict (vf_otel/typing.py) must stay static for type checkers;
tests/test_options.py keeps it in step with this table.

A bad argument raises ``ValueError`` when the handler or exporter is built; a
bad environment value logs a warning and falls back to the default, because
the environment is often not the caller's to fix. Except ``VIBEFOLLOW_BASE_URL``:
falling back would send a staging key and staging data to production, so a bad
one logs one error and leaves no base URL (``NO_BASE_URL``): nothing is sent.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final
from urllib.parse import urlsplit

from ._rules import Rule, rules_option

__all__ = [
    "DEFAULTS",
    "ENV_VARS",
    "NO_BASE_URL",
    "Settings",
    "base_url_problem",
    "dev_server_child",
    "resolve_settings",
]

_logger = logging.getLogger("vf_otel.config")

DEFAULT_BASE_URL: Final = "https://api.vibefollow.com"
#: ``Settings.base_url`` when VIBEFOLLOW_BASE_URL is invalid: send nothing, to no host.
NO_BASE_URL: Final = ""
API_PREFIX: Final = "/api/v1"
#: The server refuses larger /events/batch requests (vibefollow-api.md §2.4).
MAX_BATCH_SIZE: Final = 500
ENV_PREFIX: Final = "VIBEFOLLOW_"
MIB: Final = 1024 * 1024
#: Set to "true" in the serving process a development server's autoreloader runs
#: (Django's ``runserver``, Werkzeug's / ``flask run --debug``). Its parent kills that
#: process with SIGKILL when it is stopped (Ctrl-C, SIGTERM) or its wait is cut short,
#: so nothing queued there survives a stop: deliver at once instead of batching.
DEV_SERVER_CHILD_ENV: Final = ("RUN_MAIN", "WERKZEUG_RUN_MAIN")
#: ``flush_interval`` in such a process unless set: an event waits at most this long.
DEV_SERVER_FLUSH_INTERVAL: Final = 0.2
#: Whether the warning about a longer ``flush_interval`` there was logged (once a process).
_DEV_SERVER_WARNED: Final[set[bool]] = set()

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
# Printable ASCII, space excluded: what an HTTP header value can carry as it is.
_API_KEY: Final = re.compile(r"[!-~]+")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
#: The key, in a Settings field's metadata, of the check its values must pass.
_CHECK: Final = "check"

#: ``check(name, value)`` returns the value normalised or raises ValueError naming
#: the option, never quoting the value (it might be a secret).
_Check = Callable[[str, Any], Any]


def _api_key(name: str, value: Any) -> str:
    # Only printable ASCII can go in the Authorization header: anything else would
    # pass here and then fail every request. The message never quotes the key.
    if not isinstance(value, str) or not _API_KEY.fullmatch(value):
        raise ValueError(f"{name} must be a non-empty string of printable ASCII without spaces")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool")
    return value


def _key_patterns(name: str, value: Any) -> tuple[str, ...]:
    # The environment gives one comma-separated string; an argument may too.
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not all(
        isinstance(item, str) for item in items
    ):
        raise ValueError(f"{name} must be a list of key patterns (or one comma-separated str)")
    return tuple(sorted({item.strip() for item in items if item.strip()}))


def _event_names(name: str, value: Any) -> tuple[str, ...]:
    # The environment gives one comma-separated string; an argument may too.
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not all(
        isinstance(item, str) for item in items
    ):
        raise ValueError(f"{name} must be a list of event names (or one comma-separated str)")
    return tuple(sorted({item.strip() for item in items if item.strip()}))


def _path(name: str, value: Any) -> str:
    # Accepts a pathlib.Path too; the file need not exist (the spool creates it).
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ValueError(f"{name} must be a non-empty file path")
    return text


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an int from {low} to {high}")
        return value

    return check


def _seconds(low: float, high: float) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not low < float(value) <= high:
            raise ValueError(f"{name} must be a number of seconds above {low} and at most {high}")
        return float(value)

    return check


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved configuration, and the one table of options. ``repr`` hides the API key.

    Build it with ``resolve_settings``, which applies the checks; a field's default
    is the option's default, its ``metadata["check"]`` the option's check.
    """

    api_key: str | None = field(default=None, repr=False, metadata={_CHECK: _api_key})
    base_url: str = field(default=DEFAULT_BASE_URL, metadata={_CHECK: _text})
    batch_size: int = field(default=MAX_BATCH_SIZE, metadata={_CHECK: _int_in(1, MAX_BATCH_SIZE)})
    flush_interval: float = field(default=5.0, metadata={_CHECK: _seconds(0.0, 3600.0)})
    max_queue_size: int = field(default=10_000, metadata={_CHECK: _int_in(1, 10_000_000)})
    # Also a bound in bytes, from the sizes the worker measures (queue.py, QueueBytes).
    max_queue_bytes: int = field(default=64 * MIB, metadata={_CHECK: _int_in(4096, 2**40)})
    # Requests parked in memory for a later attempt, compressed (parked.py).
    max_backlog_bytes: int = field(default=64 * MIB, metadata={_CHECK: _int_in(4096, 2**40)})
    # Evicted last from a full backlog, with user upserts (parked.py).
    priority_events: tuple[str, ...] = field(default=(), metadata={_CHECK: _event_names})
    # A partial batch goes at once when the app is quiet (_delivery/policy.py, Gather).
    adaptive_batching: bool = field(default=True, metadata={_CHECK: _flag})
    timeout: float = field(default=10.0, metadata={_CHECK: _seconds(0.0, 600.0)})
    export_timeout: float = field(default=30.0, metadata={_CHECK: _seconds(0.0, 3600.0)})
    shutdown_timeout: float = field(default=10.0, metadata={_CHECK: _seconds(0.0, 3600.0)})
    max_retries: int = field(default=8, metadata={_CHECK: _int_in(0, 100)})
    allow_insecure_http: bool = field(default=False, metadata={_CHECK: _flag})
    # Property redaction (vf_otel/_event/values.py).
    redact: bool = field(default=True, metadata={_CHECK: _flag})
    redact_keys: tuple[str, ...] = field(default=(), metadata={_CHECK: _key_patterns})
    # The durable spool (vf_otel/_spool/store.py): None means off.
    spool_path: str | None = field(default=None, metadata={_CHECK: _path})
    spool_max_bytes: int = field(default=100 * 1024 * 1024, metadata={_CHECK: _int_in(4096, 2**40)})
    # Off for CI and local runs: events are counted (``stats().disabled``), nothing is sent,
    # no thread starts, no key is needed (vf_otel/_delivery/pipeline.py).
    enabled: bool = field(default=True, metadata={_CHECK: _flag})
    # Each event is shown on the ``vf_otel.debug`` logger as it is queued (_delivery/pipeline.py).
    debug: bool = field(default=False, metadata={_CHECK: _flag})
    # Deliver the queue at SIGTERM, whose default action skips atexit (_sources/sigterm.py).
    handle_sigterm: bool = field(default=True, metadata={_CHECK: _flag})
    # Mapping rules for untagged spans and log records (vf_otel/_rules.py, docs/rules.md):
    # a TOML or YAML file's path (VIBEFOLLOW_RULES) or Rule objects, loaded and checked here.
    rules: tuple[Rule, ...] = field(default=(), metadata={_CHECK: rules_option})

    @property
    def api_url(self) -> str:
        """The base URL with ``/api/v1`` appended."""
        return self.base_url + API_PREFIX

    @property
    def has_base_url(self) -> bool:
        """False when VIBEFOLLOW_BASE_URL was invalid: then nothing may be sent anywhere."""
        return self.base_url != NO_BASE_URL


# Derived from the table above, in its order (the CLI lists options in this order).
DEFAULTS: Final[Mapping[str, Any]] = {f.name: f.default for f in fields(Settings)}
ENV_VARS: Final[Mapping[str, str]] = {name: ENV_PREFIX + name.upper() for name in DEFAULTS}
_CHECKS: Final[Mapping[str, _Check]] = {f.name: f.metadata[_CHECK] for f in fields(Settings)}


def resolve_settings(environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
    """Build Settings from keyword arguments (None = not given), the environment, defaults."""
    env = os.environ if environ is None else environ
    unknown = set(explicit) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        check = _CHECKS[name]
        given = explicit.get(name)
        if given is not None:
            values[name] = check(name, given)
        elif env.get(ENV_VARS[name], "").strip():  # an empty variable counts as unset
            values[name] = _from_env(name, env[ENV_VARS[name]], default)
        elif name == "flush_interval" and dev_server_child(env):
            values[name] = DEV_SERVER_FLUSH_INTERVAL
        else:
            values[name] = default
    values["base_url"] = _checked_base_url(values, from_env=explicit.get("base_url") is None)
    if values["flush_interval"] > DEV_SERVER_FLUSH_INTERVAL and dev_server_child(env):
        _warn_dev_server(values["flush_interval"])
    return Settings(**values)


def dev_server_child(environ: Mapping[str, str]) -> bool:
    """Whether this is the serving process under a development server's autoreloader."""
    return any(environ.get(name) == "true" for name in DEV_SERVER_CHILD_ENV)


def _warn_dev_server(flush_interval: float) -> None:
    """Say once, at start, what a stop will lose: a set flush_interval under a reloader."""
    if _DEV_SERVER_WARNED:
        return
    _DEV_SERVER_WARNED.add(True)
    _logger.warning(
        "vf-otel: this process is served by a development server's autoreloader, which "
        "kills it with SIGKILL when stopped (SIGINT, SIGTERM): events still queued then "
        "are lost. With flush_interval=%gs they may wait that long; leave it unset here "
        "(%gs) or run the server without its reloader (runserver --noreload)",
        flush_interval,
        DEV_SERVER_FLUSH_INTERVAL,
    )


def _checked_base_url(values: Mapping[str, Any], *, from_env: bool) -> str:
    allow = bool(values["allow_insecure_http"])
    if (
        from_env
        and not values["enabled"]
        and base_url_problem(values["base_url"], allow_insecure=allow)
    ):
        return NO_BASE_URL  # delivery is off: nothing goes anywhere, nothing to complain about
    if not from_env or values["base_url"] == DEFAULT_BASE_URL:
        return _base_url(values["base_url"], allow_insecure=allow)  # raises ValueError
    problem = base_url_problem(values["base_url"], allow_insecure=allow)
    if problem is None:
        return _base_url(values["base_url"], allow_insecure=allow)
    # Never another host (the default is production): stop sending instead.
    _logger.error(
        "%s is invalid (%s): vf-otel sends nothing until it is fixed; events are "
        "dropped and counted as %s",
        ENV_VARS["base_url"],
        problem,
        "invalid_base_url",
    )
    return NO_BASE_URL


def base_url_problem(value: str, *, allow_insecure: bool) -> str | None:
    """Why ``value`` cannot be the base URL (never quoting it), or None if it can."""
    try:
        _base_url(value, allow_insecure=allow_insecure)
    except ValueError as exc:
        return str(exc)
    return None


def _from_env(name: str, raw: str, default: Any) -> Any:
    try:
        return _CHECKS[name](name, _parse_env(name, raw.strip()))
    except ValueError as exc:
        # The message never carries the raw value: it might be a secret.
        _logger.warning("ignoring %s (%s); using the default", ENV_VARS[name], exc)
        return default


def _parse_env(name: str, raw: str) -> Any:
    kind = type(DEFAULTS[name])
    if kind is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError("expected true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            # int()'s and float()'s messages quote the raw value, which may be a secret.
            raise ValueError(f"expected {'an int' if kind is int else 'a number'}") from None
    return raw


def _base_url(value: str, *, allow_insecure: bool) -> str:
    """Validate an origin (optionally with a path prefix) and strip a trailing /api/v1."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http(s) URL such as https://api.vibefollow.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("base_url must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ValueError(
            "plain http:// is allowed only to loopback hosts; "
            "pass allow_insecure_http=True to send the API key unencrypted"
        )
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
