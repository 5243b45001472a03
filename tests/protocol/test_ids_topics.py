"""Ids, badge hashing, topics and snapshot signatures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol as p

SECRET = b"0123456789abcdef-site-secret"


@pytest.mark.parametrize("raw", ["04:a2:2b:1c", "04A22B1C", "04 A2 2B 1C", " 04-a2-2b-1c\n"])
def test_uid_spellings_hash_alike(raw: str) -> None:
    assert p.badge_hash(SECRET, raw) == p.badge_hash(SECRET, "04A22B1C")


def test_hash_depends_on_secret_and_hides_uid() -> None:
    h1 = p.badge_hash(SECRET, "04A22B1C")
    h2 = p.badge_hash(SECRET + b"x", "04A22B1C")
    assert h1 != h2
    assert len(h1) == 64
    assert "04a22b1c" not in h1


@pytest.mark.parametrize("raw", ["", "  ", "zz-top", "04A2;DROP"])
def test_bad_uids_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="UID"):
        p.badge_hash(SECRET, raw)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        p.badge_hash(b"short", "04A2")


def test_topic_builders_and_parser_agree() -> None:
    t = p.Topics("marseille-14")
    assert t.req_access("pi-laser") == "fabrique/v1/marseille-14/edge/pi-laser/req/access"
    assert t.hub_status() == "fabrique/v1/marseille-14/hub/status"
    for kind in p.Kind:
        if kind is p.Kind.HUB_STATUS:
            topic = t.hub_status()
            parsed = p.parse_topic(topic)
            assert (parsed.kind, parsed.edge) == (kind, None)
            continue
        machine = "m-1" if kind in (p.Kind.STATE, p.Kind.TELE) else None
        topic = t.edge("e-1", kind, machine)
        parsed = p.parse_topic(topic)
        assert parsed == p.ParsedTopic("marseille-14", kind, "e-1", machine)


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/s/hub/status",
        "fabrique/v1/s/edge/e/req",
        "fabrique/v1/s/edge/e/req/access/x",
        "fabrique/v1/s/edge/E/evt",
        "fabrique/v1/s/edge/e/state",
        "fabrique/v1/s/edge/e/tele/m/x",
        "fabrique/v1/S/hub/status",
        "fabrique/v1",
    ],
)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(p.TopicError):
        p.parse_topic(topic)


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "", "x" * 33, "Upper"])
def test_builders_refuse_wildcards_and_bad_ids(bad: str) -> None:
    with pytest.raises(p.TopicError):
        p.Topics("s").evt(bad)
    with pytest.raises(p.TopicError):
        p.Topics(bad)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32))
def test_any_valid_id_round_trips(ident: str) -> None:
    parsed = p.parse_topic(p.Topics(ident).tele(ident, ident))
    assert (parsed.site, parsed.edge, parsed.machine) == (ident, ident, ident)


def test_subscription_filters() -> None:
    t = p.Topics("s")
    assert t.all_edges(p.Kind.EVT) == "fabrique/v1/s/edge/+/evt"
    assert t.all_edges(p.Kind.TELE) == "fabrique/v1/s/edge/+/tele/+"


def test_snapshot_signature() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    snap = p.PolicySnapshot(
        edge="e-1",
        version=3,
        issued_at=now,
        valid_until=now,
        entries=(p.SnapshotEntry(badge="cd" * 32, staff=True),),
    )
    key = p.policy_key(SECRET, "e-1")
    signed = p.sign_snapshot(snap, key)
    assert p.verify_snapshot(signed, key)
    assert not p.verify_snapshot(snap, key)
    assert not p.verify_snapshot(signed, p.policy_key(SECRET, "e-2"))
    tampered = signed.model_copy(update={"version": 4})
    assert not p.verify_snapshot(tampered, key)
    # The signature survives the wire.
    assert p.verify_snapshot(p.decode(p.PolicySnapshot, p.encode(signed)), key)
