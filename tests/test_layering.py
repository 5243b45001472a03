"""The one-way dependency rule of DESIGN §2, checked with import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_only_one_module_per_process_imports_paho() -> None:
    """DESIGN §5.4: the hub and the edge each reach MQTT through one module."""
    for package, allowed in (("hub", {"hub/mqtt.py"}), ("edge", {"edge/link.py"})):
        users = {
            str(p.relative_to(ROOT))
            for p in (ROOT / package).rglob("*.py")
            if "import paho" in p.read_text() or "from paho" in p.read_text()
        }
        assert users <= allowed, f"{package}: paho imported from {sorted(users - allowed)}"
    for leaf in ("protocol", "devices"):
        for path in (ROOT / leaf).rglob("*.py"):
            text = path.read_text()
            assert "paho" not in text, f"{path} must not use MQTT"
