"""``fabrique hub run`` as a real process against Mosquitto."""

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

from protocol.messages import HubStatus, decode
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
