"""Usage totals and the CSV report: exact sums, distinct participants, small groups hidden."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from hub.db.models import MachineJob, Member, Role, UsageSession
from tests.hub.api.conftest import Api, add_job, add_session

BASE = datetime(2025, 3, 10, 14, tzinfo=UTC)


def _members(api: Api, n: int) -> list[int]:
    with api.db() as s:
        rows = [Member(display_name=f"Jeune {i}", birth_year=2010, birth_month=1) for i in range(n)]
        s.add_all(rows)
        s.commit()
        return [m.id for m in rows]


def _usage(api: Api) -> None:
    """Laser: 6 people (one twice); printer: 3 people; one erased (anonymous) session."""
    people = _members(api, 9)
    for i, mid in enumerate(people[:6]):
        add_session(
            api,
            f"laser-{i}",
            member_id=mid,
            machine_id="laser-1",
            used_s=600,
            started_at=BASE + timedelta(hours=i),
            programmes=["fablab-9-15"],
            age_group="9-15",
            machine_kind="laser",
        )
    add_session(
        api,
        "laser-again",
        member_id=people[0],
        machine_id="laser-1",
        used_s=300,
        started_at=BASE + timedelta(days=1),
        programmes=["fablab-9-15"],
        age_group="9-15",
        machine_kind="laser",
    )
    for i, mid in enumerate(people[6:]):
        add_session(
            api,
            f"printer-{i}",
            member_id=mid,
            machine_id="printer-1",
            used_s=3600,
            started_at=BASE + timedelta(hours=i),
            programmes=["fablab-16-25", "esport"],
            age_group="16-25",
            machine_kind="printer",
        )
    add_session(
        api,
        "erased",
        member_id=None,
        machine_id="printer-1",
        used_s=1800,
        started_at=BASE,
        programmes=["esport"],
        age_group="16-25",
        machine_kind="printer",
    )
    add_session(
        api,
        "april",
        member_id=people[1],
        machine_id="laser-1",
        used_s=60,
        started_at=datetime(2025, 4, 2, 10, tzinfo=UTC),
        age_group="9-15",
        machine_kind="laser",
        programmes=["fablab-9-15"],
    )


def _rows(api: Api, role: Role, **params: object) -> dict[str, dict[str, object]]:
    response = api.get("/api/usage/totals", role, params=params)
    assert response.status_code == 200, response.text
    return {r["key"]: r for r in response.json()["rows"]}


def test_totals_per_machine_for_identifying_roles(api: Api) -> None:
    _usage(api)
    rows = _rows(api, Role.FABMANAGER, by="machine", since="2025-03-01", until="2025-04-01")
    assert rows["laser-1"]["seconds"] == 6 * 600 + 300
    assert rows["laser-1"]["sessions"] == 7
    assert rows["laser-1"]["participants"] == 6
    assert rows["printer-1"]["seconds"] == 3 * 3600 + 1800
    assert rows["printer-1"]["sessions"] == 4
    assert rows["printer-1"]["participants"] == 3  # the erased session is nobody
    assert rows["printer-1"]["hours"] == round((3 * 3600 + 1800) / 3600, 2)


def test_coordinators_never_see_groups_under_five_people(api: Api) -> None:
    _usage(api)
    response = api.get(
        "/api/usage/totals",
        Role.COORDINATOR,
        params={"by": "machine", "since": "2025-03-01", "until": "2025-04-01"},
    )
    body = response.json()
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["laser-1"]["participants"] == 6
    assert not rows["laser-1"]["masked"]
    printer = rows["printer-1"]  # 3 people: the row shows, its figures do not
    assert printer["masked"]
    assert printer["participants"] == "< 5"
    assert [printer[k] for k in ("sessions", "seconds", "hours", "jobs", "filament_m")] == [
        None
    ] * 5
    assert body["hidden_groups"] == 1
    assert body["min_group_size"] == 5
    members = api.get("/api/usage/totals", Role.COORDINATOR, params={"by": "member"})
    assert members.status_code == 403
    csv_members = api.get("/api/usage/report.csv", Role.COORDINATOR, params={"by": "member"})
    assert csv_members.status_code == 403
    admin = api.get("/api/usage/totals", Role.ADMIN, params={"by": "member"}).json()
    assert admin["hidden_groups"] == 0
    assert admin["min_group_size"] is None
    labels = {r["label"] for r in admin["rows"]}
    assert "Jeune 0" in labels


def test_other_dimensions(api: Api) -> None:
    _usage(api)
    programmes = _rows(api, Role.ADMIN, by="programme")
    assert programmes["esport"]["sessions"] == 4
    assert programmes["esport"]["participants"] == 3
    assert programmes["fablab-16-25"]["sessions"] == 3
    assert programmes["fablab-9-15"]["sessions"] == 8
    ages = _rows(api, Role.COORDINATOR, by="age_group")
    assert ages["16-25"]["participants"] == "< 5"  # 3 people
    assert ages["16-25"]["hours"] is None
    assert ages["9-15"]["participants"] == 6
    kinds = _rows(api, Role.ADMIN, by="machine_kind")
    assert set(kinds) == {"laser", "printer"}
    months = _rows(api, Role.ADMIN, by="month")
    assert months["2025-03"]["sessions"] == 11
    assert months["2025-03"]["label"] == "mars 2025"
    assert months["2025-04"]["sessions"] == 1
    assert api.get("/api/usage/totals", params={"by": "colour"}).status_code == 422


def test_csv_report(api: Api) -> None:
    _usage(api)
    response = api.get(
        "/api/usage/report.csv",
        Role.COORDINATOR,
        params={"by": "machine", "since": "2025-03-01", "until": "2025-04-01"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="fabrique-usage-machine-20250301-20250401.csv"'
    text = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == [
        "site",
        "du",
        "au",
        "machine",
        "machine_libelle",
        "participants",
        "nouveaux_participants",
        "sessions",
        "heures",
        "duree_moyenne_min",
        "heures_fonctionnement",
        "impressions",
        "heures_impression",
        "filament_m",
        "filament_g",
        "heures_machine_tenue",
        "impressions_sans_session",
        "heures_impression_sans_session",
        "filament_estime_m",
    ]
    assert rows[1][:5] == ["test", "2025-03-01", "2025-04-01", "laser-1", "laser-1"]
    # 6 people, all new (first visit in March); 3900 s over 7 sessions.
    assert rows[1][5:] == [
        *("6", "6", "7", "1,08", "9,3", "0,00", "0", "0,00", "0,00", "0,0"),
        *("1,08", "0", "0,00", "0,00"),
    ]
    # The printer's 3 people: shown as "< 5", every figure withheld.
    assert rows[2][3] == "printer-1"
    assert rows[2][5:] == ["< 5"] + [""] * 13
    assert len(rows) == 3


def test_csv_cells_cannot_carry_formulas(api: Api) -> None:
    mid = _members(api, 1)[0]
    with api.db() as s:
        member = s.get(Member, mid)
        assert member is not None
        member.display_name = '=HYPERLINK("http://x")'
        s.commit()
    add_session(api, "x", member_id=mid)
    text = api.get("/api/usage/report.csv", params={"by": "member"}).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[1][4].startswith("'=")


def _printing(api: Api) -> list[int]:
    """Printer: 5 people, each one session with one print (one failed, one unmeasured);
    a staff print with no session; laser: 2 sessions with beam time, 1 unmeasured."""
    people = _members(api, 5)
    for i, mid in enumerate(people):
        add_session(
            api,
            f"print-{i}",
            member_id=mid,
            machine_id="printer-1",
            machine_kind="printer",
            used_s=900,
            started_at=BASE + timedelta(hours=i),
            programmes=["fablab-16-25"],
        )
        add_job(
            api,
            session_id=f"print-{i}",
            member_id=mid,
            ended_at=BASE + timedelta(hours=i + 2),
            duration_s=5400,
            filament_mm=None if i == 4 else 2500.0,
            result="failed" if i == 3 else "done",
        )
    add_job(api, session_id=None, member_id=None, ended_at=BASE, duration_s=1800, filament_mm=500)
    # Ended after the period: not counted, although its session started in it.
    add_job(
        api,
        session_id="print-0",
        member_id=people[0],
        ended_at=datetime(2025, 4, 1, 1, tzinfo=UTC),
        filament_mm=99_000,
    )
    for i, run in enumerate((1800.0, 900.0, None)):
        add_session(
            api,
            f"cut-{i}",
            member_id=people[i],
            used_s=3600,
            run_s=run,
            started_at=BASE + timedelta(days=1, hours=i),
        )
    return people


def test_totals_count_print_jobs_filament_and_laser_beam_time(api: Api) -> None:
    _printing(api)
    march = {"since": "2025-03-01", "until": "2025-04-01"}
    rows = _rows(api, Role.FABMANAGER, by="machine", **march)
    printer = rows["printer-1"]
    assert printer["jobs"] == 6  # five members' prints, whatever the result, and staff's
    assert printer["print_hours"] == round((5 * 5400 + 1800) / 3600, 2)
    assert printer["filament_m"] == 10.5  # 4 x 2.5 m + 0.5 m; the unmeasured one adds 0
    # 1.75 mm PLA at 1.24 g/cm3: about 2.98 g per metre.
    assert printer["filament_g"] == 31.3
    assert printer["run_hours"] == 0
    assert printer["sessions"] == 5
    laser = rows["laser-1"]
    assert laser["run_hours"] == round(2700 / 3600, 2)
    assert laser["jobs"] == 0
    assert laser["hours"] == 3.0

    # A job without a session takes its kind from the machine (unknown machine: none).
    kinds = _rows(api, Role.ADMIN, by="machine_kind", **march)
    assert (kinds["printer"]["jobs"], kinds[""]["jobs"]) == (5, 1)
    assert api.post("/api/zones", {"id": "fablab", "name": "FabLab"}).status_code == 201
    printer_1 = {"id": "printer-1", "name": "Prusa", "kind": "printer", "zone_id": "fablab"}
    assert api.post("/api/machines", printer_1 | {"edge_id": "edge-1"}).status_code == 201
    kinds = _rows(api, Role.ADMIN, by="machine_kind", **march)
    assert kinds["printer"]["jobs"] == 6
    # Jobs follow the other dimensions too: their session's programmes, their age group.
    programmes = _rows(api, Role.ADMIN, by="programme", **march)
    assert programmes["fablab-16-25"]["jobs"] == 5
    assert programmes[""]["jobs"] == 1  # the staff print has no session
    months = _rows(api, Role.ADMIN, by="month")
    assert months["2025-04"]["jobs"] == 1
    assert months["2025-04"]["filament_m"] == 99.0
    assert months["2025-04"]["sessions"] == 0


def test_print_totals_of_small_groups_are_hidden_from_coordinators(api: Api) -> None:
    _printing(api)
    march = {"since": "2025-03-01", "until": "2025-04-01"}
    rows = _rows(api, Role.COORDINATOR, by="machine", **march)
    assert rows["printer-1"]["jobs"] == 6  # 5 people
    assert rows["laser-1"]["participants"] == "< 5"  # the laser's 3 are withheld
    assert rows["laser-1"]["run_hours"] is None


def test_filament_weight_follows_the_filament_settings(api: Api) -> None:
    _printing(api)
    app = api.client.app
    app.state.settings = api.settings.model_copy(  # type: ignore[attr-defined]
        update={"filament_diameter_mm": 2.85, "filament_density_g_cm3": 1.04}
    )
    march = {"since": "2025-03-01", "until": "2025-04-01"}
    printer = _rows(api, Role.ADMIN, by="machine", **march)["printer-1"]
    # 10.5 m of 2.85 mm ABS: pi x 0.1425^2 cm2 x 1050 cm x 1.04 g/cm3.
    assert printer["filament_g"] == 69.7


def test_csv_report_carries_print_and_run_totals(api: Api) -> None:
    _printing(api)
    text = api.get(
        "/api/usage/report.csv",
        Role.ADMIN,
        params={"by": "machine", "since": "2025-03-01", "until": "2025-04-01"},
    ).content.decode("utf-8-sig")
    rows = {r[3]: r for r in csv.reader(io.StringIO(text), delimiter=";")}
    # run hours, jobs, print hours, filament m and g; machine hours; the staff print
    # nobody badged for, apart (1 job, 0.5 h); no estimated filament.
    assert rows["printer-1"][10:] == [
        *("0,00", "6", "8,00", "10,50", "31,3"),
        *("1,25", "1", "0,50", "0,00"),
    ]
    assert rows["laser-1"][10:] == [
        *("0,75", "0", "0,00", "0,00", "0,0"),
        *("3,00", "0", "0,00", "0,00"),
    ]


def test_people_hours_leave_out_the_wait_after_the_member_left(api: Api) -> None:
    """Funders count people: a member who badged out mid-print counts her presence;
    the time the session held the printer after (print end, cool-down) is machine time."""
    people = _members(api, 5)
    for i, mid in enumerate(people):
        add_session(
            api,
            f"p-{i}",
            member_id=mid,
            machine_id="printer-1",
            machine_kind="printer",
            used_s=3600,
            started_at=BASE + timedelta(hours=i),
        )
    with api.db() as s:
        for i in range(5):
            row = s.get(UsageSession, f"p-{i}")
            assert row is not None
            row.present_s = 900.0 if i < 4 else None  # an older edge: its length is all
        s.commit()
    rows = _rows(api, Role.COORDINATOR, by="machine", since="2025-03-01", until="2025-04-01")
    printer = rows["printer-1"]
    assert printer["hours"] == round((4 * 900 + 3600) / 3600, 2)
    assert printer["machine_hours"] == 5.0


def test_jobs_nobody_badged_for_and_estimated_filament_are_reported_apart(api: Api) -> None:
    _printing(api)
    add_job(
        api,
        session_id="print-1",
        member_id=None,
        ended_at=BASE + timedelta(hours=5),
        duration_s=600,
        filament_mm=300.0,
        result="lost",
    )
    with api.db() as s:
        lost = s.query(MachineJob).filter(MachineJob.result == "lost").one()
        lost.filament_estimated = True
        s.commit()
    march = {"since": "2025-03-01", "until": "2025-04-01"}
    printer = _rows(api, Role.FABMANAGER, by="machine", **march)["printer-1"]
    assert printer["jobs"] == 7  # every job, whatever its result
    assert printer["unattributed_jobs"] == 1  # the one started at the printer
    assert printer["unattributed_print_hours"] == 0.5
    assert printer["filament_m"] == 10.8
    assert printer["filament_estimated_m"] == 0.3
