"""Coercion of arbitrary property values to strict JSON."""

from __future__ import annotations

import copy
import datetime as dt
import enum
import json
import math
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NoReturn

import pytest

from vf_otel._event.values import MAX_DEPTH, MAX_STRING_LENGTH, coerce_mapping, coerce_value


class Color(enum.Enum):
    """A plain Enum."""

    RED = "red"
    NESTED = (1, 2)


class Level(enum.IntEnum):
    """An int-valued Enum, which must still become its value."""

    HIGH = 3


class Opaque:
    """An object JSON does not know, with a readable ``__str__``."""

    def __str__(self) -> str:
        return "opaque!"


class Unprintable:
    """An object whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class BadStrType:
    """An object whose ``__str__`` returns something that is not a str."""

    def __str__(self) -> Any:
        return 42  # noqa: PLE0307 - the point of this class


class LongText:
    """An object whose ``__str__`` is too long."""

    def __str__(self) -> str:
        return "x" * (MAX_STRING_LENGTH + 10)


class Shouty(str):
    """A str subclass whose ``__str__`` lies: the value itself must be kept."""

    __slots__ = ()

    def __str__(self) -> str:
        return "SHOUT"


AWARE = dt.datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
NAIVE = dt.datetime(2026, 11, 23, 10, 0, 0)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
LONG = "x" * (MAX_STRING_LENGTH + 10)
TRUNCATED = coerce_value(LONG)

# (input, expected coerced value)
TABLE: list[tuple[Any, Any]] = [
    ("plain", "plain"),
    (7, 7),
    (1.5, 1.5),
    (True, True),
    (None, None),
    (AWARE, "2026-11-23T08:00:00.123Z"),
    (NAIVE, "2026-11-23T10:00:00"),
    (dt.date(2026, 1, 2), "2026-01-02"),
    (dt.time(3, 4, 5), "03:04:05"),
    ((1, "a", None), [1, "a", None]),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    (Color.RED, "red"),
    (Color.NESTED, [1, 2]),
    (Level.HIGH, 3),
    (Decimal("1.10"), "1.10"),
    (Decimal("NaN"), "NaN"),
    (UID, "12345678-1234-5678-1234-567812345678"),
    (Opaque(), "opaque!"),
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (b"caf\xc3\xa9", "café"),
    (b"bad\xff", "bad\ufffd"),
    (bytearray(b"ab"), "ab"),
    (memoryview(b"mv"), "mv"),
    (Unprintable(), "<unprintable Unprintable>"),
    (BadStrType(), "<unprintable BadStrType>"),
    (Shouty("quiet"), "quiet"),
    ([float("nan"), {"k": b"v"}], [None, {"k": "v"}]),
]


@pytest.mark.parametrize(("value", "expected"), TABLE)
def test_coerce_value_table(value: Any, expected: Any) -> None:
    """Each bad-input kind becomes its strict-JSON value (the table above)."""
    result = coerce_value(value)
    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(("value", "expected"), TABLE)
def test_coerce_mapping_table(value: Any, expected: Any) -> None:
    """The same rules apply to a property value inside a mapping."""
    result = coerce_mapping({"key": value})
    assert result == {"key": expected}
    assert type(result["key"]) is type(expected)
    json.dumps(result, allow_nan=False)


def test_coerced_bool_and_int_subclasses_are_plain() -> None:
    """IntEnum becomes a plain int and bool stays bool (not 1/0)."""
    result = coerce_mapping({"level": Level.HIGH, "flag": True})
    assert type(result["level"]) is int
    assert result["flag"] is True


class Colliding:
    """Unorderable, and all instances share one hash: a set iterates them in insertion order."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"Colliding({self.label})"

    def __str__(self) -> str:
        return self.label


def test_set_order_is_stable_whatever_the_insertion_order() -> None:
    """Two equal sets built in different orders serialise to the same list."""
    members = [Colliding(label) for label in "cab"]
    forward: set[Colliding] = set()
    backward: set[Colliding] = set()
    for member in members:
        forward.add(member)
    for member in reversed(members):
        backward.add(member)
    assert [m.label for m in forward] != [m.label for m in backward]
    assert coerce_value(forward) == coerce_value(backward) == ["a", "b", "c"]


