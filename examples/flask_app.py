"""A Flask app whose request spans become Vibefollow events, under ``opentelemetry-instrument``.

No vf-otel code here: the app only tags its spans (docs/spans.md), and the
exporter is chosen and configured from the environment (docs/auto-instrumentation.md)::

    pip install vf-otel flask 'opentelemetry-distro[otlp]' opentelemetry-instrumentation-flask
    export VIBEFOLLOW_API_KEY=sk_live_...
    OTEL_TRACES_EXPORTER=otlp,vibefollow opentelemetry-instrument python examples/flask_app.py

(``[otlp]`` installs the OTLP exporter the distro uses by default; without a tracing
backend, use ``OTEL_TRACES_EXPORTER=vibefollow OTEL_METRICS_EXPORTER=none
OTEL_LOGS_EXPORTER=none`` instead.)

Then ``curl -H 'baggage: vf.user=usr_7' http://127.0.0.1:5000/reports/weekly`` sends
``report_viewed`` for ``usr_7``: the Flask instrumentation extracts the W3C baggage
header and vf-otel's user span processor records it on the request span.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from flask import Flask
from opentelemetry import trace

app = Flask(__name__)


@app.get("/health")
def health() -> dict[str, Any]:
    """Untagged: this request's span is not an event."""
    return {"ok": True}


@app.get("/reports/<name>")
def view_report(name: str) -> dict[str, Any]:
    """Tagged with vf.event only: the user comes from baggage ``vf.user``."""
    span = trace.get_current_span()
    span.set_attribute("vf.event", "report_viewed")
    span.set_attribute("vf.properties.report", name)
    return {"report": name}


@app.post("/signup/<user_id>")
def signup(user_id: str) -> tuple[dict[str, Any], int]:
    """Names its user explicitly and upserts a trait."""
    trace.get_current_span().set_attributes(
        {"vf.user": user_id, "vf.event": "user_signed_up", "vf.traits.plan": "trial"}
    )
    return {"created": user_id}, 201


@app.get("/fail")
def fail() -> dict[str, Any]:
    """Tagged, but the request fails: an ERROR span emits nothing (the action did not happen)."""
    trace.get_current_span().set_attribute("vf.event", "report_exported")
    raise RuntimeError("export failed")


def main() -> None:
    """Serve on 127.0.0.1:$PORT until SIGINT or SIGTERM."""
    # SIGTERM would kill the process without running atexit, where the SDK shuts
    # its tracer provider down and vf-otel delivers what is still queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))


if __name__ == "__main__":
    main()
