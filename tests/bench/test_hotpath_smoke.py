"""Smoke test of bench/hotpath.py with tiny numbers: today's hub (extracted from git,
with the settings it does not know dropped), this hub and the echo responder each run
once, and the ratios are printed. Not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "hotpath.py"

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        not Path("/usr/sbin/mosquitto").exists(), reason="mosquitto is not installed"
    ),
]


def test_hotpath_runs_the_three_variants_and_prints_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "hotpath.json"
    proc = subprocess.run(
        [
            sys.executable, str(SCRIPT),
            "--rounds", "1", "--edges", "3", "--tele", "30",
            "--duration", "1", "--saturate-seconds", "1",
            "--json", str(out),
            "--", "--members", "12", "--warmup", "0.3",
            "--sat-conns", "2", "--sat-window", "4", "--wait-other", "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for ratio in (
        "CPU per decision new/today",
        "saturated decisions/s new/today",
        "peak RSS new/today",
        "steady p99 new/echo",
    ):
        assert f"ratio {ratio}:" in proc.stdout, proc.stdout
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"today", "new", "echo"}
    for variant, runs in results.items():
        steady = runs[0]["steady"]
        assert steady["decisions"] > 0, variant
        assert steady["timeouts"] == 0, variant
        assert steady["invalid"] == 0, variant
    # The echo refuses everything; both hubs decide alike on the same seeded population.
    assert results["echo"][0]["steady"]["granted"] == 0
    assert results["today"][0]["steady"]["granted"] > 0
    assert results["new"][0]["steady"]["granted"] > 0
