"""The site broker as the mosquitto role renders it for the example inventory.

One rendering per test session (two Ansible runs, the second must change nothing),
shared by the ACL tests and the TLS tests of the hub's and the edges' clients.
"""

from __future__ import annotations

import getpass
import grp
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, mosquitto_binary, wait_port
from tests.deploy.ansible_run import PLAYBOOKS, Run, playbook


@dataclass
class RenderedBroker:
    dir: Path
    local_port: int
    tls_port: int
    runs: list[Run]
    log: Path

    @property
    def ca(self) -> Path:
        return self.dir / "etc" / "certs" / "ca.crt"


def role_vars(d: Path, local_port: int, tls_port: int) -> dict[str, object]:
    return {
        "mosquitto_packages": [],
        "mosquitto_service_manage": False,
        "mosquitto_config_dir": str(d / "etc"),
        "mosquitto_data_dir": str(d / "data"),
        "mosquitto_user": getpass.getuser(),
        "mosquitto_group": grp.getgrgid(os.getgid()).gr_name,
        "mosquitto_local_port": local_port,
        "mosquitto_tls_address": "127.0.0.1",
        "mosquitto_tls_port": tls_port,
        "mosquitto_tls_server_names": ["localhost"],
        "mosquitto_tls_ca_fetch_dest": "",
    }


def render_broker(d: Path) -> tuple[Path, int, int, list[Run]]:
    """Apply the role twice into ``d``; the second run must change nothing."""
    local_port, tls_port = free_port(), free_port()
    extra = role_vars(d, local_port, tls_port)
    runs = [
        playbook(PLAYBOOKS / "mosquitto.yml", extra, limit="hub", tmp=d, args=("--diff",))
        for _ in range(2)
    ]
    return d / "etc" / "mosquitto.conf", local_port, tls_port, runs


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderedBroker]:
    d = tmp_path_factory.mktemp("mosquitto-role")
    conf, local_port, tls_port, runs = render_broker(d)
    log = d / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_port("127.0.0.1", local_port)
        wait_port("127.0.0.1", tls_port)
        yield RenderedBroker(d, local_port, tls_port, runs, log)
    finally:
        proc.terminate()
        proc.wait(10)
