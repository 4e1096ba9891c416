"""Real apps reconfigure logging and call configure() more than once: nothing is lost or doubled.

A later ``dictConfig`` (Django's settings flow, uvicorn's log config) closes every
handler, even one it leaves attached; ``configure()`` may run twice; a bad option
must fail once, cleanly. Each scenario runs in a fresh interpreter that exits as
an app does, against a ``VibefollowServer`` started by the test.
"""

from __future__ import annotations

import logging
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, HandlerFactory, run_python

#: A hang guard for a child process, not a timing assertion.
HANG_GUARD = 120


def run_script(
    server: VibefollowServer, tmp_path: Path, body: str, **files: str
) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as ``main.py`` in ``tmp_path`` (beside ``files``), configured from the env.

    The flush interval is an hour: only the exit (or a reconfiguration) can deliver.
    """
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "main.py").write_text(textwrap.dedent(body))
    return run_python(
        server,
        [str(tmp_path / "main.py")],
        timeout=HANG_GUARD,
        cwd=tmp_path,
        drop=("DJANGO_",),
        **NO_FLUSH_TIMER,
        PYTHONPATH=str(tmp_path),
    )


def vf_handlers() -> list[logging.Handler]:
    """The VibefollowHandlers on the root logger now."""
    return [h for h in logging.getLogger().handlers if isinstance(h, vf_otel.VibefollowHandler)]


def received(server: VibefollowServer) -> list[tuple[str, str]]:
    """(name, user) of every accepted event, sorted: duplicates stay visible."""
    return sorted((e["name"], e["external_user_id"]) for e in server.events)


# -- 1. a later dictConfig ---------------------------------------------------------------

DJANGO_SETTINGS = """\
import logging

import vf_otel

SECRET_KEY = "test-only"
INSTALLED_APPS = []
USE_TZ = True
# The app's own logging, as a Django project writes it: Django applies it with dictConfig
# after importing this module, which closes every handler configure() added.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO"}},
}

vf_otel.configure(spans=False)
logging.getLogger("shop").warning("settings_loaded", extra={"vf_user": "usr_0"})
"""


def test_django_settings_flow_keeps_the_configured_handler_delivering(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """configure() in settings.py, then django.setup() applies LOGGING: every event arrives once."""
    pytest.importorskip("django")
    done = run_script(
        server,
        tmp_path,
        """
        import logging
        import os

        import django

        os.environ["DJANGO_SETTINGS_MODULE"] = "shop_settings"
        django.setup()  # dictConfig(DEFAULT_LOGGING), then dictConfig(settings.LOGGING)
        log = logging.getLogger("shop")
        for i in range(1, 4):
            log.warning("page_viewed", extra={"vf_user": f"usr_{i}"})
        handler = next(
            h for h in logging.getLogger().handlers if type(h).__name__ == "VibefollowHandler"
        )
        print("dropped", dict(handler.stats().dropped))
        """,
        **{"shop_settings.py": DJANGO_SETTINGS},
    )
    assert done.returncode == 0, done.stderr
    assert "dropped {}" in done.stdout, done.stdout
    assert received(server) == [
        ("page_viewed", "usr_1"),
        ("page_viewed", "usr_2"),
        ("page_viewed", "usr_3"),
        ("settings_loaded", "usr_0"),
    ]


def test_uvicorn_log_config_keeps_the_configured_handler_delivering(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """uvicorn.Config applies uvicorn's LOGGING_CONFIG with dictConfig: events still arrive once."""
    pytest.importorskip("uvicorn")
    done = run_script(
        server,
        tmp_path,
        """
        import logging

        import uvicorn
        import vf_otel

        configured = vf_otel.configure(spans=False)
        log = logging.getLogger("shop")
        log.warning("before_uvicorn", extra={"vf_user": "usr_1"})
        uvicorn.Config("shop_app:app")  # dictConfig(uvicorn.config.LOGGING_CONFIG)
        log.warning("after_uvicorn", extra={"vf_user": "usr_2"})
        print("dropped", dict(configured.handler.stats().dropped))
        """,
        **{"shop_app.py": "async def app(scope, receive, send): ...\n"},
    )
    assert done.returncode == 0, done.stderr
    assert "dropped {}" in done.stdout, done.stdout
    assert received(server) == [("after_uvicorn", "usr_2"), ("before_uvicorn", "usr_1")]


