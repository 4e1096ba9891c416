"""configure() in an app with or without its own logging: levels and the console stay honest.

An app that configured no logging prints WARNING and above to stderr and filters INFO
at the root logger; configure() keeps the first and lets tagged INFO records through.
An app that configured logging keeps its levels, and is told once when they filter
tagged INFO records. Each case runs in a fresh interpreter, as the app would.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from vf_otel.testing import VibefollowServer

from .conftest import run_script

APP = """
log = logging.getLogger("shop")
log.info("signed_up", extra={"vf_user": "usr_1"})
log.info("cache warmed")
log.warning("disk almost full")
"""


def run_app(
    server: VibefollowServer, tmp_path: Path, setup: str
) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` then APP in a fresh interpreter configured from VIBEFOLLOW_*."""
    header = "import logging\nimport sys\n\nimport vf_otel\n"
    return run_script(server, tmp_path, header + textwrap.dedent(setup) + APP)


def names(server: VibefollowServer) -> list[str]:
    """The names of the accepted events, in order."""
    return [e["name"] for e in server.events]


def test_unconfigured_app_sends_tagged_info_and_keeps_printing_its_warnings(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """No logging set up: the tagged INFO record is sent; stderr shows the warning as before."""
    done = run_app(server, tmp_path, "vf_otel.configure(spans=False)\n")
    assert done.returncode == 0, done.stderr
    assert names(server) == ["signed_up"]
    assert done.stderr == "disk almost full\n"  # what Python prints with no logging set up
    assert done.stdout == ""


def test_unconfigured_app_sees_vf_otel_warnings(server: VibefollowServer, tmp_path: Path) -> None:
    """vf-otel's own warnings (here: an event with no user) reach stderr too."""
    done = run_app(
        server,
        tmp_path,
        """
        vf_otel.configure(spans=False)
        logging.getLogger("shop").warning("orphan", extra={"vf_event": "orphan"})
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "no user" in done.stderr
    assert names(server) == ["signed_up"]


def test_configured_app_keeps_its_levels_and_is_told_once(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """basicConfig at WARNING first: INFO stays filtered, one warning names the level."""
    done = run_app(
        server,
        tmp_path,
        """
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
        vf_otel.configure(spans=False)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert names(server) == []
    assert done.stdout.count("is at level WARNING, so tagged INFO records") == 1
    assert "WARNING:shop:disk almost full" in done.stdout
    assert done.stderr == ""


def test_configured_app_at_info_sends_and_prints_each_line_once(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """basicConfig at INFO first: the event is sent, no warning, every line printed once."""
    done = run_app(
        server,
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        vf_otel.configure(spans=False)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert names(server) == ["signed_up"]
    # (httpx's own request lines, issue 11 item 6, are not this test's business)
    app_lines = [line for line in done.stdout.splitlines() if ":httpx:" not in line]
    assert app_lines == [
        "INFO:shop:signed_up",
        "INFO:shop:cache warmed",
        "WARNING:shop:disk almost full",
    ]
    assert done.stderr == ""


def test_shutdown_puts_the_root_logger_back(server: VibefollowServer, tmp_path: Path) -> None:
    """After shutdown() the root logger has its level and no handler, as before configure()."""
    done = run_app(
        server,
        tmp_path,
        """
        root = logging.getLogger()
        vf_otel.configure(spans=False).shutdown()
        print(logging.getLevelName(root.level), root.handlers)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "WARNING []\n"
    assert names(server) == []  # APP ran after shutdown(): nothing installed any more
    assert done.stderr == "disk almost full\n"
