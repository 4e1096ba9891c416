"""One option set for the handler, both exporters and configure(), kept in step with settings."""

from __future__ import annotations

import logging
import typing

import pytest

import vf_otel
from vf_otel._config import DEFAULTS
from vf_otel.testing import VibefollowServer
from vf_otel.typing import Options


def test_options_name_every_setting_plus_the_hooks() -> None:
    """vf_otel.typing.Options has exactly the settings' names, on_error and transport."""
    assert set(typing.get_type_hints(Options)) == set(DEFAULTS) | {"on_error", "transport"}


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
