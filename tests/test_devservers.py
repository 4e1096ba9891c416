"""Development servers with an autoreloader: stopping the main process loses no quiet app's events.

Django's ``runserver`` and Werkzeug's reloader (``flask run --debug``) run the app in a
child process and, when the main process is stopped (SIGINT sent to it alone,
SIGTERM), SIGKILL that child: its ``atexit`` never runs, so nothing queued there can be delivered at
exit. vf-otel delivers promptly in that child instead (``DEV_SERVER_FLUSH_INTERVAL``).
Each test is the real ``runserver`` / ``flask run``, signalled on its main process only.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from vf_otel import _config as config
from vf_otel._config import DEV_SERVER_FLUSH_INTERVAL, resolve_settings
from vf_otel.testing import VibefollowServer

from .conftest import HANG_GUARD, server_env
from .test_sigterm import DJANGO_SETTINGS, DJANGO_URLS, free_loopback_port, get_when_listening

REQUESTS = 10
#: How long the app is left quiet before the stop: well past the dev-server flush
#: interval, well short of the default five seconds (a test, not a tight bound).
QUIET = 1.5
#: A stopped runserver (its reloader's SIGKILL, at most 0.25 s after SIGINT) exits in far less.
EXIT_BOUND = 10.0


def users(server: VibefollowServer) -> list[int]:
    """The numbers of the users of every accepted event, sorted (duplicates stay visible)."""
    return sorted(int(e["external_user_id"].removeprefix("usr_")) for e in server.events)


FLASK_APP = """\
import logging

from flask import Flask

import vf_otel

vf_otel.configure(spans=False)
app = Flask(__name__)
log = logging.getLogger("shop")


@app.get("/<user>")
def view(user):
    log.warning("page_viewed", extra={"vf_user": user})
    return "ok"
"""


def start_dev_server(
    kind: str, server: VibefollowServer, tmp_path: Path, port: int
) -> subprocess.Popen[str]:
    """``runserver`` or ``flask run --debug`` (both with their autoreloader), started."""
    if kind == "django":
        pytest.importorskip("django", reason="Django is not installed")
        (tmp_path / "shop_settings.py").write_text(DJANGO_SETTINGS)
        (tmp_path / "shop_urls.py").write_text(DJANGO_URLS)
        args = ["-m", "django", "runserver", f"127.0.0.1:{port}"]
    else:
        pytest.importorskip("flask", reason="Flask is not installed")
        (tmp_path / "shop_app.py").write_text(FLASK_APP)
        args = ["-m", "flask", "--app", "shop_app", "run", "--debug", "--port", str(port)]
    env = server_env(server, PYTHONPATH=str(tmp_path), DJANGO_SETTINGS_MODULE="shop_settings")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and the dev server
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own to kill if it hangs (signals go to one pid)
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["django", "flask"])
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_server_with_autoreload_delivers_a_quiet_apps_events_when_stopped(
    vibefollow_server: VibefollowServer, tmp_path: Path, kind: str, stop: signal.Signals
) -> None:
    """Reloader on, 10 requests, a quiet pause, a signal to the main pid only: 10 of 10."""
    port = free_loopback_port()
    main = start_dev_server(kind, vibefollow_server, tmp_path, port)
    with main, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD) as client:
        statuses = [get_when_listening(client, "/usr_0")]
        statuses += [client.get(f"/usr_{i}").status_code for i in range(1, REQUESTS)]
        time.sleep(QUIET)
        main.send_signal(stop)  # the main (reloader) process only, not the group
        stopped = time.monotonic()
        try:
            _, err = main.communicate(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(main.pid, signal.SIGKILL)  # the reloader and its child: no wait for ever
            main.communicate()
            pytest.fail(f"{kind} did not stop within {HANG_GUARD} s of {stop.name}")
        took = time.monotonic() - stopped
    assert statuses == [200] * REQUESTS
    assert users(vibefollow_server) == list(range(REQUESTS)), err
    assert took < EXIT_BOUND


def test_a_reloader_child_delivers_promptly_unless_told_otherwise() -> None:
    """RUN_MAIN / WERKZEUG_RUN_MAIN=true: a short flush_interval; an explicit one still wins."""
    assert resolve_settings({}).flush_interval == 5.0
    assert resolve_settings({"RUN_MAIN": "true"}).flush_interval == DEV_SERVER_FLUSH_INTERVAL
    werkzeug = resolve_settings({"WERKZEUG_RUN_MAIN": "true"})
    assert werkzeug.flush_interval == DEV_SERVER_FLUSH_INTERVAL
    told = {"RUN_MAIN": "true", "VIBEFOLLOW_FLUSH_INTERVAL": "2"}
    assert resolve_settings(told).flush_interval == 2.0
    assert resolve_settings({"RUN_MAIN": "true"}, flush_interval=3).flush_interval == 3.0


def test_a_longer_flush_interval_under_a_reloader_is_warned_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUN_MAIN=true with flush_interval set above 0.2 s: one warning naming the loss."""
    monkeypatch.setattr(config, "_DEV_SERVER_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="vf_otel.config"):
        resolve_settings({"RUN_MAIN": "true", "VIBEFOLLOW_FLUSH_INTERVAL": "5"})
        resolve_settings({"RUN_MAIN": "true"}, flush_interval=60)
        resolve_settings({"VIBEFOLLOW_FLUSH_INTERVAL": "5"})  # no reloader: nothing to say
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "SIGKILL" in warned[0]
    assert "flush_interval=5s" in warned[0]
