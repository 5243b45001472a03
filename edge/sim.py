"""Simulated edges: badge readers and machines without any device, for the demo.

One process runs many simulated edges, one :class:`~edge.link.EdgeLink` each. Every
machine has a pool of demo badges; from time to time (a Poisson process, scaled by
``speed``) somebody presents a badge at a free machine and the edge sends an
:class:`~protocol.messages.AccessRequest` (the UID hashed with the site secret).

On a grant the edge journals ``session_started``, a ``usage_tick`` every simulated
minute and ``session_ended`` (``badge_out`` when the person leaves, ``time_up`` at the
granted end, ``job_done`` when a print finishes, ``break`` at a forced break). The
journal (:class:`SimJournal`) numbers events, keeps them until the hub's
``ack_through`` covers them, resends them, and honours ``replay_from``. It is kept in
memory and, when a state directory is given, mirrored to a small JSON file so that
epochs and sequence numbers keep growing across runs against the same hub database.

``speed`` compresses time: with ``speed=30`` a simulated minute lasts two seconds.
Session durations (``elapsed_s``, ``duration_s``) are simulated seconds, so quotas
are used up ``speed`` times faster, which is the point of a demo.

The real edge agent (edge-agent issue) replaces this module's decision logic with
the real controller driving simulated readers and machines; the link stays.

Threads: paho calls :class:`_Inbox` on its network threads; everything else runs on
the thread that called :meth:`Simulator.run`, so the simulation needs no locks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import threading
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from edge.link import EdgeLink, LinkHandler, LinkSettings
from protocol.errors import PayloadError
from protocol.ids import Ident, badge_hash, normalise_uid
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    Availability,
    EndReason,
    HubStatus,
    JournalCommand,
    MachineAction,
    MachineCommand,
    MachineState,
    PolicySnapshot,
    SessionAction,
    SessionCommand,
    SessionEnded,
    SessionEndedBody,
    SessionStarted,
    SessionStartedBody,
    Telemetry,
    UsageTick,
    UsageTickBody,
    decode_event,
    encode,
    utcnow,
)
from protocol.signing import policy_key, verify_snapshot

logger = logging.getLogger(__name__)

SIM_VERSION = "sim-0.1"
SimKind = Literal["printer_3d", "laser", "gaming_pc", "generic"]
Narrator = Callable[[str], None]

#: Simulated minutes a person stays, per machine kind (uniform between the bounds).
STAY_MIN: dict[str, tuple[float, float]] = {
    "printer_3d": (6.0, 40.0),
    "laser": (3.0, 20.0),
    "gaming_pc": (8.0, 50.0),
    "generic": (5.0, 30.0),
}

#: Plain-French wording of end reasons, for the narration.
END_TEXT: dict[EndReason, str] = {
    EndReason.BADGE_OUT: "départ (badge)",
    EndReason.TIME_UP: "temps écoulé",
    EndReason.JOB_DONE: "impression terminée",
    EndReason.BREAK: "pause obligatoire",
    EndReason.STAFF: "arrêt par l'équipe",
    EndReason.EDGE_RESTART: "arrêt du simulateur",
    EndReason.REVOKED: "accès retiré",
}


class SimConfigError(ValueError):
    """The simulator's configuration file is missing or unreadable."""


# --------------------------------------------------------------------------- settings


class SimBadge(BaseModel):
    """A demo badge: its raw UID (never sent), a label for the narration, a weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    label: str = ""
    weight: float = Field(default=1.0, gt=0)

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return normalise_uid(value)


class SimMachine(BaseModel):
    """A simulated machine and the badges that may be presented at it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    kind: SimKind = "generic"
    badges: tuple[SimBadge, ...] = Field(min_length=1)


