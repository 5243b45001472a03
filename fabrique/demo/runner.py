"""``fabrique demo``: broker, seeded hub and simulated edges on this machine, in one command.

Order of start (and the reverse order of stop, so nothing is lost on the way out):

1. the broker (Mosquitto if installed, else the embedded one), a child process;
2. OctoPrint with its virtual printer, when an ``octoprint`` executable is found
   (:func:`fabrique.demo.octoprint.find_octoprint`), a child process that serves
   :data:`~fabrique.demo.data.OCTOPRINT_PRINTER`; the other printers are
   simulated (``printer.simulated``), and so is that one without OctoPrint;
3. the store ``.fabrique-demo/hub.db``: migrated and seeded (idempotent);
4. the hub service and API, in this process (uvicorn on a background thread);
5. the edges, once OctoPrint answers: one child process, ``python -m fabrique edge
   run`` with one ``edge.toml`` per demo edge (the real agent, with simulated
   readers, relays and PC locks, the real GRBL driver on a simulated GRBL laser,
   the real OctoPrint follower or a simulated printer) and the demo's visitors
   (:mod:`fabrique.demo.visitors`) badging at the simulated readers; a child so that
   each process reaches paho through exactly one module (DESIGN §5.4).

Then a one-line status (with the printers' progress) is printed every few seconds
until Ctrl-C, SIGTERM or ``--duration``. Stopping ends the sessions (the agents
switch their machines off) and lets their journals drain into the hub before the
hub, OctoPrint and then the broker stop; no child outlives the demo (each is asked
to die with it, ``PR_SET_PDEATHSIG``, see :mod:`fabrique.demo.procs`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
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
from fabrique.demo.broker import (
    BrokerChoice,
    BrokerError,
    RunningBroker,
    free_port,
    start_broker,
)
from fabrique.demo.octoprint import OctoPrintError, OctoPrintInstance, find_octoprint
from fabrique.demo.procs import spawn, terminate
from fabrique.demo.seed import SeedResult, seed_demo
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.models import Role
from hub.edgekeys import EdgeKeys
from hub.main import HubServer, StartupError, migrate
from hub.settings import DEMO_SITE_SECRET, HubSettings
from protocol.files import write_private
from protocol.signing import key_to_text

logger = logging.getLogger(__name__)

Out = Callable[[str], None]

#: How the banner names each demo login's role.
ROLE_NAMES = {
    Role.ADMIN: "admin",
    Role.FABMANAGER: "fabmanager",
    Role.COORDINATOR: "coordination",
    Role.ANIMATOR: "animation",
}


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
    #: Serve one printer with a real OctoPrint when one is installed.
    octoprint: bool = True
    #: Longest wait for OctoPrint to answer before the edges start without it.
    octoprint_timeout_s: float = 90.0


def machine_spec(
    opts: DemoOptions, m: data.DemoMachine, octoprint: OctoPrintInstance | None
) -> dict[str, Any]:
    """One ``[[machines]]`` entry: which device kind plays each part of ``m``.

    Readers, relays and PC locks are simulated; the laser is the real GRBL driver on
    a simulated GRBL behind a latched relay; a printer is followed through the real
    OctoPrint when ``octoprint`` serves it, else simulated at the demo's speed.
    """
    kind = m.kind.value
    spec: dict[str, Any] = {
        "id": m.id,
        "kind": kind,
        "reader": {"kind": data.READER_KIND, "options": {"debounce_s": 0.5}},
    }
    if kind == "gaming_pc":
        spec["pc"] = {"kind": data.PC_LOCK_KIND, "options": {}}
        return spec
    spec["actuator"] = {
        "kind": data.ACTUATOR_KIND,
        "options": {"load_w": data.LOAD_W.get(kind, 0.0), "latch_on_fault": kind == "laser"},
    }
    if kind == "laser":
        spec["laser"] = {"kind": data.LASER_KIND, "options": {"speed": opts.speed}}
    elif kind == "printer" and octoprint is not None and m.id == data.OCTOPRINT_PRINTER:
        options = {"url": octoprint.url, "api_key": octoprint.key, "poll_interval_s": 5.0}
        spec["printer"] = {"kind": "printer.octoprint", "options": options}
    elif kind == "printer":
        spec["printer"] = {"kind": data.SIM_PRINTER_KIND, "options": {"speed": opts.speed}}
    return spec


def edge_configs(
    opts: DemoOptions,
    broker: RunningBroker,
    hub: HubSettings,
    octoprint: OctoPrintInstance | None = None,
) -> dict[str, dict[str, Any]]:
    """Settings of ``fabrique edge run`` for each demo edge (:class:`edge.settings.EdgeSettings`).

    Plain data, validated by the edge process: importing :mod:`edge` here would bring
    a second paho user into the hub's process. The site secret is not written down;
    the child gets it from its environment. Each edge's own key is provisioned as in
    production (the hub's ``edge_keys_dir``, then a 0600 copy for the edge, as
    ``fabrique hub edge-key EDGE --out`` does). Devices are simulated (see
    :func:`machine_spec`) except the OctoPrint that serves one printer, if any.
    """
    configs: dict[str, dict[str, Any]] = {}
    edges_dir = (opts.workdir / "edges").resolve()
    keys = provision_keys(hub)
    for edge_id, machines in data.edges().items():
        specs = [machine_spec(opts, m, octoprint) for m in machines]
        key_file = edges_dir / f"{edge_id}.key"
        write_private(key_file, (key_to_text(keys.provision(edge_id)[0]) + "\n").encode())
        configs[edge_id] = {
            "site": hub.site,
            "edge_id": edge_id,
            "edge_key_file": str(key_file),
            "demo": True,
            "time_scale": opts.speed,
            "tele_interval_s": 2.0,
            "drain_timeout_s": 5.0,
            "mqtt": {"host": broker.host, "port": broker.port},
            "journal": {"path": str(edges_dir / f"{edge_id}.db"), "resend_s": 3.0},
            "offline": {"policy_cache": str(edges_dir / f"{edge_id}.policy.json")},
            "feedback": {"console": False},
            "machines": specs,
        }
    return configs


def provision_keys(hub: HubSettings) -> EdgeKeys:
    """Give every demo edge its own key in the hub's ``edge_keys_dir`` (kept if there)."""
    keys = EdgeKeys(hub.edge_keys_dir)
    for edge_id in data.edges():
        keys.provision(edge_id)
    return keys


