"""The GRBL driver over a real pseudo-terminal, against a scripted GRBL 1.1 peer.

pyserial opens the pty slave through a re-pointable symlink and really exchanges
bytes with :class:`~tests.devices.grbl_peer.GrblPeer` on the master side. Polling
runs at 20 ms so that every wait below is a condition awaited within a few polls;
the run-time meter is checked exactly with a fake clock and within ±1 poll
interval per firing period with the real one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import devices.grbl.driver as grbl_driver
from devices.actuators import LatchedActuator, SimulatedActuator
from devices.errors import (
    ActuatorLatched,
    DeviceConfigError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.grbl import (
    AlarmRaised,
    Connected,
    ControllerReset,
    Disconnected,
    DoorOpened,
    GrblEvent,
    GrblLaser,
    GrblMessage,
    GrblSnapshot,
    GrblState,
    LaserInterlock,
    StateChanged,
    parse_line,
)
from devices.registry import DeviceSpec, build_session_lock, parse_config
from tests.devices.conftest import PtyPort
from tests.devices.grbl_peer import GrblPeer

POLL = 0.02
WAIT = 3.0
E = TypeVar("E", bound=GrblEvent)


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Events:
    """A listener that records events and lets the test await them."""

    def __init__(self) -> None:
        self.items: list[GrblEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: GrblEvent) -> None:
        with self._changed:
            self.items.append(event)
            self._changed.notify_all()

    def of(self, kind: type[E]) -> list[E]:
        with self._changed:
            return [e for e in self.items if isinstance(e, kind)]

    def wait(self, kind: type[E], count: int = 1, timeout: float = WAIT) -> list[E]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.of(kind)) >= count, timeout)
        found = self.of(kind)
        assert len(found) >= count, f"expected {count} {kind.__name__}, got {self.items}"
        return found


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[GrblPeer]:
    """A GRBL 1.1h laser (laser mode on, S1000 full power) behind a pty."""
    port = PtyPort(tmp_path / "laser")
    port.plug()
    grbl = GrblPeer(port).start()
    yield grbl
    grbl.stop()
    port.unplug()


def laser(
    peer: GrblPeer, events: Events | None = None, clock: Callable[[], float] = time.monotonic
) -> GrblLaser:
    """A driver polling every 20 ms and reconnecting within 0.1 s."""
    return GrblLaser(
        peer.port.path,
        poll_interval=POLL,
        clock=clock,
        silence_polls=5,
        banner_timeout_s=0.5,
        reconnect_initial_s=0.02,
        reconnect_max_s=0.1,
        on_event=events,
    )


def wait(driver: GrblLaser, predicate: Callable[[GrblSnapshot], bool]) -> GrblSnapshot:
    snapshot = driver.wait_for(predicate, WAIT)
    assert snapshot is not None, f"condition not met; last snapshot {driver.snapshot()}"
    return snapshot


def ready(driver: GrblLaser) -> GrblSnapshot:
    """Wait for the link and a first report (scripting a job earlier would be reset away)."""
    return wait(driver, lambda s: s.connected and s.state is not None)


def next_report(driver: GrblLaser) -> GrblSnapshot:
    """Wait for a status report received after this call."""
    seen = driver.snapshot().reports
    return wait(driver, lambda s: s.reports > seen)


def test_soft_reset_banner_and_settings_on_open(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        snap = wait(driver, lambda s: s.connected and s.laser_mode is not None)
        snap = wait(driver, lambda s: s.max_power is not None and s.state is not None)
        assert snap.version == "1.1h"
        assert (snap.laser_mode, snap.max_power) == (True, 1000.0)
        assert snap.state is GrblState.IDLE
        assert snap.error is None
    assert peer.received.realtime[0] == b"\x18"  # reset before anything else
    assert peer.received.lines[0] == "$$"
    assert events.items[:2] == [Connected("1.1h"), StateChanged(None, GrblState.IDLE)]


def test_laser_mode_off_is_reported(peer: GrblPeer) -> None:
    peer.settings = {30: 255.0, 32: 0.0}
    with laser(peer) as driver:
        snap = wait(driver, lambda s: s.laser_mode is not None and s.max_power is not None)
        assert (snap.laser_mode, snap.max_power) == (False, 255.0)


def test_state_tracking_through_a_job(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        wait(driver, lambda s: s.state is GrblState.IDLE)
        peer.set_state("Run", feed=1500, power=600)
        snap = wait(driver, lambda s: s.state is GrblState.RUN)
        assert (snap.firing, snap.feed, snap.power) == (True, 1500.0, 600.0)
        peer.set_state("Hold", 1)
        snap = wait(driver, lambda s: s.state is GrblState.HOLD)
        assert (snap.substate, snap.firing) == (1, False)
        peer.set_state("Idle")
        wait(driver, lambda s: s.state is GrblState.IDLE)
    changes = [(e.previous, e.current) for e in events.of(StateChanged)]
    assert changes == [
        (None, GrblState.IDLE),
        (GrblState.IDLE, GrblState.RUN),
        (GrblState.RUN, GrblState.HOLD),
        (GrblState.HOLD, GrblState.IDLE),
    ]


def test_run_time_counts_only_run_with_power_exactly_with_a_fake_clock(peer: GrblPeer) -> None:
    clock = FakeClock()
    with laser(peer, clock=clock) as driver:
        wait(driver, lambda s: s.state is GrblState.IDLE)
        clock.advance(30.0)  # idle: not counted
        next_report(driver)

        peer.set_state("Run", feed=1200, power=400)
        wait(driver, lambda s: s.firing)
        clock.advance(4.0)
        wait(driver, lambda s: s.last_seen == 34.0)  # a firing report 4 s later
        peer.set_state("Run", feed=6000, power=0)  # G0 travel between cuts: beam off
        wait(driver, lambda s: s.state is GrblState.RUN and not s.firing)
        clock.advance(7.0)
        next_report(driver)

        peer.set_state("Run", feed=1200, power=1000)
        wait(driver, lambda s: s.firing)
        clock.advance(2.5)
        wait(driver, lambda s: s.last_seen == 43.5)
        peer.set_state("Hold", 0, power=1000)  # held: not counted even with S set
        wait(driver, lambda s: s.state is GrblState.HOLD)
        clock.advance(60.0)
        snap = next_report(driver)

    assert snap.run_time_s == 6.5


def test_run_time_with_the_real_clock_is_within_one_poll_per_period(peer: GrblPeer) -> None:
    with laser(peer) as driver:
        wait(driver, lambda s: s.state is GrblState.IDLE)
        started = time.monotonic()
        peer.set_state("Run", feed=1000, power=500)
        wait(driver, lambda s: s.firing)
        time.sleep(0.3)  # the job itself: real time is what is measured here
        peer.set_state("Idle")
        stopped = time.monotonic()
        snap = wait(driver, lambda s: s.state is GrblState.IDLE)
    truth = stopped - started
    # One poll interval at each end, plus report latency and scheduling slack.
    assert abs(snap.run_time_s - truth) <= 2 * POLL + 0.05


def test_alarm_line_fires_one_event_and_unlock_clears_it(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        peer.set_state("Run", feed=1000, power=800)
        wait(driver, lambda s: s.state is GrblState.RUN)
        peer.alarm(1)
        snap = wait(driver, lambda s: s.state is GrblState.ALARM)
        assert snap.alarm
        assert snap.alarm_code == 1
        next_report(driver)
        assert events.of(AlarmRaised) == [
            AlarmRaised(1, "hard limit triggered; position lost, re-home")
        ]
        driver.unlock()
        assert "$X" in peer.received.lines
        snap = wait(driver, lambda s: s.state is GrblState.IDLE)
        assert not snap.alarm
        assert snap.alarm_code is None


def test_alarm_state_at_start_up_is_an_alarm_too(peer: GrblPeer) -> None:
    peer.set_state("Alarm")  # homing enabled: GRBL starts locked
    events = Events()
    with laser(peer, events) as driver:
        wait(driver, lambda s: s.state is GrblState.ALARM)
        assert events.wait(AlarmRaised) == [AlarmRaised(None, "alarm state")]


def test_door_open_fires_once_per_opening(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        peer.set_state("Run", feed=1000, power=800)
        wait(driver, lambda s: s.state is GrblState.RUN)
        peer.set_state("Door", 2, pins="D")
        snap = wait(driver, lambda s: s.state is GrblState.DOOR)
        assert snap.door_open
        assert snap.substate == 2
        peer.set_state("Door", 1, pins="D")
        wait(driver, lambda s: s.substate == 1)
        peer.set_state("Door", 0)  # closed, waiting for a resume
        snap = wait(driver, lambda s: s.substate == 0)
        assert not snap.door_open
        assert len(events.of(DoorOpened)) == 1
        peer.set_state("Idle")
        wait(driver, lambda s: s.state is GrblState.IDLE)
        peer.set_state("Idle", pins="D")  # opened again while idle: pin only
        snap = wait(driver, lambda s: s.door_open)
        assert snap.state is GrblState.IDLE
        events.wait(DoorOpened, 2)


def test_feed_hold_and_soft_reset_reach_the_controller(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        peer.set_state("Run", feed=1000, power=300)
        wait(driver, lambda s: s.state is GrblState.RUN)
        driver.feed_hold()
        assert peer.wait_for(lambda r: b"!" in r.realtime)
        wait(driver, lambda s: s.state is GrblState.HOLD)

        driver.soft_reset()
        assert peer.wait_for(lambda r: r.realtime.count(b"\x18") == 2)
        assert events.wait(ControllerReset) == [ControllerReset("1.1h")]
        # Reset from Hold:0 is not "in motion": no alarm, and settings are asked again.
        assert peer.wait_for(lambda r: r.lines.count("$$") == 2)
        wait(driver, lambda s: s.state is GrblState.IDLE)
        assert driver.connected
        assert events.of(AlarmRaised) == []


def test_reset_during_a_job_raises_alarm_3(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        peer.set_state("Run", feed=1000, power=300)
        wait(driver, lambda s: s.state is GrblState.RUN)
        driver.soft_reset()
        alarm = events.wait(AlarmRaised)[0]
        assert alarm == AlarmRaised(3, "reset while in motion; position lost, re-home")
        wait(driver, lambda s: s.state is GrblState.ALARM)


def test_noise_is_counted_and_ignored(peer: GrblPeer, caplog: pytest.LogCaptureFixture) -> None:
    with laser(peer) as driver, caplog.at_level(logging.WARNING):
        wait(driver, lambda s: s.state is GrblState.IDLE)
        peer.send_raw(b"\xff\xfe\x00garbage\r\n<Idle|MPos:a,b,c>\r\n<Runn|MPos:0,0,0>\r\n")
        peer.send_raw(b"ok\r\n" + b"z" * 600 + b"\r\n")  # stray ok, overlong line
        snap = wait(driver, lambda s: s.noise_lines >= 3)
        peer.set_state("Run", feed=100, power=100)
        snap = wait(driver, lambda s: s.state is GrblState.RUN)
        assert snap.connected
        assert snap.noise_lines == 3
    assert "unrecognised line from GRBL" in caplog.text
    assert "not a number" in caplog.text


def test_vanished_port_is_reported_and_reconnected(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        peer.set_state("Run", feed=1000, power=500)
        wait(driver, lambda s: s.firing)
        peer.drop()
        lost = events.wait(Disconnected)[0]
        assert isinstance(lost.error, DeviceUnavailable)
        snap = wait(driver, lambda s: not s.connected)
        assert (snap.state, snap.firing) == (None, False)
        assert snap.error is not None
        assert "port lost" in snap.error
        with pytest.raises(DeviceUnavailable, match="not connected"):
            driver.feed_hold()

        peer.set_state("Idle")
        peer.replug()
        events.wait(Connected, 2)
        snap = wait(driver, lambda s: s.connected and s.state is GrblState.IDLE)
        assert snap.error is None
        assert peer.received.realtime[-1] == b"\x18"  # a fresh reset on the new link


def test_silent_controller_trips_the_watchdog_then_recovers(peer: GrblPeer) -> None:
    events = Events()
    with laser(peer, events) as driver:
        wait(driver, lambda s: s.state is GrblState.IDLE)
        peer.answer_status = False  # e.g. a critical alarm: GRBL ignores '?'
        lost = events.wait(Disconnected)[0]
        assert isinstance(lost.error, DeviceTimeout)
        assert "no status report for 5 polls" in str(lost.error)
        peer.answer_status = True
        events.wait(Connected, 2)
        wait(driver, lambda s: s.connected and s.state is GrblState.IDLE)


def test_a_device_without_banner_never_connects(peer: GrblPeer) -> None:
    peer.banner = None
    with laser(peer) as driver:
        snap = wait(driver, lambda s: s.error is not None)
        assert "no GRBL banner" in str(snap.error)
        assert not snap.connected
        assert peer.wait_for(lambda r: r.realtime.count(b"\x18") >= 2)  # retried
        assert peer.received.status_queries == 0


def test_grbl_0_9_is_refused(peer: GrblPeer) -> None:
    peer.banner = "Grbl 0.9j ['$' for help]"
    with laser(peer) as driver:
        snap = wait(driver, lambda s: s.error is not None)
        assert "not supported" in str(snap.error)
        assert not driver.connected


def test_absent_port_at_open_connects_when_plugged(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "laser")
    grbl = GrblPeer(port)
    events = Events()
    try:
        with laser(grbl, events) as driver:
            snap = wait(driver, lambda s: s.error is not None)
            assert not snap.connected
            grbl.replug()
            events.wait(Connected)
            assert events.of(Disconnected) == []  # never connected before: nothing lost
    finally:
        grbl.stop()
        port.unplug()


def test_unlock_errors_are_translated(peer: GrblPeer) -> None:
    peer.errors["$X"] = 3
    driver = laser(peer)
    with pytest.raises(DeviceUnavailable, match="not connected"):
        driver.unlock()  # not opened yet
    with driver:
        wait(driver, lambda s: s.connected)
        with pytest.raises(DeviceProtocolError, match=r"error:3 \('\$' system command"):
            driver.unlock()
        peer.unanswered.add("$X")
        with pytest.raises(DeviceTimeout, match=r"no answer to \$X"):
            driver.unlock(timeout=0.1)
        assert driver.connected


def test_homing_is_read_from_the_settings_and_runs_only_when_asked(peer: GrblPeer) -> None:
    peer.settings[22] = 1.0
    with laser(peer) as driver:
        snap = wait(driver, lambda s: s.homing is not None)
        assert snap.homing is True
        assert "$H" not in peer.received.lines  # never by itself
        peer.alarm(1)
        wait(driver, lambda s: s.state is GrblState.ALARM)
        driver.unlock()
        driver.home()
        assert peer.received.lines[-2:] == ["$X", "$H"]
        snap = wait(driver, lambda s: s.state is GrblState.IDLE)
        assert not snap.alarm
        assert driver.connected  # the silence watchdog waited for the cycle


def test_homing_refused_when_not_enabled(peer: GrblPeer) -> None:
    peer.settings[22] = 0.0
    with laser(peer) as driver:
        assert wait(driver, lambda s: s.homing is not None).homing is False
        with pytest.raises(DeviceProtocolError, match=r"GRBL refused \$H: error:5"):
            driver.home()


def test_close_sends_a_feed_hold(peer: GrblPeer) -> None:
    with laser(peer) as driver:
        wait(driver, lambda s: s.connected)
    assert peer.wait_for(lambda r: r.realtime[-1:] == [b"!"])
    assert not driver.connected
    driver.close()  # idempotent


def test_a_failing_listener_does_not_stop_the_watch(
    peer: GrblPeer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: GrblEvent) -> None:
        raise RuntimeError("listener bug")

    events = Events()
    driver = laser(peer, events)
    driver.add_listener(broken)
    with driver, caplog.at_level(logging.ERROR):
        ready(driver)
        peer.set_state("Run", feed=100, power=100)
        wait(driver, lambda s: s.state is GrblState.RUN)
        assert events.of(StateChanged)
    assert "listener bug" in caplog.text


def test_a_driver_bug_is_reported_as_a_fault_and_the_watch_goes_on(
    peer: GrblPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Events()
    with laser(peer, events) as driver:
        ready(driver)
        calls = iter(range(1_000_000))

        def buggy(line: str) -> GrblMessage:
            if next(calls) == 0:
                raise RuntimeError("parser bug")
            return parse_line(line)

        monkeypatch.setattr(grbl_driver, "parse_line", buggy)
        lost = events.wait(Disconnected)[0]
        assert isinstance(lost.error, DeviceProtocolError)
        assert "driver fault: RuntimeError('parser bug')" in str(lost.error)
        events.wait(Connected, 2)
        wait(driver, lambda s: s.connected and s.state is GrblState.IDLE)


def test_invalid_options_and_double_open(peer: GrblPeer) -> None:
    with pytest.raises(DeviceConfigError, match="poll_interval"):
        GrblLaser(peer.port.path, poll_interval=0)
    with pytest.raises(DeviceConfigError, match="silence_polls"):
        GrblLaser(peer.port.path, silence_polls=0)
    with laser(peer) as driver, pytest.raises(DeviceUnavailable, match="already open"):
        driver.open()


# ------------------------------------------------------------------ the interlock


@pytest.mark.parametrize("fault", ["alarm", "door", "unplug"])
def test_interlock_cuts_and_latches_the_laser(peer: GrblPeer, fault: str) -> None:
    switch = SimulatedActuator(name="laser")
    with LatchedActuator(switch) as power, laser(peer) as driver:
        driver.add_listener(LaserInterlock(power))
        ready(driver)
        peer.set_state("Run", feed=1000, power=800)
        wait(driver, lambda s: s.firing)
        power.on()
        if fault == "alarm":
            peer.alarm(2)
        elif fault == "door":
            peer.set_state("Door", 2, pins="D")
        else:
            peer.drop()
        wait(driver, lambda s: not s.firing)
        # trip() latches, then switches off: await both.
        assert wait_true(lambda: power.latched and switch.state() is False)
        with pytest.raises(ActuatorLatched):
            power.on()  # never re-enabled without a new grant
        if fault == "unplug":
            peer.replug()
            wait(driver, lambda s: s.connected)
        assert power.latched  # reconnecting does not re-arm
        assert switch.history[:3] == [False, True, False]
        assert True not in switch.history[2:]  # never on again after the fault


def test_interlock_ignores_ordinary_events() -> None:
    assert LaserInterlock.reason(StateChanged(GrblState.IDLE, GrblState.RUN)) is None
    assert LaserInterlock.reason(Connected("1.1h")) is None
    assert LaserInterlock.reason(ControllerReset("1.1h")) is None
    assert LaserInterlock.reason(AlarmRaised(None, "alarm state")) == "GRBL alarm: alarm state"
    lost = Disconnected(DeviceTimeout("silent"))
    assert LaserInterlock.reason(lost) == "GRBL link lost: silent"


def wait_true(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


# ------------------------------------------------------------------ the registry row


def test_registry_builds_a_working_laser(peer: GrblPeer) -> None:
    spec = DeviceSpec(kind="laser.grbl", options={"port": peer.port.path, "poll_interval_s": 0.05})
    assert spec.role == "laser"
    driver = spec.build_laser()
    assert (driver.port, driver.baudrate, driver.poll_interval) == (peer.port.path, 115200, 0.05)
    assert (driver.silence_polls, driver.banner_timeout_s) == (10, 3.0)
    with driver:
        snap = wait(driver, lambda s: s.connected and s.state is GrblState.IDLE)
        assert snap.version == "1.1h"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "port"),
        ({"port": "/dev/ttyUSB0", "poll_interval_s": 0.01}, "poll_interval_s"),
        ({"port": "/dev/ttyUSB0", "silence_polls": 1}, "silence_polls"),
        ({"port": "/dev/ttyUSB0", "baud": 9600}, "baud"),
    ],
)
def test_registry_rejects_invalid_laser_options(options: dict[str, object], problem: str) -> None:
    with pytest.raises(DeviceConfigError, match=problem):
        parse_config("laser.grbl", options)
    with pytest.raises(DeviceConfigError, match="has role 'laser', not 'pc'"):
        build_session_lock("laser.grbl", {"port": "/dev/ttyUSB0"})
