"""vf-otel's own HTTP requests add no line to the app's logs; the app's requests log as before.

httpx logs each request at INFO ("HTTP Request: POST ...") and httpcore logs at DEBUG.
Each case runs the app in a fresh interpreter with its own basicConfig, as an app would,
and reads what it printed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import vf_otel
from vf_otel._delivery.client import HTTP_LOGGERS
from vf_otel.testing import VibefollowServer

from .conftest import run_script

#: What each line the apps below print starts with: thread, level, logger.
LINE_FORMAT = "%(threadName)s|%(levelname)s|%(name)s|%(message)s"

APP = """
import logging
import sys

import httpx

import vf_otel

logging.basicConfig(level=LEVEL, format=FORMAT)
handler = vf_otel.VibefollowHandler(flush_interval=0.05)
log = logging.getLogger("shop")
log.addHandler(handler)
for n in range(3):
    log.info("signed_up", extra={"vf_user": f"usr_{n}"})
    assert handler.flush(30)
with httpx.Client() as client:  # the app's own request
    client.get(sys.argv[1] + "/app-call")
log.warning("app done")
handler.close()
"""


def app(level: str) -> str:
    """APP with basicConfig at ``level`` and LINE_FORMAT."""
    return APP.replace("LEVEL", f"logging.{level}").replace("FORMAT", repr(LINE_FORMAT))


def test_basicconfig_info_prints_the_apps_request_and_none_of_vf_otels(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """basicConfig(level=INFO): the app's GET is printed, no delivery POST is."""
    done = run_script(server, tmp_path, app("INFO"), server.base_url)
    assert done.returncode == 0, done.stderr
    assert len(server.events) == 3
    assert len([r for r in server.requests if r.path.endswith("/events/batch")]) == 3
    assert "HTTP Request: GET" in done.stderr
    assert "POST" not in done.stderr
    assert "events/batch" not in done.stderr
    assert done.stderr.count("HTTP Request") == 1


def test_basicconfig_debug_shows_delivery_only_under_vf_otel_http(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """basicConfig(level=DEBUG): delivery's records appear once each, as DEBUG on
    vf_otel.http; every httpx/httpcore line left is the app's own request's."""
    done = run_script(server, tmp_path, app("DEBUG"), server.base_url)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    posts = [line for line in lines if "HTTP Request: POST" in line]
    assert len(posts) == 3
    assert all(line.startswith("VibefollowSender|DEBUG|vf_otel.http|") for line in posts)
    stack = [line for line in lines if line.split("|")[2].startswith(("httpx", "httpcore"))]
    assert stack, "the app's own request logs at DEBUG as before"
    assert all(line.startswith("MainThread|") for line in stack)
    # After the app's last line, only vf-otel closes its client: nothing of it is printed
    # except on vf_otel.http.
    after = lines[lines.index("MainThread|WARNING|shop|app done") + 1 :]
    assert all("|vf_otel.http|" in line for line in after)


def test_a_forked_child_delivers_quietly_too(server: VibefollowServer, tmp_path: Path) -> None:
    """A child forked after the handler was built adds no delivery line to its logs."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    done = run_script(
        server,
        tmp_path,
        f"""
        import logging, os
        import vf_otel

        logging.basicConfig(level=logging.INFO, format={LINE_FORMAT!r})
        handler = vf_otel.VibefollowHandler(flush_interval=0.05)
        log = logging.getLogger("shop")
        log.addHandler(handler)
        pid = os.fork()
        if pid == 0:
            log.info("child", extra={{"vf_user": "usr_child"}})
            ok = handler.flush(30)
            handler.close()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        log.info("parent", extra={{"vf_user": "usr_parent"}})
        assert handler.flush(30)
        handler.close()
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """,
        server.base_url,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(e["name"] for e in server.events) == ["child", "parent"]
    assert "HTTP Request" not in done.stderr


def test_the_filter_is_installed_once(server: VibefollowServer) -> None:
    """Building several handlers leaves one filter on each HTTP logger, not one per handler."""
    handlers = [
        vf_otel.VibefollowHandler(api_key=server.api_key, base_url=server.base_url)
        for _ in range(3)
    ]
    try:
        for name in HTTP_LOGGERS:
            filters = logging.getLogger(name).filters
            assert [type(f).__name__ for f in filters].count("_OwnRequests") == 1, name
    finally:
        for handler in handlers:
            handler.close()
