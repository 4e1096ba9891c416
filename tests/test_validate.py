"""Client-side event checks: make_event builds an Event or says why not."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn

import pytest

from vf_otel._event.build import (
    CANONICAL_EVENTS,
    Rejection,
    build_batch,
    build_pending,
    make_event,
)
from vf_otel._event.model import Event
from vf_otel._event.values import Redactor

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

#: vibefollow-api.md §6: the nine canonical events and their required properties.
EXPECTED_REQUIRED = {
    "user_signed_up": (),
    "trial_started": (),
    "feature_used": ("feature",),
    "onboarding_step": ("step",),
    "subscription_changed": ("to",),
    "subscription_cancelled": (),
    "payment_failed": (),
    "trial_expiring": ("daysLeft",),
    "user_invited": ("invitedEmail",),
}


def build(**overrides: Any) -> Event | Rejection:
    """make_event with valid defaults, some fields overridden."""
    fields: dict[str, Any] = {
        "name": "custom_thing",
        "user_id": "usr_42",
        "properties": {},
        "traits": None,
        "occurred_at": WHEN,
        "event_id": "e1",
        **overrides,
    }
    return make_event(**fields)


def rejected(result: Event | Rejection) -> Rejection:
    """The Rejection, failing the test if an Event was built."""
    assert isinstance(result, Rejection), result
    return result


def built(result: Event | Rejection) -> Event:
    """The Event, failing the test if it was rejected."""
    assert isinstance(result, Event), result
    return result


def test_valid_event_is_built_with_every_field() -> None:
    """Valid input yields an Event carrying name, user, properties, time, id and traits."""
    event = built(build(properties={"plan": "pro"}, traits={"email": "a@b.c"}))
    assert event == Event("custom_thing", "usr_42", {"plan": "pro"}, WHEN, "e1", {"email": "a@b.c"})


def test_missing_user_rejected_as_missing() -> None:
    """user_id None is a missing_user rejection on external_user_id."""
    rejection = rejected(build(user_id=None))
    assert rejection.reason == "missing_user"
    assert rejection.field == "external_user_id"
    assert rejection.message


@pytest.mark.parametrize(
    "user_id",
    ["", "  ", "\t\n", True, False, ["usr_42"], 1.5, b"usr"],
    ids=["empty", "spaces", "whitespace", "true", "false", "list", "float", "bytes"],
)
def test_invalid_user_rejected(user_id: object) -> None:
    """A blank string, bool, list or other non-str/int user is invalid_user."""
    rejection = rejected(build(user_id=user_id))
    assert rejection.reason == "invalid_user"
    assert rejection.field == "external_user_id"
    assert type(user_id).__name__ in rejection.message


@pytest.mark.parametrize(("user_id", "expected"), [(42, "42"), (0, "0"), (-7, "-7")])
def test_int_user_becomes_str(user_id: int, expected: str) -> None:
    """An integer user id is accepted and sent as its decimal string."""
    assert built(build(user_id=user_id)).user_id == expected


def test_user_secret_looking_value_not_echoed() -> None:
    """An invalid user value is described by type, never echoed into the message."""
    rejection = rejected(build(user_id=["sk_live_secretvalue"]))
    assert "sk_live_secretvalue" not in rejection.message


@pytest.mark.parametrize(
    "name",
    [None, "", "   ", 5, b"feature_used", ["x"]],
    ids=["none", "empty", "spaces", "int", "bytes", "list"],
)
def test_invalid_name_rejected(name: object) -> None:
    """A missing, blank or non-str name is invalid_name on the name field."""
    rejection = rejected(build(name=name))
    assert rejection.reason == "invalid_name"
    assert rejection.field == "name"


def test_invalid_name_message_is_short() -> None:
    """A huge bad name is quoted only briefly in the message."""
    rejection = rejected(build(name=["x" * 10_000]))
    assert len(rejection.message) < 200


def test_user_checked_before_name() -> None:
    """With both user and name bad, the user problem is reported."""
    assert rejected(build(user_id=None, name="")).reason == "missing_user"


@pytest.mark.parametrize(
    "properties",
    ["plan=pro", ["plan", "pro"], 3, ("a", 1)],
    ids=["str", "list", "int", "tuple"],
)
def test_properties_not_a_mapping_rejected(properties: object) -> None:
    """Properties that are not a mapping are invalid_properties."""
    rejection = rejected(build(properties=properties))
    assert rejection.reason == "invalid_properties"
    assert rejection.field == "properties"
    assert type(properties).__name__ in rejection.message


def test_properties_none_means_empty() -> None:
    """No properties at all gives an empty properties dict."""
    assert built(build(properties=None)).properties == {}


def test_properties_are_coerced() -> None:
    """Properties come out coerced to strict JSON values with str keys."""
    event = built(build(properties=OrderedDict([(1, {2, 1}), ("nan", float("nan"))])))
    assert event.properties == {"1": [1, 2], "nan": None}


@pytest.mark.parametrize(
    "traits", ["email", ["email"], 0, False], ids=["str", "list", "0", "false"]
)
def test_traits_not_a_mapping_rejected(traits: object) -> None:
    """Traits that are present but not a mapping are invalid_traits."""
    rejection = rejected(build(traits=traits))
    assert rejection.reason == "invalid_traits"
    assert rejection.field == "traits"


def test_traits_none_means_no_upsert() -> None:
    """Without traits the event carries None, so no user upsert is made."""
    assert built(build(traits=None)).traits is None


def test_traits_are_coerced() -> None:
    """Traits are coerced like properties."""
    assert built(build(traits={"seats": (1, 2), 3: b"x"})).traits == {"seats": [1, 2], "3": "x"}


def test_canonical_events_are_exactly_the_nine_documented() -> None:
    """CANONICAL_EVENTS lists exactly the nine documented names with their required keys."""
    assert len(CANONICAL_EVENTS) == 9
    assert dict(CANONICAL_EVENTS) == EXPECTED_REQUIRED


def test_canonical_events_cannot_be_changed() -> None:
    """The public table is read-only."""
    with pytest.raises(TypeError):
        CANONICAL_EVENTS["user_signed_up"] = ("x",)  # type: ignore[index]


REQUIRED_CASES = [(name, key) for name, keys in sorted(EXPECTED_REQUIRED.items()) for key in keys]


@pytest.mark.parametrize(("name", "key"), REQUIRED_CASES)
def test_canonical_required_property_missing_rejected(name: str, key: str) -> None:
    """A canonical event without its required property is missing_required_property."""
    rejection = rejected(build(name=name, properties={"other": 1}))
    assert rejection.reason == "missing_required_property"
    assert rejection.field == f"properties.{key}"
    assert repr(key) in rejection.message


@pytest.mark.parametrize(("name", "key"), REQUIRED_CASES)
def test_canonical_required_property_none_rejected(name: str, key: str) -> None:
    """A required property that is present but None counts as missing."""
    rejection = rejected(build(name=name, properties={key: None}))
    assert rejection.reason == "missing_required_property"
    assert rejection.field == f"properties.{key}"


@pytest.mark.parametrize(("name", "key"), REQUIRED_CASES)
def test_canonical_required_property_nan_rejected(name: str, key: str) -> None:
    """A required property that coerces to null (NaN) counts as missing too."""
    rejection = rejected(build(name=name, properties={key: float("nan")}))
    assert rejection.reason == "missing_required_property"


@pytest.mark.parametrize(("name", "key"), REQUIRED_CASES)
def test_canonical_required_property_present_accepted(name: str, key: str) -> None:
    """With its required property present the canonical event is built."""
    assert built(build(name=name, properties={key: "v"})).properties == {key: "v"}


@pytest.mark.parametrize("name", sorted(n for n, keys in EXPECTED_REQUIRED.items() if not keys))
def test_canonical_events_without_requirements_accept_no_properties(name: str) -> None:
    """Canonical events with no required property are built with no properties."""
    assert built(build(name=name, properties=None)).name == name


@pytest.mark.parametrize("name", ["checkout_done", "Feature Used", "feature_used_v2", "x"])
def test_custom_names_unconstrained(name: str) -> None:
    """Any other non-empty name is a custom event with no required properties."""
    assert built(build(name=name, properties={})).name == name


def test_rejection_is_a_frozen_value() -> None:
    """Rejection carries reason, field and message and cannot be changed."""
    rejection = Rejection("r", "f", "m")
    assert (rejection.reason, rejection.field, rejection.message) == ("r", "f", "m")
    with pytest.raises(AttributeError):
        rejection.reason = "other"  # type: ignore[misc]


# -- hostile values: a Rejection or a sendable Event, never an exception ----------------

BIG = 10**5000


def _boom(*_args: object) -> NoReturn:
    raise RuntimeError("hostile")


class HostileClass:
    """An object whose ``__class__`` raises, so even isinstance() on it raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise RuntimeError("hostile")


