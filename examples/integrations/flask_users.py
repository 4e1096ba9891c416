"""Flask: the signed-in user of each request becomes the user of its events.

    pip install vf-otel flask
    python examples/integrations/flask_users.py    # a few requests through Flask's test client

:func:`init_vibefollow_user` registers two request hooks: ``before_request`` enters
``vf_otel.user(...)`` with the authenticated user, ``teardown_request`` leaves it. A
view then logs ``extra={"vf_event": ...}`` without naming the user. Authentication
here is a stand-in (a bearer token looked up in a dict); use ``flask_login.current_user``
or whatever your app has.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from demo_server import report, vibefollow_env
from flask import Flask, Request, g, request

import vf_otel

log = logging.getLogger("shop.web")

#: The stand-in for a real session or token check.
TOKENS = {"token-ada": "usr_42", "token-bo": "usr_7"}


def user_from_token(req: Request) -> str | None:
    """The authenticated user's id, or None for an anonymous request."""
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    return TOKENS.get(token) if scheme == "Bearer" else None


def init_vibefollow_user(app: Flask, get_user: Callable[[Request], str | None]) -> None:
    """Make ``get_user(request)`` the vf-otel user for the duration of every request."""

    @app.before_request
    def enter_user() -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(vf_otel.user(get_user(request)))
        g.vibefollow_user = stack

    @app.teardown_request
    def leave_user(_exc: BaseException | None) -> None:
        # Runs even when the view raised; same thread and context as before_request.
        stack: contextlib.ExitStack | None = g.pop("vibefollow_user", None)
        if stack is not None:
            stack.close()


def create_app() -> Flask:
    """The app: two tagged views and one untagged."""
    app = Flask(__name__)
    init_vibefollow_user(app, user_from_token)

    @app.post("/exports")
    def export() -> dict[str, Any]:
        log.info("export", extra={"vf_event": "feature_used", "vf_properties": {"feature": "csv"}})
        return {"ok": True}

    @app.get("/reports/<name>")
    def view_report(name: str) -> dict[str, Any]:
        log.info(
            "report_viewed", extra={"vf_event": "report_viewed", "vf_properties": {"report": name}}
        )
        return {"report": name}

    @app.get("/health")
    def health() -> dict[str, Any]:
        log.info("health checked")  # untagged: not an event
        return {"ok": True}

    return app


def main() -> None:
    """Configure logging from the environment, send three requests, show what arrived."""
    with vibefollow_env() as server:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger().addHandler(vf_otel.VibefollowHandler())  # VIBEFOLLOW_* settings
        client = create_app().test_client()
        client.post("/exports", headers={"Authorization": "Bearer token-ada"})
        client.get("/reports/weekly", headers={"Authorization": "Bearer token-bo"})
        client.get("/reports/weekly")  # anonymous: no user, dropped as missing_user
        client.get("/health")
        report(server)


if __name__ == "__main__":
    main()
