"""The installed version of vf-otel (read by hatchling at build time)."""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.0"
