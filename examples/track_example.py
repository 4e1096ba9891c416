"""``@vf_otel.track``: an event each time a function returns successfully.

    python examples/track_example.py                            # embedded local server
    VIBEFOLLOW_API_KEY=sk_live_... python examples/track_example.py

``track`` logs a tagged record on the ``vibefollow.track`` logger; the
:class:`vf_otel.VibefollowHandler` that ``configure()`` puts on the root logger sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import vf_otel
from vf_otel.testing import VibefollowServer


class Reports:
    """A service object: the user comes from the instance."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    @vf_otel.track(
        "feature_used",
        user=lambda self, fmt: self.owner,
        properties=lambda self, fmt: {"feature": f"export_{fmt}"},
    )
    def export(self, fmt: str) -> str:
        """Export a report; only a successful export is an event."""
        if fmt not in ("csv", "pdf"):
            raise ValueError(f"unknown format {fmt!r}")
        return f"report.{fmt}"


@vf_otel.track("onboarding_step", properties=lambda step: {"step": step})
async def complete_step(step: int) -> None:
    """Async works too; the user defaults to vf_otel.current_user()."""
    await asyncio.sleep(0)


def run_app(**options: Any) -> None:
    """Configure logging-side delivery only, then call tracked code."""
    configured = vf_otel.configure(spans=False, **options)
    reports = Reports("usr_42")
    reports.export("csv")
    with contextlib.suppress(ValueError):
        reports.export("xls")  # raises: no event
    with vf_otel.user("usr_7"):
        asyncio.run(complete_step(2))
    configured.shutdown()


def main() -> None:
    """Run against VIBEFOLLOW_* settings, or the embedded server when no key is set."""
    if os.environ.get("VIBEFOLLOW_API_KEY"):
        run_app()
        return
    with VibefollowServer() as server:
        run_app(api_key=server.api_key, base_url=server.base_url)
        for event in server.events:
            print("event:", event["name"], event["external_user_id"], event["properties"])


if __name__ == "__main__":
    main()
