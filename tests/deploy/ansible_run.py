"""Run the project's Ansible playbooks on this machine (``-c local``) for the tests.

The example inventory (``ansible/inventory/marseille-14``) with its example vault is
what the tests apply; ``extra_vars`` move every path into a temporary folder and turn
off what needs systemd or apt, so a run changes nothing outside that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
INVENTORY = ANSIBLE / "inventory" / "marseille-14"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


def tool(name: str) -> str:
    """An Ansible command from this venv (the dev extra installs them)."""
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/bootstrap dev")
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(Path(os.environ.get("TMPDIR", "/tmp")) / "fabrique-ansible"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return e


@dataclass
class Run:
    ok: int
    changed: int
    failed: int
    output: str


RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def playbook(
    book: Path,
    extra_vars: dict[str, Any],
    *,
    limit: str,
    tmp: Path,
    args: tuple[str, ...] = (),
) -> Run:
    """Apply ``book`` to ``limit`` of the example inventory, locally; fail on error."""
    vars_file = tmp / f"extra-vars-{limit}.json"
    vars_file.write_text(json.dumps(extra_vars))
    cmd = [
        tool("ansible-playbook"),
        "-i",
        str(INVENTORY / "hosts.yml"),
        "-e",
        f"@{INVENTORY / 'vault.example.yml'}",
        "-e",
        f"@{vars_file}",
        "-c",
        "local",
        "--limit",
        limit,
        *args,
        str(book),
    ]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    m = RECAP.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        pytest.fail(f"ansible-playbook failed ({proc.returncode}):\n{out[-6000:]}")
    return Run(int(m.group(1)), int(m.group(2)), int(m.group(4)), out)
