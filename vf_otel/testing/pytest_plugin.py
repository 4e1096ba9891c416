"""pytest plugin: the ``vibefollow_server`` fixture.

Registered as a ``pytest11`` entry point, so installing vf-otel makes the fixture available;
without the entry point, add ``pytest_plugins = ["vf_otel.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vf_otel.testing._server import VibefollowServer


@pytest.fixture
def vibefollow_server() -> Iterator[VibefollowServer]:
    """A started [`VibefollowServer`][vf_otel.testing.VibefollowServer] on loopback, stopped
    afterwards."""
    with VibefollowServer() as server:
        yield server
