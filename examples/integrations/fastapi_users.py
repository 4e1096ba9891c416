"""FastAPI (or any ASGI app): the authenticated user of a request is the user of its events.

    pip install vf-otel fastapi httpx
    python examples/integrations/fastapi_users.py    # a few requests through httpx.ASGITransport

:class:`VibefollowUserMiddleware` is a plain ASGI middleware: it runs the rest of the
request inside ``vf_otel.user(...)``, so endpoints (``async def`` or plain ``def``, which
Starlette runs in a thread with a copy of the context) log ``extra={"vf_event": ...}``
without naming the user. Authentication is a stand-in: a bearer token looked up in a dict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
from demo_server import report, vibefollow_env
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

import vf_otel

log = logging.getLogger("shop.api")

#: The stand-in for a real token check.
TOKENS = {"token-ada": "usr_42", "token-bo": "usr_7"}


def user_from_token(scope: Scope) -> str | None:
    """The authenticated user's id, or None for an anonymous request."""
    scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
    return TOKENS.get(token) if scheme == "Bearer" else None


class VibefollowUserMiddleware:
    """Run each HTTP request inside ``vf_otel.user(get_user(scope))``.

    A pure ASGI middleware rather than ``@app.middleware("http")``: the endpoint runs in
    this coroutine's context, so the user is set for it and reset after the response.
    """

    def __init__(self, app: ASGIApp, get_user: Callable[[Scope], str | None]) -> None:
        self.app = app
        self.get_user = get_user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap HTTP requests; pass lifespan and websocket scopes through untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with vf_otel.user(self.get_user(scope)):
            await self.app(scope, receive, send)


def create_app() -> FastAPI:
    """The app: an async and a sync tagged endpoint, and an untagged one."""
    app = FastAPI()
    app.add_middleware(VibefollowUserMiddleware, get_user=user_from_token)

    @app.post("/exports")
    async def export() -> dict[str, Any]:
        log.info("export", extra={"vf_event": "feature_used", "vf_properties": {"feature": "csv"}})
        return {"ok": True}

    @app.get("/reports/{name}")
    def view_report(name: str) -> dict[str, Any]:
        log.info(
            "report_viewed", extra={"vf_event": "report_viewed", "vf_properties": {"report": name}}
        )
        return {"report": name}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        log.info("health checked")  # untagged: not an event
        return {"ok": True}

    return app


async def send_requests(app: FastAPI) -> None:
    """What real clients would do, in process: two signed-in requests, two anonymous."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        await client.post("/exports", headers={"Authorization": "Bearer token-ada"})
        await client.get("/reports/weekly", headers={"Authorization": "Bearer token-bo"})
        await client.get("/reports/weekly")  # anonymous: no user, dropped as missing_user
        await client.get("/health")


def main() -> None:
    """Configure logging from the environment, send a few requests, show what arrived."""
    with vibefollow_env() as server:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger().addHandler(vf_otel.VibefollowHandler())  # VIBEFOLLOW_* settings
        asyncio.run(send_requests(create_app()))
        report(server)


if __name__ == "__main__":
    main()
