"""VibefollowLogExporter: tagged records from the OTel log pipeline, over real HTTP."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from vf_otel import VibefollowLogExporter
from vf_otel._compat import LogExportResult
from vf_otel.testing import VibefollowServer

CREATED = 1_700_000_000.25
CREATED_WIRE = "2023-11-14T22:13:20.250Z"

Emit = Callable[..., None]


@pytest.fixture
def exporter(server: VibefollowServer) -> Iterator[VibefollowLogExporter]:
    """A log exporter pointed at the server, shut down afterwards."""
    made = VibefollowLogExporter(api_key=server.api_key, base_url=server.base_url)
    yield made
    made.shutdown()


@pytest.fixture
def emit(exporter: VibefollowLogExporter) -> Iterator[Emit]:
    """Send a stdlib record through the OTel LoggingHandler to the exporter, synchronously."""
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # SDK 1.45 deprecates its LoggingHandler in favour of a contrib package;
        # it is still what OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED installs.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)

    def send(msg: str, *args: object, logger: str = "app", **extra: Any) -> None:
        fields = {"name": logger, "msg": msg, "args": args, "created": CREATED, **extra}
        fields.update(levelno=logging.INFO, levelname="INFO")
        handler.handle(logging.makeLogRecord(fields))

    yield send
    handler.close()


def test_tagged_record_is_delivered_exactly(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """extra= vf_user and vf_properties (nested, with lists) arrive as one exact event."""
    properties = {"plan": "pro", "seats": 3, "tags": ["a", "b"], "limits": {"api": [1, 2]}}
    emit("user_signed_up", vf_user="usr_42", vf_properties=properties)
    assert exporter.force_flush(5_000) is True
    assert server.events == [
        {
            "external_user_id": "usr_42",
            "name": "user_signed_up",
            "properties": properties,
            "occurred_at": CREATED_WIRE,
        }
    ]


def test_name_defaults_to_the_formatted_body(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """Without vf_event the body names the event; the OTel handler formats it first."""
    emit("plan %s chosen", "pro", vf_user="u1")
    emit("plan %s chosen", "pro", vf_user="u1", vf_event="plan_chosen")
    assert exporter.force_flush(5_000)
    assert [e["name"] for e in server.events] == ["plan pro chosen", "plan_chosen"]


def test_traits_upsert_the_user(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """vf_traits become a /users upsert."""
    emit("trial_started", vf_user="u2", vf_traits={"email": "a@example.com", "plan": "trial"})
    assert exporter.force_flush(5_000)
    assert server.users == [
        {"external_user_id": "u2", "email": "a@example.com", "traits": {"plan": "trial"}}
    ]


def test_dotted_names_work_like_span_attributes(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """vf.user, vf.event and vf.properties.<key> are accepted on records too."""
    emit("ignored", **{"vf.user": "u3", "vf.event": "exported", "vf.properties.rows": 10})
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in server.events] == [
        ("exported", "u3", {"rows": 10})
    ]


@pytest.mark.parametrize(
    "rendered", ['{"plan": "pro", "n": 1}', "{'plan': 'pro', 'n': 1}"], ids=["json", "repr"]
)
def test_stringified_properties_are_parsed_back(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer, rendered: str
) -> None:
    """A mapping some pipeline rendered as JSON or str(dict) is turned back into a mapping."""
    emit("e", vf_user="u", vf_properties=rendered)
    assert exporter.force_flush(5_000)
    assert [e["properties"] for e in server.events] == [{"plan": "pro", "n": 1}]


def test_non_mapping_properties_are_rejected(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """vf_properties that is no mapping is counted as invalid_properties, not sent."""
    emit("e", vf_user="u", vf_properties="not a mapping")
    assert not exporter.force_flush(1_000)  # the record was refused
    assert exporter.stats().dropped == {"invalid_properties": 1}
    assert server.requests == []


def test_untagged_and_library_records_are_ignored(
    emit: Emit, exporter: VibefollowLogExporter, server: VibefollowServer
) -> None:
    """Records without a tag, or from vf_otel/httpx loggers, are never events."""
    emit("hello", plan="pro")
    emit("x", logger="vf_otel.delivery", vf_user="u")
    emit("x", logger="httpx", vf_user="u")
    assert exporter.force_flush(1_000)
    stats = exporter.stats()
    assert (stats.enqueued, stats.dropped_total) == (0, 0)
    assert server.requests == []


def test_export_never_raises_and_shutdown_is_idempotent(exporter: VibefollowLogExporter) -> None:
    """A malformed batch gives FAILURE; shutdown twice is fine; export after it fails."""
    assert exporter.export([object()]) is LogExportResult.FAILURE
    assert exporter.stats().dropped == {"internal_error": 1}
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export([]) is LogExportResult.FAILURE
    assert isinstance(exporter.force_flush(100), bool)


def test_keys_that_become_one_are_counted_end_to_end(
    emit: Emit,
    exporter: VibefollowLogExporter,
    server: VibefollowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the OTel pipeline to the server: the last value is sent, the value left out
    is counted in key_collisions and warned about; nothing is dropped. (Two long keys cut
    to the same text: an int key the SDK itself turns into a str before vf-otel sees it.)"""
    prefix = "k" * 20_000
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        emit(
            "report_exported",
            vf_user="u1",
            vf_properties={prefix + "a": "first", prefix + "b": "second"},
        )
        assert exporter.force_flush(5_000) is True
    (event,) = server.events
    assert list(event["properties"].values()) == ["second"]
    stats = exporter.stats()
    assert (stats.key_collisions, stats.sent, stats.dropped_total) == (1, 1, 0)
    assert "same string" in caplog.text
    assert "first" not in caplog.text
