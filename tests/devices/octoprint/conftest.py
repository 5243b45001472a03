"""Fixtures of the OctoPrint driver's tests.

The real OctoPrint 1.11 with its Virtual Printer (``octoprint_server`` for the
session, ``octoprint`` idle and Operational, the ``octoprint`` marker) comes from
the plugin :mod:`tests.devices.octoprint.server`, registered for the whole suite
in ``tests/conftest.py``: one server per run, shared with the other folders.
Its helpers are re-exported here for the modules that import them from this file
(the machine tests, the benchmarks); never import its fixtures into a conftest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.devices.octoprint.server import (
    OctoPrintServer,
    dwell_gcode,
    ensure_octoprint,
    octoprint_venv_dir,
)

__all__ = ["OctoPrintServer", "dwell_gcode", "ensure_octoprint", "eventually", "octoprint_venv_dir"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def eventually(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until true; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.02)