def visitor_plan(
    opts: DemoOptions, hub: HubSettings, octoprint: OctoPrintInstance | None = None
) -> dict[str, Any]:
    """Who badges where (see :class:`fabrique.demo.visitors.VisitorPlan`)."""
    machines: dict[str, Any] = {}
    for m in data.MACHINES:
        badges = [
            {"uid": p.uid, "label": p.first_name, "weight": p.uses[m.id]}
            for p in data.PEOPLE
            if m.id in p.uses
        ]
        badges.append({"uid": data.UNKNOWN_BADGE, "label": "Un visiteur", "weight": 0.2})
        machines[m.id] = {"kind": m.kind.value, "badges": badges}
        opener = next((p.uid for p in data.PEOPLE if m.id in p.opens), None)
        if opener is not None:
            machines[m.id]["opener"] = opener
        if octoprint is not None and m.id == data.OCTOPRINT_PRINTER:
            machines[m.id]["octoprint"] = {"url": octoprint.url, "api_key": octoprint.key}
    return {
        "site_secret": DEMO_SITE_SECRET,
        "timezone": hub.timezone,
        "seed": opts.seed,
        "machines": machines,
    }


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the demo's edge files: scalars, tables, arrays of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]", *(f"{kk} = {value(vv)}" for kk, vv in v.items())]
    for k, v in data.items():
        if isinstance(v, list):
            for item in v:
                lines += ["", f"[[{k}]]", *(f"{kk} = {value(vv)}" for kk, vv in item.items())]
    return "\n".join(lines) + "\n"


