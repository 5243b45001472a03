"""Every TOML snippet of docs/machines.md is a valid machine, configured as the text says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge.kinds import session_config
from edge.settings import EdgeSettings, MachineSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "machines.md"
SNIPPETS = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
HEADER = {
    "site": "s-doc",
    "edge_id": "pi-doc",
    "site_secret": "0123456789abcdef-doc-tests-r4m8w2",
    "edge_key": "ab" * 32,
    "journal": {"path": "/tmp/doc-journal.db"},
}


def machine(kind: str) -> tuple[MachineSettings, EdgeSettings]:
    (snippet,) = [s for s in SNIPPETS if f'kind = "{kind}"' in s]
    values: dict[str, Any] = {**HEADER, **tomllib.loads(snippet)}
    settings = EdgeSettings(**values)
    (m,) = settings.machines
    assert m.kind == kind
    return m, settings


def test_the_doc_has_one_snippet_per_kind() -> None:
    assert len(SNIPPETS) == 3


def test_the_printer_snippet() -> None:
    m, settings = machine("printer")
    assert m.printer is not None
    assert m.printer.kind == "printer.octoprint"
    assert m.actuator is not None
    assert m.actuator.kind == "actuator.shelly"
    assert (m.cooldown_below_c, m.cooldown_max_min) == (50, 10)
    config = session_config(m, settings)
    assert config.hold_while_job
    assert config.end_on_job_done
    assert not config.cut_on_fault
    assert config.cooldown_s == 600


def test_the_laser_snippet() -> None:
    m, settings = machine("laser")
    assert m.laser is not None
    assert m.laser.kind == "laser.grbl"
    assert m.link_grace_s == 30
    config = session_config(m, settings)
    assert config.cut_on_fault
    assert config.cut_on_link_loss
    assert config.cooldown_s == 0


def test_the_metered_plug_snippet() -> None:
    m, settings = machine("generic")
    assert m.actuator is not None
    assert m.actuator.kind == "actuator.shelly"
    assert (m.busy_above_w, m.idle_timeout_min) == (15.0, 20)
    config = session_config(m, settings)
    assert not config.hold_while_job
    assert config.cooldown_s == 0


@pytest.mark.parametrize(
    ("key", "value"), [("cooldown_below_c", 0), ("cooldown_max_min", -1), ("cooldown_max_min", 121)]
)
def test_cool_down_settings_are_bounded(key: str, value: float) -> None:
    (snippet,) = [s for s in SNIPPETS if 'kind = "printer"' in s]
    values: dict[str, Any] = {**HEADER, **tomllib.loads(snippet)}
    values["machines"][0][key] = value
    with pytest.raises(ValueError, match=key):
        EdgeSettings(**values)
