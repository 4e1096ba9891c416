"""``vf-otel relay``: an OTLP/HTTP receiver that turns a fleet's tagged telemetry into events.

Install with ``pip install 'vf-otel[relay]'``; docs/relay.md describes the HTTP contract.
[`from_environment`][vf_otel.relay.from_environment] builds the ASGI app from
``VIBEFOLLOW_*`` variables (what ``vf-otel relay`` and ``uvicorn --factory`` serve);
[`Relay`][vf_otel.relay.Relay] and [`RelayApp`][vf_otel.relay.RelayApp] build it in code.
"""

from __future__ import annotations

from .app import RelayApp, from_environment
from .forward import Relay

__all__ = ["Relay", "RelayApp", "from_environment"]

# Reprs and tracebacks show the public name, not the private layout (as vf_otel's do).
for _value in (Relay, RelayApp, from_environment):
    _value.__module__ = __name__
del _value
