"""The live state: reservations, denials, staff presence and the epoch rule (pure, no I/O)."""

from __future__ import annotations

from datetime import timedelta

from hub.live import LiveState
from hub.policy.model import Decision, Directory, MachineView, UsageView
from protocol.messages import Availability, EdgeStatus, MachineDetail, MachineState, OfflineRule
from tests.hub.hubkit import NOW

GRANT = Decision(granted=True, code="granted", message="ok", member_id=7, zone_id="fablab")
DENY = Decision(granted=False, code="outside_slot", message="non")
STAFF = Decision(
    granted=True, code="granted_staff", message="ok", member_id=9, staff=True, zone_id="fablab"
)


def session(sid: str, machine: str, member: int | None, *, ended: bool = False) -> UsageView:
    return UsageView(
        session_id=sid,
        member_id=member,
        machine_id=machine,
        zone_id="fablab",
        started_at=NOW,
        ended_at=NOW + timedelta(minutes=5) if ended else None,
        used_s=300.0 if ended else 0.0,
    )


def test_a_grant_reserves_its_machine_until_the_session_starts_or_expires() -> None:
    live = LiveState(pending_ttl=timedelta(seconds=10))
    live.record_decision(
        badge="b7", machine_id="laser-1", zone_id="fablab", decision=GRANT, session_id="s1", now=NOW
    )
    view = live.view_for("other", 8, NOW + timedelta(seconds=1))
    assert view.open_sessions["laser-1"].member_id == 7
    assert live.view_for("b7", 7, NOW).member_sessions[0].session_id == "s1"
    assert live.open_sessions() == {}  # nothing committed yet

    live.session_changed(session("s1", "laser-1", 7), "pi-fab")
    assert live.view_for("x", None, NOW).open_sessions["laser-1"].session_id == "s1"
    assert [s.session_id for s in live.view_for("b7", 7, NOW).member_sessions] == ["s1"]

    live.record_decision(
        badge="b7",
        machine_id="printer-1",
        zone_id="fablab",
        decision=GRANT,
        session_id="s2",
        now=NOW,
    )
    assert "printer-1" in live.view_for("x", None, NOW + timedelta(seconds=9)).open_sessions
    later = live.view_for("x", None, NOW + timedelta(seconds=10))
    assert "printer-1" not in later.open_sessions  # the edge never started it
    assert "laser-1" in later.open_sessions


def test_a_handed_out_view_never_changes() -> None:
    live = LiveState()
    live.session_changed(session("s1", "laser-1", 7), "pi-fab")
    before = live.view_for("x", None, NOW)
    live.session_changed(session("s1", "laser-1", 7, ended=True), "pi-fab")
    live.record_decision(
        badge="b", machine_id="pc-1", zone_id="gaming", decision=GRANT, session_id="s9", now=NOW
    )
    assert set(before.open_sessions) == {"laser-1"}
    assert set(live.view_for("x", None, NOW).open_sessions) == {"pc-1"}
    assert live.open_session("s1") is None
    assert live.member_sessions()[7][0].used_s == 300.0


def test_denials_count_within_the_sliding_window() -> None:
    live = LiveState(attempt_window_s=60)
    for second in (0, 10, 20):
        live.record_decision(
            badge="b",
            machine_id="laser-1",
            zone_id="fablab",
            decision=DENY,
            session_id=None,
            now=NOW + timedelta(seconds=second),
        )
    assert live.view_for("b", None, NOW + timedelta(seconds=30)).recent_denials == 3
    assert live.view_for("b", None, NOW + timedelta(seconds=65)).recent_denials == 2
    assert live.view_for("other", None, NOW).recent_denials == 0


def test_staff_presence_lasts_its_configured_time() -> None:
    live = LiveState(staff_presence=timedelta(hours=4))
    mark = live.record_decision(
        badge="s", machine_id="laser-1", zone_id="fablab", decision=STAFF, session_id="s", now=NOW
    )
    assert mark is not None
    assert (mark.member_id, mark.zone_id, mark.until) == (9, "fablab", NOW + timedelta(hours=4))
    assert live.view_for("x", None, NOW + timedelta(hours=3)).staff_present == {
        "fablab": frozenset({9})
    }
    assert live.view_for("x", None, NOW + timedelta(hours=4)).staff_present == {}


def _site(*machines: tuple[str, str]) -> Directory:
    return Directory(
        members={},
        badges={},
        machines={mid: _machine(mid, edge) for mid, edge in machines},
        zones={},
        slots=(),
        exceptions=(),
        quotas={},
    )


