"""docs/auto-instrumentation.md's Setup commands, run exactly as the page writes them.

The commands are read from the page, not copied here, so the page cannot drift from
what is tested. Each ``opentelemetry-instrument`` line runs with its own environment
assignments and ``export`` lines, plus two stand-ins a test needs: the API key and
``VIBEFOLLOW_BASE_URL`` of a local Vibefollow server, and ``OTEL_EXPORTER_OTLP_ENDPOINT``
of a local OTLP collector (the "tracing backend"). Every other ``OTEL_*`` variable of
the test run is removed, so only what the page sets applies.

By default the commands run with this interpreter's environment (which has the
packages the page's ``pip install`` lines name). With ``VF_OTEL_TEST_FRESH_VENV=1``
the ``pip install`` lines run too, each in a new virtual environment (``./vf-otel``
being this checkout): that needs the network, so it is opt-in.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vf_otel.testing import VibefollowServer

from .conftest import server_env

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "auto-instrumentation.md"
#: A hang guard for a child process, not a timing assertion.
HANG_GUARD = 600
#: The app the commands run (``python app.py``): tagged and untagged spans, no vf-otel.
APP = """\
from opentelemetry import trace

tracer = trace.get_tracer("app")
with tracer.start_as_current_span("signup") as span:
    span.set_attributes({"vf.user": "usr_1", "vf.event": "user_signed_up"})
with tracer.start_as_current_span("health"):
    pass
"""
FRESH_VENV = os.environ.get("VF_OTEL_TEST_FRESH_VENV") == "1"


@dataclass
class Setup:
    """One ``sh`` block of the Setup section: its pip lines, exports and command."""

    pip: list[list[str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


def documented_setups() -> list[Setup]:
    """The ``sh`` blocks of the page's Setup section, parsed as a shell would split them."""
    text = PAGE.read_text()
    section = text[text.index("## Setup") :]
    section = section[: section.index("\n## ", 1)]
    setups = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        setup = Setup()
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["pip", "install"]:
                setup.pip.append(words[2:])
            elif words[:1] == ["export"]:
                setup.env.update(_assignment(word) for word in words[1:])
            else:
                while "=" in words[0]:
                    setup.env.update([_assignment(words.pop(0))])
                setup.command = words
        setups.append(setup)
    return setups


def _assignment(word: str) -> tuple[str, str]:
    name, _, value = word.partition("=")
    return name, value


SETUPS = documented_setups()


def test_the_page_has_both_setups() -> None:
    """Two blocks: OTLP and Vibefollow side by side, and Vibefollow alone."""
    assert [s.env["OTEL_TRACES_EXPORTER"] for s in SETUPS] == ["otlp,vibefollow", "vibefollow"]
    assert all(s.command == ["opentelemetry-instrument", "python", "app.py"] for s in SETUPS)
    assert all(s.pip and s.pip[0][0] == "./vf-otel" for s in SETUPS)  # a clone, until on PyPI
    assert all("flask" in s.pip[0] for s in SETUPS)  # the example app below imports it


class Collector:
    """A loopback OTLP/gRPC collector: accepts traces, metrics and logs, counts span names."""

    def __init__(self) -> None:
        grpc = pytest.importorskip("grpc")
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.span_names: list[str] = []
        collector = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.span_names += [span.name for span in scope.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                return logs_service_pb2.ExportLogsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)  # type: ignore[no-untyped-call]
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._server)  # type: ignore[no-untyped-call]
        self.port: int = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def stop(self) -> None:
        """Stop serving at once."""
        self._server.stop(None)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A local OTLP collector."""
    running = Collector()
    yield running
    running.stop()


def run_documented(
    setup: Setup,
    bin_dir: Path,
    tmp_path: Path,
    server: VibefollowServer,
    collector: Collector,
) -> subprocess.CompletedProcess[str]:
    """Run the setup's command as written, from ``tmp_path`` holding app.py, with
    ``bin_dir`` first on PATH (where ``opentelemetry-instrument`` and ``python`` are)."""
    (tmp_path / "app.py").write_text(APP)
    assert setup.env["VIBEFOLLOW_API_KEY"] == "sk_live_..."  # the page's placeholder, replaced
    env = server_env(
        server,
        drop=("OTEL_",),
        app_env=setup.env,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(  # noqa: S603 - the documented command, no shell
        setup.command,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


def check_delivered(
    setup: Setup,
    done: subprocess.CompletedProcess[str],
    server: VibefollowServer,
    collector: Collector,
) -> None:
    """The SDK started, the tagged span reached Vibefollow, and OTLP got every span when named."""
    assert "Failed to auto initialize" not in done.stderr, done.stderr
    assert "not found" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("user_signed_up", "usr_1")
    ], done.stderr
    otlp = "otlp" in setup.env["OTEL_TRACES_EXPORTER"].split(",")
    assert sorted(collector.span_names) == (["health", "signup"] if otlp else [])


def _this_environment() -> Path:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "opentelemetry-instrument").exists():
        pytest.skip("opentelemetry-instrument is not installed next to this Python")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")  # the [otlp] extra
    return bin_dir


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS, ids=[s.env["OTEL_TRACES_EXPORTER"] for s in SETUPS])
def test_documented_command_delivers(
    setup: Setup, tmp_path: Path, server: VibefollowServer, collector: Collector
) -> None:
    """The page's opentelemetry-instrument line and environment, as written, in this
    environment: the SDK starts and the tagged span is delivered (and exported over OTLP
    when the line names otlp)."""
    done = run_documented(setup, _this_environment(), tmp_path, server, collector)
    check_delivered(setup, done, server, collector)


@pytest.mark.slow
@pytest.mark.skipif(not FRESH_VENV, reason="needs the network: set VF_OTEL_TEST_FRESH_VENV=1")
@pytest.mark.parametrize("setup", SETUPS, ids=[s.env["OTEL_TRACES_EXPORTER"] for s in SETUPS])
def test_documented_install_and_command_in_a_fresh_venv(
    setup: Setup, tmp_path: Path, server: VibefollowServer, collector: Collector
) -> None:
    """The page's pip install lines in a new venv (vf-otel = this checkout), then its
    command: the SDK starts and the tagged span is delivered."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    for packages in setup.pip:
        argv = [str(ROOT) if word == "./vf-otel" else word for word in packages]
        subprocess.run(  # noqa: S603 - the documented install, no shell
            [str(bin_dir / "python"), "-m", "pip", "install", "-q", *argv],
            check=True,
            timeout=HANG_GUARD,
        )
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    done = run_documented(setup, bin_dir, app_dir, server, collector)
    check_delivered(setup, done, server, collector)
