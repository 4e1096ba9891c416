"""Configuration set-ups, shutdown, fork, recursion and the key: the handler's life cycle."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import vf_otel
from vf_otel._delivery.policy import FAILURE_THRESHOLD
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory

pytestmark = pytest.mark.usefixtures("clean_logging")


def _root_vf_handler() -> vf_otel.VibefollowHandler:
    return next(h for h in logging.getLogger().handlers if isinstance(h, vf_otel.VibefollowHandler))


def test_dictconfig_builds_the_handler_from_keys(vibefollow_server: VibefollowServer) -> None:
    """A dictConfig entry with class vf_otel.VibefollowHandler and option keys works."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "vf": {
                    "class": "vf_otel.VibefollowHandler",
                    "level": "INFO",
                    "api_key": vibefollow_server.api_key,
                    "base_url": vibefollow_server.base_url,
                    "batch_size": 50,
                }
            },
            "root": {"level": "DEBUG", "handlers": ["vf"]},
        }
    )
    handler = _root_vf_handler()
    logging.getLogger("app").debug("below level", extra={"vf_user": "usr_0"})
    logging.getLogger("app").info("signup", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=10)
    assert [e["external_user_id"] for e in vibefollow_server.events] == ["usr_1"]


def test_fileconfig_with_environment_only_settings(
    vibefollow_server: VibefollowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An INI file names only the class; the key and URL come from VIBEFOLLOW_* variables."""
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", vibefollow_server.api_key)
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", vibefollow_server.base_url)
    monkeypatch.setenv("VIBEFOLLOW_FLUSH_INTERVAL", "60")
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [loggers]
            keys=root

            [handlers]
            keys=vibefollow

            [formatters]
            keys=

            [logger_root]
            level=INFO
            handlers=vibefollow

            [handler_vibefollow]
            class=vf_otel.VibefollowHandler
            level=INFO
            args=()
            """
        )
    )
    logging.config.fileConfig(ini, disable_existing_loggers=False)
    handler = _root_vf_handler()
    logging.getLogger("app").info("signup", extra={"vf_user": "usr_ini"})
    assert handler.flush(timeout=10)
    assert [e["external_user_id"] for e in vibefollow_server.events] == ["usr_ini"]


