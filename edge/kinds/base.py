"""What a machine kind is to the edge: one row, and the one Protocol its follower meets.

A :class:`Kind` is a row of the table in :mod:`edge.kinds`: the session preset
(how a session drives the machine: cut on fault, hold while a job runs, lock
instead of power…), the device sections it needs and accepts in the settings, and
the :class:`Follower` class that follows its driver. A :class:`Follower` answers
the four questions the agent asks of every machine, whatever it is:

* **faults**: which fault sources its driver reports right now (polled every
  second; the agent clears a source it owns once it is no longer reported);
* **telemetry**: the values of its ``tele`` message, and how often;
* **commands**: a staff command (pause, resume, cancel, re-arm) for its driver, and
  its answer: carried out now (``None``), refused now (a
  :class:`~edge.outcomes.Refusal`), or :class:`Deferred` to the driver (a
  :class:`Run` carries the work out off the agent thread; the outcome follows);
* **run time**: the driver's cumulative working-time meter (a laser's beam-on
  time), journaled as a session's ``run_s``.

Followers only *post* :class:`DriverSignal` values from the drivers' threads; the
agent thread stays the one owner of the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from devices.actuators import Actuator
from devices.registry import DeviceContext
from edge.effects import FeedbackKind, JobReport
from edge.outcomes import Refusal
from edge.sessionconfig import SessionConfig
from protocol.messages import MachineAction, Scalar

if TYPE_CHECKING:
    from edge.settings import MachineSettings

__all__ = [
    "CommandVerdict",
    "Deferred",
    "DriverSignal",
    "Follower",
    "FollowerFactory",
    "Kind",
    "NoDriver",
    "Post",
    "Run",
    "Section",
    "SignalKind",
]

SignalKind = Literal[
    "job_started",  # a job started now (attributed to the session open now)
    "job_running",  # a job holds the machine (start not seen, or busy by power)
    "job_ended",  # a job ended: ``DriverSignal.job`` says how (journaled once)
    "job_done",  # no job any more, the machine is idle: power may go
    "hot",  # above its safe temperature: never cut (cool-down)
    "cooled",  # below it again
    "idle",
    "fault",
    "fault_cleared",
]

#: A device section of ``[[machines]]`` besides the reader.
Section = Literal["actuator", "pc", "laser", "printer"]


@dataclass(frozen=True, slots=True)
class DriverSignal:
    """A driver (or a simulation) reports something about a machine.

    ``source`` names the fault source for ``fault``/``fault_cleared`` (the machine is
    faulted while any source is); ``job`` describes the job of a ``job_ended``.
    """

    machine: str
    kind: SignalKind
    source: str = "driver"
    detail: str = ""
    job: JobReport | None = None


#: The agent's queue, as drivers' threads see it.
Post = Callable[[DriverSignal], None]


class Deferred:
    """A command handed to its driver through a :class:`Run`: its outcome follows.

    Only a :class:`Run` makes one (so that a kind cannot defer without running)."""

    __slots__ = ()


class Run(Protocol):
    """Carries a driver command out off the agent thread, then answers it.

    Whatever was run returning is ``applied``; raising a
    :class:`~edge.outcomes.Refusal` is ``refused`` with its code and reason; any other
    exception is ``refused`` ``driver_error`` (and logged).
    """

    def coroutine(self, coro: Coroutine[Any, Any, Any], what: str) -> Deferred:
        """On the drivers' asyncio loop (an OctoPrint command)."""
        ...

    def blocking(self, call: Callable[[], Any], what: str) -> Deferred:
        """On a short-lived thread (a GRBL command that waits for its ``ok``)."""
        ...


#: A follower's answer to a command: ``None`` carried out now, a refusal, or deferred.
CommandVerdict = Refusal | Deferred | None


class Follower(Protocol):
    """How the agent follows one machine's driver (see the module docstring)."""

    #: Fault sources this follower reports, which the agent clears once gone.
    fault_sources: frozenset[str]

    def open(self) -> None:
        """Connect the threaded drivers (the GRBL link); never raises for a missing device."""
        ...

    def close(self) -> None:
        """Disconnect them; never raises."""
        ...

    def async_parts(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        """Drivers entered on the shared asyncio loop (OctoPrint followers)."""
        ...

    def faults(self) -> dict[str, str]:
        """Fault sources the driver reports right now: source -> what to show."""
        ...

    def telemetry(self) -> dict[str, Scalar]:
        """The driver's values for ``tele/{machine}``."""
        ...

    def tele_interval_s(self, default: float, in_use: bool) -> float:
        """Telemetry period; ``in_use``: a session, a job or heat holds the machine."""
        ...

    def command(self, action: MachineAction, run: Run) -> CommandVerdict:
        """Forward a staff command to the driver (see :data:`CommandVerdict`)."""
        ...

    def run_time_s(self) -> float | None:
        """The driver's cumulative run-time meter, if it has one."""
        ...


#: Builds a follower: (machine settings, device context, the machine's actuator, post).
FollowerFactory = Callable[["MachineSettings", DeviceContext, Actuator | None, Post], Follower]


class NoDriver:
    """The follower of a machine without a driver: nothing to follow but its plug."""

    fault_sources: frozenset[str] = frozenset()

    def __init__(
        self, m: MachineSettings, ctx: DeviceContext, actuator: Actuator | None, post: Post
    ) -> None:
        pass

    def open(self) -> None:
        """Nothing to connect."""

    def close(self) -> None:
        """Nothing to disconnect."""

    def async_parts(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        """No asyncio driver."""
        return ()

    def faults(self) -> dict[str, str]:
        """No driver, no driver faults."""
        return {}

    def telemetry(self) -> dict[str, Scalar]:
        """No driver values (the plug's power is the unit's)."""
        return {}

    def tele_interval_s(self, default: float, in_use: bool) -> float:
        """The edge's telemetry period."""
        return default

    def command(self, action: MachineAction, run: Run) -> CommandVerdict:
        """No driver takes commands."""
        return Refusal("no_driver")

    def run_time_s(self) -> float | None:
        """No run-time meter."""
        return None


@dataclass(frozen=True, slots=True)
class Kind:
    """One row of the table of machine kinds.

    Attributes:
        name: the kind's name in the settings (a :class:`protocol.kinds.MachineKind`
            value for the kinds the hub knows).
        preset: the session preset; the machine's own options (warnings, timeouts,
            link grace…) are laid over it (:func:`edge.kinds.session_config`).
        needs: device sections a machine of this kind must have.
        accepts: device sections it may have besides.
        follower: builds the follower of a machine of this kind.
        latched: its actuator never switches on again by itself after a fault
            (wrapped in a :class:`~devices.actuators.LatchedActuator`: lasers).
        tune: adjusts the preset from the machine's settings (a printer's cool-down).
        summary: one line for the docs and error messages.
        notify: the messages also shown as desktop notifications on the machine
            itself, through its session lock (a gaming PC has no LED or buzzer:
            grants, refusals, warnings, ends), whatever runs the agent.
    """

    name: str
    preset: SessionConfig
    needs: tuple[Section, ...]
    follower: FollowerFactory
    accepts: tuple[Section, ...] = ()
    latched: bool = False
    tune: Callable[[SessionConfig, MachineSettings], SessionConfig] | None = None
    summary: str = ""
    notify: frozenset[FeedbackKind] = frozenset()
