"""An actuator that only remembers: the demo's machines and the edge's tests.

It keeps the same contract as real drivers (off on open and close) and records
every switch in :attr:`SimulatedActuator.history`, so tests can assert that a
machine was never on when it should not be. :meth:`fail` makes the next calls
raise, to exercise the edge's fault handling.
"""

from __future__ import annotations

import logging
import threading

from devices.actuators.base import ActuatorBase
from devices.errors import DeviceError, DeviceUnavailable

__all__ = ["SimulatedActuator"]

_LOGGER = logging.getLogger(__name__)


class SimulatedActuator(ActuatorBase):
    """A switch in memory, with a fake power meter.

    Args:
        load_w: watts reported while on (0 while off); ``None`` for "no meter".
        name: shown in logs.
    """

    def __init__(self, load_w: float | None = 0.0, name: str = "sim") -> None:
        self.load_w = load_w
        self.name = name
        self.history: list[bool] = []
        self._on = False
        self._opened = False
        self._failure: DeviceError | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimulatedActuator({self.name!r})"

    @property
    def is_open(self) -> bool:
        """Whether ``open`` was called without a ``close`` since."""
        return self._opened

    def fail(self, error: DeviceError | None = None) -> None:
        """Make every following call raise ``error`` (default DeviceUnavailable).

        The switch is physically left as it was, like a plug that dropped off Wi-Fi.
        """
        self._failure = error if error is not None else DeviceUnavailable(f"{self!r} unreachable")

    def recover(self) -> None:
        """Stop failing."""
        self._failure = None

    def open(self) -> None:
        """Switch off and start accepting commands."""
        self._opened = True
        self.off()

    def close(self) -> None:
        """Switch off (even while "failing": a simulation cannot lose power) and stop."""
        with self._lock:
            self._switch(False)
        self._opened = False

    def on(self) -> None:
        """Switch on."""
        self._check()
        with self._lock:
            self._switch(True)

    def off(self) -> None:
        """Switch off."""
        self._check()
        with self._lock:
            self._switch(False)

    def state(self) -> bool:
        """Whether the switch is on."""
        self._check()
        return self._on

    def power_w(self) -> float | None:
        """``load_w`` while on, 0 while off, ``None`` without a meter."""
        self._check()
        if self.load_w is None:
            return None
        return self.load_w if self._on else 0.0

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._opened:
            raise DeviceUnavailable(f"{self!r} is not open")

    def _switch(self, on: bool) -> None:
        self._on = on
        self.history.append(on)
        _LOGGER.info("%r %s", self, "on" if on else "off")
