"""Fixtures of the decision benchmark: broker, seeded database, hub process.

Everything here runs in the orchestrating process (``bench/decisions.py``). Each
helper returns an object whose ``stop()`` is idempotent, so the orchestrator can
register it on an :class:`contextlib.ExitStack` and be sure it is cleaned up on
success, error or Ctrl-C. Child processes also get ``PR_SET_PDEATHSIG`` so that they
die with the benchmark even if it is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import getpass
import importlib.util
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from protocol.ids import badge_hash

SITE = "bench"
ZONE = "bench-zone"
MOSQUITTO = "/usr/sbin/mosquitto"
#: Where the built-in launcher lives (used when ``fabrique hub run`` is not available).
HUB_LAUNCHER = Path(__file__).resolve().parent / "_hub_proc.py"
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: deliver SIGTERM to the child when the benchmark dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Proc:
    """A child process we started; ``stop()`` terminates it (then kills it)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's log (stdout and stderr), for error reports."""
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def spawn(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` with its output in ``log``, tied to our lifetime."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            preexec_fn=_die_with_parent,  # runs before exec; we start children from one thread
        )
    return Proc(name, popen, log)


# --------------------------------------------------------------------------- broker


def start_mosquitto(workdir: Path, *, inflight: int = 20) -> tuple[Proc, int]:
    """A private Mosquitto on a free loopback port: TCP_NODELAY, no persistence.

    ``inflight`` is Mosquitto's per-client window of unacknowledged QoS 1 messages it
    sends (its default, 20, is what a stock deployment has; 0 means unlimited).
    """
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        "max_queued_messages 1000000\n"
        f"max_inflight_messages {inflight}\n"
        # Keep our credentials: a privilege drop would clear PR_SET_PDEATHSIG.
        f"user {getpass.getuser()}\n"
        "log_type error\n"
        "log_type warning\n"
    )
    proc = spawn("mosquitto", [MOSQUITTO, "-c", str(conf)], workdir / "mosquitto.log")
    try:
        wait_port(port)
    except TimeoutError:
        proc.stop()
        raise
    return proc, port


# --------------------------------------------------------------------------- database


@dataclass(frozen=True)
class Population:
    """What the database was seeded with, as the load generator needs it."""

    edges: tuple[str, ...]
    machines: tuple[str, ...]
    #: Badge hashes of active members who may use every machine today.
    known_badges: tuple[str, ...]
    site_secret: bytes = field(repr=False)


def edge_id(i: int) -> str:
    return f"e-{i:03d}"


def machine_id(i: int) -> str:
    return f"m-{i:03d}"


def seed_database(
    url: str, *, edges: int, members: int, site_secret: bytes, tz: str = "Europe/Paris"
) -> Population:
    """Create the schema and seed a site where every known badge is granted today.

    One zone open all day today and tomorrow (an ``opening`` exception for every
    audience), one generic machine per edge, ``members`` active members spread over
    the age groups 9-15 (with parental consent), 16-25 and 26+, one badge each.
    """
    from hub.db.engine import make_engine, make_sessionmaker, transaction
    from hub.db.migrate import upgrade
    from hub.db.models import (
        Badge,
        ExceptionKind,
        Machine,
        MachineKind,
        Member,
        MemberStatus,
        Role,
        SlotException,
        Zone,
    )
    from protocol.messages import OfflineRule

    upgrade(url)
    today = datetime.now(ZoneInfo(tz)).date()
    birth_years = (today.year - 12, today.year - 20, today.year - 35)  # 9-15, 16-25, 26+
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            db.add(Zone(id=ZONE, name="Banc d'essai", capacity=None))
            db.flush()
            for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
                db.add(
                    SlotException(
                        zone_id=ZONE,
                        day=day,
                        kind=ExceptionKind.OPENING,
                        start=dtime(0, 0),
                        end=dtime(23, 59, 59),
                        label="Ouverture banc d'essai",
                        age_groups=[],
                        programmes=[],
                        animator_required=False,
                    )
                )
            for i in range(edges):
                db.add(
                    Machine(
                        id=machine_id(i),
                        name=f"Machine {i}",
                        # bench/telemetry_write.py seeds printers, whose telemetry is written.
                        kind=MachineKind(os.environ.get("FABRIQUE_BENCH_MACHINE_KIND", "generic")),
                        zone_id=ZONE,
                        edge_id=edge_id(i),
                        offline_rule=OfflineRule.ALLOW,
                    )
                )
            hashes: list[str] = []
            for i in range(members):
                year = birth_years[i % len(birth_years)]
                minor = i % len(birth_years) == 0
                member = Member(
                    display_name=f"Membre{i} Banc",
                    birth_year=year,
                    birth_month=1 + i % 12,
                    status=MemberStatus.ACTIVE,
                    role=Role.MEMBER,
                    consent_at=date(today.year - 1, 9, 1) if minor else None,
                )
                h = badge_hash(site_secret, f"BE{i:06X}")
                member.badges.append(Badge(hash=h, label="bench"))
                db.add(member)
                hashes.append(h)
    finally:
        engine.dispose()
    return Population(
        edges=tuple(edge_id(i) for i in range(edges)),
        machines=tuple(machine_id(i) for i in range(edges)),
        known_badges=tuple(hashes),
        site_secret=site_secret,
    )


def unknown_badge() -> str:
    """A badge hash no member has (a random 256-bit value)."""
    return secrets.token_hex(32)


# --------------------------------------------------------------------------- hub


def cli_available() -> bool:
    """Whether ``fabrique hub run`` can be used (the CLI module and its script exist)."""
    script = Path(sys.executable).parent / "fabrique"
    try:
        spec = importlib.util.find_spec("fabrique.cli")
    except (ImportError, ValueError):
        spec = None
    return spec is not None and script.exists()


def service_available() -> bool:
    """Whether :class:`hub.service.Hub` exists (needed by the built-in launcher)."""
    try:
        return importlib.util.find_spec("hub.service") is not None
    except (ImportError, ValueError):
        return False


def hub_config(
    workdir: Path, *, db_url: str, mqtt_port: int, extra: dict[str, str] | None = None
) -> Path:
    """Write the hub's TOML configuration (demo mode, our broker and database)."""
    values: dict[str, str | int | bool] = {
        "site": SITE,
        "demo": True,
        "database_url": db_url,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": mqtt_port,
        "mqtt_client_id": f"bench-hub-{uuid.uuid4().hex[:8]}",
        "http_host": "127.0.0.1",
        "http_port": free_port(),
    }
    values.update(extra or {})
    # bench/telemetry_write.py: the hub writes its telemetry there (FABRIQUE_* is not inherited).
    if os.environ.get("FABRIQUE_BENCH_INFLUX_URL"):
        values["influx_url"] = os.environ["FABRIQUE_BENCH_INFLUX_URL"]
        values["influx_bucket"] = "bench"

    def lit(v: str | int | bool) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        try:
            float(v)
        except ValueError:
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return v

    path = workdir / "hub.toml"
    path.write_text("".join(f"{k} = {lit(v)}\n" for k, v in values.items()))
    return path


def start_hub(workdir: Path, config: Path, launcher: str, command: str | None = None) -> Proc:
    """Start the hub as its own OS process: ``fabrique hub run`` or the built-in launcher.

    ``launcher`` is ``cli``, ``module`` or ``auto`` (the CLI when it exists); ``command``,
    when given, replaces both (``{config}`` in it becomes the TOML path). Inherited
    ``FABRIQUE_*`` variables are removed so that only the generated file configures it.
    """
    if command:
        argv = [part.replace("{config}", str(config)) for part in shlex.split(command)]
        launcher = "command"
    elif launcher == "auto":
        launcher = "cli" if cli_available() else "module"
    if launcher == "command":
        pass
    elif launcher == "cli":
        script = str(Path(sys.executable).parent / "fabrique")
        argv = [script, "hub", "run", "--config", str(config)]
    elif launcher == "module":
        if not service_available():
            raise RuntimeError("neither `fabrique hub run` nor hub.service.Hub exists yet")
        argv = [sys.executable, str(HUB_LAUNCHER), str(config)]
    else:
        raise ValueError(f"unknown launcher {launcher!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIQUE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return spawn(f"hub ({launcher})", argv, workdir / "hub.log", env=env)


def wait_hub_online(port: int, hub: Proc, timeout: float = 60.0) -> float:
    """Wait for the retained ``hub/status`` online message; return the seconds it took."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol.errors import PayloadError
    from protocol.messages import HubStatus, decode
    from protocol.topics import Topics

    online: list[bool] = []

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            status = decode(HubStatus, bytes(msg.payload))
        except PayloadError:
            return
        if status.online:
            online.append(True)

    t0 = time.monotonic()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{os.getpid()}")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(Topics(SITE).hub_status(), qos=1)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        while not online:
            if not hub.alive():
                raise RuntimeError(f"the hub exited early:\n{hub.log_tail()}")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the hub was not online after {timeout}s:\n{hub.log_tail()}")
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return time.monotonic() - t0


def now_utc() -> datetime:
    return datetime.now(UTC)
