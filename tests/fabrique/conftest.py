"""Fixtures of the ``fabrique`` command's tests: the OctoPrint the demo may serve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.devices.octoprint.conftest import ensure_octoprint


@pytest.fixture(scope="session")
def octoprint_exe() -> Path:
    """The ``octoprint`` executable (installed into the tests' cached venv if needed)."""
    if sys.version_info >= (3, 14):
        pytest.skip("OctoPrint 1.11 supports Python < 3.14 only")
    return ensure_octoprint()
