"""The simulated GRBL laser: the real driver, over a real pty, against the GRBL 1.1 peer.

``laser.simulated`` builds a :class:`~devices.grbl.GrblLaser` whose port is a
pty served by its own :class:`~devices.grbl.GrblPeer`; the tests cut, hold, trip
alarms and open the door, and look only at what the driver parsed from the wire.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from devices.actuators import LatchedActuator, SimulatedActuator
from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.grbl import (
    AlarmRaised,
    DoorOpened,
    GrblEvent,
    GrblLaser,
    GrblSnapshot,
    GrblState,
    LaserInterlock,
    SimulatedGrblLaser,
)
from devices.registry import KINDS, build_laser

POLL = 0.02
WAIT = 3.0


class Events:
    def __init__(self) -> None:
        self.items: list[GrblEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: GrblEvent) -> None:
        with self._lock:
            self.items.append(event)

    def of(self, kind: type) -> list[GrblEvent]:
        with self._lock:
            return [e for e in self.items if isinstance(e, kind)]


@pytest.fixture
def laser() -> Iterator[SimulatedGrblLaser]:
    built = build_laser("laser.simulated", {"poll_interval_s": 0.05})
    assert isinstance(built, SimulatedGrblLaser)
    built.poll_interval = POLL  # faster than the config allows, for the tests
    built.open()
    try:
        assert built.wait_for(lambda s: s.connected and s.state is not None, WAIT)
        yield built
    finally:
        built.close()


def until(laser: GrblLaser, predicate: Callable[[GrblSnapshot], bool]) -> GrblSnapshot:
    snap = laser.wait_for(predicate, WAIT)
    assert snap is not None, laser.snapshot()
    return snap


def test_the_registry_row_builds_an_unopened_driver() -> None:
    built = build_laser("laser.simulated", {})
    assert isinstance(built, GrblLaser)
    assert isinstance(built, SimulatedGrblLaser)
    assert KINDS["laser.simulated"].role == "laser"
    assert built.poll_interval == 0.2
    assert not built.connected
    with pytest.raises(DeviceUnavailable, match="not open"):
        built.cut(1.0)
    with pytest.raises(DeviceConfigError, match="poll_interval_s"):
        build_laser("laser.simulated", {"poll_interval_s": 0})
    with pytest.raises(DeviceConfigError, match="port"):
        build_laser("laser.simulated", {"port": "/dev/ttyUSB0"})


def test_a_cut_fires_for_its_time_and_is_metered(laser: SimulatedGrblLaser) -> None:
    idle = laser.snapshot()
    assert idle.version == "1.1h"
    assert idle.laser_mode
    assert idle.max_power == 1000
    assert idle.state is GrblState.IDLE
    assert not idle.firing
    assert laser.port.startswith("/dev/pts/")
    laser.cut(0.6, power=750, feed=1200)
    assert laser.cutting
    with pytest.raises(DeviceUnavailable, match="Run"):
        laser.cut(1.0)  # one job at a time
    firing = until(laser, lambda s: s.firing)
    assert firing.state is GrblState.RUN
    assert firing.power == 750
    assert firing.feed == 1200
    moved = until(laser, lambda s: s.firing and s is not firing)
    assert moved.state is GrblState.RUN
    done = until(laser, lambda s: s.state is GrblState.IDLE)
    assert not done.firing
    assert not laser.cutting
    assert done.run_time_s == pytest.approx(0.6, abs=4 * POLL + 0.05)


def test_feed_hold_stops_the_beam_and_its_clock(laser: SimulatedGrblLaser) -> None:
    laser.cut(5.0)
    until(laser, lambda s: s.firing)
    laser.feed_hold()
    held = until(laser, lambda s: s.state is GrblState.HOLD)
    assert not held.firing
    assert laser.cutting
    assert laser.peer.received.realtime[-1] == b"!"
    laser.soft_reset()  # the operator gives up: a reset while held at rest
    idle = until(laser, lambda s: s.state is GrblState.IDLE)
    assert not idle.alarm
    assert not laser.cutting


def test_an_alarm_trips_the_latch_until_unlocked(laser: SimulatedGrblLaser) -> None:
    relay = LatchedActuator(SimulatedActuator(load_w=40.0))
    relay.open()
    events = Events()
    laser.add_listener(LaserInterlock(relay))
    laser.add_listener(events)
    relay.on()
    laser.cut(5.0)
    until(laser, lambda s: s.firing)
    laser.trip_alarm(1)
    alarm = until(laser, lambda s: s.state is GrblState.ALARM)
    assert alarm.alarm_code == 1
    assert not alarm.firing
    assert not laser.cutting
    assert relay.latched
    assert relay.state() is False
    assert [e.code for e in events.of(AlarmRaised)][:1] == [1]  # type: ignore[attr-defined]
    with pytest.raises(DeviceUnavailable, match="Alarm"):
        laser.cut(1.0)
    laser.unlock()
    until(laser, lambda s: s.state is GrblState.IDLE and not s.alarm)
    assert relay.latched, "only a new grant re-arms the latch"
    relay.close()


def test_the_door_stops_the_cut_and_a_reset_clears_it(laser: SimulatedGrblLaser) -> None:
    events = Events()
    laser.add_listener(events)
    laser.cut(5.0)
    until(laser, lambda s: s.firing)
    laser.open_door()
    door = until(laser, lambda s: s.door_open)
    assert door.state is GrblState.DOOR
    assert not door.firing
    assert events.of(DoorOpened)
    laser.close_door()
    closed = until(laser, lambda s: not s.door_open)
    assert (closed.state, closed.substate) == (GrblState.DOOR, 0)  # waits for a resume
    laser.soft_reset()
    until(laser, lambda s: s.state is GrblState.IDLE)
    # Idle, the door opens and closes without a job to resume.
    laser.open_door()
    until(laser, lambda s: s.door_open)
    laser.close_door()
    until(laser, lambda s: s.state is GrblState.IDLE and not s.door_open)


def test_close_releases_the_peer_and_the_pty() -> None:
    laser = SimulatedGrblLaser(POLL)
    laser.open()
    assert laser.wait_for(lambda s: s.connected, WAIT)
    pty = laser._pty
    assert pty is not None
    assert pty.master is not None
    master = pty.master
    laser.close()
    assert pty.master is None
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(master)
    with pytest.raises(DeviceUnavailable, match="not open"):
        laser.peer  # noqa: B018
    assert not laser.connected
    laser.open()  # and it opens again on a new pty
    try:
        assert laser.wait_for(lambda s: s.connected, WAIT)
    finally:
        laser.close()


def test_speed_runs_cuts_and_the_meter_in_simulated_time() -> None:
    laser = build_laser("laser.simulated", {"poll_interval_s": 0.05, "speed": 20})
    assert isinstance(laser, SimulatedGrblLaser)
    assert laser.speed == 20
    laser.open()
    try:
        assert laser.wait_for(lambda s: s.connected and s.state is GrblState.IDLE, WAIT)
        started = time.monotonic()
        laser.cut(10.0)  # ten simulated seconds: half a real second
        until(laser, lambda s: s.firing)
        done = until(laser, lambda s: s.state is GrblState.IDLE)
        assert time.monotonic() - started < 2.0
        assert done.run_time_s == pytest.approx(10.0, abs=20 * 3 * 0.05)
    finally:
        laser.close()
    with pytest.raises(DeviceConfigError, match="speed"):
        SimulatedGrblLaser(speed=0)
