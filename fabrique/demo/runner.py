"""``fabrique demo``: broker, seeded hub and simulated edges on this machine, in one command.

Order of start (and the reverse order of stop, so nothing is lost on the way out):

1. the broker (Mosquitto if installed, else the embedded one), a child process;
2. the store ``.fabrique-demo/hub.db``: migrated and seeded (idempotent);
3. the hub service and API, in this process (uvicorn on a background thread);
4. the simulated edges, a child process (``python -m fabrique edge sim``) so that each
   process reaches paho through exactly one module (DESIGN §5.4).

Then a one-line status is printed every few seconds until Ctrl-C, SIGTERM or
``--duration``. Stopping ends the simulated sessions and lets their journals drain
into the hub before the hub and then the broker stop; no child outlives the demo.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from fabrique.demo import data
from fabrique.demo.broker import BrokerChoice, BrokerError, RunningBroker, start_broker
from fabrique.demo.procs import spawn, terminate
from fabrique.demo.seed import SeedResult, seed_demo
from hub.db.engine import make_engine, make_sessionmaker
from hub.main import HubServer, StartupError, migrate
from hub.settings import DEMO_SITE_SECRET, HubSettings

logger = logging.getLogger(__name__)

Out = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot run; the message is French, for the console."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``fabrique demo`` was asked for."""

    port: int = 8000
    duration: float | None = None
    broker: BrokerChoice = "auto"
    speed: float = 10.0
    workdir: Path = Path(".fabrique-demo")
    status_every_s: float = 5.0
    narrate: bool = True
    seed: int | None = None


def sim_config(opts: DemoOptions, broker: RunningBroker, hub: HubSettings) -> dict[str, Any]:
    """Settings of ``fabrique edge sim`` for the demo site (see :class:`edge.sim.SimSettings`).

    Plain data, validated by the simulator process: importing :mod:`edge.sim` here
    would bring a second paho user into the hub's process. The site secret is not
    written down; the child gets it from its environment.
    """
    edges = []
    for edge_id, machines in data.edges().items():
        sim_machines = []
        for m in machines:
            badges = [
                {"uid": p.uid, "label": p.first_name, "weight": p.uses[m.id]}
                for p in data.PEOPLE
                if m.id in p.uses
            ]
            badges.append({"uid": data.UNKNOWN_BADGE, "label": "Badge inconnu", "weight": 0.2})
            sim_machines.append({"id": m.id, "kind": m.kind, "badges": badges})
        edges.append({"id": edge_id, "machines": sim_machines})
    return {
        "site": hub.site,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "timezone": hub.timezone,
        "speed": opts.speed,
        "state_dir": str((opts.workdir / "edges").resolve()),
        "seed": opts.seed,
        "edges": edges,
    }


def hub_settings(opts: DemoOptions, broker: RunningBroker) -> HubSettings:
    """The demo hub: demo secrets, SQLite under the work directory, the demo broker."""
    return HubSettings(
        demo=True,
        site="demo",
        site_name="La Fabrique (démo)",
        database_url=f"sqlite:///{(opts.workdir / 'hub.db').resolve()}",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username=None,
        mqtt_password=None,
        mqtt_tls=False,
        http_host="127.0.0.1",
        http_port=opts.port,
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of raising, for an orderly shutdown."""

    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _seed(settings: HubSettings) -> SeedResult:
    migrate(settings)
    engine = make_engine(settings.database_url)
    try:
        return seed_demo(make_sessionmaker(engine), settings)
    finally:
        engine.dispose()


def run_demo(opts: DemoOptions, out: Out = print) -> None:
    """Run the demo until Ctrl-C, SIGTERM or ``opts.duration`` seconds.

    Raises:
        DemoError: the HTTP port is taken, or the broker, hub or edges cannot start.
    """
    if not _port_free(opts.port):
        raise DemoError(f"le port {opts.port} est déjà utilisé : essayez --port {opts.port + 1}")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            broker = start_broker(opts.broker, opts.workdir)
        except BrokerError as err:
            raise DemoError(f"impossible de démarrer le broker MQTT : {err}") from err
        try:
            _run_with_broker(opts, broker, stop, out)
        finally:
            broker.stop()
    out("Démo arrêtée.")


def _run_with_broker(
    opts: DemoOptions, broker: RunningBroker, stop: threading.Event, out: Out
) -> None:
    settings = hub_settings(opts, broker)
    try:
        seeded = _seed(settings)
        # Snapshots compiled on a thread: the demo site is tiny, and a process pool's
        # workers would outlive a demo killed with SIGKILL (they do not die with it).
        server = HubServer(settings, run_migrations=False, snapshot_workers=0)
        server.start()
    except StartupError as err:
        raise DemoError(f"le hub n'a pas pu démarrer : {err}") from err
    try:
        sim_path = opts.workdir / "edges.json"
        sim = sim_config(opts, broker, settings)
        sim_path.write_text(json.dumps(sim, indent=2, ensure_ascii=False), encoding="utf-8")
        _banner(opts, broker, seeded, server, sim, out)
        edges = _start_edges(opts, sim_path)
        try:
            _watch(opts, server, edges, stop, out)
        finally:
            out("Arrêt : les bornes simulées terminent leurs sessions…")
            terminate(edges, "simulated edges", timeout=20)
    finally:
        server.stop()


def _start_edges(opts: DemoOptions, config: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "fabrique",
        "edge",
        "sim",
        "--config",
        str(config),
        "--parent-pid",
        str(os.getpid()),
    ]
    if not opts.narrate:
        argv.append("--quiet")
    env = {**os.environ, "FABRIQUE_SITE_SECRET": DEMO_SITE_SECRET, "PYTHONUNBUFFERED": "1"}
    with (opts.workdir / "edges.log").open("ab") as log:
        return spawn(argv, stderr=log, env=env)


def _banner(
    opts: DemoOptions,
    broker: RunningBroker,
    seeded: SeedResult,
    server: HubServer,
    sim: dict[str, Any],
    out: Out,
) -> None:
    start, end = seeded.opening
    machines = sum(len(e["machines"]) for e in sim["edges"])
    out("fabrique — démo")
    out(f"  Broker : {broker.label} sur {broker.host}:{broker.port}")
    out(
        f"  Base : {opts.workdir / 'hub.db'} — {len(data.PEOPLE)} membres, "
        f"{len(data.MACHINES)} machines, créneau démo de {start:%H:%M} à {end:%H:%M}"
    )
    out(f"API : {server.url}/docs — identifiant {seeded.admin_username} / {seeded.admin_password}")
    out(
        f"  Bornes simulées : {len(sim['edges'])} bornes, {machines} machines, "
        f"vitesse ×{opts.speed:g} (journal : {opts.workdir / 'edges.log'})"
    )
    out("  Ctrl-C pour arrêter." if opts.duration is None else f"  Arrêt dans {opts.duration:g} s.")


def _watch(
    opts: DemoOptions,
    server: HubServer,
    edges: subprocess.Popen[bytes],
    stop: threading.Event,
    out: Out,
) -> None:
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    while True:
        wait = opts.status_every_s
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if stop.wait(wait):
            return
        if edges.poll() is not None:
            out(f"Les bornes simulées se sont arrêtées (code {edges.returncode}) : voir edges.log")
            return
        now = datetime.now(server.hub.settings.tz)
        out(f"{now:%H:%M:%S}  ── {server.hub.status_line()}")
        if deadline is not None and time.monotonic() >= deadline:
            return
