"""The deployment is clean for yamllint and ansible-lint (production profile), and
every playbook passes ``ansible-playbook --syntax-check`` against the example site."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.ansible_run import ANSIBLE, INVENTORY, env, tool

pytestmark = pytest.mark.deploy

PLAYBOOKS = sorted(p.name for p in ANSIBLE.glob("*.yml"))


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ANSIBLE, env=env(), capture_output=True, text=True, timeout=600, check=False
    )


def test_every_playbook_is_there() -> None:
    assert PLAYBOOKS == ["central.yml", "edges.yml", "hub.yml", "site.yml"]


@pytest.mark.parametrize("book", PLAYBOOKS)
def test_syntax(book: str) -> None:
    inventory = ANSIBLE / "inventory" / "central" if book == "central.yml" else INVENTORY
    proc = run(
        [tool("ansible-playbook"), "--syntax-check", "-i", str(inventory / "hosts.yml"), book]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint() -> None:
    proc = run([tool("yamllint"), "--strict", "-c", ".yamllint", ".", "../tests/deploy/playbooks"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile() -> None:
    proc = run([tool("ansible-lint"), "--nocolor", "--profile", "production"])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
