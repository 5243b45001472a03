"""The demo's visitors: people who badge at the simulated readers of real edge agents.

``fabrique demo`` runs the real edge agent (:class:`edge.agent.Agent`) with simulated
readers, relays and PC locks, a simulated GRBL laser driven by the real GRBL driver,
and printers followed like OctoPrint printers (a real OctoPrint with its virtual
printer, or :class:`~devices.octoprint.SimulatedPrinter`). This module plays the
people: from time to time (a Poisson process in the agents' scaled time) somebody
taps a badge at a free machine's :class:`~devices.readers.SimulatedReader`;
everything else is the agent's own behaviour: the hub's decision (or an offline
one), the journal, the relay, the warnings, the end of time, forced breaks.

Once granted, a visitor uses the machine like a member would:

* at a **3D printer** they start a print (through OctoPrint's REST API for the real
  one, as its web page would; through the simulated printer otherwise), stay a
  few minutes and badge out, usually mid-print: the agent keeps the printer on
  until the job is done, and the narration says when it is;
* at the **laser** they cut for a while, pause, cut again, then badge out; now and
  then the door is opened or GRBL raises an alarm mid-cut (the agent cuts the
  power at once), and an animator closes the door and resets, or unlocks, a few
  minutes later; the beam time of each session is narrated;
* at a **gaming PC** they play; the simulated session lock's unlocks, locks and
  on-screen notifications are narrated.

A refused visitor leaves. Each message the agent shows is narrated as one line
with the visitor's name.

Threads: one ``visitors`` thread looks at the agents' views (immutable snapshots)
and the drivers' snapshots and taps badges; narration of the agents' messages runs
in their feedback callbacks; an upload to a real OctoPrint runs on its own thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.errors import DeviceError
from devices.grbl import GrblLaser, GrblState, SimulatedGrblLaser
from devices.octoprint import OctoPrintClient, OctoPrintFollower, SimulatedPrinter
from devices.pc import SimulatedSessionLock
from devices.readers import DebouncedReader, SimulatedReader
from edge.agent import Agent
from edge.feedback import FeedbackEvent
from edge.kinds.laser import LaserFollower
from edge.kinds.printer import PrinterFollower
from edge.session import State
from fabrique.demo.octoprint import dwell_gcode
from protocol.ids import badge_hash
from protocol.messages import MachineAction, MachineCommand

__all__ = ["PlanOctoPrint", "VisitorError", "VisitorPlan", "Visitors", "load_visitors"]

logger = logging.getLogger(__name__)

Narrator = Callable[[str], None]

#: Simulated minutes a person stays, per machine kind (uniform between the bounds).
#: At a printer they leave after starting their print, usually before it ends.
STAY_MIN: dict[str, tuple[float, float]] = {
    "printer": (2.0, 6.0),
    "laser": (4.0, 16.0),
    "gaming_pc": (8.0, 50.0),
    "generic": (5.0, 30.0),
}
#: Real seconds over which the first badge of each machine comes (a busy floor at once).
FIRST_ARRIVALS_REAL_S = 6.0
#: Simulated minutes a demo print takes once the printer is hot.
PRINT_MIN = (3.0, 10.0)
#: Simulated minutes of one cut, and of the pause between two cuts.
CUT_MIN = (1.0, 4.0)
CUT_PAUSE_MIN = (0.5, 2.0)
#: Chance that a laser session meets an incident (door opened or GRBL alarm).
INCIDENT_CHANCE = 0.2
#: Simulated minutes before an animator clears an incident.
CLEAR_MIN = (1.0, 3.0)
#: What the demo prints: name, filament per simulated minute (mm).
PRINTS = (
    ("porte-cles", 300.0),
    ("figurine", 450.0),
    ("support-casque", 600.0),
    ("boite-a-crayons", 500.0),
    ("engrenage", 250.0),
)


class VisitorError(ValueError):
    """The visitors' plan is missing or invalid."""


class PlanBadge(BaseModel):
    """A demo badge: its raw UID, a first name for the narration, a weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    label: str = ""
    weight: float = Field(default=1.0, gt=0)


class PlanOctoPrint(BaseModel):
    """The real OctoPrint of a printer: visitors start their prints through its API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    api_key: str = Field(min_length=8)


