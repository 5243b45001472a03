"""The feed's minute points (occupancy, edge health) and the backfill command."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from fabrique.cli import app
from hub.db.engine import transaction
from hub.db.models import UsageSession
from hub.live import LiveState
from hub.policy.model import Directory, MachineView, OfflineRule, UsageView, ZoneView
from hub.telemetry.feed import TelemetryFeed
from protocol.messages import EdgeStatus, EndReason, SessionEnded
from tests.hub.hubkit import migrated
from tests.tsdb import VictoriaMetrics


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.got = threading.Event()

    def submit(self, lines: Any) -> int:
        self.lines += list(lines)
        self.got.set()
        return len(lines)


def machine(mid: str, zone: str) -> MachineView:
    return MachineView(
        id=mid, name=mid, kind="laser", zone_id=zone, edge_id="pi-fab", min_age=None,
        offline_rule=OfflineRule.ALLOW, maintenance=False, required_trainings=frozenset(),
    )  # fmt: skip


def test_minute_points_give_occupancy_and_edge_health() -> None:
    now = datetime.now(UTC)
    directory = Directory(
        members={}, badges={},
        machines={"laser-1": machine("laser-1", "fablab"), "laser-2": machine("laser-2", "fablab")},
        zones={"fablab": ZoneView(id="fablab", name="FabLab", capacity=None)},
        slots=(), exceptions=(), quotas={},
    )  # fmt: skip
    live = LiveState()
    live.set_directory(directory)
    live.edge_status("pi-fab", EdgeStatus(online=True, epoch=1), now)
    view = UsageView(
        session_id="s", member_id=1, machine_id="laser-1", zone_id="fablab",
        started_at=now, ended_at=None, used_s=0.0,
    )  # fmt: skip
    live.session_changed(view, "pi-fab")
    sink = Sink()
    feed = TelemetryFeed(
        "s1", sink, cast(Any, None), live, lambda: directory, tz=ZoneInfo("Europe/Paris"),
        period_s=0.05, minute_s=1.0,
    )  # fmt: skip
    event = SessionEnded.model_validate({
        "edge": "pi-fab", "seq": 7, "event_id": "e7", "ts": now.isoformat(),
        "body": {"session_id": "x", "machine": "laser-1", "reason": "badge_out",
                 "duration_s": 1.0, "ended_at": now.isoformat()}})  # fmt: skip
    feed.event("pi-fab", event)
    feed.acknowledged("pi-fab", 4)
    feed.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not any(line.startswith("occupancy") for line in sink.lines):
            assert datetime.now(UTC) < deadline, sink.lines
            sink.got.wait(0.5)
            sink.got.clear()
    finally:
        feed.stop()
    occupancy = next(line for line in sink.lines if line.startswith("occupancy"))
    assert "zone=fablab" in occupancy
    assert "in_use=1.0" in occupancy
    assert "machines=2.0" in occupancy
    health = next(line for line in sink.lines if line.startswith("edge,"))
    assert "online=1.0" in health
    assert "backlog=3.0" in health  # seq 7 seen, 4 acknowledged


def test_backfill_command_rewrites_the_ledger(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    db_url = f"sqlite:///{tmp_path}/hub.db"
    factory = migrated(db_url)
    ended = datetime.now(UTC) - timedelta(hours=1)
    with transaction(factory) as s:
        for i in range(3):
            s.add(
                UsageSession(
                    id=f"s-{i}", edge_id="pi-fab", machine_id="laser-1", zone_id="fablab",
                    age_group="16-25", programmes=["fab16"], machine_kind="laser",
                    started_at=ended - timedelta(minutes=30), ended_at=ended + timedelta(seconds=i),
                    end_reason=EndReason.BADGE_OUT, used_s=600.0 + i, member_id=None,
                )
            )  # fmt: skip
    env = {"FABRIQUE_DATABASE_URL": db_url, "FABRIQUE_INFLUX_URL": victoria.url,
           "FABRIQUE_DEMO": "true", "FABRIQUE_SITE": "s1"}  # fmt: skip
    since = (ended - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    for _ in range(2):  # twice: the same points, no duplicates
        result = CliRunner().invoke(app, ["telemetry", "backfill", "--since", since], env=env)
        assert result.exit_code == 0, result.output
        assert "3 sessions" in result.output
    durations = sorted(
        v for r in victoria.export() if r["metric"]["__name__"] == "session_duration_s"  # type: ignore[index]
        for v in r["values"]  # type: ignore[attr-defined]
    )  # fmt: skip
    assert durations == [600.0, 601.0, 602.0]