def test_set_of_mixed_types_has_one_order() -> None:
    """A set whose members cannot be compared still gets a fixed order (by repr)."""
    assert coerce_value({1, "a", (2, 3), None}) == ["a", [2, 3], 1, None]


def test_self_referencing_mapping_becomes_cycle_mark() -> None:
    """A mapping that contains itself gets "<cycle>" where the loop closes."""
    props: dict[str, Any] = {"name": "x"}
    props["self"] = props
    assert coerce_mapping(props) == {"name": "x", "self": "<cycle>"}


def test_list_cycle_becomes_cycle_mark() -> None:
    """A list that contains itself gets "<cycle>" where the loop closes."""
    items: list[Any] = [1]
    items.append(items)
    assert coerce_value(items) == [1, "<cycle>"]


def test_shared_reference_is_not_a_cycle() -> None:
    """The same object under two keys is not a cycle and is converted twice."""
    shared = [1, (2,)]
    assert coerce_mapping({"a": shared, "b": shared}) == {"a": [1, [2]], "b": [1, [2]]}


def _nested(levels: int) -> dict[str, Any]:
    """A mapping of ``levels`` dicts, each under the key "a" of the one above."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _depth_of_dicts(value: Any) -> int:
    depth = 0
    while isinstance(value, dict):
        depth += 1
        value = value.get("a", value.get("leaf"))
    return depth


def test_depth_up_to_limit_is_kept() -> None:
    """A mapping nested exactly MAX_DEPTH levels deep is kept as nested objects."""
    result = coerce_mapping(_nested(MAX_DEPTH))
    assert result == _nested(MAX_DEPTH)
    assert _depth_of_dicts(result) == MAX_DEPTH


def test_depth_over_limit_becomes_string() -> None:
    """Below MAX_DEPTH levels, what is left of the structure becomes a string."""
    result = coerce_mapping(_nested(MAX_DEPTH + 3))
    inner: Any = result
    for _ in range(MAX_DEPTH - 1):
        inner = inner["a"]
    assert isinstance(inner["a"], str)
    assert inner["a"].startswith("{'a':")
    json.dumps(result, allow_nan=False)


def test_very_deep_list_is_coerced_without_recursion_error() -> None:
    """A list nested far beyond the limit is cut at the limit, not recursed through."""
    value: Any = "bottom"
    for _ in range(200):
        value = [value]
    result = coerce_value(value)
    for _ in range(MAX_DEPTH):
        assert isinstance(result, list)
        result = result[0]
    assert isinstance(result, str)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (1, "1"),
        (1.5, "1.5"),
        (None, "None"),
        ((1, 2), "(1, 2)"),
        (Color.RED, "red"),
        (UID, str(UID)),
        (Unprintable(), "<unprintable Unprintable>"),
    ],
)
def test_non_str_keys_become_str(key: Any, expected: str) -> None:
    """Every key comes out as a str."""
    assert coerce_mapping({key: "v"}) == {expected: "v"}


def test_nested_non_str_keys_become_str() -> None:
    """Keys of nested mappings are converted too."""
    assert coerce_mapping({"outer": {2: {3: "x"}}}) == {"outer": {"2": {"3": "x"}}}


def test_long_string_value_truncated() -> None:
    """A value longer than MAX_STRING_LENGTH is cut to exactly that length, marked."""
    result = coerce_mapping({"long": LONG})["long"]
    assert len(result) == MAX_STRING_LENGTH
    assert result == TRUNCATED
    assert result.startswith("x" * 100)
    assert result.endswith("[truncated]")


def test_string_at_limit_is_untouched() -> None:
    """A value of exactly MAX_STRING_LENGTH characters is kept whole."""
    exact = "y" * MAX_STRING_LENGTH
    assert coerce_mapping({"s": exact})["s"] == exact


@pytest.mark.parametrize(
    "value",
    [
        [LONG],
        LongText(),
        LONG.encode(),
    ],
    ids=["in-list", "object-str", "bytes"],
)
def test_long_text_from_any_source_truncated(value: Any) -> None:
    """Text produced by str(), bytes decoding or inside a list is clipped too."""
    result = coerce_mapping({"v": value})["v"]
    text = result[0] if isinstance(result, list) else result
    assert len(text) == MAX_STRING_LENGTH


@pytest.mark.parametrize("other", [1, 1.5j], ids=["plain-values", "needs-coercion"])
def test_long_key_truncated(other: Any) -> None:
    """A key longer than MAX_STRING_LENGTH is clipped whatever the other values are."""
    result = coerce_mapping({LONG: 1, "other": other})
    assert all(len(key) <= MAX_STRING_LENGTH for key in result)
    assert TRUNCATED in result


def _messy() -> dict[Any, Any]:
    return {
        "when": AWARE,
        "tags": {"b", "a"},
        "pair": (1, [2, {3}]),
        "nested": {"nan": float("nan"), 5: b"\xff", "enum": Color.RED},
        "money": Decimal("9.99"),
        1: "int key",
    }


def test_input_mapping_not_mutated() -> None:
    """coerce_mapping returns a new structure and leaves every input object as it was."""
    original = _messy()
    snapshot = copy.deepcopy(original)
    nested_before = original["nested"]
    coerce_mapping(original)
    assert original.keys() == snapshot.keys()
    assert original["nested"] is nested_before
    assert isinstance(original["tags"], set)
    assert original["tags"] == snapshot["tags"]
    assert original["pair"] == snapshot["pair"]
    assert math.isnan(original["nested"]["nan"])
    assert original["nested"][5] == b"\xff"
    assert original["nested"]["enum"] is Color.RED


def test_plain_mapping_copy_is_independent() -> None:
    """Even on the fast path the result is a new dict, so changing it leaves the input alone."""
    original = {"a": 1, "b": "two"}
    result = coerce_mapping(original)
    result["c"] = 3
    assert original == {"a": 1, "b": "two"}


def test_ordered_and_custom_mappings_become_dicts() -> None:
    """Any Mapping becomes a plain dict."""
    result = coerce_mapping({"m": OrderedDict([("x", 1)])})
    assert type(result["m"]) is dict
    assert result == {"m": {"x": 1}}


def test_messy_result_is_strict_json() -> None:
    """A mix of every bad-input kind dumps as strict JSON, deterministically."""
    first = json.dumps(coerce_mapping(_messy()), allow_nan=False, sort_keys=True)
    second = json.dumps(coerce_mapping(_messy()), allow_nan=False, sort_keys=True)
    assert first == second
    assert json.loads(first)["nested"] == {"nan": None, "5": "\ufffd", "enum": "red"}


# -- values whose conversion raises ------------------------------------------------------

BIG = 10**5000
BIG_TEXT = f"<int: {BIG.bit_length()} bits>"


@pytest.fixture
def int_digit_limit() -> Iterator[None]:
    """Restores the interpreter's int-to-str digit limit a test changes."""
    before = sys.get_int_max_str_digits()
    yield
    sys.set_int_max_str_digits(before)


