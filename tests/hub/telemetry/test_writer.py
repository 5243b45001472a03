"""The InfluxDB writer through the real client to a real v2 write API (VictoriaMetrics)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.metrics import Metrics
from hub.telemetry import points
from hub.telemetry.writer import InfluxTarget, InfluxWriter
from tests.conftest import free_port
from tests.tsdb import VictoriaMetrics

T0 = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Paris


def samples(vm: VictoriaMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for row in vm.export():
        metric = dict(row["metric"])  # type: ignore[call-overload]
        name = metric.pop("__name__")
        out[(name, tuple(sorted(metric.items())))] = list(row["values"])  # type: ignore[call-overload]
    return out


def test_points_of_every_measurement_arrive_as_written(victoria: VictoriaMetrics) -> None:
    metrics = Metrics()
    writer = InfluxWriter(InfluxTarget(victoria.url, "", "fabrique", "fabrique"), metrics=metrics)
    lines = [
        points.access_line(
            "s1",
            T0,
            granted=False,
            reason="quota_exhausted",
            age_group="9-15",
            zone="gaming",
            machine="pc-1",
            machine_kind="gaming_pc",
        ),
        points.session_line(
            "s1",
            ended_at=T0,
            zone="fablab",
            machine="laser-1",
            machine_kind="laser",
            age_group="16-25",
            programmes=["fab16", "ecole"],
            offline=True,
            staff=False,
            end_reason="badge_out",
            used_s=125.5,
            run_s=61.0,
        ),
        points.job_line(
            "s1",
            ended_at=T0,
            machine="printer-1",
            result="failed",
            duration_s=30.0,
            filament_mm=None,
        ),
        points.occupancy_line(
            "s1", T0, ZoneInfo("Europe/Paris"), zone="fablab", sessions=2, machines=3, in_use=2
        ),
        points.printer_line(
            "s1",
            "printer-1",
            T0,
            {
                "state": "Printing",
                "nozzle_c": 210,
                "bed_c": 60.5,
                "progress": 42.0,
                "connected": True,
                "file": "porte-cles-lea.gcode",
            },
        ),
        points.edge_line("s1", "pi-fab", T0, online=True, clock_offset_s=-0.25, backlog=3),
    ]
    laser = points.laser_line(
        "s1", "laser-1", T0, {"state": "Run", "firing": True, "run_time_s": 12.5}
    )
    assert laser is not None
    lines.append(laser)
    try:
        writer.start()
        assert writer.submit(lines) == len(lines)
        assert writer.wait_idle(30)
    finally:
        writer.stop()
    assert metrics.get("telemetry_lines") == len(lines)
    got = samples(victoria)
    sess = (
        ("age_group", "16-25"),
        ("end_reason", "badge_out"),
        ("machine", "laser-1"),
        ("machine_kind", "laser"),
        ("offline", "true"),
        ("programme", "ecole+fab16"),
        ("site", "s1"),
        ("staff", "false"),
        ("zone", "fablab"),
    )
    assert got[("session_duration_s", sess)] == [125.5]
    assert got[("session_busy_s", sess)] == [61.0]
    access = (
        ("age_group", "9-15"),
        ("machine", "pc-1"),
        ("machine_kind", "gaming_pc"),
        ("reason", "quota_exhausted"),
        ("result", "denied"),
        ("site", "s1"),
        ("zone", "gaming"),
    )
    assert got[("access_n", access)] == [1.0]
    job = (("machine", "printer-1"), ("result", "failed"), ("site", "s1"))
    assert got[("job_success", job)] == [0.0]
    assert got[("job_filament_mm", job)] == [0.0]
    occ = (("hour", "11"), ("site", "s1"), ("weekday", "1"), ("zone", "fablab"))
    assert got[("occupancy_in_use", occ)] == [2.0]
    printer = (("machine", "printer-1"), ("site", "s1"), ("state", "printing"))
    assert got[("printer_nozzle_c", printer)] == [210.0]
    assert got[("printer_state_code", printer)] == [2.0]
    assert got[("printer_connected", printer)] == [1.0]
    assert got[("edge_clock_offset_s", (("edge", "pi-fab"), ("site", "s1")))] == [-0.25]
    assert got[("laser_firing", (("machine", "laser-1"), ("site", "s1"), ("state", "run")))] == [
        1.0
    ]
    names = {name for name, _tags in got}
    assert not any("file" in name for name in names)  # the file name never left the point


def test_a_dead_server_costs_a_bounded_buffer_and_never_blocks(tmp_path: object) -> None:
    metrics = Metrics()
    nobody = f"http://127.0.0.1:{free_port()}"
    target = InfluxTarget(
        nobody,
        "",
        "o",
        "b",
        retry_interval_ms=50,
        max_retries=2,
        max_retry_delay_ms=100,
        max_retry_time_ms=2_000,
        close_wait_s=5,
    )
    writer = InfluxWriter(target, capacity=1_000, metrics=metrics)
    line = points.edge_line("s1", "pi-fab", T0, online=True, clock_offset_s=0.0, backlog=0)
    writer.start()
    try:
        started = time.perf_counter()
        accepted = sum(writer.submit([line] * 100) for _ in range(30))
        elapsed = time.perf_counter() - started
        assert accepted == 1_000  # the bound
        assert metrics.get("telemetry_dropped", "buffer_full") == 2_000
        assert elapsed < 1.0  # handing 3,000 lines over took no network time
        assert writer.wait_idle(30)  # retried, then given up and counted
        assert metrics.get("telemetry_dropped", "write_failed") == 1_000
        assert metrics.get("telemetry_retries") >= 1
        assert writer.submit([line]) == 1  # room again
    finally:
        writer.stop()


def test_a_server_that_comes_back_gets_the_buffered_points(tmp_path: object) -> None:
    from pathlib import Path

    from tests.tsdb import start_victoria

    port = free_port()
    metrics = Metrics()
    target = InfluxTarget(
        f"http://127.0.0.1:{port}",
        "",
        "o",
        "b",
        retry_interval_ms=200,
        max_retries=20,
        max_retry_delay_ms=500,
        max_retry_time_ms=60_000,
    )
    writer = InfluxWriter(target, capacity=10_000, metrics=metrics)
    writer.start()
    vm = None
    try:
        lines = [
            points.edge_line(
                "s1", f"e{i}", T0 + timedelta(seconds=i), online=True, clock_offset_s=0.0, backlog=i
            )
            for i in range(50)
        ]
        assert writer.submit(lines) == 50
        deadline = time.monotonic() + 10
        while metrics.get("telemetry_retries") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metrics.get("telemetry_retries") >= 1  # the server is down: retrying
        vm = start_victoria(Path(str(tmp_path)) / "vm", port)
        assert writer.wait_idle(60)
        assert metrics.get("telemetry_lines") == 50
        got = samples(vm)
        assert sorted(v[0] for (n, _t), v in got.items() if n == "edge_backlog") == [
            float(i) for i in range(50)
        ]
    finally:
        writer.stop()
        if vm is not None:
            vm.stop()
