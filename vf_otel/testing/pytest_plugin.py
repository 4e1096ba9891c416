"""pytest plugin: the ``vibefollow_server`` fixture.

Installing vf-otel registers it with pytest (a ``pytest11`` entry point, served by the
top-level ``_vf_otel_pytest`` module so that pytest's start-up does not import vf-otel);
without the entry point, add ``pytest_plugins = ["vf_otel.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from _vf_otel_pytest import vibefollow_server

__all__ = ["vibefollow_server"]
