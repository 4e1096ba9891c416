"""vf_otel.structlog_processor: structlog set-ups with a renderer last still send their events.

The common set-ups run in a fresh interpreter, as written in docs/integrations/structlog.md
(structlog's configuration is process-global); the processor's own rules run in-process.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory, run_script

structlog = pytest.importorskip("structlog")


def test_structlog_defaults_with_the_processor_before_console_renderer(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """structlog's own defaults (PrintLogger, ConsoleRenderer last) plus the processor before
    the renderer, as docs/integrations/structlog.md writes it: events sent, console intact."""
    done = run_script(
        server,
        tmp_path,
        """
        import structlog
        import vf_otel

        configured = vf_otel.configure(spans=False)
        processors = structlog.get_config()["processors"]
        structlog.configure(processors=[*processors[:-1], vf_otel.structlog_processor,
                                        processors[-1]])

        log = structlog.get_logger()
        log.info("report_exported", vf_user="usr_1", vf_properties={"format": "csv"})
        log.warning("disk almost full")
        assert configured.flush(30)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in server.events] == [
        ("report_exported", "usr_1", {"format": "csv"})
    ]
    assert "report_exported" in done.stdout
    assert "disk almost full" in done.stdout
    assert "vf_user" not in done.stdout
    assert done.stderr == ""


def test_processor_formatter_set_up_sends_once(server: VibefollowServer, tmp_path: Path) -> None:
    """stdlib LoggerFactory with ProcessorFormatter (wrap_for_formatter last): each event is
    sent exactly once, even with render_to_log_kwargs elsewhere unused."""
    done = run_script(
        server,
        tmp_path,
        """
        import logging, sys
        import structlog
        import vf_otel

        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer(colors=False)))
        logging.basicConfig(level=logging.INFO, handlers=[console])
        configured = vf_otel.configure(spans=False)
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                vf_otel.structlog_processor,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        log = structlog.stdlib.get_logger("shop").bind(vf_user="usr_2")
        log.info("checkout_started", vf_properties={"cart": 3})
        log.info("checkout_started", vf_properties={"cart": 4})
        assert configured.flush(30)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert [e["properties"]["cart"] for e in server.events] == [3, 4]
    assert done.stdout.count("checkout_started") == 2


def test_render_to_log_kwargs_after_the_processor_does_not_send_twice(
    make_handler: HandlerFactory, vibefollow_server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """The processor takes the vf_* keys out, so render_to_log_kwargs after it tags nothing."""
    handler = make_handler()
    app_logger.addHandler(handler)
    event_dict = {"event": "signup", "vf_user": "usr_3", "plan": "pro"}
    rendered = structlog.stdlib.render_to_log_kwargs(
        app_logger, "info", vf_otel.structlog_processor(app_logger, "info", event_dict)
    )
    app_logger.info(**rendered)  # as structlog's stdlib BoundLogger does
    assert handler.flush(10)
    assert [e["name"] for e in vibefollow_server.events] == ["signup"]
    assert rendered["extra"] == {"plan": "pro"}


def test_untagged_event_dicts_pass_through_untouched(app_logger: logging.Logger) -> None:
    """An event dict with neither vf_user nor vf_event is returned as the same object."""
    event_dict = {"event": "cache warmed", "vf_properties": {"a": 1}}
    assert vf_otel.structlog_processor(app_logger, "info", event_dict) is event_dict
    assert event_dict == {"event": "cache warmed", "vf_properties": {"a": 1}}


def test_vf_event_names_the_event_and_handler_level_applies(
    make_handler: HandlerFactory, vibefollow_server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """vf_event overrides structlog's event; a record below the handler's level is not sent."""
    handler = make_handler()
    handler.setLevel(logging.WARNING)
    app_logger.addHandler(handler)
    processor = vf_otel.structlog_processor
    processor(app_logger, "info", {"event": "quiet", "vf_user": "u"})
    processor(app_logger, "warning", {"event": "Exported!", "vf_event": "exported", "vf_user": "u"})
    assert handler.flush(10)
    assert [e["name"] for e in vibefollow_server.events] == ["exported"]


def test_no_handler_anywhere_is_said_not_raised() -> None:
    """With no VibefollowHandler on the logger's way up, a RuntimeWarning names the logger."""
    lonely = logging.getLogger("test.structlog.lonely")
    lonely.propagate = False
    event_dict = {"event": "signup", "vf_user": "usr_4"}
    with pytest.warns(RuntimeWarning, match="test.structlog.lonely"):
        result = vf_otel.structlog_processor(lonely, "info", event_dict)
    assert result == {"event": "signup"}
