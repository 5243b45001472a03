"""The demo's MQTT broker: Mosquitto when installed, else an embedded Python broker.

:func:`start_broker` starts either as a child process listening on a free loopback
port and returns a :class:`RunningBroker` to stop it. Mosquitto gets a generated
configuration (loopback listener only, anonymous access, ``set_tcp_nodelay``). The
embedded broker is amqtt run by this module (``python -m fabrique.demo.broker``): it
speaks MQTT 3.1.1 only and is several times slower than Mosquitto, which is fine for
the demo and nothing else. Both the hub's and the edges' links speak 3.1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fabrique.demo.procs import die_with_parent, spawn, terminate

logger = logging.getLogger(__name__)

BrokerChoice = Literal["auto", "mosquitto", "embedded"]
HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """The broker could not be started."""


def mosquitto_path() -> str | None:
    """The ``mosquitto`` binary, from ``PATH`` or Debian's ``/usr/sbin``; None if absent."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class RunningBroker:
    """A broker child process; :meth:`stop` ends it (idempotent)."""

    kind: Literal["mosquitto", "embedded"]
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def label(self) -> str:
        """How the console names it."""
        return "Mosquitto" if self.kind == "mosquitto" else "broker intégré (amqtt, MQTT 3.1.1)"

    def stop(self) -> None:
        code = terminate(self.process, f"{self.kind} broker")
        logger.info("%s broker stopped (exit code %s)", self.kind, code)


def start_broker(
    choice: BrokerChoice, workdir: Path, *, port: int | None = None, timeout: float = 15.0
) -> RunningBroker:
    """Start the broker ``choice`` asks for (``auto``: Mosquitto if installed).

    Raises:
        BrokerError: Mosquitto was asked for and is missing, or the broker did not
            listen within ``timeout`` seconds (its log is quoted).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    binary = mosquitto_path()
    if choice == "mosquitto" and binary is None:
        raise BrokerError("mosquitto is not installed (try --broker embedded)")
    if choice != "embedded" and binary is not None:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {HOST}\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "max_queued_messages 10000\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # Started by root, Mosquitto drops to its own user, and a change of user
            # clears the kernel's parent-death signal: a demo killed outright would
            # leave its broker running. Stay root then (this broker is loopback-only).
            + ("user root\n" if os.geteuid() == 0 else ""),
            encoding="utf-8",
        )
        argv = [binary, "-c", str(conf)]
        kind: Literal["mosquitto", "embedded"] = "mosquitto"
    else:
        argv = [
            sys.executable,
            "-m",
            "fabrique.demo.broker",
            "--port",
            str(port),
            "--parent-pid",
            str(os.getpid()),
        ]
        kind = "embedded"
    log_path = workdir / f"broker-{kind}.log"
    with log_path.open("wb") as log:
        proc = spawn(argv, stdout=log, stderr=log, pdeathsig=kind == "mosquitto")
    broker = RunningBroker(kind, HOST, port, proc, log_path)
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:].strip()
            raise BrokerError(
                f"the {kind} broker did not start on port {port}" + (f": {tail}" if tail else "")
            )
        time.sleep(0.05)
    logger.info("%s broker listening on %s:%d", kind, HOST, port)
    return broker


# --------------------------------------------------------------------------- embedded


class _SnapshotDict(dict[str, Any]):
    """A dict whose iteration walks a snapshot of its keys (safe while it changes)."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))


def _demo_broker_class() -> type[Any]:
    """amqtt's broker with two fixes the demo needs (amqtt 0.12).

    * On every connection amqtt walks *all* subscriptions of the broker and sends the
      new client the retained messages matching *anyone's* filter (so an edge would
      receive the other edges' policy snapshots and states); we only let through the
      subscriptions the client itself holds.
    * That walk, and the one that drops a leaving client's subscriptions, iterate over
      the subscription dict while other clients change it ("dictionary changed size
      during iteration", which kills the connecting client's handler when the edges
      all connect at once); the dict now iterates over a snapshot of its keys.
    """
    from amqtt.broker import Broker

    class DemoBroker(Broker):  # type: ignore[misc]
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self._subscriptions = _SnapshotDict()

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            holders = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _qos in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return DemoBroker


async def serve_embedded(port: int, stop: asyncio.Event) -> None:
    """Run an amqtt broker on ``127.0.0.1:port`` until ``stop`` is set."""
    broker = _demo_broker_class()(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    logger.info("embedded broker listening on %s:%d", HOST, port)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m fabrique.demo.broker`` (the embedded broker process)."""
    parser = argparse.ArgumentParser(description="fabrique demo: embedded MQTT broker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_embedded(args.port, stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
