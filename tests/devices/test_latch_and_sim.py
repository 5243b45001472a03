"""The laser latch and the simulated actuator it is tested on."""

from __future__ import annotations

import pytest

from devices.actuators import Actuator, LatchedActuator, SimulatedActuator
from devices.errors import ActuatorLatched, DeviceProtocolError, DeviceUnavailable


def test_simulated_actuator_contract() -> None:
    sim = SimulatedActuator(load_w=60.0)
    assert isinstance(sim, Actuator)
    with pytest.raises(DeviceUnavailable, match="not open"):
        sim.on()
    with sim:
        assert sim.state() is False
        sim.on()
        assert (sim.state(), sim.power_w()) == (True, 60.0)
    assert sim.history == [False, True, False]
    assert not sim.is_open


def test_simulated_actuator_is_off_after_an_exception() -> None:
    sim = SimulatedActuator()
    with pytest.raises(KeyError), sim:
        sim.on()
        raise KeyError("bug")
    assert sim.history[-1] is False


def test_trip_switches_off_and_refuses_on_until_rearmed() -> None:
    sim = SimulatedActuator()
    with LatchedActuator(sim) as laser:
        laser.on()
        laser.trip("exhaust fan fault")
        assert laser.latched
        assert laser.latch_reason == "exhaust fan fault"
        assert sim.state() is False
        with pytest.raises(ActuatorLatched, match="exhaust fan fault"):
            laser.on()
        assert sim.state() is False
        laser.rearm()  # a new grant
        assert not laser.latched
        assert sim.state() is False  # re-arming never switches on
        laser.on()
        assert sim.state() is True
    assert sim.history == [False, True, False, True, False]


def test_normal_off_does_not_latch() -> None:
    with LatchedActuator(SimulatedActuator()) as laser:
        laser.on()
        laser.off()  # badge-out
        assert not laser.latched
        laser.on()
        assert laser.state() is True


@pytest.mark.parametrize("call", ["on", "state", "power_w", "off"])
def test_any_device_error_trips_the_latch(call: str) -> None:
    sim = SimulatedActuator()
    with LatchedActuator(sim) as laser:
        laser.on()
        sim.fail(DeviceProtocolError("garbled answer"))
        with pytest.raises(DeviceProtocolError):
            getattr(laser, call)()
        assert laser.latched
        sim.recover()
        # The device answers again, but the laser stays latched until a new grant.
        with pytest.raises(ActuatorLatched):
            laser.on()
        laser.off()
        assert sim.state() is False


def test_trip_is_remembered_with_its_first_reason() -> None:
    laser = LatchedActuator(SimulatedActuator())
    laser.open()
    laser.trip("link lost")
    laser.trip("lease expired")
    assert laser.latch_reason == "link lost"
    laser.close()