class SimEdge(BaseModel):
    """A simulated edge (one Raspberry Pi or gaming PC) and its machines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    machines: tuple[SimMachine, ...] = Field(min_length=1)


class SimSettings(BaseModel):
    """Everything ``fabrique edge sim`` needs; read from a TOML or JSON file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Ident = "demo"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: The site's time zone, for the times the narration shows.
    timezone: str = "Europe/Paris"
    #: Keys badge hashes and policy signatures; the same value as the hub's.
    site_secret: SecretStr = Field(min_length=16)
    #: Time compression: simulated seconds per real second.
    speed: float = Field(default=1.0, gt=0, le=1000)
    #: Mean simulated minutes between two badges at a free machine.
    mean_arrival_min: float = Field(default=8.0, gt=0)
    #: Real seconds to wait for the hub's answer before giving up on a request.
    request_timeout_s: float = Field(default=3.0, gt=0)
    #: Real seconds without journal progress before unacknowledged events are resent.
    resend_s: float = Field(default=3.0, gt=0)
    #: Real seconds between telemetry messages of a machine.
    tele_interval_s: float = Field(default=5.0, gt=0)
    #: Real seconds to wait, when stopping, for the hub to acknowledge the journal.
    drain_timeout_s: float = Field(default=5.0, ge=0)
    #: Where each edge's journal state (epoch, seq, unacknowledged events) is kept.
    state_dir: Path | None = None
    #: Random seed (None: different every run).
    seed: int | None = None
    edges: tuple[SimEdge, ...] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value

    @field_validator("edges")
    @classmethod
    def _unique(cls, edges: tuple[SimEdge, ...]) -> tuple[SimEdge, ...]:
        edge_ids = [e.id for e in edges]
        machine_ids = [m.id for e in edges for m in e.machines]
        for what, ids in (("edge", edge_ids), ("machine", machine_ids)):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} ids: {', '.join(dupes)}")
        return edges