def _boom(*_args: object) -> NoReturn:
    raise RuntimeError("hostile")


class BadItems(dict[str, Any]):
    """A dict subclass whose items() raises."""

    items = _boom


class BadIter(list[Any]):
    """A list subclass whose iteration raises."""

    __iter__ = _boom


class LyingItems(dict[str, Any]):
    """A dict subclass whose items() hides what it really holds."""

    def items(self) -> Any:
        return [("shown", 1)]


class NotPairs(OrderedDict[str, Any]):
    """A mapping whose items() yields something that is not key/value pairs."""

    def items(self) -> Any:
        return [1, 2]


class Reprless:
    """An object whose ``__str__`` and ``__repr__`` both raise."""

    __str__ = _boom
    __repr__ = _boom


class BadCompare:
    """An object whose comparisons raise something other than TypeError."""

    __lt__ = _boom
    __gt__ = _boom

    def __repr__(self) -> str:
        return "BadCompare()"


class HostileClass:
    """An object whose ``__class__`` raises, so even isinstance() on it raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise RuntimeError("hostile")


class BadInt(int):
    """An int subclass whose own conversions raise: the number itself must be kept."""

    __int__ = _boom
    __index__ = _boom
    __str__ = _boom
    __repr__ = _boom


class BadFloat(float):
    """A float subclass whose own conversions raise: the number itself must be kept."""

    __float__ = _boom
    __repr__ = _boom


class TrickyText:
    """An object whose ``__str__`` returns a str subclass with hostile methods."""

    def __str__(self) -> str:
        return HostileStr("tricky")


class HostileStr(str):
    """A str subclass whose methods raise."""

    __slots__ = ()
    isascii = _boom
    encode = _boom  # type: ignore[assignment]


def test_int_too_long_to_print_is_described_by_its_bits() -> None:
    """An int past Python's digit limit becomes "<int: N bits>", never str() of it."""
    assert coerce_value(BIG) == BIG_TEXT
    assert coerce_value(-BIG) == f"<negative int: {BIG.bit_length()} bits>"
    assert coerce_value([BIG]) == [BIG_TEXT]
    assert coerce_mapping({"big": BIG}) == {"big": BIG_TEXT}
    assert coerce_mapping({"nested": {"big": BIG}}) == {"nested": {"big": BIG_TEXT}}
    json.dumps(coerce_mapping({"big": BIG, "tags": {BIG, 1}}), allow_nan=False)