class HostileStr(str):
    """A str subclass whose methods (strip, isascii, ...) raise."""

    __slots__ = ()
    strip = _boom
    isascii = _boom
    encode = _boom  # type: ignore[assignment]
    __str__ = _boom
    __hash__ = _boom


class BadStrInt(int):
    """An int subclass whose ``__str__`` raises."""

    __str__ = _boom


class BadItems(dict[str, Any]):
    """A dict subclass whose items() raises."""

    items = _boom


class BadMapping(Mapping[str, Any]):
    """A Mapping whose every method raises."""

    __getitem__ = _boom
    __iter__ = _boom
    __len__ = _boom


class Reprless:
    """An object whose ``__str__`` and ``__repr__`` raise."""

    __str__ = _boom
    __repr__ = _boom


class ExplodingRedactor(Redactor):
    """A redactor that fails: the kind of bug only the last-resort guard catches."""

    __slots__ = ()

    def properties(self, value: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")


def test_int_user_too_long_to_print_rejected() -> None:
    """A user id int past Python's digit limit is invalid_user, not a ValueError."""
    rejection = rejected(build(user_id=BIG))
    assert (rejection.reason, rejection.field) == ("invalid_user", "external_user_id")


def test_int_user_whose_str_raises_rejected() -> None:
    """An int subclass user id whose __str__ raises is invalid_user."""
    assert rejected(build(user_id=BadStrInt(7))).reason == "invalid_user"


@pytest.mark.parametrize(
    "make", [HostileClass, Reprless, lambda: BIG], ids=["class", "repr", "int"]
)
def test_hostile_name_rejected(make: Callable[[], object]) -> None:
    """A name that raises on isinstance() or repr() is invalid_name with a readable message."""
    rejection = rejected(build(name=make()))
    assert (rejection.reason, rejection.field) == ("invalid_name", "name")
    assert len(rejection.message) < 200


def test_hostile_user_rejected() -> None:
    """A user id that raises on isinstance() is invalid_user."""
    assert rejected(build(user_id=HostileClass())).reason == "invalid_user"


def test_str_subclasses_with_hostile_methods_are_used_as_plain_str() -> None:
    """Name and user id str subclasses are read as their text, whatever their methods do."""
    event = built(build(name=HostileStr("signup"), user_id=HostileStr("usr_1")))
    assert (event.name, event.user_id) == ("signup", "usr_1")
    assert type(event.name) is str
    assert type(event.user_id) is str


@pytest.mark.parametrize("value", [BadItems(a=1), BadMapping()], ids=["dict", "mapping"])
@pytest.mark.parametrize("field", ["properties", "traits"])
def test_unreadable_mapping_rejected(field: str, value: object) -> None:
    """Properties or traits whose items() raises are invalid_<field>, naming the type."""
    rejection = rejected(build(**{field: value}))
    assert (rejection.reason, rejection.field) == (f"invalid_{field}", field)
    assert type(value).__name__ in rejection.message


@pytest.mark.parametrize("field", ["properties", "traits"])
def test_mapping_that_raises_on_isinstance_rejected(field: str) -> None:
    """Properties or traits that raise on isinstance() are invalid_<field>."""
    assert rejected(build(**{field: HostileClass()})).reason == f"invalid_{field}"


def test_hostile_values_give_a_sendable_event() -> None:
    """Poison values in properties and traits still give an Event whose bodies encode."""
    hostile = {
        "big": BIG,
        "keyed": {BIG: -BIG},
        "reprless": Reprless(),
        "unreadable": BadItems(a=1),
        "tags": {BIG, "a", Reprless()},
        "email": "a@b.c",
    }
    event = built(build(properties=hostile, traits=hostile))
    bits = BIG.bit_length()
    assert event.properties["big"] == f"<int: {bits} bits>"
    assert event.properties["keyed"] == {f"<int: {bits} bits>": f"<negative int: {bits} bits>"}
    assert event.traits == event.properties
    json.dumps(event.to_wire(), allow_nan=False)
    upsert = event.user_upsert()
    assert upsert["email"] == "a@b.c"
    json.dumps(upsert, allow_nan=False)


@pytest.mark.parametrize(
    "occurred_at",
    [
        datetime(1, 1, 1),
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=5))),
        "yesterday",
    ],
    ids=["naive-min", "aware-max", "not-a-datetime"],
)
def test_unusable_occurred_at_becomes_now(occurred_at: Any) -> None:
    """An occurred_at that cannot be written as UTC is replaced by the current time."""
    before = datetime.now(UTC)
    event = built(build(occurred_at=occurred_at))
    assert before <= event.occurred_at <= datetime.now(UTC)
    assert event.to_wire()["occurred_at"].endswith("Z")


