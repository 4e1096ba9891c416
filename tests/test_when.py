"""Explicit event times, read into UTC or refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vf_otel._event.model import MAX_AHEAD, explicit_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 30, 10, 0, tzinfo=UTC), datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
        (
            datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        ),
        (1_764_496_800, datetime(2025, 11, 30, 10, 0, tzinfo=UTC)),
        (1_764_496_800.5, datetime(2025, 11, 30, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
        ("2026-11-30T12:00:00.250+02:00", datetime(2026, 11, 30, 10, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_accepted_forms_become_utc(value: object, expected: datetime) -> None:
    """Aware datetimes, epoch seconds and ISO strings (Z or an offset) become the same UTC."""
    assert explicit_time(value, NOW) == expected


def test_a_naive_datetime_is_local_time() -> None:
    """A naive datetime is read as local time, as datetime.astimezone does."""
    naive = datetime(2026, 11, 30, 10, 0)  # naive: the case under test
    assert explicit_time(naive, NOW) == naive.astimezone(UTC)


@pytest.mark.parametrize(
    "value",
    [True, None, [1], float("nan"), float("inf"), 1e20, "yesterday", "2026-13-01", b"2026"],
)
def test_unusable_values_are_refused_with_a_message(value: object) -> None:
    """Anything else is a message, never an exception."""
    assert isinstance(explicit_time(value, NOW), str)


def test_too_far_ahead_is_refused_and_just_ahead_is_kept() -> None:
    """More than MAX_AHEAD in the future is refused (a broken clock); milliseconds too."""
    assert explicit_time(NOW + MAX_AHEAD - timedelta(seconds=1), NOW) == (
        NOW + MAX_AHEAD - timedelta(seconds=1)
    )
    assert "ahead" in str(explicit_time(NOW + MAX_AHEAD + timedelta(seconds=1), NOW))
    assert "milliseconds" in str(explicit_time(NOW.timestamp() * 1000, NOW))


def test_a_hostile_repr_does_not_escape() -> None:
    """A value whose repr raises still gets a message."""

    class Hostile(str):
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert isinstance(explicit_time(Hostile("not a time"), NOW), str)
