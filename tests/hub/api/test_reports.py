"""Usage totals and the CSV report: exact sums, distinct participants, small groups hidden."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from hub.db.models import Member, Role
from tests.hub.api.conftest import Api, add_session

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
            machine_kind="printer_3d",
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
        machine_kind="printer_3d",
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
    assert [r["key"] for r in body["rows"]] == ["laser-1"]
    assert body["hidden_groups"] == 1
    assert body["min_group_size"] == 5
    members = api.get("/api/usage/totals", Role.COORDINATOR, params={"by": "member"}).json()
    assert members["rows"] == []
    assert members["hidden_groups"] == 10
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
    assert set(ages) == {"9-15"}  # 16-25 has 3 people
    assert ages["9-15"]["participants"] == 6
    kinds = _rows(api, Role.ADMIN, by="machine_kind")
    assert set(kinds) == {"laser", "printer_3d"}
    months = _rows(api, Role.ADMIN, by="month")
    assert months["2025-03"]["sessions"] == 11
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
        "dimension",
        "cle",
        "libelle",
        "heures",
        "secondes",
        "sessions",
        "participants",
    ]
    assert rows[1][:2] == ["machine", "laser-1"]
    assert rows[1][3:] == ["1,08", "3900", "7", "6"]
    assert "masqué" in rows[2][2]
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
    assert rows[1][2].startswith("'=")
