"""``fabrique demo`` with the embedded amqtt broker killed outright.

Its whole run is in test_demo_telemetry.py (one demo run checks both)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fabrique._demo import gone, start_demo


@pytest.mark.parametrize("broker", ["embedded", "mosquitto"])
def test_a_killed_demo_leaves_no_orphans(tmp_path: Path, octoprint_exe: Path, broker: str) -> None:
    # Mosquitto: started by root it would drop to its own user, which clears the
    # parent-death signal (a leftover broker was found after a failed demo test).
    proc, _out, children = start_demo(tmp_path, broker, octoprint_exe)
    proc.kill()  # no chance to clean up: the kernel tells the children (PR_SET_PDEATHSIG)
    proc.wait(10)
    deadline = time.monotonic() + 30
    while not gone(children):
        assert time.monotonic() < deadline, f"orphans left: {children}"
        time.sleep(0.1)
