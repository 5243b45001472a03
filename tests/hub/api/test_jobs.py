"""Print jobs: the listing for fabmanagers and admins, filters, and run time on sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.db.models import Member, Role
from tests.hub.api.conftest import Api, add_job, add_session

BASE = datetime(2025, 3, 10, 14, tzinfo=UTC)


def _member(api: Api, name: str) -> int:
    with api.db() as s:
        member = Member(display_name=name, birth_year=2008, birth_month=5)
        s.add(member)
        s.commit()
        return member.id


def _jobs(api: Api) -> tuple[int, int]:
    lina, noe = _member(api, "Lina Haddad"), _member(api, "Noé Petit")
    add_session(api, "s-lina", member_id=lina, machine_id="printer-1", started_at=BASE)
    add_job(
        api,
        session_id="s-lina",
        member_id=lina,
        ended_at=BASE + timedelta(hours=2),
        name="engrenage.gcode",
        filament_mm=4200.0,
    )
    add_job(
        api,
        session_id="s-lina",
        member_id=lina,
        machine_id="printer-2",
        ended_at=BASE + timedelta(hours=3),
        result="failed",
        filament_mm=None,
    )
    add_job(api, session_id="s-noe", member_id=noe, ended_at=BASE + timedelta(days=2))
    add_job(api, session_id=None, member_id=None, ended_at=BASE + timedelta(days=3))
    return lina, noe


def test_jobs_list_newest_first_with_who_started_them(api: Api) -> None:
    lina, _ = _jobs(api)
    response = api.get("/api/jobs", Role.FABMANAGER)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 4
    ended = [j["ended_at"] for j in page["items"]]
    assert ended == sorted(ended, reverse=True)
    first = page["items"][-1]
    assert first["job"] == "engrenage.gcode"
    assert (first["member_id"], first["first_name"]) == (lina, "Lina")
    assert first["session_id"] == "s-lina"
    assert first["result"] == "done"
    assert first["filament_mm"] == 4200.0
    assert first["filament_g"] == 12.5  # 4.2 m of 1.75 mm PLA
    staff = page["items"][0]
    assert (staff["session_id"], staff["member_id"], staff["first_name"]) == (None, None, None)
    failed = page["items"][-2]
    assert (failed["result"], failed["filament_mm"], failed["filament_g"]) == ("failed", None, None)


def test_jobs_filters(api: Api) -> None:
    lina, noe = _jobs(api)

    def ids(role: Role = Role.ADMIN, **params: object) -> list[str]:
        response = api.get("/api/jobs", role, params=params)
        assert response.status_code == 200, response.text
        return [j["ended_at"][:13] for j in response.json()["items"]]

    assert ids(machine_id="printer-2") == ["2025-03-10T17"]
    assert ids(Role.FABMANAGER, member_id=lina) == ["2025-03-10T17", "2025-03-10T16"]
    assert ids(member_id=noe) == ["2025-03-12T14"]
    assert ids(result="failed") == ["2025-03-10T17"]
    # Naive times are the site's (Paris, UTC+1 in March): 16:00 local is 15:00 UTC.
    assert ids(since="2025-03-10T16:00", until="2025-03-12") == ["2025-03-10T17", "2025-03-10T16"]
    assert ids(zone_id="gaming") == []
    page = api.get("/api/jobs", params={"limit": 1, "offset": 1}).json()
    assert (page["total"], len(page["items"])) == (4, 1)


def test_jobs_bad_queries_answer_in_french(api: Api) -> None:
    backwards = api.get("/api/jobs", params={"since": "2025-03-10", "until": "2025-03-01"})
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["msg"] == "until doit suivre since"
    assert backwards.json()["detail"][0]["loc"] == ["query", "until"]
    colour = api.get("/api/jobs", params={"result": "colour"})
    assert colour.status_code == 422
    assert colour.json()["detail"][0]["msg"] == (
        "Valeur non autorisée (attendu : 'done', 'failed', 'cancelled' ou 'lost')"
    )


def test_coordinators_and_animators_get_no_job_list(api: Api) -> None:
    _jobs(api)
    for role in (Role.COORDINATOR, Role.ANIMATOR, Role.MEMBER):
        response = api.get("/api/jobs", role)
        assert response.status_code == 403
        assert "Lina" not in response.text


def test_sessions_show_the_machine_run_time(api: Api) -> None:
    add_session(api, "cut", member_id=None, used_s=1200, run_s=340.5)
    add_session(api, "print", member_id=None, machine_id="printer-1", machine_kind="printer")
    for role in (Role.ADMIN, Role.FABMANAGER):
        items = {s["id"]: s for s in api.get("/api/sessions", role).json()["items"]}
        assert items["cut"]["run_s"] == 340.5
        assert items["print"]["run_s"] is None
    assert api.get("/api/sessions/cut").json()["run_s"] == 340.5
