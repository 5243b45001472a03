"""``fabrique demo`` end to end with Mosquitto and a real OctoPrint serving printer-1."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.fabrique._demo import gone, run_demo_and_check, start_demo


@pytest.mark.broker
def test_demo_with_mosquitto_and_octoprint(tmp_path: Path, octoprint_exe: Path) -> None:
    run_demo_and_check(tmp_path, "mosquitto", octoprint_exe)


@pytest.mark.broker
def test_ctrl_c_stops_the_demo_in_order(tmp_path: Path, octoprint_exe: Path) -> None:
    proc, out_path, children = start_demo(tmp_path, "mosquitto", octoprint_exe)
    try:
        wait_for = time.monotonic() + 60
        while "──" not in out_path.read_text(encoding="utf-8"):  # a first status line
            assert time.monotonic() < wait_for, out_path.read_text(encoding="utf-8")
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = out_path.read_text(encoding="utf-8")
    assert rc == 0, out
    assert "Traceback" not in out
    assert out.rstrip().endswith("Démo arrêtée.")
    assert gone(children)
