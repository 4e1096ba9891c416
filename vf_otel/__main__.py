"""``python -m vf_otel``: the same as the ``vf-otel`` command."""

from __future__ import annotations

from vf_otel._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
