"""The Event value: wire form, timestamps, idempotency keys and ids."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from vf_otel._event.model import Event, idempotency_key, new_event_id, new_event_ids, wire_time

WHEN = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
WIRE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def event(**overrides: object) -> Event:
    """A valid Event with fields overridden."""
    fields: dict[str, object] = {
        "name": "user_signed_up",
        "user_id": "usr_42",
        "properties": {"plan": "trial"},
        "occurred_at": WHEN,
        "event_id": "abc",
        "traits": None,
        **overrides,
    }
    return Event(**fields)  # type: ignore[arg-type]


def test_wire_form_has_exactly_the_design_keys() -> None:
    """to_wire gives external_user_id, name, properties and occurred_at, nothing else."""
    assert event(traits={"email": "a@b.c"}).to_wire() == {
        "external_user_id": "usr_42",
        "name": "user_signed_up",
        "properties": {"plan": "trial"},
        "occurred_at": "2026-11-23T10:00:00.123Z",
    }


def test_wire_properties_is_a_copy() -> None:
    """Changing the wire dict's properties does not change the Event."""
    original = event()
    original.to_wire()["properties"]["plan"] = "changed"
    assert original.properties == {"plan": "trial"}


def test_event_is_frozen() -> None:
    """An Event cannot be changed after it is built."""
    with pytest.raises(AttributeError):
        event().name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC), "2026-11-23T10:00:00.123Z"),
        (datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC), "2026-11-23T10:00:00.000Z"),
        (datetime(2026, 11, 23, 10, 0, 0, 999999, tzinfo=UTC), "2026-11-23T10:00:00.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), "2026-01-02T03:04:05.006Z"),
        (
            datetime(2026, 11, 23, 12, 30, 0, 5000, tzinfo=timezone(timedelta(hours=2.5))),
            "2026-11-23T10:00:00.005Z",
        ),
        (
            datetime(2026, 12, 31, 22, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2027-01-01T03:00:00.000Z",
        ),
        (datetime(1, 1, 1, 0, 0, 0, 1000, tzinfo=UTC), "0001-01-01T00:00:00.001Z"),
    ],
    ids=["utc", "no-fraction", "truncates", "padded", "plus-0230", "minus-05-year-rollover", "y1"],
)
def test_wire_time_format(moment: datetime, expected: str) -> None:
    """occurred_at is UTC, YYYY-MM-DDTHH:MM:SS.mmmZ, converting any aware time."""
    assert wire_time(moment) == expected
    assert WIRE_TIME.match(expected)


def test_wire_occurred_at_converted_from_other_zone() -> None:
    """An Event built with a non-UTC aware time is sent in UTC."""
    tokyo = WHEN.astimezone(timezone(timedelta(hours=9)))
    assert event(occurred_at=tokyo).to_wire()["occurred_at"] == "2026-11-23T10:00:00.123Z"


def test_idempotency_key_is_deterministic() -> None:
    """The same scope and ids always give the same key."""
    assert idempotency_key("/events/batch", ["a", "b"]) == idempotency_key(
        "/events/batch", iter(["a", "b"])
    )


@pytest.mark.parametrize(
    "ids",
    [[], ["a"], ["a", "b", "c"], [new_event_id() for _ in range(50)]],
    ids=["none", "one", "three", "fifty"],
)
def test_idempotency_key_is_uuid4_shaped(ids: list[str]) -> None:
    """The key parses as a UUID with version 4 and the RFC 4122 variant."""
    key = idempotency_key("/events/batch", ids)
    parsed = uuid.UUID(key)
    assert str(parsed) == key
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert key[14] == "4"
    assert key[19] in "89ab"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("/events/batch", ["a", "b"]), ("/users", ["a", "b"])),
        (("/events/batch", ["a", "b"]), ("/events/batch", ["b", "a"])),
        (("/events/batch", ["a", "b"]), ("/events/batch", ["a"])),
        (("/events/batch", ["a", "b"]), ("/events/batch", ["a", "c"])),
        (("/events/batch", ["ab"]), ("/events/batch", ["a", "b"])),
        (("/events/batch", ["a", "b"]), ("/events/batch", ["a", "b", ""])),
    ],
    ids=["scope", "order", "fewer", "other-id", "concatenation", "empty-id"],
)
def test_idempotency_key_differs(left: tuple[str, list[str]], right: tuple[str, list[str]]) -> None:
    """A different scope, order or set of ids gives a different key."""
    assert idempotency_key(*left) != idempotency_key(*right)


def test_user_upsert_promotes_email() -> None:
    """email moves out of traits to the top level of the /users body."""
    body = event(traits={"email": "a@b.c", "plan": "pro"}).user_upsert()
    assert body == {"external_user_id": "usr_42", "email": "a@b.c", "traits": {"plan": "pro"}}


def test_user_upsert_omits_empty_traits() -> None:
    """With only an email there is no traits key."""
    assert event(traits={"email": "a@b.c"}).user_upsert() == {
        "external_user_id": "usr_42",
        "email": "a@b.c",
    }


@pytest.mark.parametrize("traits", [None, {}], ids=["none", "empty"])
def test_user_upsert_without_traits(traits: dict[str, object] | None) -> None:
    """No traits at all gives just the user id."""
    assert event(traits=traits).user_upsert() == {"external_user_id": "usr_42"}


@pytest.mark.parametrize("email", ["", None, 5], ids=["empty", "none", "int"])
def test_user_upsert_keeps_unusable_email_as_a_trait(email: object) -> None:
    """An empty or non-str email is not the top-level email; it stays a trait, not lost."""
    body = event(traits={"email": email, "plan": "pro"}).user_upsert()
    assert "email" not in body
    assert body["traits"] == {"email": email, "plan": "pro"}


def test_user_upsert_leaves_traits_untouched() -> None:
    """Building the body does not remove email from the Event's own traits."""
    original = event(traits={"email": "a@b.c"})
    original.user_upsert()
    assert original.traits == {"email": "a@b.c"}


def test_new_event_id_is_32_hex_and_unique() -> None:
    """new_event_id gives 32 lowercase hex digits, a new one every call."""
    ids = [new_event_id() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_new_event_ids_draws_as_many_ids_as_new_event_id_makes() -> None:
    """In bulk: ``count`` ids of 32 lowercase hex digits, all different; none for 0."""
    for count in (1, 2, 500):
        ids = new_event_ids(count)
        assert len(ids) == count
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        assert len(set(ids)) == count
    assert new_event_ids(0) == []


def test_new_event_id_ignores_seeded_random() -> None:
    """Seeding the random module does not make ids repeat."""
    import random

    random.seed(1)
    first = new_event_id()
    random.seed(1)
    assert new_event_id() != first
