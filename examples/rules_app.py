"""A Flask app with no vf-otel code and no ``vf.*`` tags: mapping rules make its events.

Its request spans carry only what OpenTelemetry instrumentation and the app's own
attributes put there; ``examples/rules.toml`` says which become events
(docs/rules.md)::

    pip install vf-otel flask opentelemetry-distro opentelemetry-instrumentation-flask
    export VIBEFOLLOW_API_KEY=sk_live_...
    export VIBEFOLLOW_RULES=examples/rules.toml
    export OTEL_SEMCONV_STABILITY_OPT_IN=http  # http.request.method, http.response.status_code
    OTEL_TRACES_EXPORTER=vibefollow OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
        opentelemetry-instrument python examples/rules_app.py

Then ``curl -X POST -H 'X-User-Id: usr_1' 'http://127.0.0.1:5000/api/signup?plan=pro'``
sends ``user_signed_up`` for ``usr_1`` with ``{"plan": "pro", "route": "/api/signup"}``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from flask import Flask, request
from opentelemetry import trace

app = Flask(__name__)


@app.before_request
def record_user() -> None:
    """What an authentication middleware does: name the user on the request's span."""
    user_id = request.headers.get("X-User-Id")
    if user_id:
        trace.get_current_span().set_attribute("enduser.id", user_id)


@app.post("/api/signup")
def signup() -> tuple[dict[str, Any], int]:
    """Records the plan (allow-listed by the rule) and an email (not: it stays on the span)."""
    span = trace.get_current_span()
    span.set_attribute("app.plan", request.args.get("plan", "free"))
    span.set_attribute("app.email", "someone@example.com")
    return {"ok": True}, 201


@app.get("/api/reports/<name>")
def report(name: str) -> dict[str, Any]:
    """A report view: the second rule."""
    trace.get_current_span().set_attribute("app.report", name)
    return {"report": name}


@app.get("/health")
def health() -> dict[str, Any]:
    """No rule names this route: its spans cost two lookups and make nothing."""
    return {"ok": True}


def main() -> None:
    """Serve on 127.0.0.1:$PORT until SIGINT or SIGTERM."""
    # SIGTERM would end the process without atexit, where the SDK shuts its tracer
    # provider down and vf-otel delivers what is still queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))


if __name__ == "__main__":
    main()
