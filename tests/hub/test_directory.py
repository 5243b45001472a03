"""The policy directory built from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from hub.directory import load_directory, policy_config
from hub.policy.model import Directory
from protocol.messages import OfflineRule
from tests.hub.hubkit import Seed, migrated, seed, settings_for


@pytest.fixture
def loaded(db_url: str) -> Iterator[tuple[Directory, Seed]]:
    factory: sessionmaker[Session] = migrated(db_url)
    ids = seed(factory)
    with factory() as s:
        directory = load_directory(s, version=7)
    yield directory, ids
    factory.kw["bind"].dispose()


def test_directory_mirrors_the_reference_data(loaded: tuple[Directory, Seed]) -> None:
    d, ids = loaded
    assert d.version == 7
    assert set(d.members) == {ids.alice, ids.bob, ids.sam}
    alice = d.members[ids.alice]
    assert (alice.first_name, alice.birth_year, alice.birth_month) == ("Alice", 2005, 1)
    assert alice.status == "active"
    assert alice.role == "member"
    assert not alice.is_staff
    # No explicit expiry: the training's 365-day validity counts from the grant.
    assert alice.trainings == {"laser": date(2026, 1, 5) + timedelta(days=365)}
    assert d.members[ids.sam].is_staff
    assert d.members[ids.bob].consent_at == date(2025, 9, 1)

    assert d.badges[ids.badge_alice].member_id == ids.alice
    assert not d.badges[ids.badge_alice].revoked
    assert d.badges[ids.badge_revoked].revoked

    laser = d.machines["laser-1"]
    assert (laser.kind, laser.zone_id, laser.edge_id) == ("laser", "fablab", "pi-fab")
    assert laser.required_trainings == frozenset({"laser"})
    assert laser.offline_rule is OfflineRule.STAFF_ONLY
    assert d.machines["pc-1"].required_trainings == frozenset()

    assert d.zones["gaming"].capacity == 4
    assert d.zones["fablab"].capacity is None
    assert len([s for s in d.slots if s.zone_id == "fablab"]) == 7
    gaming = [s for s in d.slots if s.zone_id == "gaming"]
    assert [(s.weekday, s.age_groups, s.label) for s in gaming] == [
        (2, frozenset({"9-15"}), "Gaming 9/15")
    ]
    assert d.quotas[("gaming", "9-15")].daily_min == 60
    assert d.exceptions == ()


def test_directory_survives_pickling(loaded: tuple[Directory, Seed]) -> None:
    """The snapshot compiler runs in a worker process: the directory must travel there."""
    d, _ids = loaded
    assert pickle.loads(pickle.dumps(d)) == d  # noqa: S301 - our own bytes


def test_policy_config_follows_settings() -> None:
    cfg = policy_config(
        settings_for("sqlite://", timezone="America/Cayenne", attempt_limit=3, attempt_window_s=9)
    )
    assert str(cfg.tz) == "America/Cayenne"
    assert (cfg.attempt_limit, cfg.attempt_window_s) == (3, 9.0)