class PlanMachine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["generic", "laser", "printer", "gaming_pc"] = "generic"
    badges: tuple[PlanBadge, ...] = Field(min_length=1)
    octoprint: PlanOctoPrint | None = None
    #: UID of the badge that comes first (a trained regular: the kind shows early).
    opener: str | None = None


class VisitorPlan(BaseModel):
    """Who badges where, and how often (the demo writes it as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_secret: str = Field(min_length=16)
    #: The site's time zone, for the times the narration shows.
    timezone: str = "Europe/Paris"
    mean_arrival_min: float = Field(default=8.0, gt=0)
    seed: int | None = None
    machines: dict[str, PlanMachine]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


def load_visitors(path: Path) -> VisitorPlan:
    """Read a plan from JSON.

    Raises:
        VisitorError: unreadable or invalid.
    """
    try:
        return VisitorPlan.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as err:
        raise VisitorError(f"cannot read {path}: {err.strerror or err}") from err
    except (json.JSONDecodeError, ValidationError) as err:
        raise VisitorError(f"{path}: {err}") from err


@dataclass(slots=True)
class _Visitor:
    badge: PlanBadge
    badge_hash: str
    tapped_real: float
    session_id: str | None = None
    leave_at: float = 0.0  # agent-scaled monotonic seconds
    badged_out: bool = False
    # laser
    next_cut: float = 0.0
    incident_at: float | None = None
    beam_from: float = 0.0  # the driver's run-time meter at the session start


@dataclass(slots=True)
class _Print:
    """A print followed from its start to its end."""

    name: str
    who: str
    minutes: float
    seen_running: bool = False
    cut_while_running: bool = False


@dataclass(slots=True)
class _Spot:
    machine: str
    agent: Agent
    plan: PlanMachine
    reader: SimulatedReader
    next_arrival: float = 0.0
    #: visitors who came so far (the first is the machine's ``opener`` when free)
    arrivals: int = 0
    visitor: _Visitor | None = None
    next_tele: float = 0.0
    printing: _Print | None = None
    #: laser incident to clear: (what, when in agent-scaled seconds)
    incident: tuple[str, float] | None = None
    #: how much of the PC lock's history and notifications was narrated
    lock_seen: tuple[int, int] = (0, 0)
    uploads: list[threading.Thread] = field(default_factory=list)

    def laser(self) -> GrblLaser | None:
        """The laser's GRBL driver, if this machine is a laser with one."""
        follower = self.agent.unit(self.machine).follower
        return follower.laser if isinstance(follower, LaserFollower) else None

    def printer(self) -> OctoPrintFollower | None:
        """The printer's follower, if this machine is a printer with one."""
        follower = self.agent.unit(self.machine).follower
        return follower.printer if isinstance(follower, PrinterFollower) else None


