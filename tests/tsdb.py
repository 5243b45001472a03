"""Real time-series servers for the tests: VictoriaMetrics (InfluxDB v2 write API)
and InfluxDB 1.x (InfluxQL), each on free loopback ports with a temporary store."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_port


@dataclass
class VictoriaMetrics:
    url: str
    process: subprocess.Popen[bytes]

    def export(self) -> list[dict[str, object]]:
        """Every stored sample (``/api/v1/export``), after a forced flush."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": '{__name__=~".+"}', "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_victoria(tmp: Path, port: int | None = None) -> VictoriaMetrics:
    exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(exe).exists():
        pytest.skip("victoria-metrics is not installed (scripts/test installs it)")
    port = port or free_port()
    process = subprocess.Popen(
        [
            exe,
            f"-storageDataPath={tmp}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
            "-dedup.minScrapeInterval=1ms",  # same series and time: one sample, like InfluxDB
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port("127.0.0.1", port, 30)
    return VictoriaMetrics(f"http://127.0.0.1:{port}", process)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = start_victoria(tmp_path / "vm")
    try:
        yield vm
    finally:
        vm.stop()


@dataclass
class Influx1:
    url: str
    process: subprocess.Popen[bytes]

    def write(self, db: str, lines: list[str]) -> None:
        body = "\n".join(lines).encode()
        req = urllib.request.Request(f"{self.url}/write?db={db}&precision=ns", data=body)
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204

    def query(self, db: str, q: str) -> dict[str, object]:
        data = urllib.parse.urlencode({"db": db, "q": q, "epoch": "s"}).encode()
        req = urllib.request.Request(f"{self.url}/query", data=data)
        with urllib.request.urlopen(req, timeout=30) as r:
            result: dict[str, object] = json.loads(r.read())
            return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def start_influx1(tmp: Path) -> Influx1:
    exe = shutil.which("influxd") or "/usr/bin/influxd"
    if not Path(exe).exists():
        pytest.skip("influxdb (1.x) is not installed (scripts/test installs it)")
    http, rpc = free_port(), free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "influxdb.conf"
    config.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{tmp}/meta"\n'
        f'[data]\n  dir = "{tmp}/data"\n  wal-dir = "{tmp}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{http}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        "[continuous_queries]\n  enabled = false\n"
    )
    process = subprocess.Popen(
        [exe, "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as r:
                if r.status == 204:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("influxd did not start")
        time.sleep(0.1)
    return Influx1(url, process)