def load_sim_settings(path: Path, **overrides: Any) -> SimSettings:
    """Read simulator settings from a ``.toml`` or ``.json`` file, then apply overrides.

    Raises:
        SimConfigError: the file is missing or is not valid TOML/JSON.
        pydantic.ValidationError: the content does not describe valid settings.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SimConfigError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SimConfigError(f"{path} is not valid {kind}: {err}") from err
    if not isinstance(data, dict):
        raise SimConfigError(f"{path} must hold an object")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return SimSettings.model_validate(data)


# --------------------------------------------------------------------------- journal

Event = SessionStarted | UsageTick | SessionEnded


@dataclass(slots=True)
class _OpenSession:
    machine: str
    elapsed_s: float


class SimJournal:
    """An edge's journal: numbered events kept until acknowledged, optionally on disk.

    Also keeps the connection epoch and the sessions still open, so that a simulator
    killed mid-session closes them with ``edge_restart`` when it starts again
    (DESIGN §3: a crash loses at most one minute of an open session).

    Thread-safe: the link takes epochs on paho's thread.
    """

    def __init__(self, edge: str, path: Path | None) -> None:
        self.edge = edge
        self._path = path
        self._lock = threading.Lock()
        self.epoch = 0
        self.next_seq = 1
        self.acked_through = 0
        self._pending: dict[int, Event] = {}
        self._open: dict[str, _OpenSession] = {}

    def load(self) -> list[tuple[str, _OpenSession]]:
        """Read the state file if any; return the sessions a previous run left open."""
        if self._path is None or not self._path.exists():
            return []
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            self.epoch = int(raw["epoch"])
            self.next_seq = int(raw["next_seq"])
            self.acked_through = int(raw.get("acked_through", self.next_seq - 1))
            for text in raw.get("pending", []):
                event = decode_event(text.encode())
                if isinstance(event, SessionStarted | UsageTick | SessionEnded):
                    self._pending[event.seq] = event
            self._open = {
                sid: _OpenSession(str(v["machine"]), float(v["elapsed_s"]))
                for sid, v in raw.get("open", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, PayloadError) as err:
            logger.error("edge %s: unreadable journal state %s (%s)", self.edge, self._path, err)
            # Never reuse sequence numbers: jump far ahead rather than start again at 1.
            self.next_seq = max(self.next_seq, int(time.time()))
            return []
        return list(self._open.items())

    def next_epoch(self) -> int:
        """The epoch of the next connection (persisted before it is used)."""
        with self._lock:
            self.epoch += 1
            self._save()
            return self.epoch

    def append(self, make: Callable[[int, str, int], Event]) -> Event:
        """Number a new event (``make(seq, event_id, epoch)``) and keep it until acked."""
        with self._lock:
            seq = self.next_seq
            event = make(seq, uuid.uuid4().hex, self.epoch)
            self.next_seq += 1
            self._pending[seq] = event
            body = event.body
            if isinstance(event, SessionStarted):
                self._open[body.session_id] = _OpenSession(body.machine, 0.0)
            elif isinstance(body, UsageTickBody):
                if body.session_id in self._open:
                    self._open[body.session_id].elapsed_s = body.elapsed_s
            else:
                self._open.pop(body.session_id, None)
            self._save()
            return event

    def ack(self, through: int) -> int:
        """Forget events up to ``through``; return how many were dropped."""
        with self._lock:
            done = [s for s in self._pending if s <= through]
            for s in done:
                del self._pending[s]
            self.acked_through = max(self.acked_through, through)
            if done:
                self._save()
            return len(done)

    def unacked(self, from_seq: int = 1) -> list[Event]:
        """Events not yet acknowledged with ``seq >= from_seq``, in order."""
        with self._lock:
            return [self._pending[s] for s in sorted(self._pending) if s >= from_seq]

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def _save(self) -> None:
        if self._path is None:
            return
        state = {
            "epoch": self.epoch,
            "next_seq": self.next_seq,
            "acked_through": self.acked_through,
            "pending": [encode(self._pending[s]).decode() for s in sorted(self._pending)],
            "open": {
                sid: {"machine": o.machine, "elapsed_s": o.elapsed_s}
                for sid, o in self._open.items()
            },
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self._path)


# --------------------------------------------------------------------------- runtime


@dataclass(slots=True)
class _Session:
    session_id: str
    badge: SimBadge
    started_mono: float
    started_at: datetime
    ends_at: datetime
    #: Simulated seconds the person means to stay (or the print lasts).
    planned_s: float
    play_limit_s: float | None
    last_minute: int = 0
    overtime_told: bool = False


@dataclass(slots=True)
class _Pending:
    req_id: str
    badge: SimBadge
    sent_mono: float


@dataclass(slots=True)
class _Machine:
    cfg: SimMachine
    availability: Availability = Availability.FREE
    next_arrival: float = 0.0
    next_tele: float = 0.0
    request: _Pending | None = None
    session: _Session | None = None
    paused: bool = False


@dataclass(slots=True)
class _Edge:
    cfg: SimEdge
    link: EdgeLink
    journal: SimJournal
    machines: dict[str, _Machine]
    last_progress: float = 0.0
    seen_commands: deque[str] = field(default_factory=lambda: deque(maxlen=256))
    policy_version: int = 0
    hub_online: bool = False


_UP = "link_up"
_DOWN = "link_down"


class _Inbox(LinkHandler):
    """Queues what one edge's link hears for the simulation thread."""

    def __init__(self, edge: str, inbox: queue.Queue[tuple[str, object]]) -> None:
        self._edge = edge
        self._inbox = inbox

    def on_link_up(self) -> None:
        self._inbox.put((self._edge, _UP))

    def on_link_down(self) -> None:
        self._inbox.put((self._edge, _DOWN))

    def on_decision(self, decision: AccessDecision) -> None:
        self._inbox.put((self._edge, decision))

    def on_journal(self, command: JournalCommand) -> None:
        self._inbox.put((self._edge, command))

    def on_session_command(self, command: SessionCommand) -> None:
        self._inbox.put((self._edge, command))

    def on_machine_command(self, command: MachineCommand) -> None:
        self._inbox.put((self._edge, command))

    def on_policy(self, snapshot: PolicySnapshot) -> None:
        self._inbox.put((self._edge, snapshot))

    def on_hub_status(self, status: HubStatus) -> None:
        self._inbox.put((self._edge, status))


