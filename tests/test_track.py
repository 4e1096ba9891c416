"""@vf_otel.track: an event per successful return, through the installed handler."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import vf_otel
from vf_otel import VibefollowHandler
from vf_otel.testing import VibefollowServer


@pytest.fixture
def handler(server: VibefollowServer) -> Iterator[VibefollowHandler]:
    """A VibefollowHandler on the root logger (left at its default WARNING level)."""
    made = VibefollowHandler(api_key=server.api_key, base_url=server.base_url)
    root = logging.getLogger()
    root.addHandler(made)
    yield made
    root.removeHandler(made)
    made.close()


def sent(handler: VibefollowHandler, server: VibefollowServer) -> list[tuple[str, str, Any]]:
    """Flush and return (name, user, properties) of every event the server accepted."""
    assert handler.flush(5.0)
    return [(e["name"], e["external_user_id"], e["properties"]) for e in server.events]


def test_sync_function_emits_after_return(
    handler: VibefollowHandler, server: VibefollowServer
) -> None:
    """A tracked function returns its value and emits once, user from context."""

    @vf_otel.track("feature_used", properties=lambda kind, **_: {"feature": kind})
    def export(kind: str, *, rows: int = 0) -> int:
        return rows * 2

    with vf_otel.user("usr_1"):
        assert export("csv", rows=4) == 8
    assert sent(handler, server) == [("feature_used", "usr_1", {"feature": "csv"})]


def test_exception_emits_nothing(handler: VibefollowHandler, server: VibefollowServer) -> None:
    """When the function raises, the exception propagates and no event is sent."""

    @vf_otel.track("report_created", user="usr_2")
    def create() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        create()
    assert sent(handler, server) == []
    assert handler.stats().enqueued == 0


def test_async_function_emits_after_await(
    handler: VibefollowHandler, server: VibefollowServer
) -> None:
    """An async function emits once its awaited result is ready, and not when it raises."""

    @vf_otel.track("synced", user=lambda account, fail: f"usr_{account}")
    async def sync(account: int, fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ValueError(account)
        return "ok"

    assert inspect.iscoroutinefunction(sync)
    assert asyncio.run(sync(3, False)) == "ok"
    with pytest.raises(ValueError, match="4"):
        asyncio.run(sync(4, True))
    assert sent(handler, server) == [("synced", "usr_3", {})]


def test_methods_pass_self_to_callables(
    handler: VibefollowHandler, server: VibefollowServer
) -> None:
    """On methods, user/properties callables receive self (or cls) like the function does."""

    class Account:
        plan = "pro"

        def __init__(self, owner: str) -> None:
            self.owner = owner

        @vf_otel.track("plan_viewed", user=lambda self: self.owner)
        def view(self) -> str:
            return self.plan

        @vf_otel.track("plans_listed", user="usr_c", properties=lambda cls, n: {"n": n})
        @classmethod
        def listing(cls, n: int) -> str:
            return cls.plan * n

        @vf_otel.track("price_checked", user=lambda amount: f"usr_{amount}")
        @staticmethod
        def price(amount: int) -> int:
            return amount

    assert Account("usr_a").view() == "pro"
    assert Account.view(Account("usr_b")) == "pro"
    assert Account.listing(2) == "propro"
    assert Account("x").price(5) == 5
    assert sent(handler, server) == [
        ("plan_viewed", "usr_a", {}),
        ("plan_viewed", "usr_b", {}),
        ("plans_listed", "usr_c", {"n": 2}),
        ("price_checked", "usr_5", {}),
    ]


def test_signature_and_docstring_are_preserved() -> None:
    """inspect.signature, __name__, __doc__ and __wrapped__ are those of the function."""

    def original(a: int, b: str = "x", *args: int, c: bool = False, **kw: Any) -> str:
        """Does things."""
        return b

    tracked = vf_otel.track("e", user="u")(original)
    assert inspect.signature(tracked) == inspect.signature(original)
    assert tracked.__name__ == "original"
    assert tracked.__doc__ == "Does things."
    assert inspect.unwrap(tracked) is original


def test_failing_callable_never_reaches_the_caller(
    handler: VibefollowHandler, server: VibefollowServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A user/properties callable that raises is logged; the call still returns normally."""

    @vf_otel.track("e", user="u", properties=lambda: {"ratio": 1 / 0})
    def run() -> str:
        return "done"

    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert run() == "done"
    assert "could not build its event" in caplog.text
    assert sent(handler, server) == []


def test_without_a_user_the_drop_is_counted(
    handler: VibefollowHandler, server: VibefollowServer
) -> None:
    """No user argument and none in context: the handler counts missing_user."""

    @vf_otel.track("e")
    def run() -> None:
        return None

    run()
    assert not handler.flush(5.0)  # the event was dropped
    assert server.events == []
    assert handler.stats().dropped == {"missing_user": 1}


def test_records_go_to_the_vibefollow_track_logger(caplog: pytest.LogCaptureFixture) -> None:
    """track() logs on 'vibefollow.track' (not vf_otel.*, which the handler ignores)."""

    @vf_otel.track("clicked", user="u9", properties={"button": "buy"})
    def click() -> None:
        return None

    with caplog.at_level(logging.INFO, logger="vibefollow.track"):
        click()
    (record,) = [r for r in caplog.records if r.name == "vibefollow.track"]
    assert (record.getMessage(), record.levelno) == ("clicked", logging.INFO)
    tags = record.__dict__
    assert (tags["vf_user"], tags["vf_event"], tags["vf_properties"]) == (
        "u9",
        "clicked",
        {"button": "buy"},
    )


@pytest.mark.parametrize("name", ["", "  ", None])
def test_bad_name_raises_at_decoration(name: Any) -> None:
    """An empty or non-string event name is a programming error, raised when decorating."""
    with pytest.raises(ValueError, match="event name"):
        vf_otel.track(name)


def test_async_method_called_through_the_class(
    handler: VibefollowHandler, server: VibefollowServer
) -> None:
    """Class.method(obj) on an async method still awaits before emitting."""

    class Job:
        owner = "usr_j"

        @vf_otel.track("job_done", user=lambda self: self.owner)
        async def run(self) -> str:
            await asyncio.sleep(0)
            return "done"

    assert asyncio.run(Job.run(Job())) == "done"
    assert asyncio.run(Job().run()) == "done"
    assert sent(handler, server) == [("job_done", "usr_j", {}), ("job_done", "usr_j", {})]
