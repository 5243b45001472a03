"""``fabrique hub run`` and ``fabrique edge sim`` as real processes against Mosquitto."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol.messages import EdgeStatus, HubStatus, decode
from protocol.topics import Topics
from tests.conftest import Broker, free_port

SECRETS = (
    'site_secret = "0123456789abcdef0123456789abcdef"\n'
    'session_secret = "fedcba9876543210fedcba9876543210"\n'
)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Retained:
    """Keeps the last payload seen on each topic under a filter."""

    def __init__(self, broker: Broker, topic_filter: str) -> None:
        self.last: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.last[msg.topic] = bytes(msg.payload)
            self.history.append((msg.topic, bytes(msg.payload)))

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self.last.get(topic)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fabrique", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_hub_run_serves_and_stops_cleanly(
    mosquitto: Broker, tmp_path: Path, sig: signal.Signals
) -> None:
    site = f"run-{sig.name.lower()}"
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        SECRETS + f'site = "{site}"\ndatabase_url = "sqlite:///{tmp_path / "hub.db"}"\n'
        f"mqtt_port = {mosquitto.port}\nhttp_port = {port}\n"
    )
    topics = Topics(site)
    watch = Retained(mosquitto, topics.hub_status())
    proc = spawn(["hub", "run", "--config", str(config)], tmp_path)
    try:

        def healthy() -> bool:
            try:
                return (
                    httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
                )
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False

        wait_for(healthy, 30, "the hub's API")
        online = wait_for(lambda: watch.get(topics.hub_status()), 10, "the hub's status")
        assert decode(HubStatus, online).online
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        watch.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    last = watch.get(topics.hub_status())
    assert last is not None
    assert not decode(HubStatus, last).online
    assert (tmp_path / "hub.db").exists()


@pytest.mark.broker
def test_a_killed_hub_leaves_no_worker_behind(mosquitto: Broker, tmp_path: Path) -> None:
    """SIGKILL gives the hub no chance to stop its snapshot worker: the kernel must."""
    import psutil

    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        SECRETS + f'site = "run-kill"\ndatabase_url = "sqlite:///{tmp_path / "hub.db"}"\n'
        f"mqtt_port = {mosquitto.port}\nhttp_port = {port}\n"
    )
    proc = spawn(["hub", "run", "--config", str(config)], tmp_path)
    try:
        hub = psutil.Process(proc.pid)
        children = wait_for(lambda: hub.children(recursive=True), 30, "the snapshot worker")
        proc.kill()
        proc.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _sim_config(tmp_path: Path, broker: Broker, site: str) -> Path:
    config = tmp_path / "edges.toml"
    config.write_text(
        f'site = "{site}"\nmqtt_port = {broker.port}\nstate_dir = "{tmp_path / "state"}"\n'
        "mean_arrival_min = 1000\n"
        '[[edges]]\nid = "pi-x"\n[[edges.machines]]\nid = "pc-x"\nkind = "gaming_pc"\n'
        'badges = [{uid = "04AA000000000001", label = "Inès"}]\n'
    )
    return config


@pytest.mark.broker
def test_edge_sim_last_will_and_clean_stop(mosquitto: Broker, tmp_path: Path) -> None:
    site = "sim-will"
    topic = Topics(site).edge_status("pi-x")
    config = _sim_config(tmp_path, mosquitto, site)
    watch = Retained(mosquitto, topic)
    procs: list[subprocess.Popen[str]] = []

    def status() -> EdgeStatus | None:
        payload = watch.get(topic)
        return decode(EdgeStatus, payload) if payload else None

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fabrique", "edge", "sim", "--config", str(config), "-q"],
            cwd=tmp_path,
            env={"FABRIQUE_SITE_SECRET": "0123456789abcdef", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    try:
        first = start()
        up = wait_for(lambda: (s := status()) and s.online and s, 20, "edge online")
        assert up.machines == ("pc-x",)
        first.kill()  # no goodbye: the broker publishes the last will
        first.wait(10)
        will = wait_for(lambda: (s := status()) and not s.online and s, 60, "the last will")
        assert will.epoch == up.epoch

        second = start()
        again = wait_for(
            lambda: (s := status()) and s.online and s.epoch > up.epoch and s, 20, "new epoch"
        )
        assert again.epoch == up.epoch + 1  # persisted in the state directory
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert "Traceback" not in err
        bye = wait_for(lambda: (s := status()) and not s.online and s, 10, "offline status")
        assert bye.epoch == again.epoch
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        watch.close()
