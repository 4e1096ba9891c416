"""A tagged record logged at exit after logging.shutdown(), from a real child process.

logging.shutdown() closes the handler at exit; a daemon thread that logs after that
once reopened the pipeline behind a worker the interpreter stops mid-way: the event
was lost and counted nowhere. It is now refused, counted as ``shutdown``, and said
once on stderr.
"""

from __future__ import annotations

from pathlib import Path

from vf_otel.testing import VibefollowServer

from .conftest import run_script

SCRIPT = """
    import logging
    import threading

    import vf_otel

    handler = vf_otel.VibefollowHandler()
    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    closed, logged = threading.Event(), threading.Event()
    close = handler.close

    def close_and_let_the_thread_log():
        close()  # logging.shutdown() at exit: drains and stops
        closed.set()
        logged.wait(10)  # the process exits only once the late record was handled

    handler.close = close_and_let_the_thread_log

    def late():
        closed.wait()
        log.info("after_shutdown", extra={"vf_user": "u1"})
        log.info("after_shutdown_too", extra={"vf_user": "u1"})
        logged.set()

    threading.Thread(target=late, daemon=True).start()
    log.info("before_exit", extra={"vf_user": "u1"})
    """


def test_a_record_after_the_final_shutdown_is_refused_and_said(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """The event logged before exit is delivered; the two after logging.shutdown() are not
    queued behind a worker that would never run: one line on stderr says so."""
    done = run_script(vibefollow_server, tmp_path, SCRIPT)
    assert done.returncode == 0, done.stderr
    assert [e["name"] for e in vibefollow_server.events] == ["before_exit"]
    lines = [line for line in done.stderr.splitlines() if "after logging.shutdown()" in line]
    assert lines == [
        "vf-otel: events logged after logging.shutdown() at exit are not sent "
        "(counted in stats().dropped['shutdown'])"
    ]