def test_occurred_at_in_another_zone_is_kept_as_the_same_instant() -> None:
    """An aware occurred_at is stored in UTC, the same instant."""
    local = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = built(build(occurred_at=local))
    assert event.occurred_at == WHEN
    assert event.occurred_at.tzinfo is UTC


def test_failure_no_check_foresaw_is_internal_error() -> None:
    """An unexpected failure while building is the Rejection internal_error, never raised."""
    rejection = rejected(build(properties={"a": 1}, redactor=ExplodingRedactor()))
    assert (rejection.reason, rejection.field) == ("internal_error", "event")
    assert "RuntimeError" in rejection.message


def test_build_pending_uses_the_record_time() -> None:
    """A queued log call's created timestamp becomes occurred_at, in UTC."""
    event = built(build_pending(("ev", "usr_1", None, None, WHEN.timestamp())))
    assert event.occurred_at == WHEN
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    "created",
    [math.nan, math.inf, 1e300, -1e20, 253402300800.0, "soon", None],
    ids=["nan", "inf", "huge", "negative-huge", "year-10000", "str", "none"],
)
def test_build_pending_with_unusable_created_uses_now(created: Any) -> None:
    """A created timestamp that is no usable time is replaced by the current time."""
    before = datetime.now(UTC)
    event = built(build_pending(("ev", "usr_1", None, None, created)))
    assert before <= event.occurred_at <= datetime.now(UTC)
    # The worker's batch build agrees, whichever path the call takes.
    item = ("ev", "usr_1", {"a": 1}, None, created, Redactor())
    (event,), refused = build_batch([item])
    assert refused == []
    assert before <= event.occurred_at <= datetime.now(UTC)
    json.dumps(event.to_wire(), allow_nan=False)


