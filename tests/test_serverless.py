"""Serverless without the Lambda runtime: the logging path's cold start, ``@flush_after``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HANG_GUARD, HandlerFactory

_SDK_MODULES = """\
import json, logging, sys

import vf_otel

logging.getLogger().addHandler(vf_otel.VibefollowHandler(api_key="k" * 24, shutdown_timeout=1))
logging.getLogger("fn").warning("ran", extra={"vf_user": "usr_1"})
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))))
vf_otel.VibefollowSpanExporter  # the span side still imports, at first use
print(json.dumps("opentelemetry.sdk.trace" in sys.modules))
"""


@pytest.mark.slow
def test_the_logging_path_imports_no_sdk() -> None:
    """import vf_otel and a handler load none of the OpenTelemetry SDK; spans load it on use."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _SDK_MODULES],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=True,
        env={"VIBEFOLLOW_BASE_URL": "http://127.0.0.1:9", "PATH": ""},
    )
    before, after = (json.loads(line) for line in done.stdout.splitlines())
    assert before == []
    assert after is True


def test_lazy_names_are_the_real_ones() -> None:
    """The names imported at first use are the classes and functions of their modules."""
    from vf_otel._sources import configure
    from vf_otel._sources import otel as logs
    from vf_otel._sources import otel as spans

    assert vf_otel.configure is configure.configure
    assert vf_otel.Configuration is configure.Configuration
    assert vf_otel.VibefollowLogExporter is logs.VibefollowLogExporter
    assert vf_otel.VibefollowSpanExporter is spans.VibefollowSpanExporter
    assert vf_otel.VibefollowUserSpanProcessor is spans.VibefollowUserSpanProcessor
    with pytest.raises(AttributeError, match="no_such_name"):
        vf_otel.no_such_name  # noqa: B018


def test_flush_after_delivers_before_returning(
    make_handler: HandlerFactory, vibefollow_server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """A function decorated with @flush_after has its events delivered when it returns or raises."""
    app_logger.addHandler(make_handler())  # flush_interval=60: only a flush sends

    @vf_otel.flush_after
    def handler(k: int) -> int:
        app_logger.info("ran", extra={"vf_user": "usr_1", "vf_properties": {"k": k}})
        if k == 1:
            raise ValueError(k)
        return k

    assert handler(0) == 0
    assert [event["properties"]["k"] for event in vibefollow_server.events] == [0]
    with pytest.raises(ValueError, match="1"):
        handler(1)
    assert [event["properties"]["k"] for event in vibefollow_server.events] == [0, 1]
    assert handler.__name__ == "handler"
