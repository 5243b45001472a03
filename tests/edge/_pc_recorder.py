"""A recording session lock for the pc-agent tests: ``pc.command`` with real processes.

Each command is a small Python script (no shell) that appends its arguments to a
file as one JSON line, so the tests see exactly the argv the agent ran: ``lock``,
``unlock``, or ``notify -- TITLE MESSAGE`` with the French text untouched.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = """\
import json, sys
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(json.dumps(sys.argv[2:], ensure_ascii=False) + "\\n")
"""


@dataclass(frozen=True)
class LockRecorder:
    """The argv of a recording ``pc.command`` lock, and what it recorded."""

    script: Path
    log: Path

    @classmethod
    def create(cls, directory: Path) -> LockRecorder:
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "record.py"
        script.write_text(_SCRIPT, encoding="utf-8")
        return cls(script, directory / "lock-calls.jsonl")

    def argv(self, *args: str) -> list[str]:
        # -I -S: isolated, no site import; quick to start, unaffected by the environment.
        return [sys.executable, "-I", "-S", str(self.script), str(self.log), *args]

    def options(self) -> dict[str, Any]:
        """The ``pc.command`` options recording into :attr:`log`."""
        return {
            "lock_cmd": self.argv("lock"),
            "unlock_cmd": self.argv("unlock"),
            "notify_cmd": self.argv("notify", "--", "{title}", "{message}"),
            "timeout_s": 20.0,
        }

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def actions(self) -> list[str]:
        """``lock`` / ``unlock`` in order (notifications left out)."""
        return [c[0] for c in self.calls() if c[0] in ("lock", "unlock")]

    def locked(self) -> bool:
        """Whether the last lock/unlock command was a lock."""
        actions = self.actions()
        return bool(actions) and actions[-1] == "lock"

    def notifications(self) -> list[str]:
        """The messages notified, in order (the title is checked by the tests)."""
        return [c[3] for c in self.calls() if c[0] == "notify"]

    def titles(self) -> set[str]:
        return {c[2] for c in self.calls() if c[0] == "notify"}
