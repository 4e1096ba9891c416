"""The installed version of vf-otel (read by hatchling at build time)."""

from __future__ import annotations

__version__ = "0.1.0"
