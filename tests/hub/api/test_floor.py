"""The floor: sessions (role-shaped), ending one, live machines, edges, alerts, presence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hub.db.models import Alert, EdgeCursor, Role, StaffPresence
from protocol.messages import (
    Availability,
    MachineDetail,
    MachineState,
    Outcome,
    Telemetry,
    utcnow,
)
from tests.hub.api.conftest import Api, add_session, outcome_of


def _floor(api: Api) -> int:
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    for mid, edge in (("laser-1", "edge-1"), ("printer-1", "edge-1"), ("pc-1", "edge-2")):
        response = api.post(
            "/api/machines",
            {
                "id": mid,
                "name": mid.upper(),
                "kind": "generic",
                "zone_id": "fablab",
                "edge_id": edge,
            },
        )
        assert response.status_code == 201
    member = api.post(
        "/api/members", {"display_name": "Noah Petit", "birth_year": 2011, "birth_month": 4}
    ).json()
    return int(member["id"])


def test_sessions_are_shaped_by_role(api: Api) -> None:
    member_id = _floor(api)
    add_session(api, "open-1", member_id=member_id, ended=False, used_s=120)
    add_session(
        api,
        "closed-1",
        member_id=member_id,
        machine_id="printer-1",
        started_at=datetime(2025, 3, 1, 10, tzinfo=UTC),
    )
    views = {
        role: api.get("/api/sessions", role).json()
        for role in (Role.ADMIN, Role.FABMANAGER, Role.ANIMATOR)
    }
    for role, page in views.items():
        assert page["total"] == 2, role
        first = page["items"][0]
        assert first["id"] == "open-1", role
        assert first["open"] is True, role
    assert views[Role.FABMANAGER]["items"][0]["member_id"] == member_id
    assert views[Role.FABMANAGER]["items"][0]["first_name"] == "Noah"
    assert views[Role.ANIMATOR]["items"][0]["member_id"] is None
    assert views[Role.ANIMATOR]["items"][0]["first_name"] == "Noah"
    assert "Petit" not in str(views)
    # Animators cannot re-identify through the member filter.
    assert (
        api.get("/api/sessions", Role.ANIMATOR, params={"member_id": member_id}).status_code == 403
    )
    # Coordinators get aggregates only: a list of sessions with age group, programme,
    # machine and exact times would rebuild the small groups that reports hide.
    assert api.get("/api/sessions", Role.COORDINATOR).status_code == 403
    assert api.get("/api/sessions/closed-1", Role.COORDINATOR).status_code == 403
    one = api.get("/api/sessions/closed-1", Role.ANIMATOR).json()
    assert one["member_id"] is None
    assert one["machine_id"] == "printer-1"


def test_session_filters_and_pagination(api: Api) -> None:
    member_id = _floor(api)
    base = datetime(2025, 3, 1, 9, tzinfo=UTC)
    for i in range(5):
        add_session(
            api,
            f"s{i}",
            member_id=member_id if i % 2 else None,
            machine_id="laser-1" if i < 3 else "pc-1",
            started_at=base + timedelta(days=i),
        )
    add_session(api, "open", member_id=member_id, ended=False)

    def ids(**params: object) -> list[str]:
        response = api.get("/api/sessions", params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert ids(state="open") == ["open"]
    assert ids(state="closed") == ["s4", "s3", "s2", "s1", "s0"]
    assert ids(machine_id="pc-1") == ["s4", "s3"]
    assert ids(member_id=member_id, state="closed") == ["s3", "s1"]
    assert ids(since="2025-03-02T00:00:00+00:00", until="2025-03-04T00:00:00Z") == ["s2", "s1"]
    # A naive datetime is site time (Paris, UTC+1 in March): 10:00 local is 09:00 UTC.
    assert ids(since="2025-03-03T10:00:00", until="2025-03-03T10:00:01") == ["s2"]
    assert ids(limit=2, offset=1, state="closed") == ["s3", "s2"]
    assert (
        api.get("/api/sessions", params={"until": "2025-01-01", "since": "2025-02-01"}).status_code
        == 422
    )
    assert api.get("/api/sessions", params={"since": "0001-01-01T00:00:00"}).status_code == 422
    assert api.get("/api/sessions", params={"state": "paused"}).status_code == 422
    assert api.get("/api/sessions/no/such").status_code == 404
    assert api.get("/api/sessions/" + "x" * 65).status_code == 422
    assert api.get("/api/sessions/unknown").json() == {"detail": "Session introuvable"}


def test_end_session_goes_through_control(api: Api) -> None:
    member_id = _floor(api)
    add_session(api, "open-1", member_id=member_id, ended=False)
    add_session(api, "closed-1", member_id=member_id)
    ended = api.post("/api/sessions/open-1/end", None, Role.ANIMATOR)
    assert ended.status_code == 200, ended.text  # the edge answered: applied
    assert ended.json()["id"] == "open-1"
    assert api.control.ended == ["open-1"]
    assert api.post("/api/sessions/closed-1/end", None).status_code == 409
    # The edge refuses: 409 with its stable code and its French reason.
    api.control.answer = outcome_of(Outcome.REFUSED, "not_active", "La session se termine déjà.")
    refused = api.post("/api/sessions/open-1/end", None)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "La session se termine déjà.", "code": "not_active"}
    api.control.answer = outcome_of(Outcome.EXPIRED, "expired", "Commande arrivée trop tard.")
    late = api.post("/api/sessions/open-1/end", None)
    assert (late.status_code, late.json()["code"]) == (409, "expired")
    # The edge does not answer in time: 504, the command may still be carried out.
    api.control.answer = None
    silent = api.post("/api/sessions/open-1/end", None)
    assert silent.status_code == 504
    assert silent.json()["code"] == "no_answer"
    assert "pas répondu à temps" in silent.json()["detail"]
    api.control.deliver = False
    unreachable = api.post("/api/sessions/open-1/end", None)
    assert unreachable.status_code == 503
    assert "injoignable" in unreachable.json()["detail"]
    assert api.post("/api/sessions/nope/end", None).status_code == 404
    assert api.control.ended == ["open-1"] * 5


def test_extend_session_goes_through_control(api: Api) -> None:
    member_id = _floor(api)
    add_session(api, "open-1", member_id=member_id, ended=False)
    add_session(api, "closed-1", member_id=member_id)
    extended = api.post("/api/sessions/open-1/extend?minutes=20", None, Role.ANIMATOR)
    assert extended.status_code == 200, extended.text
    assert api.control.extended == [("open-1", 20)]
    assert api.post("/api/sessions/open-1/extend?minutes=0", None).status_code == 422
    assert api.post("/api/sessions/open-1/extend?minutes=241", None).status_code == 422
    assert api.post("/api/sessions/closed-1/extend", None).status_code == 409
    assert api.post("/api/sessions/open-1/extend", None, Role.COORDINATOR).status_code == 403
    api.control.deliver = False
    unreachable = api.post("/api/sessions/open-1/extend", None)
    assert unreachable.status_code == 503
    assert "prolongée" in unreachable.json()["detail"]
    assert api.control.extended == [("open-1", 20), ("open-1", 15)]


def test_live_machines_merge_store_states_and_sessions(api: Api) -> None:
    member_id = _floor(api)
    api.post("/api/machines/printer-1/maintenance", {"on": True, "note": "buse"})
    add_session(api, "open-1", member_id=member_id, ended=False, used_s=300)
    now = utcnow()
    api.control.states["laser-1"] = MachineState(
        machine="laser-1",
        availability=Availability.IN_USE,
        session_id="open-1",
        detail=MachineDetail(kind="laser", state="active", job=True, faults=("grbl",)),
        ts=now,
    )
    api.control.edges["edge-1"] = True
    api.control.telemetry["printer-1"] = Telemetry(
        machine="printer-1",
        ts=now,
        # An older edge may still publish the file name: the floor never shows it.
        values={
            "state": "Printing",
            "nozzle_c": 210.5,
            "progress": 42,
            "file": "porte-cles-lea.gcode",
        },
    )
    live = {m["id"]: m for m in api.get("/api/live/machines", Role.ANIMATOR).json()}
    assert set(live) == {"laser-1", "printer-1", "pc-1"}
    laser = live["laser-1"]
    assert laser["availability"] == "in_use"
    assert laser["edge_online"] is True
    assert laser["detail"]["kind"] == "laser"
    assert laser["detail"]["state"] == "active"
    assert laser["detail"]["job"] is True
    assert laser["detail"]["faults"] == ["grbl"]
    assert laser["session"]["first_name"] == "Noah"
    assert laser["session"]["used_s"] == 300
    assert live["printer-1"]["availability"] == "maintenance"
    assert live["printer-1"]["maintenance_note"] == "buse"
    assert live["printer-1"]["telemetry"] == {
        "state": "Printing",
        "nozzle_c": 210.5,
        "progress": 42,
    }
    assert live["printer-1"]["telemetry_ts"] is not None
    assert laser["telemetry"] == {}
    assert laser["telemetry_ts"] is None
    assert live["pc-1"]["availability"] == "unknown"
    assert live["pc-1"]["edge_online"] is None
    coordinator = api.get("/api/live/machines", Role.COORDINATOR).json()
    laser_c = next(m for m in coordinator if m["id"] == "laser-1")
    assert laser_c["session"]["first_name"] is None
    assert api.get("/api/live/machines", params={"zone_id": "gaming"}).json() == []


def test_edges_and_alerts(api: Api) -> None:
    _floor(api)
    api.control.edges["edge-3"] = False
    with api.db() as s:
        s.add(
            EdgeCursor(
                edge_id="edge-2",
                contiguous_through=41,
                max_seen=43,
                online=True,
                version="1.2.0",
                last_seen=utcnow(),
            )
        )
        s.add(Alert(kind="print_failed", machine_id="printer-1", detail="thermal runaway"))
        s.add(Alert(kind="edge_offline", edge_id="edge-2", resolved_at=utcnow()))
        s.commit()
    edges = {e["id"]: e for e in api.get("/api/edges", Role.ANIMATOR).json()}
    assert set(edges) == {"edge-1", "edge-2", "edge-3"}
    assert edges["edge-1"]["machines"] == ["laser-1", "printer-1"]
    assert edges["edge-1"]["online"] is None
    assert edges["edge-2"]["online"] is True
    assert edges["edge-2"]["journal_max_seen"] == 43
    assert edges["edge-3"]["online"] is False
    assert edges["edge-3"]["machines"] == []
    alerts = api.get("/api/alerts", Role.ANIMATOR).json()
    assert [a["kind"] for a in alerts] == ["print_failed"]
    every = api.get("/api/alerts", params={"include_resolved": "true"}).json()
    assert len(every) == 2
    resolved = api.post(f"/api/alerts/{alerts[0]['id']}/resolve", None, Role.ANIMATOR)
    assert resolved.status_code == 200
    assert resolved.json()["resolved_at"]
    assert api.post(f"/api/alerts/{alerts[0]['id']}/resolve", None).status_code == 409
    assert api.get("/api/alerts").json() == []


def test_staff_presence(api: Api) -> None:
    _floor(api)
    before = api.control.changes
    marked = api.post("/api/presence", {"zone_id": "fablab"}, Role.ANIMATOR)
    assert marked.status_code == 201, marked.text
    body = marked.json()
    assert body["member_id"] == api.members[Role.ANIMATOR]
    assert body["first_name"] == "Animator"
    until = datetime.fromisoformat(body["until"])
    expected = utcnow() + timedelta(hours=api.settings.staff_presence_h)
    assert abs((until - expected).total_seconds()) < 60
    again = api.post("/api/presence", {"zone_id": "fablab", "hours": 1}, Role.ANIMATOR).json()
    assert again["id"] == body["id"]  # extended, not duplicated
    api.post("/api/presence", {"zone_id": "fablab"}, Role.FABMANAGER)
    present = api.get("/api/presence", Role.ANIMATOR).json()
    assert {p["member_id"] for p in present} == {
        api.members[Role.ANIMATOR],
        api.members[Role.FABMANAGER],
    }
    assert api.control.changes == before + 3
    assert api.post("/api/presence", {"zone_id": "cuisine"}, Role.ANIMATOR).status_code == 422
    assert (
        api.post("/api/presence", {"zone_id": "fablab", "hours": 30}, Role.ANIMATOR).status_code
        == 422
    )
    assert api.delete("/api/presence", Role.ANIMATOR).status_code == 204
    assert api.delete("/api/presence", Role.ANIMATOR).status_code == 409
    present = api.get("/api/presence").json()
    assert [p["member_id"] for p in present] == [api.members[Role.FABMANAGER]]
    with api.db() as s:
        rows = list(
            s.scalars(
                select(StaffPresence).where(StaffPresence.member_id == api.members[Role.ANIMATOR])
            )
        )
    assert len(rows) == 1
    assert rows[0].until <= utcnow()
    # An account without a member cannot be present.
    api.patch(f"/api/accounts/{api.accounts[Role.FABMANAGER]}", {"member_id": None})
    alone = api.post("/api/presence", {"zone_id": "fablab"}, Role.FABMANAGER)
    assert alone.status_code == 409
    assert "aucun membre" in alone.json()["detail"]
