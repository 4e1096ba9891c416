"""The handler's filters run before it decides, as in stdlib: a filter may add or drop the tags."""

from __future__ import annotations

import logging
import sys

import pytest

from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


class AddUser(logging.Filter):
    """Tag every record with the user it was made for (as a request filter would)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``vf_user``; keep the record."""
        record.vf_user = "usr_filtered"
        return True


class Replace(logging.Filter):
    """Return a tagged copy instead of changing the record (Python 3.12+ semantics)."""

    def filter(self, record: logging.LogRecord) -> logging.LogRecord:  # type: ignore[override]
        """A replacement record carrying ``vf_user``."""
        replacement = logging.makeLogRecord(record.__dict__)
        replacement.vf_user = "usr_replaced"
        return replacement


def names_and_users(server: VibefollowServer) -> list[tuple[str, str]]:
    """(name, user) of every accepted event, in order."""
    return [(e["name"], e["external_user_id"]) for e in server.events]


def test_a_filter_that_adds_vf_user_makes_the_record_an_event(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """An untagged record tagged by the handler's own filter is sent (filters run first)."""
    handler = make_handler()
    handler.addFilter(AddUser())
    app_logger.addHandler(handler)
    app_logger.info("signup")
    assert handler.flush(timeout=10)
    assert names_and_users(vibefollow_server) == [("signup", "usr_filtered")]


def test_a_filter_function_that_drops_a_tagged_record_wins(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """A filter returning False keeps a tagged record out; the others pass."""
    handler = make_handler()
    handler.addFilter(lambda record: record.getMessage() != "secret")
    app_logger.addHandler(handler)
    app_logger.info("secret", extra={"vf_user": "usr_1"})
    app_logger.info("signup", extra={"vf_user": "usr_2"})
    assert handler.flush(timeout=10)
    assert names_and_users(vibefollow_server) == [("signup", "usr_2")]


def test_a_filter_returning_a_replacement_record(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """3.12+: the replacement's tags are used; 3.11's filter() returns only True: not tagged."""
    handler = make_handler()
    handler.addFilter(Replace())
    app_logger.addHandler(handler)
    app_logger.info("signup")
    app_logger.info("upgrade", extra={"vf_user": "usr_original"})
    assert handler.flush(timeout=10)
    if sys.version_info >= (3, 12):
        expected = [("signup", "usr_replaced"), ("upgrade", "usr_replaced")]
    else:  # Filterer.filter() gives a bool: the original record goes on
        expected = [("upgrade", "usr_original")]
    assert names_and_users(vibefollow_server) == expected


def test_untagged_records_without_filters_never_reach_filter(
    make_handler: HandlerFactory, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no filters, an untagged record is decided without calling filter() (hot path)."""
    handler = make_handler()
    calls: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "filter", calls.append)
    app_logger.addHandler(handler)
    app_logger.info("untagged")
    assert calls == []
