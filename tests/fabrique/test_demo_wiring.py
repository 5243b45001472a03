"""How the demo wires its machines: which device plays what, with or without OctoPrint."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge.settings import EdgeSettings
from fabrique.demo import data
from fabrique.demo.broker import RunningBroker
from fabrique.demo.octoprint import OctoPrintInstance, dwell_gcode, find_octoprint
from fabrique.demo.runner import DemoOptions, edge_configs, printers_line, visitor_plan
from fabrique.demo.visitors import VisitorPlan
from hub.edgekeys import EdgeKeys
from hub.settings import DEMO_SITE_SECRET, HubSettings
from protocol.messages import Telemetry, utcnow
from protocol.signing import demo_edge_key


@pytest.fixture
def opts(tmp_path: Path) -> DemoOptions:
    return DemoOptions(workdir=tmp_path, speed=20.0)


@pytest.fixture
def broker(tmp_path: Path) -> RunningBroker:
    return RunningBroker("embedded", "127.0.0.1", 1883, None, tmp_path / "b.log")  # type: ignore[arg-type]


@pytest.fixture
def hub(tmp_path: Path) -> HubSettings:
    return HubSettings(demo=True, site="demo", edge_keys_dir=tmp_path / "edge-keys")


def machines(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every machine's settings, validated as the edge process will."""
    found = {}
    for config in configs.values():
        settings = EdgeSettings(**config, site_secret=DEMO_SITE_SECRET)
        for m in settings.machines:
            found[m.id] = m.model_dump(mode="json")
    return found


def test_without_octoprint_every_device_is_simulated(
    opts: DemoOptions, broker: RunningBroker, hub: HubSettings
) -> None:
    found = machines(edge_configs(opts, broker, hub))
    assert set(found) == {m.id for m in data.MACHINES}
    for printer in data.PRINTERS:
        assert found[printer]["printer"] == {"kind": "printer.simulated", "options": {"speed": 20}}
        assert found[printer]["actuator"]["kind"] == "actuator.sim"
    laser = found["laser-1"]
    assert laser["laser"] == {"kind": "laser.simulated", "options": {"speed": 20}}
    assert laser["actuator"]["options"]["latch_on_fault"] is True
    for pc in data.PCS:
        assert found[pc]["pc"]["kind"] == "pc.sim"
        assert found[pc]["actuator"] is None
    plan = VisitorPlan.model_validate(visitor_plan(opts, hub))
    assert all(m.octoprint is None for m in plan.machines.values())
    # The laser opens with someone trained for it, so a short demo always shows a cut.
    opener = next(p for p in data.PEOPLE if p.uid == plan.machines["laser-1"].opener)
    assert opener.trainings["decoupe-laser"] < data.TRAININGS["decoupe-laser"][1]  # still valid
    assert opener.uid in {b.uid for b in plan.machines["laser-1"].badges}


def test_with_octoprint_one_printer_is_followed_through_it(
    opts: DemoOptions, broker: RunningBroker, hub: HubSettings, tmp_path: Path
) -> None:
    octoprint = OctoPrintInstance(tmp_path / "octoprint", tmp_path, 5123, api_key="K" * 20)
    found = machines(edge_configs(opts, broker, hub, octoprint))
    real = found[data.OCTOPRINT_PRINTER]["printer"]
    assert real["kind"] == "printer.octoprint"
    assert real["options"]["url"] == "http://127.0.0.1:5123"
    others = [p for p in data.PRINTERS if p != data.OCTOPRINT_PRINTER]
    assert others
    assert all(found[p]["printer"]["kind"] == "printer.simulated" for p in others)
    plan = VisitorPlan.model_validate(visitor_plan(opts, hub, octoprint))
    with_api = {m for m, p in plan.machines.items() if p.octoprint is not None}
    assert with_api == {data.OCTOPRINT_PRINTER}
    assert plan.machines[data.OCTOPRINT_PRINTER].octoprint.api_key == "K" * 20  # type: ignore[union-attr]


def test_find_octoprint_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "octoprint"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("FABRIQUE_DEMO_OCTOPRINT", str(exe))
    assert find_octoprint() == exe
    monkeypatch.setenv("FABRIQUE_DEMO_OCTOPRINT", str(tmp_path / "missing"))
    assert find_octoprint() is None
    monkeypatch.setenv("FABRIQUE_DEMO_OCTOPRINT", "none")
    assert find_octoprint() is None
    monkeypatch.delenv("FABRIQUE_DEMO_OCTOPRINT")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_octoprint() == exe


def test_a_prepared_basedir_is_reused_with_its_key(tmp_path: Path) -> None:
    (tmp_path / ".fabrique-api-key").write_text("FABRIQUEKEY1234\n")
    instance = OctoPrintInstance(tmp_path / "no-such-octoprint", tmp_path, 5000)
    instance.prepare()  # nothing to run: the executable does not even exist
    assert instance.key == "FABRIQUEKEY1234"
    assert not instance.running
    instance.stop()  # never started: nothing to do


def test_demo_gcode_extrudes_its_filament_and_cools_down() -> None:
    lines = dwell_gcode(2.0, step_ms=100, cool_down=True, filament_mm=300).decode().splitlines()
    extrusions = [float(x.split("E")[1].split()[0]) for x in lines if " E" in x]
    assert extrusions[-1] == pytest.approx(300)
    assert extrusions == sorted(extrusions)
    assert sum(1 for x in lines if x.startswith("G4 ")) == 20
    assert lines[-3:] == ["M104 S0", "M140 S0", "M84"]
    assert "M104 S0" not in dwell_gcode(1.0).decode()


def test_the_status_line_shows_the_printers(monkeypatch: pytest.MonkeyPatch) -> None:
    def tele(machine: str, **values: Any) -> Telemetry:
        return Telemetry(machine=machine, ts=utcnow(), values=values)

    latest = {
        ("pi-fablab", "printer-1"): tele(
            "printer-1", state="Printing", progress=42.4, nozzle_c=209.6
        ),
        ("pi-fablab", "laser-1"): tele("laser-1", state="Idle"),
    }
    live = SimpleNamespace(latest_telemetry=lambda: latest)
    server = SimpleNamespace(hub=SimpleNamespace(live=live))
    line = printers_line(server)  # type: ignore[arg-type]
    assert line == "imprimantes : printer-1 impression 42 % 210 °C, printer-2 —"
    latest[("pi-fablab", "printer-2")] = tele("printer-2", state="Operational", nozzle_c=24.0)
    assert printers_line(server).endswith("printer-2 prête 24 °C")  # type: ignore[arg-type]


def test_each_demo_edge_gets_its_own_key_from_the_hub(
    opts: DemoOptions, broker: RunningBroker, hub: HubSettings
) -> None:
    """Provisioned as in production: no edge key derives from the site secret."""
    keys = EdgeKeys(hub.edge_keys_dir)  # no demo fallback: the files must be there
    seen = set()
    for edge_id, config in edge_configs(opts, broker, hub).items():
        settings = EdgeSettings(**config, site_secret=DEMO_SITE_SECRET)
        assert settings.edge_key_file is not None
        assert stat.S_IMODE(settings.edge_key_file.stat().st_mode) == 0o600
        key = settings.key_bytes()
        assert key == keys.key(edge_id)
        assert key != demo_edge_key(DEMO_SITE_SECRET.encode(), edge_id)
        seen.add(key)
    assert len(seen) == len(data.edges())
