"""What every actuator offers: a machine's power switch with a safe default.

Safety contract (DESIGN §4 "Machine power", research §3.4): the software *enables*
machines, it is not a safety function, and every actuator defaults to **off**:

* ``open()`` acquires the device and switches it off. If the off cannot be
  confirmed it releases what it acquired and raises, so the caller never holds an
  actuator in an unknown state; the edge retries ``with`` in its reconnect loop.
* ``close()`` switches off (best effort: logged, never raises) and releases.
  As a context manager, an exception inside the ``with`` block therefore leaves
  the machine off too.
* A crash or a pulled plug cannot run ``close()``; that case is covered by the
  wiring (a GPIO relay's normally-open contact) or by the plug's own power-on
  default (configure Shelly ``initial_state: off``, Tasmota ``PowerOnState 0``).

An actuator is owned by one thread (the edge's machine coordinator); other
threads read the coordinator's snapshot, not the actuator.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from devices.lifecycle import Managed

__all__ = ["Actuator", "ActuatorBase"]


@runtime_checkable
class Actuator(Protocol):
    """A machine power switch: relay, smart plug, or a simulation."""

    def open(self) -> None:
        """Acquire the device and switch it off.

        Raises:
            DeviceError: the device cannot be reached or refused the off.
        """
        ...

    def close(self) -> None:
        """Switch off (best effort, never raises) and release; idempotent."""
        ...

    def on(self) -> None:
        """Switch the machine on.

        Raises:
            DeviceError: the command failed; the state is then unknown.
        """
        ...

    def off(self) -> None:
        """Switch the machine off.

        Raises:
            DeviceError: the command failed; the state is then unknown.
        """
        ...

    def state(self) -> bool | None:
        """Whether the output is on; ``None`` when the device cannot tell.

        Raises:
            DeviceError: the device could not be asked.
        """
        ...

    def power_w(self) -> float | None:
        """Active power drawn through the switch in watts; ``None`` without a meter.

        Raises:
            DeviceError: the device could not be asked.
        """
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ActuatorBase(Managed):
    """Context-manager plumbing: ``with`` is ``open()`` (off) then ``close()`` (off)."""