class Visitors:
    """Plays the demo's visitors on the machines of ``agents`` (see the module docstring)."""

    def __init__(
        self, agents: list[Agent], plan: VisitorPlan, *, narrate: Narrator | None = None
    ) -> None:
        self._agents = agents
        self._plan = plan
        self._narrate = narrate
        self._rng = random.Random(plan.seed)
        self._secret = plan.site_secret.encode()
        self._tz = ZoneInfo(plan.timezone)
        self._spots: dict[str, _Spot] = {}
        self._busy: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Find the simulated readers, subscribe to feedback, start visiting."""
        for agent in self._agents:
            for machine, view in agent.views().items():
                plan = self._plan.machines.get(machine)
                if plan is None:
                    continue
                reader = agent.unit(machine).reader
                inner = reader.reader if isinstance(reader, DebouncedReader) else reader
                if not isinstance(inner, SimulatedReader):
                    logger.warning("%s has no simulated reader: no visitors there", machine)
                    continue
                now = agent.clock.monotonic()
                first = self._first_arrival(agent.settings.time_scale)
                spot = _Spot(machine, agent, plan, inner, next_arrival=now + first)
                lock = agent.unit(machine).lock
                if isinstance(lock, SimulatedSessionLock):
                    spot.lock_seen = (len(lock.history), len(lock.notifications))
                self._spots[machine] = spot
                logger.debug("visitors at %s (%s)", machine, view.kind)
            self._unsubscribe.append(agent.stream.subscribe(self._on_feedback))
        self._thread = threading.Thread(target=self._run, name="visitors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop visiting (the agents end the sessions when they stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for spot in self._spots.values():
            for upload in spot.uploads:
                upload.join(5)
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for spot in self._spots.values():
                try:
                    self._visit(spot)
                except Exception:
                    logger.exception("visitor simulation failed at %s", spot.machine)

    def _visit(self, spot: _Spot) -> None:
        agent = spot.agent
        now = agent.clock.monotonic()
        view = agent.view(spot.machine).session
        v = spot.visitor
        if v is None:
            if view.state in (State.IDLE, State.ON_BREAK) and now >= spot.next_arrival:
                self._arrive(spot)
        elif v.session_id is None:
            if view.badge == v.badge_hash and view.session_id is not None:
                low, high = STAY_MIN.get(spot.plan.kind, STAY_MIN["generic"])
                v.session_id = view.session_id
                v.leave_at = now + self._rng.uniform(low, high) * 60.0
                self._begin(spot, v, now)
            elif (
                time.monotonic() - v.tapped_real > 1.0 and view.state is not State.AWAITING_DECISION
            ):
                self._leave(spot, now)  # refused, or no answer
        elif view.session_id != v.session_id:
            self._ended(spot, v)
            self._leave(spot, now)  # time up, break, staff, fault, job done
        elif now >= v.leave_at and not v.badged_out and not self._cutting(spot):
            v.badged_out = True
            if spot.printing is not None and spot.printing.seen_running:
                self._say(spot, f"{v.badge.label} s'en va, son impression continue.")
            spot.reader.present(v.badge.uid)
        elif spot.plan.kind == "laser" and not v.badged_out:
            self._use_laser(spot, v, now)
        self._follow_print(spot, view.state)
        self._clear_incident(spot, now)
        self._narrate_lock(spot)
        self._telemetry(spot, view.session_id is not None)

    def _arrive(self, spot: _Spot) -> None:
        with self._lock:
            # Openers are kept for the machine they open until it has opened.
            reserved = {
                other.plan.opener
                for other in self._spots.values()
                if other is not spot and other.arrivals == 0 and other.plan.opener
            }
            free = [
                b for b in spot.plan.badges if b.uid not in self._busy and b.uid not in reserved
            ]
            if not free:
                spot.next_arrival = spot.agent.clock.monotonic() + self._interarrival()
                return
            opener = [b for b in free if b.uid == spot.plan.opener]
            if spot.arrivals == 0 and opener:  # who opens this machine, so each kind shows early
                badge = opener[0]
            else:
                badge = self._rng.choices(free, weights=[b.weight for b in free])[0]
            spot.arrivals += 1
            self._busy.add(badge.uid)
        spot.visitor = _Visitor(badge, badge_hash(self._secret, badge.uid), time.monotonic())
        spot.reader.present(badge.uid)

    def _begin(self, spot: _Spot, v: _Visitor, now: float) -> None:
        """A session started for ``v``: start a print, or plan the cuts."""
        if spot.plan.kind == "printer":
            self._start_print(spot, v)
        elif spot.plan.kind == "laser":
            laser = spot.laser()
            v.beam_from = laser.snapshot().run_time_s if laser is not None else 0.0
            v.next_cut = now + self._rng.uniform(0.2, 1.0) * 60.0
            if self._rng.random() < INCIDENT_CHANCE:
                v.incident_at = now + self._rng.uniform(0.3, 0.9) * (v.leave_at - now)

    def _ended(self, spot: _Spot, v: _Visitor) -> None:
        """``v``'s session ended: narrate a laser session's beam time."""
        laser = spot.laser()
        if spot.plan.kind != "laser" or laser is None:
            return
        beam_s = laser.snapshot().run_time_s - v.beam_from  # simulated seconds
        minutes, seconds = divmod(round(beam_s), 60)
        self._say(spot, f"{v.badge.label} : {minutes} min {seconds:02d} s de découpe laser.")

    def _leave(self, spot: _Spot, now: float) -> None:
        v = spot.visitor
        spot.visitor = None
        if v is not None:
            with self._lock:
                self._busy.discard(v.badge.uid)
        spot.next_arrival = now + self._interarrival()

    # ------------------------------------------------------------------ printers

    def _start_print(self, spot: _Spot, v: _Visitor) -> None:
        printer = spot.printer()
        if printer is None:
            return
        model, per_min = self._rng.choice(PRINTS)
        minutes = round(self._rng.uniform(*PRINT_MIN), 1)
        filament = round(per_min * minutes)
        name = f"{model}-{v.badge.label.lower() or 'demo'}.gcode"
        spot.printing = _Print(name, v.badge.label, minutes)
        metres = _fr(filament / 1000, 2)
        text = f"{v.badge.label} lance l'impression « {name} » ({_fr(minutes)} min, {metres} m)."
        self._say(spot, text)
        if isinstance(printer, SimulatedPrinter):
            try:
                printer.run_threadsafe(printer.start_job(name, minutes * 60.0, float(filament)))
            except (DeviceError, TimeoutError) as err:
                self._print_refused(spot, err)
            return
        octoprint = spot.plan.octoprint
        if octoprint is None:
            logger.warning("%s: no OctoPrint address in the plan: no print", spot.machine)
            return
        seconds = minutes * 60.0 / self._scale(spot)
        data = dwell_gcode(seconds, cool_down=True, filament_mm=float(filament))
        upload = threading.Thread(
            target=self._upload, args=(spot, octoprint, name, data), name="octoprint-upload"
        )
        spot.uploads = [t for t in spot.uploads if t.is_alive()] + [upload]
        upload.start()

    def _upload(self, spot: _Spot, octoprint: PlanOctoPrint, name: str, data: bytes) -> None:
        """Upload and print on the real OctoPrint, as its web page would (own thread)."""

        async def send() -> None:
            async with OctoPrintClient(octoprint.url, octoprint.api_key) as client:
                result = await client.upload(name, data, select=True)
                if not result.selected:
                    raise DeviceError(f"OctoPrint stored {result.path} but did not select it")
                # OctoPrint analyses a file (its filament) only while not printing.
                for _ in range(25):
                    if (await client.job()).filament_mm is not None:
                        break
                    await asyncio.sleep(0.2)
                await client.start()

        try:
            asyncio.run(send())
        except DeviceError as err:
            self._print_refused(spot, err)

    def _print_refused(self, spot: _Spot, err: Exception) -> None:
        logger.warning("%s: the demo print did not start: %s", spot.machine, err)
        self._say(spot, "L'impression n'a pas pu démarrer.")
        spot.printing = None

    def _follow_print(self, spot: _Spot, state: State) -> None:
        """Watch the print through the follower: the power stays on until it is done."""
        job = spot.printing
        printer = spot.printer()
        if job is None or not isinstance(printer, OctoPrintFollower):
            return
        snap = printer.snapshot
        if snap.job_active:
            job.seen_running = True
            if state not in (State.ACTIVE, State.ENDING) and not job.cut_while_running:
                job.cut_while_running = True
                self._say(spot, "ATTENTION : imprimante coupée pendant l'impression !")
            return
        if not job.seen_running:
            return
        spot.printing = None
        if snap.progress_pct is not None and snap.progress_pct >= 100:
            nozzle = snap.tool0.actual if snap.tool0 is not None else None
            hot = f", buse à {nozzle:.0f} °C" if nozzle is not None else ""
            self._say(spot, f"Impression « {job.name} » {_of(job.who)} terminée{hot}.")
        else:
            self._say(spot, f"Impression « {job.name} » {_of(job.who)} arrêtée ({snap.state}).")

    # ------------------------------------------------------------------ laser

    def _use_laser(self, spot: _Spot, v: _Visitor, now: float) -> None:
        laser = spot.laser()
        if not isinstance(laser, SimulatedGrblLaser):
            return
        if v.incident_at is not None and now >= v.incident_at and laser.cutting:
            v.incident_at = None
            self._incident(spot, laser, now)
            return
        if now < v.next_cut or laser.cutting:
            return
        snap = laser.snapshot()
        if not snap.connected or snap.state is not GrblState.IDLE:
            return
        minutes = self._rng.uniform(*CUT_MIN)
        try:
            laser.cut(minutes * 60.0)
        except DeviceError as err:
            logger.info("%s: no cut now: %s", spot.machine, err)
            return
        v.next_cut = now + (minutes + self._rng.uniform(*CUT_PAUSE_MIN)) * 60.0
        self._say(spot, f"{v.badge.label} lance une découpe ({_fr(minutes)} min).")

    def _cutting(self, spot: _Spot) -> bool:
        """A laser visitor waits for the end of their cut before badging out."""
        laser = spot.laser()
        return isinstance(laser, SimulatedGrblLaser) and laser.cutting

    def _incident(self, spot: _Spot, laser: SimulatedGrblLaser, now: float) -> None:
        clear_at = now + self._rng.uniform(*CLEAR_MIN) * 60.0
        if self._rng.random() < 0.5:
            laser.open_door()
            spot.incident = ("door", clear_at)
            self._say(spot, "Quelqu'un ouvre le capot de la découpeuse en pleine découpe !")
        else:
            laser.trip_alarm(1)
            spot.incident = ("alarm", clear_at)
            self._say(spot, "La découpeuse se met en alarme (fin de course) !")

    def _clear_incident(self, spot: _Spot, now: float) -> None:
        if spot.incident is None or now < spot.incident[1]:
            return
        what, _at = spot.incident
        spot.incident = None
        laser = spot.laser()
        if not isinstance(laser, SimulatedGrblLaser):
            return
        try:
            if what == "door":
                laser.close_door()
                laser.soft_reset()
                self._say(spot, "Un animateur referme le capot et réinitialise la découpeuse.")
            else:
                # The staff re-arm a hub page sends ("Réarmer le laser"), through the
                # agent's own command path: GRBL's $X (and $H), journaled.
                spot.agent.post(
                    MachineCommand(
                        cmd_id=uuid.uuid4().hex,
                        machine=spot.machine,
                        action=MachineAction.REARM,
                        not_after=spot.agent.clock.now() + timedelta(seconds=30),
                    )
                )
                self._say(spot, "Un animateur vérifie la découpeuse et la réarme.")
        except DeviceError as err:
            logger.warning("%s: could not clear the incident: %s", spot.machine, err)

    # ------------------------------------------------------------------ gaming PCs

    def _narrate_lock(self, spot: _Spot) -> None:
        lock = spot.agent.unit(spot.machine).lock
        if not isinstance(lock, SimulatedSessionLock):
            return
        seen_history, seen_notes = spot.lock_seen
        history, notes = list(lock.history), list(lock.notifications)
        spot.lock_seen = (len(history), len(notes))
        for action in history[seen_history:]:
            self._say(
                spot, "Session du PC verrouillée." if action == "lock" else "PC déverrouillé."
            )
        for title, message in notes[seen_notes:]:
            self._say(spot, f"Notification à l'écran « {title} » : {message}")

    # ------------------------------------------------------------------ telemetry

    def _telemetry(self, spot: _Spot, busy: bool) -> None:
        """A gaming PC's power draw (printers and the laser report their own)."""
        real = time.monotonic()
        if spot.plan.kind != "gaming_pc" or real < spot.next_tele:
            return
        spot.next_tele = real + 2.0
        power = round(self._rng.uniform(180, 320) if busy else self._rng.uniform(35, 45))
        spot.agent.publish_telemetry(spot.machine, {"power_w": power})

    # ------------------------------------------------------------------ narration

    def _on_feedback(self, event: FeedbackEvent) -> None:
        spot = self._spots.get(event.machine)
        who = spot.visitor.badge.label if spot is not None and spot.visitor else ""
        text = f"{who} : {event.message}" if who else event.message
        self._line(event.machine, text, event.at)

    def _say(self, spot: _Spot, text: str) -> None:
        self._line(spot.machine, text, spot.agent.clock.now())

    def _line(self, machine: str, text: str, at: datetime) -> None:
        if self._narrate is None:
            return
        self._narrate(f"{at.astimezone(self._tz):%H:%M:%S}  {machine:<10} {text}")

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _scale(spot: _Spot) -> float:
        """Simulated seconds per real second on this spot's agent."""
        return spot.agent.settings.time_scale

    def _interarrival(self) -> float:
        return self._rng.expovariate(1.0 / (self._plan.mean_arrival_min * 60.0))

    def _first_arrival(self, scale: float) -> float:
        """When the first badge comes to a machine (simulated seconds from now).

        Within the first few real seconds (or the first mean interval, when shorter),
        so that a fresh demo shows a busy floor at once: printers heating, the laser
        cutting, a game counting down, a refusal on a kiosk."""
        spread = min(self._plan.mean_arrival_min * 60.0, FIRST_ARRIVALS_REAL_S * scale)
        return self._rng.uniform(min(1.0, spread), spread)


def _of(name: str) -> str:
    """« de Léa », « d'Amina »."""
    return f"d'{name}" if name[:1].lower() in "aeiouyhàâéèêîôû" else f"de {name}"


def _fr(value: float, digits: int = 1) -> str:
    """A number the French way: decimal comma, no useless zeros (``8,5``, ``3``)."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")
