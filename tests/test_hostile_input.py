"""Regressions the property tests found: text that is not UTF-8, emails the API refuses."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

import vf_otel
from vf_otel._event.build import Rejection, email_problem, make_event
from vf_otel._event.values import coerce_mapping, utf8_text
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory


def test_lone_surrogates_become_replacement_characters() -> None:
    """A str that cannot be UTF-8 encoded is repaired, in keys, values and names."""
    assert utf8_text("a\ud800b") == "a\ufffdb"
    assert utf8_text("plain ü") == "plain ü"
    assert coerce_mapping({"k\udfff": ["v\ud800"]}) == {"k\ufffd": ["v\ufffd"]}


def test_surrogates_in_a_log_call_still_deliver(
    make_handler: HandlerFactory, app_logger: logging.Logger, vibefollow_server: VibefollowServer
) -> None:
    """User, name and properties with lone surrogates arrive, repaired, instead of being lost."""
    handler = make_handler()
    app_logger.addHandler(handler)
    extra: dict[str, Any] = {"vf_user": "u\ud800", "vf_properties": {"p": "\udfff"}}
    app_logger.info("ev\ud800", extra=extra)
    assert handler.flush(5.0)
    (event,) = vibefollow_server.events
    assert (event["external_user_id"], event["name"]) == ("u\ufffd", "ev\ufffd")
    assert event["properties"] == {"p": "\ufffd"}
    assert handler.stats().dropped_total == 0


def _event(traits: object) -> vf_otel.Event | Rejection:
    return make_event(
        name="x",
        user_id="u",
        properties={},
        traits=traits,
        occurred_at=datetime.now(UTC),
        event_id="e",
    )


def test_an_email_trait_the_api_would_refuse_costs_only_the_upsert() -> None:
    """A str email without exactly one @ between two parts never reaches /users, but the
    event is still built (the upsert alone is dropped when the request is prepared)."""
    for bad in ("0", "a@", "@b", "a@b@c"):
        assert isinstance(_event({"email": bad}), vf_otel.Event)
        assert email_problem({"email": bad}) == "traits email must look like name@domain"
    for fine in ({"email": "a@b"}, {"email": ""}, {"email": 5}, {"name": "n"}):
        assert email_problem(fine) is None


class _RaisingEq:
    """A logged message whose comparisons raise (and whose text is fine)."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing me")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("no comparing me")

    __hash__ = object.__hash__

    def __str__(self) -> str:
        return "odd"


class _RaisingEqText(str):
    """A str subclass whose comparisons raise: ``"$identify" == it`` tries its __eq__ first."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing me")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("no comparing me")

    __hash__ = str.__hash__


def test_names_whose_comparison_raises_cost_at_most_their_event(
    make_handler: HandlerFactory, app_logger: logging.Logger, vibefollow_server: VibefollowServer
) -> None:
    """Telling an identify() from an event never runs a logged object's own __eq__: such
    a name once sank its whole batch uncounted (flush() True, nothing delivered)."""
    handler = make_handler()
    app_logger.addHandler(handler)
    app_logger.info(_RaisingEq(), extra={"vf_user": "u1"})
    app_logger.info("kept", extra={"vf_user": "u1", "vf_event": _RaisingEqText("renamed")})
    app_logger.info("signup", extra={"vf_user": "u1"})

    assert not handler.flush(5.0)  # one was refused: not everything was delivered

    assert [e["name"] for e in vibefollow_server.events] == ["renamed", "signup"]
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, dict(stats.dropped)) == (3, 2, {"invalid_name": 1})
    assert stats.in_flight == 0


def test_before_send_returning_such_a_name_costs_only_that_event(
    make_handler: HandlerFactory, app_logger: logging.Logger, vibefollow_server: VibefollowServer
) -> None:
    """An Event rewritten by before_send is not validated again; its odd name is still
    compared safely, and it goes out as the text it is."""

    def rename(event: vf_otel.Event) -> vf_otel.Event:
        return dataclasses.replace(event, name=_RaisingEqText(event.name + "_x"))

    handler = make_handler(before_send=rename)
    app_logger.addHandler(handler)
    app_logger.info("signup", extra={"vf_user": "u1"})
    app_logger.info("invite", extra={"vf_user": "u1"})

    assert handler.flush(5.0)

    assert [e["name"] for e in vibefollow_server.events] == ["signup_x", "invite_x"]
    assert handler.stats().dropped_total == 0
