"""Smoke test of the decision benchmark (bench/decisions.py) with tiny numbers.

Not a timed test: it only proves that the script starts its broker and the hub,
drives simulated edges through both phases, prints its figures and cleans up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "decisions.py"

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        not Path("/usr/sbin/mosquitto").exists(), reason="mosquitto is not installed"
    ),
]


def test_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--edges", "3",
            "--members", "12",
            "--duration", "2",
            "--warmup", "0.5",
            "--tele", "50",
            "--saturate-seconds", "1",
            "--sat-conns", "2",
            "--sat-window", "4",
            "--wait-other", "0",
            "--json", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("p50 ms", "p99 ms", "per s", "goal steady p99", "saturated throughput"):
        assert figure in proc.stdout, proc.stdout

    report = json.loads(out.read_text())
    steady = report["median"]["steady"]
    saturated = report["median"]["saturate"]
    assert steady["decisions"] > 0
    assert steady["granted"] > 0
    assert steady["denied"] + steady["granted"] >= steady["decisions"]
    assert steady["timeouts"] == 0
    assert steady["timeouts_total"] == 0
    assert steady["tele_sent"] > 0
    assert steady["misrouted"] == 0
    assert steady["invalid"] == 0
    assert steady["p99_ms"] > 0
    assert steady["hub_cpu_pct"] >= 0
    assert steady["hub_rss_mb"] > 0
    assert saturated["decisions"] > 0
    assert saturated["timeouts"] == 0
    assert report["prime"]["invalid"] == 0

    # Every process the benchmark started (broker, hub, load generators) is gone,
    # and so is its work directory.
    setup = report["setup"]
    started = [setup["hub_pid"], setup["broker_pid"], *setup["loadgen_pids"]]
    assert len(started) >= 3
    alive = [pid for pid in started if psutil.pid_exists(pid) and _same_run(pid, setup)]
    assert alive == []
    assert not Path(setup["workdir"]).exists()


def _same_run(pid: int, setup: dict[str, object]) -> bool:
    """Whether ``pid`` is still one of ours (pids can be reused by other processes)."""
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return str(setup["workdir"]) in cmdline or "multiprocessing" in cmdline
