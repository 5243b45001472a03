"""The one-way dependency rule of DESIGN §2, checked with import-linter."""

from __future__ import annotations

import ast
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


def _imports_paho(path: Path) -> bool:
    """Whether the module imports paho anywhere (inside functions too), read as code:
    prose that says "from paho's thread" is not an import."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "paho" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "paho":
            return True
    return False


def test_only_one_module_per_process_imports_paho() -> None:
    """DESIGN §5.4: the hub and the edge each reach MQTT through one module."""
    for package, allowed in (("hub", {"hub/mqtt.py"}), ("edge", {"edge/link.py"})):
        users = {
            str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py") if _imports_paho(p)
        }
        assert allowed <= users, f"{package}: {allowed} no longer imports paho?"
        assert users <= allowed, f"{package}: paho imported from {sorted(users - allowed)}"
    for leaf in ("protocol", "devices"):
        for path in (ROOT / leaf).rglob("*.py"):
            text = path.read_text()
            assert "paho" not in text, f"{path} must not use MQTT"