def test_epoch_rule_and_machines_follow_their_edge() -> None:
    live = LiveState()
    live.set_directory(_site(("laser-1", "pi-fab"), ("printer-1", "pi-fab")))
    up = EdgeStatus(online=True, epoch=3, machines=("laser-1", "printer-1"))
    assert live.edge_status("pi-fab", up, NOW)
    assert not live.edge_status("pi-fab", EdgeStatus(online=False, epoch=2), NOW)
    assert live.machines_offline() == frozenset()
    assert live.edge_status("pi-fab", EdgeStatus(online=False, epoch=3), NOW)
    assert live.machines_offline() == {"laser-1", "printer-1"}
    assert live.edge_status("pi-fab", EdgeStatus(online=True, epoch=4), NOW)
    assert live.machines_offline() == frozenset()
    assert live.edge_epoch("pi-fab") == 4

    fault = MachineState(machine="printer-1", availability=Availability.FAULT, ts=NOW)
    live.machine_state("pi-fab", "printer-1", fault)
    assert live.view_for("x", None, NOW).machines_offline == {"printer-1"}
    live.machine_state("pi-fab", "printer-1", None)
    assert live.view_for("x", None, NOW).machines_offline == frozenset()


def _machine(mid: str, edge: str) -> MachineView:
    return MachineView(
        id=mid,
        name=mid,
        kind="laser",
        zone_id="fablab",
        edge_id=edge,
        min_age=None,
        offline_rule=OfflineRule.STAFF_ONLY,
        maintenance=False,
        required_trainings=frozenset(),
    )


def test_an_edge_cannot_speak_for_another_edges_machine() -> None:
    live = LiveState()
    live.set_directory(
        Directory(
            members={},
            badges={},
            machines={"laser-1": _machine("laser-1", "pi-fab"), "pc-1": _machine("pc-1", "pc-1")},
            zones={},
            slots=(),
            exceptions=(),
            quotas={},
        )
    )
    fault = MachineState(machine="laser-1", availability=Availability.FAULT, ts=NOW)
    assert not live.machine_state("pc-1", "laser-1", fault)
    assert "laser-1" not in live.machine_states()
    assert live.machines_offline() == frozenset()
    assert live.machine_state("pi-fab", "laser-1", fault)
    assert live.machines_offline() == {"laser-1"}
    live.machine_state("pi-fab", "laser-1", None)
    # A rogue edge listing laser-1 among its machines does not take it offline with it.
    live.edge_status("pc-1", EdgeStatus(online=True, epoch=1, machines=("pc-1", "laser-1")), NOW)
    live.edge_status("pc-1", EdgeStatus(online=False, epoch=1), NOW)
    assert live.machines_offline() == {"pc-1"}


def test_a_print_finishing_after_its_member_left_is_not_counted_as_attended() -> None:
    live = LiveState()
    live.set_directory(_site(("laser-1", "pi-fab"), ("printer-1", "pi-fab")))
    live.session_changed(session("s1", "printer-1", 7), "pi-fab")
    live.session_changed(session("s2", "laser-1", 8), "pi-fab")

    def state(machine: str, sid: str, phase: str) -> MachineState:
        return MachineState(
            machine=machine,
            availability=Availability.IN_USE,
            session_id=sid,
            detail=MachineDetail(kind="printer", state=phase, job=True),
            ts=NOW,
        )

    live.machine_state("pi-fab", "printer-1", state("printer-1", "s1", "active"))
    live.machine_state("pi-fab", "laser-1", state("laser-1", "s2", "active"))
    assert live.unattended_sessions() == frozenset()
    live.machine_state("pi-fab", "printer-1", state("printer-1", "s1", "ending"))
    assert live.unattended_sessions() == {"printer-1"}
    assert set(live.open_sessions()) == {"printer-1", "laser-1"}  # the ledger keeps it open
    # A state about an older session does not mark the current one.
    live.session_changed(session("s1", "printer-1", 7, ended=True), "pi-fab")
    live.session_changed(session("s3", "printer-1", 9), "pi-fab")
    assert live.unattended_sessions() == frozenset()


def test_a_new_directory_forgets_what_was_kept_about_machines_it_no_longer_has() -> None:
    live = LiveState()
    live.set_directory(_site(("laser-1", "pi-fab"), ("printer-1", "pi-fab")))
    fault = MachineState(machine="laser-1", availability=Availability.FAULT, ts=NOW)
    assert live.machine_state("pi-fab", "laser-1", fault)
    assert live.telemetry("pi-fab", "printer-1", b"{}")
    assert not live.telemetry("pi-fab", "ghost", b"{}")  # never kept
    live.record_decision(
        badge="b", machine_id="laser-1", zone_id="", decision=DENY, session_id=None, now=NOW
    )
    assert live.last_decision("laser-1") is not None
    live.set_directory(_site(("printer-1", "pi-game")))  # laser gone, printer moved
    assert live.machine_states() == {}
    assert live._telemetry == {}
    assert live.last_decision("laser-1") is None
    assert live.machines_offline() == frozenset()
