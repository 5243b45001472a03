"""The access-log writer on SQLite and PostgreSQL: batching, flush, retention, bad rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.accesslog import AccessEntry, AccessLogWriter
from hub.db.engine import transaction
from hub.db.models import AccessLog, StaffPresence
from hub.live import StaffMark
from hub.metrics import Metrics
from tests.hub.hubkit import NOW, Seed, migrated, seed


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[sessionmaker[Session], Seed]]:
    factory = migrated(db_url)
    ids = seed(factory)
    yield factory, ids
    factory.kw["bind"].dispose()


def entry(n: int, member: int | None, ts_offset: timedelta = timedelta()) -> AccessEntry:
    return AccessEntry(
        ts=NOW + ts_offset,
        edge_id="pi-fab",
        machine_id="laser-1",
        member_id=member,
        badge_hash="a" * 64,
        req_id=f"r-{n}",
        granted=n % 2 == 0,
        code="granted" if n % 2 == 0 else "outside_slot",
    )


def test_rows_are_written_in_batches_and_flush_waits_for_them(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    metrics = Metrics()
    writer = AccessLogWriter(
        factory, retention_days=92, metrics=metrics, batch_size=50, clock=lambda: NOW
    )
    writer.start()
    try:
        for n in range(120):
            assert writer.record(entry(n, ids.alice))
        writer.record(StaffMark(ids.sam, "fablab", NOW, NOW + timedelta(hours=4)))
        assert writer.flush()
        with factory() as s:
            rows = s.scalars(select(AccessLog).order_by(AccessLog.id)).all()
            marks = s.scalars(select(StaffPresence)).all()
        assert [r.req_id for r in rows] == [f"r-{n}" for n in range(120)]
        assert [(m.member_id, m.zone_id) for m in marks] == [(ids.sam, "fablab")]
        assert metrics.get("accesslog_rows") == 120
    finally:
        writer.stop()


def test_dangling_members_do_not_lose_the_batch(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    metrics = Metrics()
    writer = AccessLogWriter(factory, retention_days=92, metrics=metrics, clock=lambda: NOW)
    writer.start()
    try:
        writer.record(entry(0, ids.bob))
        writer.record(entry(1, 987654))  # deleted since the decision
        writer.record(StaffMark(987654, "fablab", NOW, NOW + timedelta(hours=1)))
        assert writer.flush()
    finally:
        writer.stop()
    with factory() as s:
        rows = s.scalars(select(AccessLog).order_by(AccessLog.id)).all()
        marks = s.scalars(select(StaffPresence)).all()
    assert [(r.req_id, r.member_id) for r in rows] == [("r-0", ids.bob), ("r-1", None)]
    assert marks == []
    assert metrics.get("accesslog_dangling") == 1
    assert metrics.get("accesslog_dropped") == 0


def test_purge_keeps_only_the_retention_period(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, ids = store
    with transaction(factory) as s:
        for n, age in enumerate((93, 91)):
            s.add(AccessLog(**asdict(entry(n, ids.alice, -timedelta(days=age)))))
        s.add(
            StaffPresence(
                member_id=ids.sam,
                zone_id="fablab",
                since=NOW - timedelta(days=100),
                until=NOW - timedelta(days=99),
            )
        )
    writer = AccessLogWriter(factory, retention_days=92, clock=lambda: NOW)

    assert writer.purge() == 1
    with factory() as s:
        assert [r.req_id for r in s.scalars(select(AccessLog))] == ["r-1"]
        assert s.scalars(select(StaffPresence)).all() == []
    assert writer.purge() == 0
