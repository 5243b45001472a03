"""The offline snapshot compiler: who appears, with which windows, quotas and signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from hub.policy.model import BadgeView, Directory, UsageView
from hub.policy.snapshot import SnapshotMemo, compile_snapshot, snapshot_fingerprint
from protocol.messages import OfflineRule, PolicySnapshot, SnapshotEntry, decode, encode
from protocol.signing import policy_key, sign_snapshot, verify_snapshot
from tests.hub.policy.world import (
    CFG,
    badge,
    exception,
    make_directory,
    paris,
    session,
    with_machine,
    with_member,
)

BASE = make_directory()
NOW = paris(2026, 4, 15, 10)  # Wednesday morning


def compile_(
    directory: Directory = BASE,
    edge: str = "edge-fab",
    now: datetime = NOW,
    *,
    sessions: Mapping[int, Sequence[UsageView]] | None = None,
    version: int = 1,
    days: int = 7,
) -> PolicySnapshot:
    return compile_snapshot(
        edge, directory, sessions or {}, CFG, now=now, version=version, days=days
    )


def entries(snapshot: PolicySnapshot) -> dict[str, SnapshotEntry]:
    return {e.badge: e for e in snapshot.entries}


def test_header_and_machines() -> None:
    snap = compile_()
    assert snap.edge == "edge-fab"
    assert snap.version == 1
    assert snap.signature == ""
    assert snap.issued_at == NOW
    assert snap.valid_until == NOW + timedelta(hours=36)
    assert [(m.machine, m.zone, m.rule) for m in snap.machines] == [
        ("laser-1", "fablab", OfflineRule.STAFF_ONLY),
        ("printer-1", "fablab", OfflineRule.ALLOW),
    ]


def test_who_appears() -> None:
    got = entries(compile_())
    # Inès (9-15), Sofia (15, no consent needed), Yanis, Amina, Nora, Léa, Karim (staff).
    expected = {badge(n) for n in ("ines", "sofia", "yanis", "amina", "nora", "lea", "karim")}
    assert set(got) == expected
    # Left out: revoked badge, suspended Théo, Lucas and Malo without consent.
    for name in ("ines-old", "theo", "lucas", "malo"):
        assert badge(name) not in got


def test_member_windows_and_machines() -> None:
    ines = entries(compile_())[badge("ines")]
    assert not ines.staff
    spans = [(w.start, w.end, w.machines) for w in ines.windows]
    # Wednesday 14-17 (9-15), Friday 17-19 (anyone, animator), Saturday 10-18 (anyone).
    # The laser is staff-only offline, so only the printer is listed.
    assert spans == [
        (paris(2026, 4, 15, 14), paris(2026, 4, 15, 17), ("printer-1",)),
        (paris(2026, 4, 17, 17), paris(2026, 4, 17, 19), ("printer-1",)),
        (paris(2026, 4, 18, 10), paris(2026, 4, 18, 18), ("printer-1",)),
    ]
    assert ines.quota_min == {}  # no quota in the fablab


def test_windows_stay_within_the_horizon() -> None:
    for days in (1, 3, 7):
        snap = compile_(days=days)
        horizon = NOW + timedelta(days=days)
        for entry in snap.entries:
            for w in entry.windows:
                assert w.end > NOW
                assert w.start < horizon
                assert w.end <= horizon
                assert w.start < w.end


def test_open_window_keeps_its_start() -> None:
    during = paris(2026, 4, 15, 15)
    ines = entries(compile_(now=during))[badge("ines")]
    assert ines.windows[0].start == paris(2026, 4, 15, 14)
    assert ines.windows[0].end == paris(2026, 4, 15, 17)
    # A window already over is gone.
    after = entries(compile_(now=paris(2026, 4, 15, 17)))[badge("ines")]
    assert after.windows[0].start == paris(2026, 4, 17, 17)


def test_staff_is_flagged_with_staff_machines() -> None:
    karim = entries(compile_())[badge("karim")]
    assert karim.staff
    assert [w.machines for w in karim.windows] == [("laser-1", "printer-1")]
    assert karim.windows[0].start <= NOW < karim.windows[0].end


def test_machine_rules_and_maintenance() -> None:
    denied = with_machine(BASE, "printer-1", offline_rule=OfflineRule.DENY)
    got = entries(compile_(denied))
    assert set(got) == {badge("karim")}  # nobody else may use anything offline
    assert got[badge("karim")].windows[0].machines == ("laser-1",)
    laser_allowed = with_machine(BASE, "laser-1", offline_rule=OfflineRule.ALLOW)
    yanis = entries(compile_(laser_allowed))[badge("yanis")]
    assert {m for w in yanis.windows for m in w.machines} == {"printer-1", "laser-1"}
    ines = entries(compile_(laser_allowed))[badge("ines")]
    assert {m for w in ines.windows for m in w.machines} == {"printer-1"}  # no training, too young
    broken = with_machine(BASE, "printer-1", maintenance=True)
    assert set(entries(compile_(broken))) == {badge("karim")}


def test_missing_training_excludes_a_member() -> None:
    directory = with_machine(BASE, "printer-1", required_trainings=frozenset({"impression"}))
    directory = with_member(directory, 1, trainings={"impression": None})
    got = entries(compile_(directory))
    assert badge("ines") in got
    assert badge("nora") not in got
    assert badge("lea") not in got


def test_training_expiring_during_the_week() -> None:
    directory = with_machine(BASE, "printer-1", required_trainings=frozenset({"impression"}))
    directory = with_member(directory, 1, trainings={"impression": date(2026, 4, 17)})
    ines = entries(compile_(directory))[badge("ines")]
    # Valid through Friday 17 April: Wednesday and Friday, not Saturday.
    assert [w.start for w in ines.windows] == [paris(2026, 4, 15, 14), paris(2026, 4, 17, 17)]


def test_turning_16_during_the_horizon() -> None:
    # Born May 2010: 15 (9-15) until 30 April, 16 (16-25) from 1 May.
    directory = with_member(BASE, 10, birth_year=2010, birth_month=5)
    lea = entries(compile_(directory, now=paris(2026, 4, 27, 10), days=9))[badge("lea")]
    starts = [w.start for w in lea.windows]
    assert paris(2026, 4, 28, 17) not in starts  # Tuesday, still 15
    assert paris(2026, 4, 29, 14) in starts  # Wednesday 9-15 slot
    assert paris(2026, 5, 2, 10) in starts  # Saturday, anyone
    assert paris(2026, 5, 5, 17) in starts  # Tuesday 16-25 slot, now 16


def test_consent_age_reached_during_the_horizon() -> None:
    # Malo (born May 2011, no consent) turns 15 on 1 May: windows from then on only.
    malo = entries(compile_(now=paris(2026, 4, 27, 10)))[badge("malo")]
    assert [w.start for w in malo.windows] == [paris(2026, 5, 1, 17), paris(2026, 5, 2, 10)]


def test_closure_removes_windows() -> None:
    directory = make_directory(exceptions=(exception(date(2026, 4, 18), "closure"),))
    ines = entries(compile_(directory))[badge("ines")]
    assert paris(2026, 4, 18, 10) not in [w.start for w in ines.windows]


def test_quota_remaining_in_gaming() -> None:
    sessions = {
        1: [session(1, "pc-1", paris(2026, 4, 15, 8), paris(2026, 4, 15, 8, 30), 30)],
        4: [
            session(4, "pc-1", paris(2026, 4, 13, 17), paris(2026, 4, 13, 20), 180)
        ],  # Monday: not today
        5: [session(5, "pc-2", paris(2026, 4, 15, 8), paris(2026, 4, 15, 11), 200)],
    }
    got = entries(compile_(edge="edge-game", sessions=sessions))
    assert got[badge("ines")].quota_min == {"gaming": 60}
    assert got[badge("yanis")].quota_min == {"gaming": 180}
    assert got[badge("amina")].quota_min == {"gaming": 0}  # over the cap: never negative
    assert got[badge("nora")].quota_min == {}  # 26+: no quota
    assert got[badge("ines")].windows[0].machines == ("pc-1", "pc-2", "pc-3", "pc-4")


def test_weekly_quota_can_be_the_tighter_one() -> None:
    sessions = {
        1: [
            session(1, "pc-1", paris(2026, 4, d, 9), paris(2026, 4, d, 10, 10), 70)
            for d in (13, 14)
        ]
    }
    sessions[1].append(session(1, "pc-1", paris(2026, 4, 15, 8), paris(2026, 4, 15, 9), 60))
    ines = entries(compile_(edge="edge-game", sessions=sessions))[badge("ines")]
    assert ines.quota_min == {"gaming": 30}  # daily 90-60=30, weekly 300-200=100


def test_every_badge_of_a_member_gets_the_same_entry() -> None:
    second = BadgeView(badge("ines-spare"), 1, False)
    directory = replace(BASE, badges={**BASE.badges, second.hash: second})
    got = entries(compile_(directory))
    assert got[badge("ines-spare")].windows == got[badge("ines")].windows


def test_invalid_reference_data_is_skipped() -> None:
    bad_badge = BadgeView("not-a-hash", 8, False)
    directory = replace(BASE, badges={**BASE.badges, bad_badge.hash: bad_badge})
    directory = with_machine(directory, "printer-1", zone_id="Fab Lab")
    snap = compile_(directory)
    assert [m.machine for m in snap.machines] == ["laser-1"]
    assert "not-a-hash" not in entries(snap)


def test_entries_are_sorted_and_deterministic() -> None:
    a, b = compile_(), compile_()
    assert a == b
    assert [e.badge for e in a.entries] == sorted(e.badge for e in a.entries)


def test_unknown_edge_gives_an_empty_snapshot() -> None:
    snap = compile_(edge="edge-nowhere")
    assert snap.machines == ()
    assert snap.entries == ()


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_ignores_version_and_times() -> None:
    first = compile_(version=1)
    later = compile_(now=NOW + timedelta(minutes=7), version=2)
    assert later.issued_at != first.issued_at
    assert later.version != first.version
    assert snapshot_fingerprint(later) == snapshot_fingerprint(first)
    # Even while a window is open, as time passes.
    during = compile_(now=paris(2026, 4, 15, 15))
    during_later = compile_(now=paris(2026, 4, 15, 16, 30), version=9)
    assert snapshot_fingerprint(during) == snapshot_fingerprint(during_later)
    signed = sign_snapshot(first, policy_key(b"0123456789abcdef-site", "edge-fab"))
    assert snapshot_fingerprint(signed) == snapshot_fingerprint(first)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: replace(
            d, badges={**d.badges, badge("ines"): replace(d.badges[badge("ines")], revoked=True)}
        ),
        lambda d: with_member(d, 8, status="suspended"),
        lambda d: with_machine(d, "printer-1", maintenance=True),
        lambda d: make_directory(exceptions=(exception(date(2026, 4, 18), "closure"),)),
    ],
    ids=["badge-revoked", "member-suspended", "maintenance", "closure"],
)
def test_fingerprint_changes_when_access_changes(change: object) -> None:
    before = compile_()
    after = compile_(change(BASE))  # type: ignore[operator]
    assert snapshot_fingerprint(after) != snapshot_fingerprint(before)


def test_fingerprint_changes_with_quota_used() -> None:
    before = compile_(edge="edge-game")
    used = {1: [session(1, "pc-1", paris(2026, 4, 15, 8), paris(2026, 4, 15, 8, 10), 10)]}
    assert snapshot_fingerprint(compile_(edge="edge-game", sessions=used)) != snapshot_fingerprint(
        before
    )


# --------------------------------------------------------------------------- signing


def test_signature_round_trip_over_the_wire() -> None:
    key = policy_key(b"0123456789abcdef-site", "edge-fab")
    signed = sign_snapshot(compile_(), key)
    assert signed.signature
    assert verify_snapshot(signed, key)
    received = decode(PolicySnapshot, encode(signed))
    assert received == signed
    assert verify_snapshot(received, key)
    assert not verify_snapshot(received, policy_key(b"0123456789abcdef-site", "edge-game"))
    tampered = received.model_copy(update={"entries": received.entries[1:]})
    assert not verify_snapshot(tampered, key)


def test_caller_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="aware"):
        compile_(now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="version"):
        compile_(version=0)
    with pytest.raises(ValueError, match="edge"):
        compile_(edge="Edge Fab")


def test_a_shared_memo_gives_each_edge_its_own_machines() -> None:
    """Edges alike in shape share member entries, yet each lists its own machines."""
    directory = BASE
    pc = next(m for m in directory.machines.values() if m.kind == "gaming_pc")
    machines = dict(directory.machines)
    for i in range(3):
        machines[f"twin-{i}"] = replace(pc, id=f"twin-{i}", edge_id=f"edge-twin-{i}")
    directory = replace(directory, machines=machines)
    edges = sorted({m.edge_id for m in directory.machines.values()})
    memo = SnapshotMemo()
    for edge in edges:
        shared = compile_snapshot(edge, directory, {}, CFG, now=NOW, version=1, memo=memo)
        alone = compile_snapshot(edge, directory, {}, CFG, now=NOW, version=1)
        assert shared == alone
        assert snapshot_fingerprint(shared) == snapshot_fingerprint(alone)
        own = {m.machine for m in shared.machines}
        for entry in shared.entries:
            for window in entry.windows:
                assert set(window.machines) <= own
    twins = [
        compile_snapshot(f"edge-twin-{i}", directory, {}, CFG, now=NOW, version=1, memo=memo)
        for i in range(3)
    ]
    assert twins[0].entries  # members do get windows on the twin PCs
    assert {w.machines for e in twins[1].entries for w in e.windows} == {("twin-1",)}
    # The three twins have one shape: they were computed once, not three times.
    shapes = {key[1] for key in memo.entries}
    assert len(shapes) <= len(edges) - 2
