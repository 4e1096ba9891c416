"""Each integration example in examples/integrations runs and its events reach the local server.

The examples configure vf-otel from ``VIBEFOLLOW_*`` alone, as deployed apps do; each test
runs one in a fresh interpreter (Django settings, Celery apps and structlog configuration
are process-global) with those variables pointing at the ``vibefollow_server`` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vf_otel.testing import VibefollowServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "integrations"
RUN_TIMEOUT = 120


def run_example(script: str, server: VibefollowServer) -> subprocess.CompletedProcess[str]:
    """Run ``examples/integrations/<script>`` against ``server``; fail on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    env |= {"VIBEFOLLOW_API_KEY": server.api_key, "VIBEFOLLOW_BASE_URL": server.base_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "flushed: all delivered" in done.stdout, done.stdout + done.stderr
    assert "NOT all delivered" not in done.stdout
    return done


def received(server: VibefollowServer) -> list[tuple[str, str, dict[str, object]]]:
    """(name, user, properties) of every event the server accepted, in order."""
    return [(e["name"], e["external_user_id"], e["properties"]) for e in server.events]


def test_flask_request_user_is_the_event_user(vibefollow_server: VibefollowServer) -> None:
    """Flask hooks make the bearer token's user the user of the view's events."""
    pytest.importorskip("flask")
    done = run_example("flask_users.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("feature_used", "usr_42", {"feature": "csv"}),
        ("report_viewed", "usr_7", {"report": "weekly"}),
    ]
    assert "no user" in done.stderr  # the anonymous request's event was dropped, and said so


def test_flask_user_is_reset_after_a_failing_view() -> None:
    """teardown_request leaves the user scope even when the view raised."""
    pytest.importorskip("flask")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import flask_users
    finally:
        sys.path.remove(str(EXAMPLES))
    import vf_otel

    app = flask_users.create_app()
    seen: list[str | None] = []

    @app.get("/boom")
    def boom() -> str:
        seen.append(vf_otel.current_user())
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom", headers={"Authorization": "Bearer token-ada"})
    assert response.status_code == 500
    assert seen == ["usr_42"]
    assert vf_otel.current_user() is None


def test_fastapi_middleware_sets_the_user(vibefollow_server: VibefollowServer) -> None:
    """The ASGI middleware's user reaches async and sync (threadpool) endpoints."""
    pytest.importorskip("fastapi")
    run_example("fastapi_users.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("feature_used", "usr_42", {"feature": "csv"}),
        ("report_viewed", "usr_7", {"report": "weekly"}),
    ]


def test_django_logging_setting_and_user_middleware(vibefollow_server: VibefollowServer) -> None:
    """settings.LOGGING installs the handler; the middleware maps request.user to the user."""
    pytest.importorskip("django")
    run_example("django_demo.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("feature_used", "usr_42", {"feature": "csv"}),
        ("user_signed_up", "usr_9", {}),
    ]
    assert vibefollow_server.users == [{"external_user_id": "usr_9", "email": "usr_9@example.com"}]


def test_celery_tasks_take_the_user_from_headers(vibefollow_server: VibefollowServer) -> None:
    """Eager tasks run inside vf_otel.user(<vf_user header>); one without it is dropped."""
    pytest.importorskip("celery")
    run_example("celery_tasks.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("feature_used", "usr_42", {"feature": "pdf"}),
        ("feature_used", "usr_7", {"feature": "pdf"}),
    ]


def test_celery_publish_hook_forwards_the_current_user() -> None:
    """before_task_publish adds the sender's vf_otel user to the message headers."""
    pytest.importorskip("celery")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import celery_tasks
    finally:
        sys.path.remove(str(EXAMPLES))
    import vf_otel

    headers: dict[str, object] = {}
    celery_tasks.add_user_header(headers=headers)
    assert headers == {}
    with vf_otel.user("usr_5"):
        celery_tasks.add_user_header(headers=headers)
    assert headers == {"vf_user": "usr_5"}


def test_structlog_bound_keys_become_event_tags(vibefollow_server: VibefollowServer) -> None:
    """render_to_log_kwargs turns bound vf_user and vf_properties into extra= tags."""
    pytest.importorskip("structlog")
    run_example("structlog_bridge.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("subscription_changed", "usr_42", {"from": "trial", "to": "pro"}),
        ("feature_used", "usr_7", {"feature": "share"}),
    ]


def test_structlog_with_a_renderer_last_sends_through_the_processor(
    vibefollow_server: VibefollowServer,
) -> None:
    """JSONRenderer last, vf_otel.structlog_processor before it: keyword and context-bound
    tags become events, the untagged line does not, and the JSON lines carry no vf_* key."""
    pytest.importorskip("structlog")
    done = run_example("structlog_renderer.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("subscription_changed", "usr_42", {"from": "trial", "to": "pro"}),
        ("feature_used", "usr_7", {"feature": "share"}),
    ]
    rendered = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rendered) == 3
    assert all("vf_" not in line for line in rendered)
    assert done.stderr == ""


def test_fileconfig_ini_with_environment_only_settings(
    vibefollow_server: VibefollowServer,
) -> None:
    """An INI file naming vf_otel.VibefollowHandler with args=() sends with env settings."""
    run_example("fileconfig_ini.py", vibefollow_server)
    assert received(vibefollow_server) == [("user_signed_up", "usr_42", {"plan": "trial"})]


def test_loguru_sink_example_sends_each_tagged_message(vibefollow_server: VibefollowServer) -> None:
    """bind(), keywords with vf_event, and extra= through vf_otel.loguru_sink: three events."""
    pytest.importorskip("loguru", reason="loguru is not installed")
    run_example("loguru_app.py", vibefollow_server)
    assert received(vibefollow_server) == [
        ("subscription_changed", "usr_42", {"from": "trial", "to": "pro"}),
        ("team_invited", "usr_7", {}),
        ("feature_used", "usr_7", {"feature": "csv"}),
    ]