def test_int_digit_limit_is_exact(int_digit_limit: None) -> None:
    """An int with exactly the limit's digits stays a number; one more digit does not."""
    sys.set_int_max_str_digits(640)
    longest = 10**640 - 1
    assert coerce_value(longest) == longest
    assert coerce_value(-longest) == -longest
    assert coerce_value(longest + 1) == f"<int: {(longest + 1).bit_length()} bits>"


def test_int_without_digit_limit_is_capped_like_a_string(int_digit_limit: None) -> None:
    """With the limit off, an int longer than MAX_STRING_LENGTH digits is still described."""
    sys.set_int_max_str_digits(0)
    assert coerce_value(BIG) == BIG
    huge = 10**MAX_STRING_LENGTH
    assert coerce_value(huge) == f"<int: {huge.bit_length()} bits>"


def test_int_too_long_to_print_as_key_is_described() -> None:
    """A mapping key that is an int past the digit limit becomes its description."""
    assert coerce_mapping({BIG: 1, 2: "two"}) == {BIG_TEXT: 1, "2": "two"}


def test_set_with_members_whose_repr_raises_is_ordered() -> None:
    """A mixed set is sorted by repr even when some members' repr raises."""
    assert coerce_value({BIG, "a"}) == ["a", BIG_TEXT]
    assert coerce_value({"a", Reprless()}) == ["a", "<unprintable Reprless>"]


def test_set_whose_comparisons_raise_is_ordered_by_repr() -> None:
    """A set whose members' __lt__ raises anything still gets an order."""
    assert coerce_value({BadCompare(), BadCompare()}) == ["BadCompare()", "BadCompare()"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BadItems(a=1), "<unprintable BadItems>"),
        (BadIter([1]), "<unprintable BadIter>"),
        (NotPairs(a=1), "<unprintable NotPairs>"),
        (Reprless(), "<unprintable Reprless>"),
        (HostileClass(), "<unprintable HostileClass>"),
        (BadInt(5), 5),
        (BadFloat(2.5), 2.5),
        (TrickyText(), "tricky"),
    ],
    ids=["items", "iter", "not-pairs", "str-and-repr", "class", "int", "float", "str-subclass"],
)
def test_value_whose_conversion_raises_becomes_placeholder(value: Any, expected: Any) -> None:
    """A nested value whose conversion raises is replaced; its siblings are kept."""
    result = coerce_mapping({"bad": value, "good": 1, "list": [value]})
    assert result == {"bad": expected, "good": 1, "list": [expected]}
    assert type(result["bad"]) is type(expected)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (Reprless(), "<unprintable Reprless>"),
        (HostileClass(), "<unprintable HostileClass>"),
        (BadInt(5), "<unprintable BadInt>"),
        (TrickyText(), "tricky"),
    ],
    ids=["str-and-repr", "class", "int-str", "str-subclass"],
)
def test_key_whose_conversion_raises_becomes_placeholder(key: Any, expected: str) -> None:
    """A key whose conversion to text raises becomes a placeholder string."""
    assert coerce_mapping({key: 1}) == {expected: 1}


def test_dict_subclass_is_read_through_its_items() -> None:
    """A dict subclass is read through its items(), so nothing it hides can poison the body."""
    result = coerce_mapping(LyingItems(hidden=BIG))
    assert result == {"shown": 1}


def test_unreadable_top_level_mapping_raises_for_the_caller() -> None:
    """Only the mapping itself failing to be read raises (make_event reports it)."""
    with pytest.raises(RuntimeError, match="hostile"):
        coerce_mapping(BadItems(a=1))