class _FlatExploding(ExplodingRedactor):
    """Fails on the common call's own path too (flat properties)."""

    __slots__ = ()

    def flat_properties(self, value: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")


def test_build_batch_keeps_order_and_passes_queued_events_and_refusals_through() -> None:
    """Events come out in queue order, whatever path built each; refusals apart."""
    queued = make_event(
        name="queued", user_id="u", properties={}, traits=None, occurred_at=WHEN, event_id="q"
    )
    refusal = Rejection("missing_user", "external_user_id", "no user")
    redactor = Redactor()
    items: list[object] = [
        ("plain", "u", {"a": 1}, None, WHEN.timestamp(), redactor),  # the common call
        queued,
        ("nested", "u", {"a": {"b": [1]}}, None, WHEN.timestamp(), redactor),  # general path
        refusal,
        ("", "u", None, None, WHEN.timestamp(), redactor),  # refused by the checks
        ("five", "u", None, None, WHEN.timestamp()),  # no redactor: the default one
    ]
    events, refused = build_batch(items, event_ids=["e1", "e2", "e3", "e4", "e5", "e6"])
    assert [(e.name, e.event_id) for e in events] == [
        ("plain", "e1"),
        ("queued", "q"),
        ("nested", "e3"),
        ("five", "e6"),
    ]
    assert [r.reason for r in refused] == ["missing_user", "invalid_name"]
    assert events[0].properties == {"a": 1}
    assert events[0].occurred_at == WHEN


def test_build_batch_refuses_an_item_that_fails_unforeseen_and_builds_the_rest() -> None:
    """A failure no check foresaw costs that item (internal_error), never the batch."""
    items = [
        ("bad", "u", {"a": 1}, None, WHEN.timestamp(), _FlatExploding()),
        ("bad", "u", {"a": {"n": 1}}, None, WHEN.timestamp(), ExplodingRedactor()),
        ("good", "u", {"a": 1}, None, WHEN.timestamp(), Redactor()),
    ]
    events, refused = build_batch(items)
    assert [e.name for e in events] == ["good"]
    assert [(r.reason, r.field) for r in refused] == [("internal_error", "event")] * 2
    assert all("RuntimeError" in r.message for r in refused)


@pytest.mark.parametrize("created", [1764952047.6, 1764952047.001, 1.0, 0.9995, 1e9 + 0.5])
def test_a_record_time_is_the_millisecond_logging_shows(created: float) -> None:
    """Both paths keep logging's own ``msecs``: ``.6`` held as ``.59999…`` is 599 ms."""
    msecs = int((created - int(created)) * 1000)
    (fast,), _ = build_batch([("ev", "u", {"a": 1}, None, created, Redactor())])
    general = built(build_pending(("ev", "u", {"a": {"b": 1}}, None, created)))
    for event in (fast, general):
        assert event.occurred_at.microsecond == msecs * 1000
        assert int(event.occurred_at.timestamp()) == int(created)
