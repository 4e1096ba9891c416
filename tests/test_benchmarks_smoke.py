"""The benchmark harness runs end to end in its smallest size (no timing is checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(script: str, out: Path) -> dict[str, Any]:
    """``benchmarks/SCRIPT --size=smoke --json=OUT`` run from ``benchmarks/``; its results.
    A failure shows the script's standard error."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / "benchmarks" / script), "--size=smoke", f"--json={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT / "benchmarks",
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(out.read_text()))


@pytest.mark.slow
def test_run_py_smoke_writes_results_and_docs(tmp_path: Path) -> None:
    """run.py --smoke on two hot-path variants and the tagged span export writes JSON and docs."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--only=hot_path,spans",
            "--variants=hot_path=baseline,vf_tagged",
            "--variants=spans=vf_tagged",
            f"--results={tmp_path / 'results.json'}",
            f"--docs={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    hot_path = results["comparisons"]["hot_path"]
    assert set(hot_path["variants"]) == {"baseline", "vf_tagged"}
    assert hot_path["vf_events_delivered"] == hot_path["calls"] * hot_path["rounds"]
    spans = results["comparisons"]["spans"]
    assert set(spans["variants"]) == {"vf_tagged"}
    # The same spans every round: stable event ids, so the server keeps them once.
    assert spans["vf_events_delivered"] == spans["batch"]
    page = (tmp_path / "benchmarks.md").read_text()
    assert "VibefollowHandler, tagged record" in page


@pytest.mark.slow
def test_cold_start_smoke_counts_sdk_modules(tmp_path: Path) -> None:
    """cold_start.py --smoke: the logging path loads no OpenTelemetry SDK module, spans do."""
    results = run_smoke("cold_start.py", tmp_path / "cold.json")
    assert results["sdk_modules"]["logging"] == 0
    assert results["sdk_modules"]["spans"] > 0


def test_fast_paths_smoke_times_each_pair(tmp_path: Path) -> None:
    """fast_paths.py --smoke: a row per fast path and the slow path it mirrors, each fast
    path's ratio taken to its own slow path (the sender's pair per request)."""
    results = run_smoke("fast_paths.py", tmp_path / "fast.json")
    rows = results["variants"]
    assert set(rows) == {"make_event", "build_batch", "dumps_to_wire", "encode_event"}
    assert rows["make_event"]["ratio"] == rows["dumps_to_wire"]["ratio"] == 1.0
    assert all(row["median"] > 0 for row in rows.values())
    # The sender's pair, per request, against the loopback sink.
    posts = results["per_request"]["variants"]
    assert set(posts) == {"post_plain", "post_fast"}
    assert posts["post_plain"]["ratio"] == 1.0
    assert all(row["median"] > 0 for row in posts.values())


@pytest.mark.slow
def test_relay_benchmark_smoke(tmp_path: Path) -> None:
    """relay.py --smoke: both encodings go through a real relay process to the sink."""
    pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto: the relay extra")
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.common",
        reason="opentelemetry-exporter-otlp-proto-common",
    )
    results = run_smoke("relay.py", tmp_path / "relay.json")
    assert set(results["variants"]) == {"exporter", "relay_protobuf", "relay_json"}
    # One request per batch of 512 events (batch_size 500: two each) for every timed POST.
    assert results["sink_requests"] >= 3 * results["rounds"] * results["batches"]
