"""The handler's app-thread shortcuts (benchmarks/hot_path.py) keep the behaviour they skip."""

from __future__ import annotations

import logging

from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


def test_a_filter_on_the_handler_still_decides(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """filter() is skipped only when there are no filters: one that refuses still refuses."""
    handler = make_handler()
    handler.addFilter(lambda record: record.getMessage() != "secret")
    app_logger.addHandler(handler)
    app_logger.info("secret", extra={"vf_user": "usr_1"})
    app_logger.info("kept", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=10)
    assert [e["name"] for e in vibefollow_server.events] == ["kept"]


def test_a_full_batch_wakes_the_worker_before_the_interval(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """Queueing batch_size records starts a delivery at once, not after flush_interval."""
    handler = make_handler(batch_size=5, flush_interval=60.0)
    app_logger.addHandler(handler)
    for i in range(5):
        app_logger.info("e", extra={"vf_user": f"usr_{i}"})
    assert vibefollow_server.wait_for_events(5, timeout=10)


def test_properties_are_sent_as_they_were_when_logged(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """The inlined snapshot copies a properties or traits dict the caller mutates afterwards."""
    handler = make_handler()
    app_logger.addHandler(handler)
    properties = {"plan": "trial"}
    traits = {"name": "Ada"}
    app_logger.info(
        "e", extra={"vf_user": "usr_1", "vf_properties": properties, "vf_traits": traits}
    )
    properties["plan"] = "changed"
    traits["name"] = "changed"
    assert handler.flush(timeout=10)
    assert vibefollow_server.events[0]["properties"] == {"plan": "trial"}
    assert vibefollow_server.users[0]["traits"] == {"name": "Ada"}
