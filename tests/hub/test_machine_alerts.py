"""The alerts about machines (hub.alerts): faults that resolve themselves, a machine
running without a session, and the live record of the running job (issue 9)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import Alert
from hub.ledger import Ledger
from hub.live import LiveState
from hub.policy.model import PolicyConfig
from protocol.messages import Availability, MachineDetail, MachineState, decode_event
from tests.hub.hubkit import NOW, Journal, Seed, dumps, migrated, seed
from tests.hub.test_live import _site


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[sessionmaker[Session], Seed]]:
    factory = migrated(db_url)
    ids = seed(factory)
    yield factory, ids
    factory.kw["bind"].dispose()


def alerts(factory: sessionmaker[Session]) -> list[tuple[str, str | None, bool]]:
    with factory() as s:
        rows = s.scalars(select(Alert).order_by(Alert.id)).all()
        return [(a.kind, a.machine_id, a.resolved_at is None) for a in rows]


def state(
    machine: str, *, faults: tuple[str, ...] = (), foreign: bool = False, at_s: float = 0
) -> MachineState:
    availability = Availability.FAULT if faults else Availability.FREE
    return MachineState(
        machine=machine,
        availability=Availability.IN_USE if foreign else availability,
        detail=MachineDetail(
            kind="printer", state="idle", job=foreign, foreign_job=foreign, faults=faults
        ),
        ts=NOW + timedelta(seconds=at_s),
    )


def test_fault_alerts_resolve_when_the_machine_is_healthy_and_keep_their_history(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    ledger = Ledger(factory, PolicyConfig())
    j = Journal(ids.edge_fab)
    unreachable = {"machine": "printer-1", "code": "printer_unreachable", "detail": "gone"}
    ledger.apply(decode_event(dumps(j.event("machine_fault", unreachable))))
    ledger.apply(
        decode_event(dumps(j.event("machine_fault", {"machine": "laser-1", "code": "alarm"})))
    )
    cut = {"machine": "printer-1", "code": "fault_hold_expired", "detail": "cut"}
    ledger.apply(decode_event(dumps(j.event("machine_fault", cut))))
    assert alerts(factory) == [
        ("printer_unreachable", "printer-1", True),
        ("machine_fault", "laser-1", True),
        ("fault_hold_expired", "printer-1", True),
    ]
    # Still faulted: nothing resolves; another machine healthy changes nothing here.
    ledger.alerts.machine_state(
        ids.edge_fab, "printer-1", state("printer-1", faults=("printer_unreachable",), at_s=1)
    )
    assert [open_ for *_, open_ in alerts(factory)] == [True, True, True]
    ledger.alerts.machine_state(ids.edge_fab, "printer-1", state("printer-1", at_s=2))
    # The fault resolved itself (row kept); the power cut waits for staff.
    assert alerts(factory) == [
        ("printer_unreachable", "printer-1", False),
        ("machine_fault", "laser-1", True),
        ("fault_hold_expired", "printer-1", True),
    ]


def test_a_fault_that_arrives_after_the_machine_recovered_is_recorded_resolved(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    ledger = Ledger(factory, PolicyConfig())
    ledger.alerts.machine_state(ids.edge_fab, "laser-1", state("laser-1", at_s=60))
    j = Journal(ids.edge_fab)  # replayed late: the fault was before the healthy state
    ledger.apply(
        decode_event(dumps(j.event("machine_fault", {"machine": "laser-1", "code": "alarm"})))
    )
    assert alerts(factory) == [("machine_fault", "laser-1", False)]


def test_running_without_a_session_opens_one_alert_per_machine_until_it_stops(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    ledger = Ledger(factory, PolicyConfig())
    for at in (0, 1):  # republished (retained, reconnect): still one alert
        ledger.alerts.machine_state(
            ids.edge_fab, "printer-1", state("printer-1", foreign=True, at_s=at)
        )
    ledger.alerts.machine_state(ids.edge_fab, "laser-1", state("laser-1", foreign=True))
    assert alerts(factory) == [
        ("running_without_session", "printer-1", True),
        ("running_without_session", "laser-1", True),
    ]
    # The edge going offline says nothing: the alert stays.
    offline = MachineState(machine="printer-1", availability=Availability.OFFLINE, ts=NOW)
    ledger.alerts.machine_state(ids.edge_fab, "printer-1", offline)
    ledger.alerts.machine_state(ids.edge_fab, "printer-1", state("printer-1", at_s=5))
    assert alerts(factory) == [
        ("running_without_session", "printer-1", False),
        ("running_without_session", "laser-1", True),
    ]


def test_the_live_state_refuses_a_machine_running_without_a_session_to_decisions() -> None:
    live = LiveState()
    live.set_directory(_site(("printer-1", "pi-fab")))  # states of unknown machines are dropped
    assert live.machine_state("pi-fab", "printer-1", state("printer-1", foreign=True))
    assert live.view_for("b" * 64, None, NOW).machines_foreign == frozenset({"printer-1"})
    live.machine_state("pi-fab", "printer-1", state("printer-1"))
    assert live.view_for("b" * 64, None, NOW).machines_foreign == frozenset()


def test_the_running_job_record_survives_a_hub_restart(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    ledger = Ledger(factory, PolicyConfig())
    j = Journal(ids.edge_fab)
    started = {"machine": "printer-1", "session_id": None, "file_name": "vase.gcode"}
    ledger.apply(decode_event(dumps(j.event("job_started", started))))

    def loaded() -> dict[str, str | None]:
        live = LiveState()
        with factory() as s:
            live.load(s, NOW)
        return {m: job.file_name for m, job in live.running_jobs().items()}

    assert loaded() == {"printer-1": "vase.gcode"}
    ended = {
        "machine": "printer-1",
        "job": "vase.gcode",
        "result": "cancelled",
        "duration_s": 60.0,
        "ended_at": NOW.isoformat(),
    }
    ledger.apply(decode_event(dumps(j.event("job_ended", ended))))
    assert loaded() == {}
