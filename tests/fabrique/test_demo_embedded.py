"""``fabrique demo`` end to end with the embedded amqtt broker (about 30 s)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fabrique._demo import gone, run_demo_and_check, start_demo


def test_demo_with_embedded_broker(tmp_path: Path) -> None:
    run_demo_and_check(tmp_path, "embedded")


def test_a_killed_demo_leaves_no_orphans(tmp_path: Path) -> None:
    proc, _out, children = start_demo(tmp_path, "embedded")
    proc.kill()  # no chance to clean up: the kernel tells the children (PR_SET_PDEATHSIG)
    proc.wait(10)
    deadline = time.monotonic() + 20
    while not gone(children):
        assert time.monotonic() < deadline, f"orphans left: {children}"
        time.sleep(0.1)
