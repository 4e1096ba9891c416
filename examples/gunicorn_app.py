"""A WSGI app under gunicorn whose requests become Vibefollow events, one per request.

    pip install vf-otel gunicorn
    export VIBEFOLLOW_API_KEY=sk_live_...
    cd examples && gunicorn -c gunicorn.conf.py gunicorn_app:app

Then ``curl -H 'X-User-Id: usr_7' http://127.0.0.1:8000/reports/weekly`` sends
``report_viewed`` for ``usr_7``, with the request's id and the worker's pid as properties.

Logging is configured when this module is imported. With ``preload_app = True``
(gunicorn.conf.py) that happens in the gunicorn master, so the handler exists
*before* the workers are forked: each worker then starts with an empty queue, its own
delivery thread and its own HTTP client, and sends only its own events.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

import vf_otel

REPORT_PREFIX = "/reports/"

log = logging.getLogger("shop.web")


def configure_logging() -> vf_otel.VibefollowHandler:
    """Put the handler on the root logger; the key and URL come from VIBEFOLLOW_* variables."""
    handler = vf_otel.VibefollowHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _respond(
    start_response: StartResponse, status: str, body: dict[str, str], *headers: tuple[str, str]
) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``GET /reports/<name>`` logs one tagged record; ``/health`` and the rest log none."""
    path: str = environ.get("PATH_INFO", "")
    if path == "/health":
        return _respond(start_response, "200 OK", {"ok": "true"})
    if not path.startswith(REPORT_PREFIX):
        return _respond(start_response, "404 Not Found", {"error": "not found"})
    # A stand-in for real authentication: the signed-in user's id.
    user_id: str | None = environ.get("HTTP_X_USER_ID")
    if not user_id:
        return _respond(start_response, "401 Unauthorized", {"error": "who are you?"})
    request_id = uuid.uuid4().hex
    report = path.removeprefix(REPORT_PREFIX)
    log.info(
        "report viewed",
        extra={
            "vf_user": user_id,
            "vf_event": "report_viewed",
            "vf_properties": {"report": report, "request_id": request_id, "pid": os.getpid()},
        },
    )
    return _respond(start_response, "200 OK", {"report": report}, ("X-Request-Id", request_id))


configure_logging()
