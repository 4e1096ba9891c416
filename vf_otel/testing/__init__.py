"""Test helpers for code that talks to Vibefollow: a real, strict API server on loopback.

```pycon
>>> from vf_otel.testing import VibefollowServer
>>> with VibefollowServer() as server:
...     server.fail_next(503, retry_after="1")
...     len(server.events)
0

```

With pytest, the ``vibefollow_server`` fixture (``vf_otel.testing.pytest_plugin``) yields a
started server and stops it afterwards.
"""

from __future__ import annotations

from vf_otel.testing._records import FaultKind, RecordedRequest
from vf_otel.testing._server import DEFAULT_API_KEY, VibefollowServer

__all__ = ["DEFAULT_API_KEY", "FaultKind", "RecordedRequest", "VibefollowServer"]
