"""vf-otel's pytest plugin, loaded by pytest at start-up: the ``vibefollow_server`` fixture.

It lives outside the ``vf_otel`` package on purpose: pytest imports every ``pytest11``
plugin of every installed distribution at start-up, and importing ``vf_otel`` (httpx, the
delivery core) would add its cost to every pytest run in an environment where vf-otel is
installed, whether or not a test uses the fixture. vf-otel is imported when the fixture is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vf_otel.testing import VibefollowServer

__all__ = ["vibefollow_server"]


@pytest.fixture
def vibefollow_server() -> Iterator[VibefollowServer]:
    """A started [`VibefollowServer`][vf_otel.testing.VibefollowServer] on loopback, stopped
    afterwards."""
    from vf_otel.testing import VibefollowServer  # noqa: PLC0415 - only when a test asks

    with VibefollowServer() as server:
        yield server
