"""``fabrique pc-agent``: the edge agent running on a gaming PC itself, for that one PC.

It is the ordinary edge agent (:class:`edge.agent.Agent`): same journal, same MQTT
contract, same session machine, same offline decisions. What this module adds is
what makes sense only on the PC:

* **a short configuration**: ``pc.toml`` is an ``edge.toml`` with exactly one
  ``[[machines]]`` block, which must be (and by default is) a ``gaming_pc``. The
  defaults below are filled into the file's data before validation, so that
  :mod:`edge.settings` stays the one schema:

  ==========================  ===================================================
  machine ``kind``            ``gaming_pc`` (anything else is refused)
  machine ``pc``              ``{ kind = "pc.auto" }``: loginctl on Linux,
                              LockWorkStation on Windows
  machine ``offline_break``   50 min of play, then 10 min off (the 9-15 rule of
                              the healthy-gaming notes: the strictest, for the
                              rare grants decided without the hub)
  ``journal.path``            ``journal.db`` in ``$STATE_DIRECTORY`` (systemd),
                              ``%LOCALAPPDATA%\\fabrique`` (Windows) or
                              ``$XDG_STATE_HOME/fabrique`` (``~/.local/state``)
  ==========================  ===================================================

  A value in the file (or, for the journal, in ``FABRIQUE_EDGE_JOURNAL__PATH``)
  always wins over these defaults.

* nothing about messages: every message for the player (grant with its end time,
  refusals with the hub's reason, warnings, end of session or break) is a desktop
  notification because the machine is a ``gaming_pc`` (its kind's ``notify``, see
  :mod:`edge.kinds.gaming_pc`): the same when ``fabrique edge run`` serves the PC.

The time rules themselves (daily caps per age group, forced breaks, warnings) come
from the hub with each grant and are enforced by the session machine on the
monotonic clock; nothing here changes them.
"""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devices.errors import DeviceConfigError
from devices.pc import auto_backend
from edge.settings import EdgeSettings, MachineSettings, load_edge_settings

if TYPE_CHECKING:
    from edge.agent import Agent

__all__ = [
    "AUTO_LOCK",
    "DEFAULT_OFFLINE_BREAK",
    "PC_KIND",
    "PcConfigError",
    "build_pc_agent",
    "check_lock",
    "default_journal_path",
    "load_pc_settings",
    "pc_defaults",
]

logger = logging.getLogger(__name__)

#: The only machine kind a pc-agent serves.
PC_KIND: Final = "gaming_pc"
#: The session lock used when the file names none.
AUTO_LOCK: Final = "pc.auto"
#: Forced break of offline grants when the file sets none (minutes).
DEFAULT_OFFLINE_BREAK: Final = {"play_min": 50, "break_min": 10}
_JOURNAL_ENV: Final = ("FABRIQUE_EDGE_JOURNAL__PATH", "FABRIQUE_EDGE_JOURNAL")


class PcConfigError(ValueError):
    """The file is a valid TOML document but does not describe one gaming PC."""


def default_journal_path(
    platform: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Path:
    """Where the journal lives when the file does not say (see the module table)."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if env.get("STATE_DIRECTORY"):  # systemd's StateDirectory= (system and --user units)
        return Path(env["STATE_DIRECTORY"].split(":")[0]) / "journal.db"
    if platform == "win32":
        base = Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else home / "AppData" / "Local"
        return base / "fabrique" / "journal.db"
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else home / ".local" / "state"
    return base / "fabrique" / "journal.db"


def pc_defaults(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, journal: Path | None = None
) -> dict[str, Any]:
    """The overrides that complete a ``pc.toml``'s ``data`` with the PC defaults.

    Returns ``machines`` (the one machine, completed) and, when neither the file nor
    the environment gives a journal path, ``journal``; pydantic-settings merges
    these tables over the file's.

    Raises:
        PcConfigError: not exactly one machine, or a machine that is not a gaming PC.
    """
    env = os.environ if env is None else env
    machines = data.get("machines")
    if not isinstance(machines, list) or len(machines) != 1:
        count = len(machines) if isinstance(machines, list) else 0
        raise PcConfigError(
            "l'agent du PC sert exactement une machine, décrite dans un seul bloc "
            f"[[machines]] ; ce fichier en décrit {count}"
        )
    if not isinstance(machines[0], dict):
        return {}  # not a table: the settings' own validation says so
    machine = dict(machines[0])
    kind = machine.setdefault("kind", PC_KIND)
    if kind != PC_KIND:
        raise PcConfigError(
            f"la machine « {machine.get('id', '?')} » est de type « {kind} » : "
            f"l'agent du PC ne sert qu'une machine kind = \"{PC_KIND}\" "
            "(utilisez « fabrique edge run » pour les autres)"
        )
    machine.setdefault("pc", {"kind": AUTO_LOCK})
    machine.setdefault("offline_break", dict(DEFAULT_OFFLINE_BREAK))
    overrides: dict[str, Any] = {"machines": [machine]}
    section = data.get("journal")
    in_file = isinstance(section, dict) and "path" in section
    in_env = any(name.upper() in _JOURNAL_ENV for name in env)
    if not in_file and not in_env:
        overrides["journal"] = {"path": str(journal or default_journal_path(env=env))}
    return overrides


def load_pc_settings(path: Path, **overrides: Any) -> EdgeSettings:
    """The settings of ``fabrique pc-agent``: ``path`` completed with the PC defaults.

    ``overrides`` (e.g. the site secret from the environment) win over both.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        tomllib.TOMLDecodeError: the file is not valid TOML.
        PcConfigError: the file does not describe one gaming PC.
        pydantic.ValidationError: the values do not describe a valid edge.
    """
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} not found")
    with path.open("rb") as f:
        data = tomllib.load(f)
    return load_edge_settings(path, **{**pc_defaults(data), **overrides})


def pc_machine(settings: EdgeSettings) -> MachineSettings:
    """The one machine of a pc-agent's settings."""
    (machine,) = settings.machines
    return machine


def check_lock(settings: EdgeSettings) -> str:
    """The session-lock kind the PC will really use (``pc.auto`` resolved for this
    platform), after building the lock once, unopened, so that a platform without a
    lock or an option of the other platform fails before the agent starts.

    Raises:
        DeviceConfigError: no session lock on this platform, or unusable options.
    """
    spec = pc_machine(settings).pc
    if spec is None:  # validated: a gaming_pc always has one
        raise DeviceConfigError("no session lock configured")
    spec.build_session_lock()
    return f"{AUTO_LOCK} → {auto_backend()}" if spec.kind == AUTO_LOCK else spec.kind


def build_pc_agent(settings: EdgeSettings, **kwargs: Any) -> Agent:
    """The agent of one gaming PC (the ordinary agent: its kind notifies the player).

    ``kwargs`` go to :class:`~edge.agent.Agent` (a fake clock in tests).
    """
    from edge.agent import Agent  # paho and the drivers: only for a process that runs

    pc_machine(settings)  # exactly one gaming PC
    return Agent(settings, **kwargs)