@pytest.mark.usefixtures("fast_clock")  # the retry's backoff not waited out
def test_root_at_debug_does_not_loop(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """On root at DEBUG, httpx and vf_otel records (even tagged) never become events."""
    handler = make_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("httpx", "httpcore.http11", "vf_otel.delivery", "vf_otel"):
        logging.getLogger(name).info("internal", extra={"vf_user": "usr_loop"})
    vibefollow_server.fail_next(503)  # makes delivery log a warning on the vf_otel logger
    logging.getLogger("app").info("signup", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=20)
    assert [e["external_user_id"] for e in vibefollow_server.events] == ["usr_1"]
    assert handler.stats().enqueued == 1


def test_flush_under_the_handler_lock_does_not_deadlock(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """logging.shutdown() holds the handler lock across flush(); delivery still logs freely."""
    handler = make_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    vibefollow_server.delay_next(0.2)
    logging.getLogger("app").info("signup", extra={"vf_user": "usr_1"})
    result: list[bool] = []

    def flush_like_shutdown() -> None:
        handler.acquire()
        try:
            result.append(handler.flush(timeout=10))
        finally:
            handler.release()

    worker = threading.Thread(target=flush_like_shutdown, daemon=True)
    worker.start()
    worker.join(timeout=30)  # a hang guard, not a timing assertion
    assert not worker.is_alive(), "flush deadlocked under the handler lock"
    assert result == [True]
    assert len(vibefollow_server.events) == 1


def _run_child_script(server: VibefollowServer, body: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VIBEFOLLOW_API_KEY": server.api_key,
        "VIBEFOLLOW_BASE_URL": server.base_url,
        "VIBEFOLLOW_FLUSH_INTERVAL": "3600",
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_logging_shutdown_at_exit_delivers_queued_events(
    vibefollow_server: VibefollowServer,
) -> None:
    """A process that logs and simply exits still delivers every queued event (atexit)."""
    done = _run_child_script(
        vibefollow_server,
        """
        import logging, vf_otel
        logging.basicConfig(level=logging.INFO, handlers=[vf_otel.VibefollowHandler()])
        for i in range(120):
            logging.getLogger("job").info("row_imported", extra={"vf_user": f"usr_{i}"})
        """,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(int(e["external_user_id"][4:]) for e in vibefollow_server.events) == list(
        range(120)
    )


def test_api_key_never_appears_in_output(vibefollow_server: VibefollowServer) -> None:
    """With a refused key, DEBUG logging, reprs and stats never show the key."""
    secret = "sk_live_" + "S3cr3t" * 6
    done = _run_child_script(
        vibefollow_server,
        f"""
        import logging, vf_otel
        logging.basicConfig(level=logging.DEBUG)
        handler = vf_otel.VibefollowHandler(api_key={secret!r}, shutdown_timeout=2)
        logging.getLogger().addHandler(handler)
        logging.getLogger("app").info("signup", extra={{"vf_user": "usr_1"}})
        delivered = handler.flush(timeout=2)
        print(repr(handler), handler.stats(), delivered)
        print(handler._pipeline.settings)
        """,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "refused the API key" in output
    assert secret not in output
    assert secret[8:] not in output
    assert "backlog=1" in output


def test_auth_failure_pauses_sending_and_keeps_a_backlog(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 stops sending (no retry loop), logs one error and keeps the events for later."""
    handler = make_handler()
    logging.getLogger("app").addHandler(handler)
    vibefollow_server.fail_next(401, count=10)
    with caplog.at_level(logging.ERROR, logger="vf_otel"):
        for batch in range(3):
            logging.getLogger("app").warning("e", extra={"vf_user": f"usr_{batch}"})
            assert not handler.flush(timeout=5)
    assert len(vibefollow_server.requests) == 1
    assert handler.stats().backlog == 3
    assert len([r for r in caplog.records if "refused the API key" in r.getMessage()]) == 1
    # Detached: a closed handler still attached would take the next tests' records again.
    logging.getLogger("app").removeHandler(handler)


def test_shutdown_during_outage_reports_what_was_lost(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """close() gives up after shutdown_timeout and counts every undelivered event as dropped."""
    lost: list[vf_otel.Event] = []
    handler = make_handler(shutdown_timeout=0.3, on_error=lambda exc, events: lost.extend(events))
    logging.getLogger("app").addHandler(handler)
    vibefollow_server.fail_next(503, count=1000)
    for i in range(4):
        logging.getLogger("app").warning("e", extra={"vf_user": f"usr_{i}"})
    handler.close()
    stats = handler.stats()
    assert stats.dropped == {"shutdown": 4}
    assert sorted(e.user_id for e in lost) == [f"usr_{i}" for i in range(4)]
    # Still attached, the closed handler takes a later record again (FileHandler's way).
    logging.getLogger("app").warning("late", extra={"vf_user": "usr_late"})
    late = handler.stats()
    assert (late.enqueued, late.dropped) == (5, {"shutdown": 4})
    logging.getLogger("app").removeHandler(handler)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform")
def test_forked_child_delivers_its_own_events_exactly_once(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """After fork the child has an empty queue and its own client; nothing is sent twice."""
    handler = make_handler()
    log = logging.getLogger("app.fork")
    log.addHandler(handler)
    log.warning("parent_before_fork", extra={"vf_user": "usr_parent"})
    pid = os.fork()
    if pid == 0:  # the child: exit without running the parent's test machinery
        ok = False
        try:
            log.warning("child_event", extra={"vf_user": "usr_child"})
            stats = handler.stats()
            ok = handler.flush(timeout=10) and stats.enqueued == 1 and stats.queued == 1
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.flush(timeout=10)
    log.removeHandler(handler)
    names = sorted(e["name"] for e in vibefollow_server.events)
    assert names == ["child_event", "parent_before_fork"]


def test_close_after_a_failed_flush_tries_only_what_can_still_land(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """logging.shutdown() runs flush() then close(): during an outage close() goes on only
    while the circuit lets requests through (5 failures open it; one probe at most fits),
    sends nothing once it returned, and counts what is left as dropped."""
    # Half the 1 s cool-down: a probe after it cannot fit, whatever the backoff drew.
    handler = make_handler(shutdown_timeout=0.5)
    logging.getLogger("app").addHandler(handler)
    vibefollow_server.fail_next(503, count=1000)
    logging.getLogger("app").warning("e", extra={"vf_user": "usr_1"})
    assert not handler.flush()
    handler.close()
    sent = len(vibefollow_server.requests)
    assert sent <= FAILURE_THRESHOLD + 1
    assert not vibefollow_server.wait_for_requests(sent + 1, timeout=0.5)
    assert handler.stats().dropped == {"shutdown": 1}
    logging.getLogger("app").removeHandler(handler)