class Simulator:
    """Runs simulated edges until told to stop; see the module docstring.

    Args:
        settings: validated simulator settings.
        narrate: receives one plain-French line per thing a visitor would notice
            (badge granted or refused, session over); None for silence.
        clock: monotonic clock (seconds), injectable for tests.
    """

    def __init__(
        self,
        settings: SimSettings,
        *,
        narrate: Narrator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._narrate = narrate
        self._clock = clock
        self._rng = random.Random(settings.seed)
        self._secret = settings.site_secret.get_secret_value().encode()
        self._inbox: queue.Queue[tuple[str, object]] = queue.Queue()
        self._edges: dict[str, _Edge] = {}
        self._busy_badges: set[str] = set()
        self._stopping = False
        self._tz = ZoneInfo(settings.timezone)
        self.decisions = 0
        self.sessions_started = 0
        self.sessions_ended = 0

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event) -> None:
        """Connect every edge, simulate until ``stop`` is set, then shut down cleanly.

        Shutting down ends open sessions (``edge_restart``: the machines switch off
        with the agent), waits up to ``drain_timeout_s`` for the hub to acknowledge
        the journal, marks machines offline and says goodbye on every link.
        """
        self._start()
        try:
            while not stop.is_set():
                self._step(timeout=0.1)
        finally:
            self._shutdown()

    def _start(self) -> None:
        s = self._settings
        if s.state_dir is not None:
            s.state_dir.mkdir(parents=True, exist_ok=True)
        now = self._clock()
        for edge_cfg in s.edges:
            path = s.state_dir / f"{edge_cfg.id}.json" if s.state_dir else None
            journal = SimJournal(edge_cfg.id, path)
            left_open = journal.load()
            link = EdgeLink(
                LinkSettings(
                    site=s.site,
                    edge=edge_cfg.id,
                    host=s.mqtt_host,
                    port=s.mqtt_port,
                    username=s.mqtt_username,
                    password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
                    protocol=s.mqtt_protocol,
                    version=SIM_VERSION,
                    machines=tuple(m.id for m in edge_cfg.machines),
                ),
                _Inbox(edge_cfg.id, self._inbox),
                epoch_source=journal.next_epoch,
            )
            machines = {
                m.id: _Machine(cfg=m, next_arrival=now + self._first_arrival())
                for m in edge_cfg.machines
            }
            edge = _Edge(cfg=edge_cfg, link=link, journal=journal, machines=machines)
            self._edges[edge_cfg.id] = edge
            for session_id, open_session in left_open:
                logger.warning(
                    "edge %s: closing session %s left open by a previous run",
                    edge_cfg.id,
                    session_id,
                )
                self._journal_end(
                    edge,
                    open_session.machine,
                    session_id,
                    EndReason.EDGE_RESTART,
                    open_session.elapsed_s,
                )
        for edge in self._edges.values():
            edge.link.start()
        logger.info(
            "simulating %d edges, %d machines at speed %g",
            len(self._edges),
            sum(len(e.machines) for e in self._edges.values()),
            s.speed,
        )

    def _shutdown(self) -> None:
        # From here on no new session starts: late grants are dropped, unanswered
        # requests forgotten, open sessions ended.
        self._stopping = True
        for edge in self._edges.values():
            for machine in edge.machines.values():
                if machine.session is not None:
                    self._end(edge, machine, EndReason.EDGE_RESTART)
        deadline = self._clock() + self._settings.drain_timeout_s
        while self._clock() < deadline and any(
            e.journal.pending_count and e.link.is_up for e in self._edges.values()
        ):
            self._drain_inbox(timeout=0.05)
            self._resend_if_stalled(self._clock())
        for edge in self._edges.values():
            left = edge.journal.pending_count
            if left:
                logger.warning("edge %s: %d events not acknowledged at exit", edge.cfg.id, left)
            for machine in edge.machines.values():
                machine.availability = Availability.OFFLINE
                self._publish_state(edge, machine)
            edge.link.stop()
        logger.info("simulator stopped")

    # ------------------------------------------------------------------ loop

    def _step(self, timeout: float) -> None:
        self._drain_inbox(timeout)
        now = self._clock()
        for edge in self._edges.values():
            for machine in edge.machines.values():
                self._tick_machine(edge, machine, now)
        self._resend_if_stalled(now)

    def _drain_inbox(self, timeout: float) -> None:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            edge_id, message = item
            edge = self._edges.get(edge_id)
            if edge is not None:
                self._handle(edge, message)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, edge: _Edge, message: object) -> None:
        match message:
            case str() if message == _UP:
                for machine in edge.machines.values():
                    self._publish_state(edge, machine)
                self._resend(edge, 1)
            case str() if message == _DOWN:
                pass
            case AccessDecision():
                self._on_decision(edge, message)
            case JournalCommand():
                self._on_journal(edge, message)
            case SessionCommand():
                self._on_session_command(edge, message)
            case MachineCommand():
                self._on_machine_command(edge, message)
            case PolicySnapshot():
                self._on_policy(edge, message)
            case HubStatus():
                was_online, edge.hub_online = edge.hub_online, message.online
                if message.online and not was_online:
                    self._resend(edge, 1)  # the hub is back: do not wait for the stall timer
            case _:
                logger.debug("edge %s: ignored %r", edge.cfg.id, message)

    def _tick_machine(self, edge: _Edge, machine: _Machine, now: float) -> None:
        mid = machine.cfg.id
        pending = machine.request
        if pending is not None and now - pending.sent_mono > self._settings.request_timeout_s:
            logger.warning("edge %s: no answer from the hub for %s", edge.cfg.id, pending.req_id)
            self._say(mid, f"{pending.badge.label or 'badge'} : pas de réponse du hub")
            machine.request = None
            self._busy_badges.discard(pending.badge.uid)
            machine.next_arrival = now + self._interarrival()
        session = machine.session
        if session is not None:
            self._tick_session(edge, machine, session, now)
        elif (
            machine.availability is Availability.FREE
            and machine.request is None
            and now >= machine.next_arrival
        ):
            self._present_badge(edge, machine, now)
        if now >= machine.next_tele:
            machine.next_tele = now + self._settings.tele_interval_s
            self._publish_tele(edge, machine, now)

    def _tick_session(self, edge: _Edge, machine: _Machine, session: _Session, now: float) -> None:
        elapsed = (now - session.started_mono) * self._settings.speed
        while elapsed >= (session.last_minute + 1) * 60:
            session.last_minute += 1
            self._journal_tick(edge, machine, session, session.last_minute * 60.0)
        sim_now = session.started_at + timedelta(seconds=elapsed)
        printing = machine.cfg.kind == "printer_3d"
        if elapsed >= session.planned_s:
            reason = EndReason.JOB_DONE if printing else EndReason.BADGE_OUT
            if not printing and sim_now >= session.ends_at:
                reason = EndReason.TIME_UP
            self._end(edge, machine, reason, now)
        elif sim_now >= session.ends_at:
            if printing:
                # DESIGN §4: a printer is never cut while a job runs.
                if not session.overtime_told:
                    session.overtime_told = True
                    self._say(machine.cfg.id, "fin du temps accordé, l'impression continue")
            else:
                self._end(edge, machine, EndReason.TIME_UP, now)
        elif session.play_limit_s is not None and elapsed >= session.play_limit_s:
            self._end(edge, machine, EndReason.BREAK, now)

    # ------------------------------------------------------------------ access

    def _present_badge(self, edge: _Edge, machine: _Machine, now: float) -> None:
        badges = [b for b in machine.cfg.badges if b.uid not in self._busy_badges]
        if not badges or not edge.link.is_up:
            machine.next_arrival = now + self._interarrival()
            return
        badge = self._rng.choices(badges, weights=[b.weight for b in badges])[0]
        req_id = uuid.uuid4().hex
        request = AccessRequest(
            req_id=req_id,
            edge=edge.cfg.id,
            machine=machine.cfg.id,
            badge=badge_hash(self._secret, badge.uid),
            ts=utcnow(),
        )
        if edge.link.request_access(request):
            machine.request = _Pending(req_id, badge, now)
            self._busy_badges.add(badge.uid)
            logger.debug("edge %s: %s badged at %s", edge.cfg.id, badge.label, machine.cfg.id)
        else:
            machine.next_arrival = now + self._interarrival()

    def _on_decision(self, edge: _Edge, decision: AccessDecision) -> None:
        machine = edge.machines.get(decision.machine)
        pending = machine.request if machine else None
        if machine is None or pending is None or pending.req_id != decision.req_id:
            logger.info("edge %s: decision for unknown request %s", edge.cfg.id, decision.req_id)
            return
        now = self._clock()
        machine.request = None
        self.decisions += 1
        label = pending.badge.label or decision.first_name or "badge"
        if self._stopping:
            logger.info("edge %s: decision %s ignored while stopping", edge.cfg.id, decision.req_id)
            self._busy_badges.discard(pending.badge.uid)
            return
        if utcnow() > decision.not_after:
            logger.warning("edge %s: decision %s arrived too late", edge.cfg.id, decision.req_id)
            self._busy_badges.discard(pending.badge.uid)
            machine.next_arrival = now + self._interarrival()
            return
        if not decision.granted:
            logger.info(
                "edge %s: %s denied at %s (%s): %s",
                edge.cfg.id,
                label,
                machine.cfg.id,
                decision.code,
                decision.message,
            )
            self._say(machine.cfg.id, f"{label} : refusé — {decision.message}")
            self._busy_badges.discard(pending.badge.uid)
            machine.next_arrival = now + self._interarrival()
            return
        if decision.session_id is None or decision.ends_at is None:
            return  # unreachable: the model refuses a grant without them
        low, high = STAY_MIN.get(machine.cfg.kind, STAY_MIN["generic"])
        play_limit = None
        if decision.break_rule is not None and machine.cfg.kind != "printer_3d":
            play_limit = decision.break_rule.play_min * 60.0
        session = _Session(
            session_id=decision.session_id,
            badge=pending.badge,
            started_mono=now,
            started_at=utcnow(),
            ends_at=decision.ends_at,
            planned_s=self._rng.uniform(low, high) * 60.0,
            play_limit_s=play_limit,
        )
        # Journal first, then switch the machine on (DESIGN §3).
        edge.journal.append(
            lambda seq, event_id, epoch: SessionStarted(
                edge=edge.cfg.id,
                seq=seq,
                event_id=event_id,
                epoch=epoch,
                ts=session.started_at,
                body=SessionStartedBody(
                    session_id=session.session_id,
                    machine=machine.cfg.id,
                    badge=badge_hash(self._secret, pending.badge.uid),
                    req_id=decision.req_id,
                    started_at=session.started_at,
                    ends_at=decision.ends_at,
                ),
            )
        )
        self._send_latest(edge)
        machine.session = session
        machine.availability = Availability.IN_USE
        self.sessions_started += 1
        self._publish_state(edge, machine)
        who = f"{label} (équipe)" if decision.staff else label
        logger.info(
            "edge %s: %s granted at %s until %s (session %s)",
            edge.cfg.id,
            label,
            machine.cfg.id,
            decision.ends_at.isoformat(),
            decision.session_id,
        )
        self._say(machine.cfg.id, f"{who} : accordé jusqu'à {self._hhmm(decision.ends_at)}")

    # ------------------------------------------------------------------ sessions

    def _journal_tick(self, edge: _Edge, machine: _Machine, session: _Session, at: float) -> None:
        minute = session.last_minute
        edge.journal.append(
            lambda seq, event_id, epoch: UsageTick(
                edge=edge.cfg.id,
                seq=seq,
                event_id=event_id,
                epoch=epoch,
                ts=utcnow(),
                body=UsageTickBody(
                    session_id=session.session_id,
                    machine=machine.cfg.id,
                    minute=minute,
                    elapsed_s=at,
                ),
            )
        )
        self._send_latest(edge)

    def _end(
        self, edge: _Edge, machine: _Machine, reason: EndReason, now: float | None = None
    ) -> None:
        session = machine.session
        if session is None:
            return
        now = self._clock() if now is None else now
        duration = (now - session.started_mono) * self._settings.speed
        if reason is EndReason.TIME_UP:
            duration = min(duration, (session.ends_at - session.started_at).total_seconds())
        duration = max(0.0, duration)
        self._journal_end(edge, machine.cfg.id, session.session_id, reason, duration)
        machine.session = None
        machine.paused = False
        if machine.availability is Availability.IN_USE:
            machine.availability = Availability.FREE
        self._busy_badges.discard(session.badge.uid)
        machine.next_arrival = now + self._interarrival()
        self.sessions_ended += 1
        self._publish_state(edge, machine)
        minutes = math.floor(duration / 60)
        logger.info(
            "edge %s: session %s on %s ended (%s, %.0f s)",
            edge.cfg.id,
            session.session_id,
            machine.cfg.id,
            reason.value,
            duration,
        )
        self._say(
            machine.cfg.id,
            f"{session.badge.label or 'badge'} : fin de session — "
            f"{END_TEXT.get(reason, reason.value)}, {minutes} min",
        )

    def _journal_end(
        self, edge: _Edge, machine_id: str, session_id: str, reason: EndReason, duration: float
    ) -> None:
        ended_at = utcnow()
        edge.journal.append(
            lambda seq, event_id, epoch: SessionEnded(
                edge=edge.cfg.id,
                seq=seq,
                event_id=event_id,
                epoch=epoch,
                ts=ended_at,
                body=SessionEndedBody(
                    session_id=session_id,
                    machine=machine_id,
                    reason=reason,
                    duration_s=duration,
                    ended_at=ended_at,
                ),
            )
        )
        self._send_latest(edge)

    def _on_session_command(self, edge: _Edge, command: SessionCommand) -> None:
        if not self._fresh(edge, command.cmd_id, command.not_after):
            return
        machine = next(
            (
                m
                for m in edge.machines.values()
                if m.session is not None and m.session.session_id == command.session_id
            ),
            None,
        )
        if machine is None or machine.session is None:
            logger.info("edge %s: command for unknown session %s", edge.cfg.id, command.session_id)
            return
        match command.action:
            case SessionAction.END:
                self._end(edge, machine, EndReason.STAFF)
            case SessionAction.BREAK:
                self._end(edge, machine, EndReason.BREAK)
            case SessionAction.EXTEND:
                extra = timedelta(minutes=command.minutes or 0)
                machine.session.ends_at += extra
                machine.session.planned_s += extra.total_seconds()
                self._say(machine.cfg.id, f"session prolongée de {command.minutes} min")
            case SessionAction.WARN:
                self._say(machine.cfg.id, f"avertissement : {command.message}")

    def _on_machine_command(self, edge: _Edge, command: MachineCommand) -> None:
        if not self._fresh(edge, command.cmd_id, command.not_after):
            return
        machine = edge.machines.get(command.machine)
        if machine is None:
            logger.info("edge %s: command for unknown machine %s", edge.cfg.id, command.machine)
            return
        match command.action:
            case MachineAction.MAINTENANCE_ON:
                self._end(edge, machine, EndReason.STAFF)
                machine.availability = Availability.MAINTENANCE
                self._say(machine.cfg.id, "en maintenance")
            case MachineAction.MAINTENANCE_OFF:
                machine.availability = Availability.FREE
                machine.next_arrival = self._clock() + self._interarrival()
                self._say(machine.cfg.id, "remise en service")
            case MachineAction.PAUSE:
                machine.paused = True
            case MachineAction.RESUME:
                machine.paused = False
            case MachineAction.CANCEL:
                self._end(edge, machine, EndReason.STAFF)
        self._publish_state(edge, machine)

    def _fresh(self, edge: _Edge, cmd_id: str, not_after: datetime) -> bool:
        if cmd_id in edge.seen_commands:
            return False
        edge.seen_commands.append(cmd_id)
        if utcnow() > not_after:
            logger.warning("edge %s: command %s arrived too late", edge.cfg.id, cmd_id)
            return False
        return True

    def _on_policy(self, edge: _Edge, snapshot: PolicySnapshot) -> None:
        key = policy_key(self._secret, edge.cfg.id)
        if snapshot.edge != edge.cfg.id or not verify_snapshot(snapshot, key):
            logger.warning("edge %s: policy snapshot with a bad signature dropped", edge.cfg.id)
            return
        edge.policy_version = snapshot.version
        logger.info(
            "edge %s: policy snapshot v%d (%d badges)",
            edge.cfg.id,
            snapshot.version,
            len(snapshot.entries),
        )

    # ------------------------------------------------------------------ journal

    def _send_latest(self, edge: _Edge) -> None:
        events = edge.journal.unacked(edge.journal.next_seq - 1)
        for event in events:
            edge.link.send_event(event)

    def _on_journal(self, edge: _Edge, command: JournalCommand) -> None:
        if command.ack_through is not None:
            if edge.journal.ack(command.ack_through):
                edge.last_progress = self._clock()
        elif command.replay_from is not None:
            logger.info("edge %s: hub asks a replay from %d", edge.cfg.id, command.replay_from)
            self._resend(edge, command.replay_from)

    def _resend(self, edge: _Edge, from_seq: int) -> None:
        events = edge.journal.unacked(from_seq)
        for event in events:
            if not edge.link.send_event(event):
                return
        edge.last_progress = self._clock()

    def _resend_if_stalled(self, now: float) -> None:
        for edge in self._edges.values():
            if (
                edge.journal.pending_count
                and edge.link.is_up
                and now - edge.last_progress > self._settings.resend_s
            ):
                logger.debug("edge %s: resending unacknowledged events", edge.cfg.id)
                self._resend(edge, 1)

    # ------------------------------------------------------------------ state and tele

    def _publish_state(self, edge: _Edge, machine: _Machine) -> None:
        detail: dict[str, str | float | int | bool | None] = {"kind": machine.cfg.kind}
        if machine.paused:
            detail["paused"] = True
        edge.link.publish_state(
            MachineState(
                machine=machine.cfg.id,
                availability=machine.availability,
                session_id=machine.session.session_id if machine.session else None,
                detail=detail,
                ts=utcnow(),
            )
        )

    def _publish_tele(self, edge: _Edge, machine: _Machine, now: float) -> None:
        busy = machine.session is not None
        rng = self._rng
        values: dict[str, str | float | int | bool | None]
        match machine.cfg.kind:
            case "printer_3d":
                values = {
                    "nozzle_c": round(rng.gauss(215.0, 1.0) if busy else rng.gauss(24.0, 0.5), 1),
                    "bed_c": round(rng.gauss(60.0, 0.3) if busy else rng.gauss(23.0, 0.3), 1),
                    "state": "printing" if busy and not machine.paused else "idle",
                }
                if machine.session is not None:
                    done = (now - machine.session.started_mono) * self._settings.speed
                    values["progress"] = round(min(100.0, 100 * done / machine.session.planned_s))
            case "laser":
                values = {"state": "run" if busy else "idle"}
            case "gaming_pc":
                values = {"power_w": round(rng.uniform(180, 320) if busy else rng.uniform(35, 45))}
            case _:
                values = {"power_w": round(rng.uniform(50, 200) if busy else 2.0)}
        edge.link.publish_tele(Telemetry(machine=machine.cfg.id, ts=utcnow(), values=values))

    # ------------------------------------------------------------------ helpers

    def _interarrival(self) -> float:
        mean = self._settings.mean_arrival_min * 60.0 / self._settings.speed
        return self._rng.expovariate(1.0 / mean)

    def _first_arrival(self) -> float:
        # Spread the first badges over the first mean interval so the demo starts busy.
        return self._rng.uniform(0.5, self._settings.mean_arrival_min * 60.0 / self._settings.speed)

    def _hhmm(self, when: datetime) -> str:
        return when.astimezone(self._tz).strftime("%H:%M")

    def _say(self, machine: str, text: str) -> None:
        if self._narrate is not None:
            now = datetime.now(self._tz)
            self._narrate(f"{now:%H:%M:%S}  {machine:<10} {text}")


def run_simulator(
    settings: SimSettings, stop: threading.Event, *, narrate: Narrator | None = None
) -> Simulator:
    """Build a :class:`Simulator` and run it until ``stop`` is set; return it (counters)."""
    sim = Simulator(settings, narrate=narrate)
    sim.run(stop)
    return sim


__all__ = [
    "SimBadge",
    "SimConfigError",
    "SimEdge",
    "SimJournal",
    "SimMachine",
    "SimSettings",
    "Simulator",
    "load_sim_settings",
    "run_simulator",
]
