"""One option set for the handler, both exporters and configure(), kept in step with settings."""

from __future__ import annotations

import logging
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import pytest

import vf_otel
from vf_otel._config import DEFAULTS, Settings, resolve_settings
from vf_otel.testing import VibefollowServer
from vf_otel.typing import Options


def test_options_name_every_setting_plus_the_hooks() -> None:
    """vf_otel.typing.Options has exactly the settings' names, on_error, before_send and
    transport."""
    hooks = {"on_error", "before_send", "transport"}
    assert set(typing.get_type_hints(Options)) == set(DEFAULTS) | hooks


EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "examples" / "rules.toml"

# What an option accepts beyond its resolved Settings type; its check normalises these.
# Options is static (for ``Unpack``), so it repeats the settings table: these are the
# only differences allowed, besides ``| None`` (= not given).
WIDER_INPUTS: dict[str, set[object]] = {
    "redact_keys": {Sequence[str], str},  # any sequence, or one comma-separated str -> tuple
    "priority_events": {Sequence[str], str},  # the same
    "spool_path": {os.PathLike[str]},  # a pathlib.Path too -> str
    # a rules file's path (loaded), or any sequence of Rule -> tuple[Rule, ...]
    "rules": {Sequence[vf_otel.Rule], str, os.PathLike[str]},
}
# option: (a value of a wider input form, what it resolves to)
WIDER_SAMPLES: list[tuple[str, object, object]] = [
    ("redact_keys", ["b_key", "a_key"], ("a_key", "b_key")),
    ("redact_keys", " b_key, a_key ", ("a_key", "b_key")),
    ("priority_events", ["b_event", "a_event"], ("a_event", "b_event")),
    ("priority_events", " b_event, a_event ", ("a_event", "b_event")),
    ("spool_path", Path("spool", "vf.db"), os.path.join("spool", "vf.db")),
    ("rules", [vf_otel.Rule(event="e")], (vf_otel.Rule(event="e"),)),
    ("rules", EXAMPLE_RULES, vf_otel.load_rules(EXAMPLE_RULES)),
    ("rules", str(EXAMPLE_RULES), vf_otel.load_rules(EXAMPLE_RULES)),
]


def _members(hint: object) -> set[object]:
    return set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}


def _accepts(declared: object, resolved: object) -> bool:
    # tuple[str, ...] is accepted by Sequence[str]: origin a subclass, same item type.
    if declared == resolved:
        return True
    wide, narrow = typing.get_origin(declared), typing.get_origin(resolved)
    return (
        wide is not None
        and narrow is not None
        and issubclass(narrow, wide)
        and {arg for arg in typing.get_args(resolved) if arg is not Ellipsis}
        == set(typing.get_args(declared))
    )


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_options_type_is_the_settings_type_or_none(name: str) -> None:
    """Each Options type is its Settings type | None, widened only by WIDER_INPUTS."""
    resolved = _members(typing.get_type_hints(Settings)[name])
    declared = _members(typing.get_type_hints(Options)[name])
    assert type(None) in declared
    assert declared - resolved - {type(None)} == WIDER_INPUTS.get(name, set())
    assert all(any(_accepts(d, r) for d in declared) for r in resolved - {type(None)})


def test_wider_inputs_name_settings_and_have_samples() -> None:
    """WIDER_INPUTS names real options, and each has a sample below."""
    assert set(WIDER_INPUTS) <= set(DEFAULTS)
    assert {name for name, _, _ in WIDER_SAMPLES} == set(WIDER_INPUTS)


@pytest.mark.parametrize(("name", "given", "expected"), WIDER_SAMPLES)
def test_wider_input_forms_are_accepted(name: str, given: object, expected: object) -> None:
    """An input form Options declares beyond the Settings type resolves to the Settings type."""
    assert getattr(resolve_settings(environ={}, **{name: given}), name) == expected


@pytest.mark.parametrize(
    "build",
    [
        vf_otel.VibefollowHandler,
        vf_otel.VibefollowSpanExporter,
        vf_otel.VibefollowLogExporter,
    ],
    ids=["handler", "span-exporter", "log-exporter"],
)
def test_unknown_and_bad_options_are_refused_at_construction(build: typing.Any) -> None:
    """A misspelt option is a TypeError and a bad value a ValueError, before anything runs."""
    with pytest.raises(TypeError, match="batchsize"):
        build(api_key="sk_test_" + "0" * 32, batchsize=10)
    with pytest.raises(ValueError, match="batch_size"):
        build(api_key="sk_test_" + "0" * 32, batch_size=0)
    with pytest.raises(ValueError, match="on_error"):
        build(api_key="sk_test_" + "0" * 32, on_error="not callable")


def test_redaction_options_are_constructor_arguments(
    vibefollow_server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """redact_keys= adds key patterns and redact=False turns redaction off, per handler."""
    common = {"api_key": vibefollow_server.api_key, "base_url": vibefollow_server.base_url}
    extra_keys = vf_otel.VibefollowHandler(redact_keys=["plan"], **common)
    disabled = vf_otel.VibefollowHandler(redact=False, **common)
    props = {"plan": "pro", "password": "hunter2", "seats": 3}
    try:
        for handler, user in ((extra_keys, "usr_a"), (disabled, "usr_b")):
            app_logger.addHandler(handler)
            app_logger.info("x", extra={"vf_user": user, "vf_properties": props})
            app_logger.removeHandler(handler)
            assert handler.flush(timeout=10)
    finally:
        extra_keys.close()
        disabled.close()
    received = {e["external_user_id"]: e["properties"] for e in vibefollow_server.events}
    assert received["usr_a"] == {"plan": "[redacted]", "password": "[redacted]", "seats": 3}
    assert received["usr_b"] == props
