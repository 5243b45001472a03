"""The running hub feeds InfluxDB (a real VictoriaMetrics) through a real broker:
decisions, sessions, jobs, printer telemetry and edge health, pseudonymous; and
``backfill`` rewrites the same session points from the ledger."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from hub.service import Hub
from hub.telemetry import InfluxWriter, target_of
from hub.telemetry.backfill import backfill
from protocol.messages import AccessDecision, JournalCommand, decode
from tests.conftest import Broker
from tests.hub.hubkit import NOW, Journal, Probe, dumps, migrated, seed, settings_for, wait_until
from tests.tsdb import VictoriaMetrics

pytestmark = pytest.mark.broker

#: Personal data the seed holds: none of it may reach InfluxDB.
FORBIDDEN = ("Alice", "Martin", "Bob", "Diallo", "Sam", "2005", "2013", "gcode", "porte-cles")


def labels_and_names(vm: VictoriaMetrics) -> list[str]:
    out = []
    for row in vm.export():
        metric = row["metric"]
        assert isinstance(metric, dict)
        out += [f"{k}={v}" for k, v in metric.items()]
    return out


def test_hub_writes_pseudonymous_points_and_backfill_rewrites_them(
    mosquitto: Broker, victoria: VictoriaMetrics, tmp_path: object
) -> None:
    db_url = f"sqlite:///{tmp_path}/hub.db"
    factory: sessionmaker[Session] = migrated(db_url)
    ids = seed(factory)
    settings = settings_for(db_url, mosquitto, influx_url=victoria.url)
    hub = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
    t = hub.topics
    j = Journal("pi-fab")
    events = j.session("s-1", "printer-1", ids.badge_alice, NOW, 300.25)
    events.append(
        j.job(
            "s-1",
            "printer-1",
            NOW + timedelta(hours=1),
            3500.0,
            filament_mm=812.5,
            name="porte-cles-alice.gcode",
        )
    )
    events += j.session(
        "s-2", "laser-1", ids.badge_alice, NOW + timedelta(minutes=10), 125.5, run_s=61.0
    )
    hub.start()
    edge = Probe(
        mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab"), t.cmd_access("pi-fab")]
    ).start()
    try:
        assert hub.mqtt.wait_connected(10)
        edge.publish(t.edge_status("pi-fab"), dumps({"v": 1, "online": True, "epoch": 1}))
        for e in events + events:  # every event twice: points must not double
            edge.publish(t.evt("pi-fab"), dumps(e))
        edge.wait_for(
            lambda m: (
                m.topic == t.cmd_journal("pi-fab")
                and decode(JournalCommand, m.payload).ack_through == len(events)
            ),
            timeout=15,
        )
        req = uuid.uuid4().hex
        edge.publish(
            t.req_access("pi-fab"),
            dumps(
                {
                    "v": 1,
                    "req_id": req,
                    "edge": "pi-fab",
                    "machine": "laser-1",
                    "badge": ids.badge_bob,
                    "ts": NOW.isoformat(),
                }
            ),
        )
        edge.wait_for(
            lambda m: (
                m.topic == t.cmd_access("pi-fab")
                and decode(AccessDecision, m.payload).req_id == req
            )
        )
        edge.publish(
            t.tele("pi-fab", "printer-1"),
            dumps(
                {
                    "v": 1,
                    "machine": "printer-1",
                    "ts": NOW.isoformat(),
                    "values": {
                        "state": "Printing",
                        "nozzle_c": 205.5,
                        "progress": 12.0,
                        "file": "porte-cles-bob.gcode",
                    },
                }
            ),
            qos=0,
        )
        assert hub.worker.drain()
        assert hub.telemetry is not None
        wait_until(lambda: hub.metrics.get("telemetry_lines") >= 5, 20, "points written")
        assert hub.telemetry.flush()
    finally:
        edge.stop()
        hub.stop()  # flushes the writer

    rows = victoria.export()
    by_name: dict[str, list[tuple[dict[str, str], list[float]]]] = {}
    for row in rows:
        metric = dict(row["metric"])  # type: ignore[call-overload]
        by_name.setdefault(metric.pop("__name__"), []).append((metric, row["values"]))  # type: ignore[arg-type]
    sessions = sorted(v[0] for _m, v in by_name["session_duration_s"])
    assert sessions == [125.5, 300.25]  # each once, though every event came twice
    laser = next(m for m, _v in by_name["session_busy_s"] if m["machine"] == "laser-1")
    assert laser["age_group"] == "16-25"
    assert laser["machine_kind"] == "laser"
    assert [v for _m, v in by_name["job_filament_mm"]] == [[812.5]]
    ((access, _v),) = by_name["access_n"]
    assert (access["result"], access["age_group"], access["machine_kind"]) == (
        "denied",
        "9-15",
        "laser",
    )
    assert [v for _m, v in by_name["printer_nozzle_c"]] == [[205.5]]
    everything = " ".join(labels_and_names(victoria)).lower()
    for word in (*FORBIDDEN, ids.badge_alice, ids.badge_bob):
        assert word.lower() not in everything, word
    keys = {pair.split("=", 1)[0] for pair in labels_and_names(victoria)}
    assert not keys & {"member", "member_id", "badge", "badge_hash", "file", "name", "session"}

    # The ledger is the truth: backfill rewrites the same points (no duplicates).
    target = target_of(settings)
    assert target is not None
    writer = InfluxWriter(target)
    writer.start()
    try:
        result = backfill(factory, writer, settings.site, NOW - timedelta(days=1))
    finally:
        writer.stop()
    assert (result.sessions, result.jobs, result.dropped) == (2, 1, 0)
    again = sorted(
        v[0]
        for r in victoria.export()
        if r["metric"]["__name__"] == "session_duration_s"  # type: ignore[index]
        for v in [r["values"]]
    )  # type: ignore[misc]
    assert again == [125.5, 300.25]
