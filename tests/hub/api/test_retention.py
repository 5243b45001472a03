"""Retention and erasure on SQLite and PostgreSQL: after the retention period no table
holds an identity, totals are unchanged, erasure leaves a tombstone naming nobody, the
export covers journal events, and a guardian's consent records who and what."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hub.db.models import (
    AccessLog,
    Badge,
    Base,
    EdgeEvent,
    ErasureTombstone,
    Gender,
    MachineJob,
    Member,
    PseudonymKey,
    Role,
    StaffPresence,
    UsageSession,
    Zone,
)
from hub.reports import Period, ReportFilters, build_report
from hub.retention import ERASED_HASH, RetentionJob, run_purge
from tests.hub.api.conftest import Api, add_job, add_session
from tests.hub.hubkit import wait_until

NOW = datetime(2025, 6, 15, 12, tzinfo=UTC)
RETENTION = 92
#: Tables of the member registry itself (not history): kept while the person is a member.
REGISTRY = {"member", "badge", "member_programme", "member_training", "account", "api_token"}


def _hash(i: int) -> str:
    return f"{i:02d}" + "ab" * 31


def _canaries(api: Api) -> tuple[list[int], list[str], int]:
    """Six canary members with old history only (January and February), and one member
    who also came last week. Returns old ids, old badge hashes, the recent member id."""
    with api.db() as s:
        members = [
            Member(
                display_name=f"Canari{i} Zéphyrin",
                birth_year=2012,
                birth_month=3,
                gender=Gender.FEMME if i % 2 else Gender.HOMME,
            )
            for i in range(7)
        ]
        s.add_all(members)
        s.flush()
        for i, m in enumerate(members):
            s.add(Badge(hash=_hash(i), member_id=m.id))
        s.commit()
        ids = [m.id for m in members]
    seq = 1000
    for i, member_id in enumerate(ids):
        visits = [datetime(2025, 1, 10 + i, 15, tzinfo=UTC), datetime(2025, 1, 20, 9, tzinfo=UTC)]
        if i < 3:
            visits.append(datetime(2025, 2, 5, 10, tzinfo=UTC))
        if i == 6:
            visits.append(NOW - timedelta(days=7))
        for n, start in enumerate(visits):
            sid = f"s{i}-{n}"
            add_session(
                api,
                sid,
                member_id=member_id,
                badge_hash=_hash(i),
                started_at=start,
                age_group="9-15",
                programmes=["fablab-9-15"],
                machine_id="printer-1",
                machine_kind="printer",
            )
            seq += 1
            add_job(
                api,
                session_id=sid,
                member_id=member_id,
                ended_at=start + timedelta(minutes=30),
                name=f"porte-cles-canari{i}.gcode",
                seq=seq,
            )
            with api.db() as s:
                s.add_all(
                    [
                        EdgeEvent(
                            edge_id="edge-1",
                            seq=seq,
                            event_id=f"e{seq}",
                            type="job_ended",
                            body={"job": f"porte-cles-canari{i}.gcode", "machine": "printer-1"},
                            ts=start + timedelta(minutes=30),
                        ),
                        EdgeEvent(
                            edge_id="edge-2",
                            seq=seq,
                            event_id=f"s{seq}",
                            type="session_started",
                            body={"badge": _hash(i), "session_id": sid, "machine": "printer-1"},
                            ts=start,
                        ),
                        AccessLog(
                            ts=start,
                            edge_id="edge-1",
                            machine_id="printer-1",
                            member_id=member_id,
                            badge_hash=_hash(i),
                            req_id=f"r{seq}",
                            granted=True,
                            code="ok",
                            session_id=sid,
                        ),
                    ]
                )
                s.commit()
    with api.db() as s:
        s.add(Zone(id="fablab", name="FabLab"))
        s.flush()
        s.add(
            StaffPresence(
                member_id=ids[0],
                zone_id="fablab",
                since=datetime(2025, 1, 10, 14, tzinfo=UTC),
                until=datetime(2025, 1, 10, 18, tzinfo=UTC),
            )
        )
        s.commit()
    return ids[:6], [_hash(i) for i in range(6)], ids[6]


def _report(api: Api, *dims: Any, role: Role = Role.ADMIN) -> dict[tuple[str, ...], Any]:
    with api.db() as s:
        report = build_report(
            s,
            Period(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
            ReportFilters(),
            dims,
            role,
            tz=api.settings.tz,
        )
    return {
        r.keys: (r.participants, r.new_participants, r.sessions, r.hours, r.jobs)
        for r in report.rows
    }


def _leaks(api: Api, ids: list[int], needles: list[str]) -> list[str]:
    """Every cell of every history table holding an old member id, hash, name or file."""
    found: list[str] = []
    with api.db() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in REGISTRY:
                continue
            member_columns = {
                c.name
                for c in table.columns
                if c.name == "member_id"
                or any(fk.column.table.name == "member" for fk in c.foreign_keys)
            }
            for row in s.execute(select(table)).mappings():
                for column, value in row.items():
                    if column in member_columns and value in ids:
                        found.append(f"{table.name}.{column}={value}")
                    text = json.dumps(value, default=str) if not isinstance(value, str) else value
                    found += [f"{table.name}.{column}" for n in needles if n in text]
    return found


def test_no_identity_outlives_retention_and_totals_stay(api: Api) -> None:
    old_ids, hashes, recent_id = _canaries(api)
    names = [f"Canari{i}" for i in range(6)] + [f"canari{i}.gcode" for i in range(6)]
    before_months = _report(api, "month")
    before_cross = _report(api, "month", "gender")
    assert _leaks(api, old_ids, hashes + names)  # the test can see identities

    result = run_purge(api.db, retention_days=RETENTION, tz=api.settings.tz, now=NOW)

    assert _leaks(api, old_ids, hashes + names) == []
    assert result.rows["usage_session"] == 17  # the recent visit is kept
    assert result.rows["access_log"] == 17
    assert result.keys_deleted == 2  # January and February: no link back any more
    with api.db() as s:
        assert s.scalars(select(PseudonymKey.month)).all() == []
        recent = s.scalars(select(UsageSession).where(UsageSession.member_id.is_not(None))).all()
        assert [(r.member_id, r.badge_hash) for r in recent] == [(recent_id, _hash(6))]
        assert s.scalar(select(AccessLog.member_id)) == recent_id
        events = s.scalars(select(EdgeEvent).where(EdgeEvent.type == "session_started")).all()
        assert {e.body["badge"] for e in events if e.ts < NOW - timedelta(days=RETENTION)} == {
            ERASED_HASH
        }
        old = s.scalars(select(UsageSession).where(UsageSession.member_id.is_(None))).all()
        assert {r.gender for r in old} == {"femme", "homme"}
        jobs = s.scalars(select(MachineJob).where(MachineJob.member_id.is_(None))).all()
        assert {j.job for j in jobs} == {""}

    # Aggregates kept: per month, participants (one pseudonym per person and month),
    # new participants (first visit), sessions, hours, jobs; across gender too.
    assert _report(api, "month") == before_months
    assert before_months[("2025-01",)][:3] == (7, 7, 14)
    assert before_months[("2025-02",)][:3] == (3, 0, 3)
    assert before_months[("2025-06",)][:3] == (1, 0, 1)
    assert _report(api, "month", "gender") == before_cross
    # Per programme, reports fold per participant in Python: same figures (every canary
    # session has the one programme).
    per_programme = _report(api, "month", "programme")
    assert {k[:1]: v for k, v in per_programme.items()} == before_months
    # Over January to June the pseudonymised months count people once per month.
    whole = _report(api, "machine")[("printer-1",)]
    assert whole[0] == 7 + 3 + 1
    assert whole[2] == 18

    again = run_purge(api.db, retention_days=RETENTION, tz=api.settings.tz, now=NOW)
    assert again.rows == {}


def test_erasure_pseudonymises_keeps_totals_and_leaves_a_tombstone(api: Api) -> None:
    _, _, recent_id = _canaries(api)
    before = _report(api, "month")
    export = api.get(f"/api/members/{recent_id}/export")
    assert export.status_code == 200
    tables = export.json()["tables"]
    assert {e["type"] for e in tables["edge_event"]} == {"session_started"}
    assert len(tables["edge_event"]) == 3
    assert len(tables["usage_session"]) == 3
    assert len(tables["access_log"]) == 3

    assert api.post(f"/api/members/{recent_id}/erase").status_code == 204
    assert _leaks(api, [recent_id], [_hash(6), "Canari6", "canari6.gcode"]) == []
    assert _report(api, "month") == before  # erased, still counted pseudonymously
    with api.db() as s:
        (tomb,) = s.scalars(select(ErasureTombstone)).all()
        assert tomb.erased_by_account == api.accounts[Role.ADMIN]
        assert tomb.erased_by_username == "admin"
        assert tomb.rows["usage_session"] == 3
        assert tomb.rows["member"] == 1
        assert abs(tomb.erased_at - datetime.now(UTC)) < timedelta(minutes=5)
        text = json.dumps(
            {c.name: getattr(tomb, c.name) for c in ErasureTombstone.__table__.columns},
            default=str,
        )
        assert "Canari" not in text
        assert _hash(6) not in text
        assert str(recent_id) not in json.dumps(tomb.rows)
        assert s.get(Member, recent_id) is None


def test_guardian_consent_records_who_when_and_scope(api: Api) -> None:
    body = {
        "display_name": "Léa Martin",
        "birth_year": 2015,
        "birth_month": 6,
        "consent_at": "2025-01-10",
        "gender": "femme",
    }
    created = api.post("/api/members", body).json()
    assert created["consent_at"] == "2025-01-10"
    assert created["consent_recorded_by"] == "admin"
    assert created["consent_scope"] == ["access"]
    assert created["gender"] == "femme"
    assert created["consent_missing"] is False
    changed = api.patch(
        f"/api/members/{created['id']}",
        {"consent_at": str(date(2025, 2, 1)), "consent_scope": ["statistics", "access"]},
    ).json()
    assert changed["consent_scope"] == ["access", "statistics"]
    assert changed["consent_recorded_by"] == "admin"
    assert (
        api.patch(f"/api/members/{created['id']}", {"consent_scope": ["selfies"]}).status_code
        == 422
    )
    withdrawn = api.patch(f"/api/members/{created['id']}", {"consent_at": None}).json()
    assert withdrawn["consent_missing"] is True
    assert withdrawn["consent_recorded_by"] is None
    assert withdrawn["consent_scope"] == []


def test_purge_command_and_scheduled_job(api: Api, tmp_path: Path) -> None:
    """``fabrique hub purge`` and the hub's hourly job run the same pass."""
    from typer.testing import CliRunner

    from fabrique.cli import app

    add_session(
        api,
        "old",
        member_id=api.members[Role.ANIMATOR],
        badge_hash=_hash(1),
        started_at=datetime.now(UTC) - timedelta(days=200),
    )
    add_session(api, "new", member_id=api.members[Role.ANIMATOR], badge_hash=_hash(1))
    config = tmp_path / "hub.toml"
    config.write_text(
        f'demo = true\ndatabase_url = "{api.settings.database_url}"\n'
        "identified_retention_days = 92\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["hub", "purge", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "usage_session : 1 ligne(s)" in result.output
    with api.db() as s:
        rows = {r.id: r for r in s.scalars(select(UsageSession))}
        assert rows["old"].member_id is None
        assert rows["old"].participant is not None
        assert rows["new"].member_id == api.members[Role.ANIMATOR]

    add_session(
        api,
        "old-2",
        member_id=api.members[Role.ANIMATOR],
        badge_hash=_hash(1),
        started_at=datetime.now(UTC) - timedelta(days=100),
    )
    job = RetentionJob(api.db, retention_days=92, tz=api.settings.tz, interval_s=3600)
    job.start()
    try:
        wait_until(lambda: job.runs >= 1, 30, "first retention pass")
    finally:
        job.stop()
    with api.db() as s:
        assert s.get(UsageSession, "old-2").member_id is None  # type: ignore[union-attr]
