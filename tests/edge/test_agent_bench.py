"""Smoke tests of the edge benchmarks (bench/edge_*.py, bench/journal_replay.py), tiny numbers.

Not timed tests: they prove each script starts its broker and hub, drives a real edge
agent, prints its figures, writes its JSON and cleans up. The figures themselves
are measured by running the scripts with their defaults (see docs/edge.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.broker


def run(script: str, *args: str, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    data: dict[str, object] = json.loads(out.read_text())
    return data


def test_latency_bench(tmp_path: Path) -> None:
    report = run(
        "edge_latency.py", "--runs", "15", "--offline-runs", "2", "--pause", "0",
        tmp_path=tmp_path,
    )  # fmt: skip
    online, offline = report["online"], report["offline"]
    assert isinstance(online, dict)
    assert isinstance(offline, dict)
    assert online["n"] == 15
    assert 0 < online["p50"] < 500  # decided by the hub, not by the timeout
    assert offline["p50"] >= 500  # waited for the decision timeout


def test_journal_replay_bench(tmp_path: Path) -> None:
    report = run("journal_replay.py", "--machines", "2", "--minutes", "5", tmp_path=tmp_path)
    assert report["events"] == 2 * 5 + 4
    assert report["once"] is True
    assert report["in_order"] is True
    assert report["contiguous"] is True


def test_footprint_bench(tmp_path: Path) -> None:
    report = run("edge_footprint.py", "--idle", "1", "--settle", "0.5", tmp_path=tmp_path)
    assert 10 < float(report["rss_mb"]) < 200  # type: ignore[arg-type]
    assert float(report["cpu_pct"]) >= 0  # type: ignore[arg-type]