def test_dictconfig_closing_it_drops_nothing_queued(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """A handler added in code, then a dictConfig that does not name it: no event is lost."""
    done = run_script(
        server,
        tmp_path,
        """
        import logging
        import logging.config

        import vf_otel

        handler = vf_otel.VibefollowHandler()
        logging.getLogger().addHandler(handler)
        log = logging.getLogger("shop")
        log.warning("queued_before", extra={"vf_user": "usr_1"})
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        log.warning("logged_after", extra={"vf_user": "usr_2"})
        stats = handler.stats()
        print("enqueued", stats.enqueued, "dropped", dict(stats.dropped))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "enqueued 2 dropped {}" in done.stdout, done.stdout
    assert received(server) == [("logged_after", "usr_2"), ("queued_before", "usr_1")]


@pytest.mark.usefixtures("clean_logging")
def test_a_closed_handler_delivers_again_and_keeps_counting(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """close(), then a tagged record: it is delivered, and stats() counts on from before."""
    handler = make_handler()
    log = logging.getLogger("app.reopen")
    log.addHandler(handler)
    try:
        log.warning("first", extra={"vf_user": "usr_1"})
        handler.close()
        log.warning("second", extra={"vf_user": "usr_2"})
        assert handler.flush(timeout=10)
        stats = handler.stats()
        assert (stats.enqueued, stats.sent, dict(stats.dropped)) == (2, 2, {})
        handler.close()
        log.warning("third", extra={"vf_user": "usr_3"})
        handler.close()
    finally:
        log.removeHandler(handler)
    assert received(vibefollow_server) == [
        ("first", "usr_1"),
        ("second", "usr_2"),
        ("third", "usr_3"),
    ]
    assert handler.stats().sent == 3


# -- 2. configure() twice ----------------------------------------------------------------


def test_configure_twice_delivers_every_event_once(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """Two configure() calls in one process: one handler, one exporter, each event once."""
    done = run_script(
        server,
        tmp_path,
        """
        import logging

        from opentelemetry import trace
        import vf_otel

        first = vf_otel.configure()
        second = vf_otel.configure()  # an app module imported twice, a test helper, ...
        print("same", first is second)
        handlers = [h for h in logging.getLogger().handlers
                    if isinstance(h, vf_otel.VibefollowHandler)]
        print("handlers", len(handlers))
        logging.getLogger("shop").warning("signed_up", extra={"vf_user": "usr_1"})
        with trace.get_tracer("shop").start_as_current_span("checkout") as span:
            span.set_attributes({"vf.user": "usr_2", "vf.event": "trial_started"})
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "same True" in done.stdout
    assert "handlers 1" in done.stdout
    assert received(server) == [("signed_up", "usr_1"), ("trial_started", "usr_2")]


def test_configure_again_with_other_arguments_warns_and_keeps_the_first(
    server: VibefollowServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Other arguments while one is live: the same Configuration, and a warning saying so."""
    provider = TracerProvider(shutdown_on_exit=False)
    common: dict[str, Any] = {
        "api_key": server.api_key,
        "base_url": server.base_url,
        "tracer_provider": provider,
    }
    before = vf_handlers()
    first = vf_otel.configure(handle_sigterm=False, **common)
    try:
        caplog.clear()  # what the first call said about levels is not this test's business
        with caplog.at_level(logging.WARNING, logger="vf_otel"):
            assert vf_otel.configure(handle_sigterm=False, **common) is first
            assert not caplog.records
            again = vf_otel.configure(handle_sigterm=False, batch_size=7, **common)
        assert again is first
        assert "first configuration stays" in caplog.text
        assert vf_handlers() == [*before, first.handler]
    finally:
        first.shutdown()


def test_configure_after_shutdown_installs_anew(server: VibefollowServer) -> None:
    """shutdown() ends the live configuration: the next configure() builds and installs again."""
    provider = TracerProvider(shutdown_on_exit=False)
    options: dict[str, Any] = {"api_key": server.api_key, "base_url": server.base_url}
    first = vf_otel.configure(tracer_provider=provider, handle_sigterm=False, **options)
    first.shutdown()
    second = vf_otel.configure(tracer_provider=provider, handle_sigterm=False, **options)
    try:
        assert second is not first
        assert second.handler in logging.getLogger().handlers
        assert first.handler not in logging.getLogger().handlers
        logging.getLogger("app.again").warning("after", extra={"vf_user": "usr_1"})
        assert second.flush(timeout=10)
    finally:
        second.shutdown()
    assert received(server) == [("after", "usr_1")]


def test_concurrent_configure_calls_install_one_handler(server: VibefollowServer) -> None:
    """configure() from several threads at once: all get the same Configuration."""
    provider = TracerProvider(shutdown_on_exit=False)
    results: list[vf_otel.Configuration] = []
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        results.append(
            vf_otel.configure(
                api_key=server.api_key,
                base_url=server.base_url,
                tracer_provider=provider,
                handle_sigterm=False,
            )
        )

    before = vf_handlers()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    try:
        assert len(results) == 4
        assert all(result is results[0] for result in results)
        assert vf_handlers() == [*before, results[0].handler]
    finally:
        results[0].shutdown()


# -- 9. a constructor that raises ---------------------------------------------------------


def test_a_bad_option_fails_once_and_exit_stays_clean(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """Bad options and a bad level raise ValueError once; exit prints nothing, no thread is left."""
    done = run_script(
        server,
        tmp_path,
        """
        import logging.config
        import threading

        import vf_otel

        attempts = [
            lambda: vf_otel.VibefollowHandler(batch_size=0),
            lambda: vf_otel.VibefollowHandler("NOT_A_LEVEL"),
            lambda: vf_otel.VibefollowHandler(on_error="not callable"),
            lambda: vf_otel.configure(max_retries=-1),
            lambda: logging.config.dictConfig({
                "version": 1,
                "handlers": {"vf": {"class": "vf_otel.VibefollowHandler", "timeout": -5}},
                "root": {"handlers": ["vf"]},
            }),
        ]
        kept = []  # as an error reporter (or a REPL) keeps them: their tracebacks too
        for attempt in attempts:
            try:
                attempt()
            except ValueError as exc:
                print("refused:", type(exc).__name__)
                kept.append(exc)
        print("threads", threading.active_count())
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("refused: ValueError") == 5, done.stdout
    assert "threads 1" in done.stdout
