"""The SQL store on both backends: migrations, time zones, constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hub.db import models as m
from hub.db.engine import make_engine, make_sessionmaker, normalise_url, transaction
from hub.db.migrate import current, upgrade


def test_migrations_reach_head_and_match_models(db_url: str) -> None:
    upgrade(db_url)
    assert current(db_url) is not None
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    rev = current(db_url)
    upgrade(db_url)
    assert current(db_url) == rev


def test_second_revision_upgrades_a_running_site_and_downgrades(db_url: str) -> None:
    """A site on the initial schema keeps its sessions; run_s and machine_job appear."""
    from alembic import command
    from sqlalchemy import inspect, text

    from hub.db.migrate import alembic_config

    upgrade(db_url, "dd44fad56270")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO usage_session (id, edge_id, machine_id, age_group, programmes,"
                " machine_kind, offline, staff, started_at, used_s, last_minute) VALUES"
                " ('old', 'e', 'm', '', '[]', '', false, false, :t, 61.0, 1)"
            ),
            {"t": datetime(2026, 1, 5, 10, tzinfo=UTC)},
        )
    upgrade(db_url)
    factory = make_sessionmaker(engine)
    with factory() as s:
        row = s.get(m.UsageSession, "old")
        assert row is not None
        assert (row.used_s, row.run_s) == (61.0, None)
    assert "machine_job" in inspect(engine).get_table_names()
    engine.dispose()

    command.downgrade(alembic_config(db_url), "dd44fad56270")
    engine = make_engine(db_url)
    insp = inspect(engine)
    assert "machine_job" not in insp.get_table_names()
    assert "run_s" not in {c["name"] for c in insp.get_columns("usage_session")}
    engine.dispose()


def test_kind_spelling_migration_renames_stored_printers_and_drops_power_policy(
    db_url: str,
) -> None:
    """A site that stored ``printer_3d`` (machines and sessions) reads ``printer`` after
    the upgrade, and the downgrade gives back both the old spelling and power_policy."""
    from alembic import command
    from sqlalchemy import inspect, text

    from hub.db.migrate import alembic_config

    upgrade(db_url, "13610834eece")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO zone (id, name) VALUES ('fablab', 'FabLab')"))
        for mid, kind, policy in (
            ("printer-1", "printer_3d", "keep_while_job"),
            ("laser-1", "laser", "follow_session"),
        ):
            conn.execute(
                text(
                    "INSERT INTO machine (id, name, kind, zone_id, edge_id, offline_rule,"
                    " power_policy, maintenance, maintenance_note) VALUES"
                    " (:id, :id, :kind, 'fablab', 'e', 'allow', :policy, false, '')"
                ),
                {"id": mid, "kind": kind, "policy": policy},
            )
        conn.execute(
            text(
                "INSERT INTO usage_session (id, edge_id, machine_id, age_group, programmes,"
                " machine_kind, offline, staff, started_at, used_s, last_minute) VALUES"
                " ('s1', 'e', 'printer-1', '', '[]', 'printer_3d', false, false, :t, 61.0, 1)"
            ),
            {"t": datetime(2026, 1, 5, 10, tzinfo=UTC)},
        )
    upgrade(db_url)
    factory = make_sessionmaker(engine)
    with factory() as s:
        printer = s.get(m.Machine, "printer-1")
        assert printer is not None
        assert printer.kind is m.MachineKind.PRINTER
        laser = s.get(m.Machine, "laser-1")
        assert laser is not None
        assert laser.kind is m.MachineKind.LASER
        session = s.get(m.UsageSession, "s1")
        assert session is not None
        assert session.machine_kind == "printer"
    assert "power_policy" not in {c["name"] for c in inspect(engine).get_columns("machine")}
    engine.dispose()

    command.downgrade(alembic_config(db_url), "13610834eece")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, kind, power_policy FROM machine ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            ("laser-1", "laser", "follow_session"),
            ("printer-1", "printer_3d", "keep_while_job"),
        ]
        kinds = conn.execute(text("SELECT machine_kind FROM usage_session")).scalars().all()
        assert kinds == ["printer_3d"]
    engine.dispose()


def test_job_rows_are_unique_per_edge_seq_and_survive_member_deletion(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    member_id = _seed(factory)
    now = datetime.now(UTC)

    def job(seq: int, edge: str = "pi") -> m.MachineJob:
        return m.MachineJob(
            edge_id=edge,
            seq=seq,
            machine_id="printer-1",
            member_id=member_id,
            age_group="16-25",
            result="done",
            duration_s=60.0,
            ended_at=now,
        )

    with transaction(factory) as s:
        s.add_all([job(1), job(1, edge="other")])
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(job(1))
    with transaction(factory) as s:
        member = s.get(m.Member, member_id)
        s.delete(member)
    with factory() as s:
        rows = s.scalars(select(m.MachineJob)).all()
        assert [(r.member_id, r.age_group) for r in rows] == [(None, "16-25")] * 2
    engine.dispose()


def _seed(factory) -> int:  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        s.add(m.Zone(id="fablab", name="FabLab", capacity=12))
        s.add(m.Training(id="laser", name="Découpe laser", validity_days=365))
        s.add(m.Programme(id="fablab-16-25", name="FabLab 16/25"))
        s.flush()
        s.add(
            m.Machine(
                id="laser-1",
                name="Laser",
                kind=m.MachineKind.LASER,
                zone_id="fablab",
                edge_id="pi-laser",
                min_age=16,
                trainings=[m.MachineTraining(training_id="laser")],
            )
        )
        member = m.Member(
            display_name="Inès B.",
            birth_year=2008,
            birth_month=3,
            programmes=[m.MemberProgramme(programme_id="fablab-16-25")],
            trainings=[
                m.MemberTraining(
                    training_id="laser", granted_on=date(2026, 1, 5), expires_on=date(2027, 1, 5)
                )
            ],
        )
        member.badges.append(m.Badge(hash="ab" * 32, label="carte"))
        s.add(member)
        s.add(
            m.Slot(
                zone_id="fablab",
                weekday=1,
                start=time(17),
                end=time(20),
                age_groups=["16-25"],
                programmes=["fablab-16-25"],
            )
        )
        s.flush()
        return member.id


def test_reference_data_round_trip(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    member_id = _seed(factory)
    with factory() as s:
        member = s.get(m.Member, member_id)
        assert member is not None
        assert member.first_name == "Inès"
        assert member.programme_ids == ["fablab-16-25"]
        assert [b.hash for b in member.badges] == ["ab" * 32]
        assert member.created_at.tzinfo is not None
        laser = s.get(m.Machine, "laser-1")
        assert laser is not None
        assert laser.required_trainings == ["laser"]
        assert laser.offline_rule.value == "allow"
        slot = s.scalars(select(m.Slot)).one()
        assert slot.age_groups == ["16-25"]
        assert (slot.start, slot.end) == (time(17), time(20))
    engine.dispose()


def test_datetimes_come_back_aware_utc(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    paris = datetime(2026, 3, 29, 3, 30, tzinfo=UTC) + timedelta(hours=0)
    with transaction(factory) as s:
        s.add(m.UsageSession(id="s1", edge_id="e", machine_id="m", started_at=paris))
    with factory() as s:
        row = s.get(m.UsageSession, "s1")
        assert row is not None
        assert row.started_at == paris
        assert row.started_at.utcoffset() == timedelta(0)
    engine.dispose()


def test_naive_datetimes_are_refused(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    with pytest.raises(Exception, match="naive datetime"), transaction(factory) as s:
        s.add(m.UsageSession(id="s1", edge_id="e", machine_id="m", started_at=datetime(2026, 1, 1)))
        s.flush()
    engine.dispose()


def test_badge_hash_and_edge_seq_are_unique(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    member_id = _seed(factory)
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(m.Badge(hash="ab" * 32, member_id=member_id))
    now = datetime.now(UTC)
    with transaction(factory) as s:
        s.add(m.EdgeEvent(edge_id="e", seq=1, event_id="a", type="usage_tick", body={}, ts=now))
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(m.EdgeEvent(edge_id="e", seq=1, event_id="b", type="usage_tick", body={}, ts=now))
    with transaction(factory) as s:
        s.add(m.EdgeEvent(edge_id="f", seq=1, event_id="c", type="usage_tick", body={}, ts=now))
    engine.dispose()


def test_foreign_keys_are_enforced(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(
            m.Machine(id="x", name="x", kind=m.MachineKind.GENERIC, zone_id="nowhere", edge_id="e")
        )
    engine.dispose()


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
