"""Rate-limited warnings: once per reason per interval, then how many were held back."""

from __future__ import annotations

import logging

import pytest

from vf_otel._observe import WARNING_INTERVAL, RateLimitedLog

LOGGER = "vf_otel.test_ratelimit"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A fresh hand-driven clock."""
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> RateLimitedLog:
    """A RateLimitedLog on a test logger with the default interval and the test clock."""
    return RateLimitedLog(logging.getLogger(LOGGER), clock=clock)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The formatted messages logged so far."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_default_interval_is_a_minute() -> None:
    """Warnings repeat at most once a minute by default."""
    assert WARNING_INTERVAL == 60.0


def test_first_message_logged(limiter: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    """The first message for a reason is logged, with its arguments applied."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert limiter.warning("r", "dropped %d event(s)", 3) is True
    assert messages(caplog) == ["dropped 3 event(s)"]
    assert caplog.records[0].levelno == logging.WARNING


def test_repeat_within_interval_suppressed(
    limiter: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The same reason again within the interval is not logged."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("r", "first")
        clock.now += WARNING_INTERVAL - 0.001
        assert limiter.warning("r", "second") is False
    assert messages(caplog) == ["first"]


def test_logged_again_after_interval_with_held_count(
    limiter: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """After the interval the next message is logged and says how many were held back."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("r", "boom %s", "a")
        for _ in range(4):
            clock.now += 1
            limiter.warning("r", "boom %s", "b")
        clock.now += WARNING_INTERVAL
        assert limiter.warning("r", "boom %s", "c") is True
    first, second = messages(caplog)
    assert first == "boom a"
    assert second.startswith("boom c")
    assert "4 more" in second


def test_interval_measured_from_last_logged_message(
    limiter: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Suppressed messages do not restart the interval."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("r", "one")
        clock.now += WARNING_INTERVAL / 2
        limiter.warning("r", "held")
        clock.now += WARNING_INTERVAL / 2
        assert limiter.warning("r", "two") is True
    assert len(messages(caplog)) == 2


def test_held_count_resets_after_report(
    limiter: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Once reported, the held-back count starts again from zero."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("r", "one")
        limiter.warning("r", "held")
        clock.now += WARNING_INTERVAL
        limiter.warning("r", "two")
        clock.now += WARNING_INTERVAL
        limiter.warning("r", "three")
    assert "1 more" in messages(caplog)[1]
    assert messages(caplog)[2] == "three"


def test_reasons_are_independent(
    limiter: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """One reason being suppressed does not suppress or count another."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("a", "a1")
        limiter.warning("a", "a2")
        assert limiter.warning("b", "b1") is True
        clock.now += WARNING_INTERVAL
        limiter.warning("b", "b2")
    assert messages(caplog) == ["a1", "b1", "b2"]


def test_custom_interval(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A custom interval is honoured."""
    limiter = RateLimitedLog(logging.getLogger(LOGGER), interval=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        limiter.warning("r", "one")
        clock.now += 4.9
        limiter.warning("r", "held")
        clock.now += 0.1
        limiter.warning("r", "two")
    assert [m.split(" (")[0] for m in messages(caplog)] == ["one", "two"]


def _fail() -> None:
    raise RuntimeError("inner")


def test_error_level_and_exc_info(
    limiter: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    """error() logs at ERROR; log() passes exc_info through."""
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        limiter.error("e", "bad")
        try:
            _fail()
        except RuntimeError:
            limiter.log(logging.ERROR, "x", "with traceback", exc_info=True)
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert caplog.records[1].exc_info is not None
    assert "RuntimeError: inner" in caplog.text
