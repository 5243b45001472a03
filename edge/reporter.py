"""What the edge tells about its machines: views, retained states, telemetry.

:class:`Reporter` runs on the agent thread and owns what is published about the
machines, never what they do:

* the immutable :class:`~edge.machines.MachineView` of every machine, for other
  threads (the kiosk, the demo, tests), refreshed after each step of the agent;
* each machine's retained ``state/{machine}`` (:class:`~protocol.messages.MachineState`
  with its typed :class:`~protocol.messages.MachineDetail`), published when what
  it shows changes (availability, session, job, cooling, reader, faults, end time)
  and again after a reconnection; ``offline`` for every machine at shutdown;
* ``tele/{machine}`` when due (:meth:`~edge.machines.MachineUnit.tele_interval_s`),
  a plug's power asked every ``tele_interval_s``; telemetry is never metered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Protocol

from edge.clock import Clock
from edge.machines import MachineUnit, MachineView
from protocol.messages import Availability, MachineDetail, MachineState, Scalar, Telemetry

__all__ = ["Reporter", "StatePublisher"]


class StatePublisher(Protocol):
    """What the reporter needs from the link (False: not sent, the link is down)."""

    def publish_state(self, state: MachineState) -> bool: ...

    def publish_tele(self, tele: Telemetry) -> bool: ...


class Reporter:
    """Views, retained states and telemetry of one edge's machines (see the module docstring).

    Args:
        clock: the agent's clock.
        speed: simulated seconds per real second (the demo's time-lapse; end times
            are real wall times).
        tele_interval_s: the edge's telemetry period (and a plug's power reading's).
    """

    def __init__(self, clock: Clock, speed: float, tele_interval_s: float) -> None:
        self.clock = clock
        self.speed = speed
        self.tele_interval_s = tele_interval_s
        self._views: Mapping[str, MachineView] = MappingProxyType({})

    @property
    def views(self) -> Mapping[str, MachineView]:
        """Every machine's latest view (immutable, safe from any thread)."""
        return self._views

    def publish_views(self, units: Iterable[MachineUnit], link: StatePublisher | None) -> None:
        """Refresh the views; publish the retained states that changed (``link``: None when
        down)."""
        mono = self.clock.monotonic()
        units = list(units)
        views = {unit.id: unit.view(mono) for unit in units}
        self._views = MappingProxyType(views)
        if link is None:
            return
        for unit in units:
            v = views[unit.id]
            deadline = None
            if v.session.remaining_s is not None:
                deadline = round(mono + v.session.remaining_s)
            key = (
                v.availability,
                v.session.session_id,
                v.session.state,
                v.session.job_running,
                v.session.cooling,
                v.session.foreign_job,
                v.reader_connected,
                v.faults,
                deadline,
            )
            if key == unit.published:
                continue
            if link.publish_state(self.state_message(v)):
                unit.published = key

    def state_message(self, v: MachineView) -> MachineState:
        """The retained state of one machine's view."""
        ends_at = None
        if v.session.remaining_s is not None:
            ends = self.clock.now() + timedelta(seconds=v.session.remaining_s / self.speed)
            ends_at = ends.replace(microsecond=0)
        detail = MachineDetail(
            kind=v.kind,
            state=v.session.state.value,
            reader=v.reader_connected,
            offline=v.session.offline,
            staff=v.session.staff,
            ends_at=ends_at,
            job=v.session.job_running,
            cooling=v.session.cooling,
            foreign_job=v.session.foreign_job,
            faults=v.faults,
        )
        return MachineState(
            machine=v.machine,
            availability=v.availability,
            session_id=v.session.session_id,
            detail=detail,
            ts=self.clock.now(),
        )

    def telemetry(
        self,
        units: Iterable[MachineUnit],
        link: StatePublisher | None,
        now: float,
        follow: Callable[[MachineUnit, Mapping[str, Scalar]], None],
    ) -> None:
        """Each machine's telemetry when due; ``follow`` sees the values first (a plug's
        power says busy or idle) — ``now`` is real monotonic seconds."""
        default = self.tele_interval_s
        for unit in units:
            if unit.last_tele is not None and now - unit.last_tele < unit.tele_interval_s(default):
                continue
            unit.last_tele = now
            sample_power = now >= unit.next_power  # a plug is asked every tele_interval_s
            if sample_power:
                unit.next_power = now + default
            values = unit.telemetry(power=sample_power)
            follow(unit, values)
            unit.extra_tele.clear()
            if values and link is not None:
                link.publish_tele(Telemetry(machine=unit.id, ts=self.clock.now(), values=values))

    def publish_offline(self, units: Iterable[MachineUnit], link: StatePublisher | None) -> None:
        """At shutdown: every machine's retained state says offline."""
        if link is None:
            return
        now = self.clock.now()
        for unit in units:
            link.publish_state(
                MachineState(
                    machine=unit.id,
                    availability=Availability.OFFLINE,
                    detail=MachineDetail(kind=unit.settings.kind),
                    ts=now,
                )
            )
