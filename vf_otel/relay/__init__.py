"""``vf-otel relay``: an OTLP/HTTP receiver that turns a fleet's tagged telemetry into events.

Install with ``pip install 'vf-otel[relay]'``; see docs/relay.md for the HTTP contract.
"""

from __future__ import annotations

from .app import RelayApp, from_environment
from .forward import Relay

__all__ = ["Relay", "RelayApp", "from_environment"]