def hub_settings(opts: DemoOptions, broker: RunningBroker) -> HubSettings:
    """The demo hub: demo secrets, SQLite under the work directory, the demo broker."""
    return HubSettings(
        demo=True,
        site="demo",
        site_name="La Fabrique (démo)",
        database_url=f"sqlite:///{(opts.workdir / 'hub.db').resolve()}",
        edge_keys_dir=(opts.workdir / "edge-keys").resolve(),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username=None,
        mqtt_password=None,
        mqtt_tls=False,
        http_host="127.0.0.1",
        http_port=opts.port,
        demo_time_scale=max(1.0, opts.speed),  # the edges' accelerated clocks meter ×speed
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
            # Still one thread here: OctoPrint can be asked to die with us (pdeathsig).
            octoprint = start_octoprint(opts)
            try:
                _run_with_broker(opts, broker, octoprint, stop, out)
            finally:
                if octoprint is not None:
                    octoprint.stop()
        finally:
            broker.stop()
    out("Démo arrêtée.")


def start_octoprint(opts: DemoOptions) -> OctoPrintInstance | None:
    """Launch OctoPrint for :data:`~fabrique.demo.data.OCTOPRINT_PRINTER` if one is found.

    Its basedir (``octoprint/`` in the work directory, user and API key included) is
    kept between runs. Returns ``None`` (the printer is then simulated) when no
    ``octoprint`` is found or it cannot be prepared; does not wait for it to answer.
    """
    exe = find_octoprint() if opts.octoprint else None
    if exe is None:
        return None
    instance = OctoPrintInstance(exe, (opts.workdir / "octoprint").resolve(), free_port())
    try:
        instance.prepare()
        instance.launch(pdeathsig=True)
    except (OctoPrintError, OSError) as err:
        logger.warning("OctoPrint cannot be used (%s): the printer is simulated", err)
        instance.stop()
        return None
    return instance


def _run_with_broker(
    opts: DemoOptions,
    broker: RunningBroker,
    octoprint: OctoPrintInstance | None,
    stop: threading.Event,
    out: Out,
) -> None:
    settings = hub_settings(opts, broker)
    try:
        seeded = _seed(settings)
        provision_keys(settings)  # before the hub signs anything with them
        # Snapshots compiled on a thread: the demo site is tiny, and a process pool's
        # workers would outlive a demo killed with SIGKILL (they do not die with it).
        server = HubServer(settings, run_migrations=False, snapshot_workers=0)
        server.start()
    except StartupError as err:
        raise DemoError(f"le hub n'a pas pu démarrer : {err}") from err
    try:
        _banner(opts, broker, seeded, server, out)
        octoprint = _wait_for_octoprint(opts, octoprint, stop, out)
        configs = edge_configs(opts, broker, settings, octoprint)
        (opts.workdir / "edges").mkdir(parents=True, exist_ok=True)
        paths = []
        for edge_id, config in configs.items():
            path = opts.workdir / "edges" / f"{edge_id}.toml"
            path.write_text(to_toml(config), encoding="utf-8")
            paths.append(path)
        plan = opts.workdir / "edges" / "visitors.json"
        plan_data = visitor_plan(opts, settings, octoprint)
        plan.write_text(json.dumps(plan_data, ensure_ascii=False), encoding="utf-8")
        _banner_edges(opts, configs, octoprint, out)
        edges = _start_edges(opts, paths, plan)
        try:
            _watch(opts, server, edges, stop, out)
        finally:
            out("Arrêt : les bornes terminent leurs sessions…")
            terminate(edges, "edges", timeout=30)
    finally:
        server.stop()


def _start_edges(opts: DemoOptions, configs: list[Path], plan: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "fabrique", "edge", "run"]
    for config in configs:
        argv += ["--config", str(config)]
    argv += ["--demo-visitors", str(plan), "--parent-pid", str(os.getpid())]
    if not opts.narrate:
        argv.append("--quiet")
    env = {**os.environ, "FABRIQUE_SITE_SECRET": DEMO_SITE_SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("FABRIQUE_EDGE_SITE_SECRET", None)
    with (opts.workdir / "edges.log").open("ab") as log:
        return spawn(argv, stderr=log, env=env)


def _wait_for_octoprint(
    opts: DemoOptions, octoprint: OctoPrintInstance | None, stop: threading.Event, out: Out
) -> OctoPrintInstance | None:
    """Wait until OctoPrint answers; on failure stop it (the printer is then simulated)."""
    if octoprint is None:
        return None
    out(f"  OctoPrint : démarrage sur {octoprint.url} (imprimante virtuelle)…")
    try:
        octoprint.wait_ready(opts.octoprint_timeout_s, stop=stop)
    except OctoPrintError as err:
        logger.warning("OctoPrint did not start: %s", err)
        out("  OctoPrint n'a pas démarré : l'imprimante sera simulée (voir demo.log).")
        octoprint.stop()
        return None
    return octoprint


def fabrique_command() -> str:
    """How to run ``fabrique`` from a shell: its name when on the PATH, else its path
    (``scripts/demo`` installs it into ``.venv/bin``, which is not on the PATH)."""
    found = shutil.which("fabrique")
    here = Path(sys.executable).parent / "fabrique"
    if found is not None and Path(found).resolve() == here.resolve():
        return "fabrique"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def _banner(
    opts: DemoOptions,
    broker: RunningBroker,
    seeded: SeedResult,
    server: HubServer,
    out: Out,
) -> None:
    start, end = seeded.opening
    out("fabrique — démo")
    out(f"  Broker : {broker.label} sur {broker.host}:{broker.port}")
    out(
        f"  Base : {opts.workdir / 'hub.db'} — {len(data.PEOPLE)} membres, "
        f"{len(data.MACHINES)} machines, créneau démo de {start:%H:%M} à {end:%H:%M}"
    )
    out(f"Plancher en direct : {server.url}/plancher — une connexion par rôle :")
    for username, role, password in seeded.logins:
        name = ROLE_NAMES.get(role, role)
        out(f"  {name:<13} identifiant {username:<13} mot de passe {password}")
    kiosk = f"{server.url}/kiosk/{data.MACHINES[0].id}"
    out(f"  Kiosque d'une machine : {kiosk} (à appairer dans /kiosques)")
    out(f"  API : {server.url}/docs (admin)")
    out(f"  Commande fabrique : {fabrique_command()} (pas sur le PATH si la démo l'a installée)")
    where = server.hub.settings.influx_target
    if where is None:
        out("  Télémétrie : désactivée (FABRIQUE_INFLUX_URL=http://… pour écrire dans InfluxDB)")
    else:
        out(
            f"  Télémétrie : InfluxDB {where[0]} (bucket {where[3]}) ; tableaux de bord : "
            "fabrique dashboards push, voir docs/telemetry.md"
        )


def _banner_edges(
    opts: DemoOptions,
    configs: dict[str, dict[str, Any]],
    octoprint: OctoPrintInstance | None,
    out: Out,
) -> None:
    machines = sum(len(c["machines"]) for c in configs.values())
    out(
        f"  Bornes (agent réel, appareils simulés) : {len(configs)} bornes, {machines} machines, "
        f"vitesse ×{opts.speed:g} (journal : {opts.workdir / 'edges.log'})"
    )
    for machine in data.PRINTERS:
        if octoprint is not None and machine == data.OCTOPRINT_PRINTER:
            out(f"  {machine} : OctoPrint réel (imprimante virtuelle) sur {octoprint.url}")
        else:
            out(f"  {machine} : imprimante simulée")
    for machine in data.LASER:
        out(f"  {machine} : pilote GRBL réel, contrôleur GRBL 1.1 simulé sur un pty")
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
            out(f"Les bornes se sont arrêtées (code {edges.returncode}) : voir edges.log")
            return
        now = datetime.now(server.hub.settings.tz)
        out(f"{now:%H:%M:%S}  ── {server.hub.status_line()} · {printers_line(server)}")
        if deadline is not None and time.monotonic() >= deadline:
            return


#: OctoPrint's state texts in the status line.
_PRINTER_STATES = {
    "Operational": "prête",
    "Printing": "impression",
    "Paused": "en pause",
    "Pausing": "en pause",
    "Cancelling": "annulation",
    "Finishing": "finition",
    "Offline": "hors ligne",
}


def printers_line(server: HubServer) -> str:
    """The printers' state, progress and nozzle temperature, from their telemetry."""
    latest = {
        machine: tele.values
        for (_edge, machine), tele in server.hub.live.latest_telemetry().items()
    }
    parts = []
    for machine in data.PRINTERS:
        values = latest.get(machine)
        if not values:
            parts.append(f"{machine} —")
            continue
        state = str(values.get("state", "?"))
        text = _PRINTER_STATES.get(state, state)
        progress = values.get("progress")
        if state in ("Printing", "Paused", "Pausing") and isinstance(progress, int | float):
            text += f" {progress:.0f} %"
        nozzle = values.get("nozzle_c")
        if isinstance(nozzle, int | float):
            text += f" {nozzle:.0f} °C"
        parts.append(f"{machine} {text}")
    return "imprimantes : " + ", ".join(parts)
