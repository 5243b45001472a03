"""Smoke test of bench/printer_state_latency.py: one cycle against the tests' OctoPrint.

Not a timed test: it proves that the script starts its broker and hub, follows the
printer, measures both paths (start → job, cancel → free), prints its figures and
writes its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.devices.octoprint.conftest import OctoPrintServer

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "printer_state_latency.py"

pytestmark = [
    pytest.mark.broker,
    pytest.mark.octoprint,
    pytest.mark.skipif(
        not Path("/usr/sbin/mosquitto").exists(), reason="mosquitto is not installed"
    ),
]


def test_the_benchmark_runs_and_reports(octoprint: OctoPrintServer, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--runs", "1", "--warmup", "0", "--json", str(out)]
    argv += ["--octoprint", octoprint.url, "--api-key", octoprint.key]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("the hub sees job", "the hub sees free", "shares (p50)", "goal: p95"):
        assert figure in proc.stdout, proc.stdout
    report = json.loads(out.read_text())
    assert report["runs"] == 1
    for path in ("start", "cancel"):
        total = report[path]["total"]
        assert 0 < total["p50"] <= total["max"]
        assert report[path]["octoprint"]["p50"] <= total["p50"]
