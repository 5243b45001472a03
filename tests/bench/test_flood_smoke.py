"""Smoke test of the flood benchmark (bench/flood.py) with floods 1/100 of the issue's.

Not a timed test: it only proves that the script starts its broker and the hub, runs
every flood from one edge while honest edges badge, reads the hub's counters over
/metrics, prints its figures and cleans up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "flood.py"

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        not Path("/usr/sbin/mosquitto").exists(), reason="mosquitto is not installed"
    ),
]


def test_flood_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    proc = subprocess.run(
        [
            sys.executable, str(SCRIPT),
            "--edges", "2", "--rate", "5", "--scale", "0.01",
            "--idle", "0.5", "--tail", "0.5", "--settle", "0.2",
            "--hub-setting", "throttle_requests_burst=10.0",
            "--json", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "goals: honest p99" in proc.stdout, proc.stdout
    report = json.loads(out.read_text())
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"idle", "requests", "events", "telemetry", "states"}
    assert phases["requests"]["sent"] == 100
    assert phases["requests"]["throttled"] > 0  # 100 requests against a burst of 10
    assert all(p["requests"] > 0 for p in phases.values()), phases
