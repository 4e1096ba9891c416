"""vf_otel/_compat.py: every private OpenTelemetry name it uses has a working fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import vf_otel._compat as compat

PROBE = """
import vf_otel._compat as compat
from opentelemetry import context
with compat.suppressed_instrumentation():
    plain = bool(context.get_value("suppress_instrumentation"))
    print(compat.FALLBACK, plain, len(compat._SUPPRESS_KEYS))
"""


def _probe(fallback: bool) -> list[str]:
    env = dict(os.environ)
    env.pop("VF_OTEL_FORCE_COMPAT_FALLBACK", None)
    if fallback:
        env["VF_OTEL_FORCE_COMPAT_FALLBACK"] = "1"
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_private_keys_are_used_when_present() -> None:
    """With the SDK's private keys available, they are set along with the plain one."""
    assert _probe(fallback=False) == ["False", "True", "3"]


def test_forced_fallback_still_suppresses_through_the_plain_key() -> None:
    """Without the private keys, the plain key opentelemetry-instrumentation checks is set."""
    assert _probe(fallback=True) == ["True", "True", "1"]


def test_suppression_is_honoured_by_the_instrumentation_check() -> None:
    """opentelemetry-instrumentation's own check sees vf-otel's requests as suppressed."""
    utils = pytest.importorskip("opentelemetry.instrumentation.utils")
    assert utils.is_instrumentation_enabled()
    with compat.suppressed_instrumentation():
        assert not utils.is_instrumentation_enabled()
    assert utils.is_instrumentation_enabled()


def test_log_exporter_names_resolve() -> None:
    """The log exporter base class and result enum resolve on this SDK (old or new names)."""
    assert hasattr(compat.LogExportResult, "SUCCESS")
    assert callable(getattr(compat.LogExporterBase, "export", None))
