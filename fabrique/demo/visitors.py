"""The demo's visitors: people who badge at the simulated readers of real edge agents.

``fabrique demo`` runs the real edge agent (:class:`edge.agent.Agent`) with simulated
readers, actuators and PC locks. This module plays the people: from time to time
(a Poisson process in the agents' scaled time) somebody taps a badge at a free
machine's :class:`~devices.readers.SimulatedReader`; everything else is the agent's
own behaviour: the hub's decision (or an offline one), the journal, the relay, the
warnings, the end of time, forced breaks.

Once granted, a visitor stays a while, then taps again (badge-out); at a 3D printer
the visitor's print is a simulated job (``job_running`` then ``job_done``, which
ends the session). A refused visitor leaves. Each message the agent shows is
narrated as one line with the visitor's name.

Threads: one ``visitors`` thread looks at the agents' views (immutable snapshots)
and taps badges; narration runs in the agents' feedback callbacks.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.readers import DebouncedReader, SimulatedReader
from edge.agent import Agent
from edge.feedback import FeedbackEvent
from edge.session import State
from protocol.ids import badge_hash

__all__ = ["VisitorError", "VisitorPlan", "Visitors", "load_visitors"]

logger = logging.getLogger(__name__)

Narrator = Callable[[str], None]

#: Simulated minutes a person stays, per machine kind (uniform between the bounds).
STAY_MIN: dict[str, tuple[float, float]] = {
    "printer": (6.0, 40.0),
    "laser": (3.0, 20.0),
    "gaming_pc": (8.0, 50.0),
    "generic": (5.0, 30.0),
}


class VisitorError(ValueError):
    """The visitors' plan is missing or invalid."""


class PlanBadge(BaseModel):
    """A demo badge: its raw UID, a first name for the narration, a weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    label: str = ""
    weight: float = Field(default=1.0, gt=0)


class PlanMachine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["generic", "laser", "printer", "gaming_pc"] = "generic"
    badges: tuple[PlanBadge, ...] = Field(min_length=1)


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


@dataclass(slots=True)
class _Spot:
    machine: str
    agent: Agent
    plan: PlanMachine
    reader: SimulatedReader
    next_arrival: float = 0.0
    visitor: _Visitor | None = None
    next_tele: float = 0.0
    progress: dict[str, float] = field(default_factory=dict)


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
                self._spots[machine] = _Spot(
                    machine, agent, plan, inner, next_arrival=now + self._first_arrival()
                )
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
                if spot.plan.kind == "printer":
                    agent.signal(spot.machine, "job_running", source="demo")
            elif (
                time.monotonic() - v.tapped_real > 1.0 and view.state is not State.AWAITING_DECISION
            ):
                self._leave(spot, now)  # refused, or no answer
        elif view.session_id != v.session_id:
            self._leave(spot, now)  # time up, break, staff, fault, job done
        elif now >= v.leave_at and not v.badged_out:
            v.badged_out = True
            if spot.plan.kind == "printer":
                agent.signal(spot.machine, "job_done", source="demo")
            else:
                spot.reader.present(v.badge.uid)
        self._telemetry(spot, now, view.session_id is not None)

    def _arrive(self, spot: _Spot) -> None:
        with self._lock:
            free = [b for b in spot.plan.badges if b.uid not in self._busy]
            if not free:
                spot.next_arrival = spot.agent.clock.monotonic() + self._interarrival()
                return
            badge = self._rng.choices(free, weights=[b.weight for b in free])[0]
            self._busy.add(badge.uid)
        spot.visitor = _Visitor(badge, badge_hash(self._secret, badge.uid), time.monotonic())
        spot.reader.present(badge.uid)

    def _leave(self, spot: _Spot, now: float) -> None:
        v = spot.visitor
        spot.visitor = None
        if v is not None:
            with self._lock:
                self._busy.discard(v.badge.uid)
        spot.next_arrival = now + self._interarrival()

    def _telemetry(self, spot: _Spot, now: float, busy: bool) -> None:
        real = time.monotonic()
        if real < spot.next_tele:
            return
        spot.next_tele = real + 2.0
        rng = self._rng
        values: dict[str, str | float | int | bool | None]
        match spot.plan.kind:
            case "printer":
                values = {
                    "nozzle_c": round(rng.gauss(215.0, 1.0) if busy else rng.gauss(24.0, 0.5), 1),
                    "bed_c": round(rng.gauss(60.0, 0.3) if busy else rng.gauss(23.0, 0.3), 1),
                    "state": "printing" if busy else "idle",
                }
            case "laser":
                values = {"state": "run" if busy else "idle"}
            case "gaming_pc":
                values = {"power_w": round(rng.uniform(180, 320) if busy else rng.uniform(35, 45))}
            case _:
                values = {}
        if values:
            spot.agent.publish_telemetry(spot.machine, values)

    # ------------------------------------------------------------------ narration

    def _on_feedback(self, event: FeedbackEvent) -> None:
        if self._narrate is None:
            return
        spot = self._spots.get(event.machine)
        who = spot.visitor.badge.label if spot is not None and spot.visitor else ""
        text = f"{who} : {event.message}" if who else event.message
        at = event.at.astimezone(self._tz)
        self._narrate(f"{at:%H:%M:%S}  {event.machine:<10} {text}")

    # ------------------------------------------------------------------ helpers

    def _interarrival(self) -> float:
        return self._rng.expovariate(1.0 / (self._plan.mean_arrival_min * 60.0))

    def _first_arrival(self) -> float:
        # Spread the first badges over the first mean interval so the demo starts busy.
        return self._rng.uniform(1.0, self._plan.mean_arrival_min * 60.0)
