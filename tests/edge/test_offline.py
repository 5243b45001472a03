"""Offline decisions from the signed snapshot: signature, expiry, and the rule matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.offline import OfflineCode, decide_offline
from protocol.messages import (
    OfflineRule,
    PolicySnapshot,
    SnapshotEntry,
    SnapshotMachine,
    SnapshotWindow,
)
from protocol.signing import policy_key, sign_snapshot

KEY = policy_key(b"site-secret-of-the-fablab", "pi-1")
NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)  # 15h00 in Paris (CET)
STAFF = "5" * 64
MEMBER = "a" * 64
STRANGER = "f" * 64
MACHINES = {
    "printer-1": OfflineRule.ALLOW,
    "laser-1": OfflineRule.STAFF_ONLY,
    "cnc-1": OfflineRule.DENY,
}


def window(start: datetime, end: datetime, *machines: str) -> SnapshotWindow:
    return SnapshotWindow(start=start, end=end, machines=machines)


def snapshot(
    *,
    member_windows: tuple[SnapshotWindow, ...] | None = None,
    quota: dict[str, int] | None = None,
    staff_machines: tuple[str, ...] = ("printer-1", "laser-1"),
    valid_until: datetime = NOW + timedelta(hours=36),
    key: bytes = KEY,
) -> PolicySnapshot:
    if member_windows is None:
        member_windows = (window(NOW - timedelta(hours=1), NOW + timedelta(hours=1), "printer-1"),)
    unsigned = PolicySnapshot(
        edge="pi-1",
        version=7,
        issued_at=NOW - timedelta(hours=1),
        valid_until=valid_until,
        machines=tuple(
            SnapshotMachine(machine=m, zone="fablab", rule=rule) for m, rule in MACHINES.items()
        ),
        entries=(
            SnapshotEntry(
                badge=STAFF,
                staff=True,
                windows=(
                    window(NOW - timedelta(days=1), NOW + timedelta(days=6), *staff_machines),
                ),
            ),
            SnapshotEntry(badge=MEMBER, windows=member_windows, quota_min=quota or {}),
        ),
    )
    return sign_snapshot(unsigned, key)


def test_a_member_in_a_window_is_granted_until_its_end() -> None:
    verdict = decide_offline(snapshot(), KEY, "printer-1", MEMBER, NOW)
    assert verdict.granted
    assert verdict.code is OfflineCode.GRANTED
    assert verdict.ends_at == NOW + timedelta(hours=1)
    assert verdict.snapshot_version == 7
    assert not verdict.staff
    assert verdict.message == "Le serveur ne répond pas : accès hors-ligne accordé jusqu'à 16h00."


def test_the_remaining_quota_caps_the_grant() -> None:
    verdict = decide_offline(snapshot(quota={"fablab": 25}), KEY, "printer-1", MEMBER, NOW)
    assert verdict.granted
    assert verdict.ends_at == NOW + timedelta(minutes=25)
    assert verdict.message.endswith("jusqu'à 15h25.")


def test_a_quota_larger_than_the_window_leaves_the_window_end() -> None:
    verdict = decide_offline(snapshot(quota={"fablab": 600}), KEY, "printer-1", MEMBER, NOW)
    assert verdict.ends_at == NOW + timedelta(hours=1)


def test_a_used_up_quota_is_refused() -> None:
    verdict = decide_offline(snapshot(quota={"fablab": 0}), KEY, "printer-1", MEMBER, NOW)
    assert not verdict.granted
    assert verdict.code is OfflineCode.QUOTA_EXHAUSTED
    assert verdict.ends_at is None


def test_the_longest_covering_window_wins_and_dates_show_another_day() -> None:
    late = NOW.replace(hour=23, minute=30) + timedelta(hours=1)  # 01h30 in Paris next day
    windows = (
        window(NOW - timedelta(hours=1), NOW + timedelta(minutes=30), "printer-1"),
        window(NOW - timedelta(minutes=5), late, "printer-1"),
        window(NOW, NOW + timedelta(days=2), "laser-1"),  # another machine
    )
    verdict = decide_offline(snapshot(member_windows=windows), KEY, "printer-1", MEMBER, NOW)
    assert verdict.ends_at == late
    assert verdict.message.endswith("jusqu'à 12/03 à 1h30.")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW + timedelta(minutes=1), NOW + timedelta(hours=1)),  # not open yet
        (NOW - timedelta(hours=1), NOW),  # just closed (end is exclusive)
    ],
)
def test_outside_any_window_is_refused(start: datetime, end: datetime) -> None:
    snap = snapshot(member_windows=(window(start, end, "printer-1"),))
    verdict = decide_offline(snap, KEY, "printer-1", MEMBER, NOW)
    assert (verdict.granted, verdict.code) == (False, OfflineCode.OUTSIDE_SLOT)


# The rule matrix: who × machine rule, with a valid, fresh snapshot.
@pytest.mark.parametrize(
    ("machine", "badge", "granted", "code"),
    [
        ("printer-1", STAFF, True, OfflineCode.GRANTED_STAFF),
        ("printer-1", MEMBER, True, OfflineCode.GRANTED),
        ("printer-1", STRANGER, False, OfflineCode.UNKNOWN_BADGE),
        ("laser-1", STAFF, True, OfflineCode.GRANTED_STAFF),
        ("laser-1", MEMBER, False, OfflineCode.STAFF_ONLY),
        ("laser-1", STRANGER, False, OfflineCode.UNKNOWN_BADGE),
        ("cnc-1", STAFF, False, OfflineCode.MACHINE_DENIED),
        ("cnc-1", MEMBER, False, OfflineCode.MACHINE_DENIED),
        ("lathe-1", STAFF, False, OfflineCode.UNKNOWN_MACHINE),
    ],
)
def test_rule_matrix(machine: str, badge: str, granted: bool, code: OfflineCode) -> None:
    verdict = decide_offline(snapshot(), KEY, machine, badge, NOW)
    assert (verdict.granted, verdict.code) == (granted, code)
    assert (verdict.ends_at is not None) == granted


def test_staff_only_message_is_the_plain_french_one() -> None:
    verdict = decide_offline(snapshot(), KEY, "laser-1", MEMBER, NOW)
    assert verdict.message == "Hors-ligne, seuls les animateurs peuvent démarrer cette machine."


def test_staff_grants_are_capped() -> None:
    verdict = decide_offline(
        snapshot(), KEY, "laser-1", STAFF, NOW, staff_grant=timedelta(minutes=90)
    )
    assert verdict.staff
    assert verdict.ends_at == NOW + timedelta(minutes=90)
    assert verdict.message == "Hors-ligne : machine ouverte jusqu'à 16h30."


def test_staff_cannot_open_a_machine_the_hub_left_out() -> None:
    """The hub leaves machines in maintenance out of the staff window."""
    snap = snapshot(staff_machines=("printer-1",))
    verdict = decide_offline(snap, KEY, "laser-1", STAFF, NOW)
    assert (verdict.granted, verdict.code) == (False, OfflineCode.NOT_ALLOWED)


@pytest.mark.parametrize("late", [timedelta(0), timedelta(days=3)])
def test_an_expired_snapshot_grants_staff_only(late: timedelta) -> None:
    snap = snapshot(valid_until=NOW - late)
    member = decide_offline(snap, KEY, "printer-1", MEMBER, NOW)
    staff = decide_offline(snap, KEY, "printer-1", STAFF, NOW)
    assert (member.granted, member.code) == (False, OfflineCode.EXPIRED)
    assert (staff.granted, staff.code) == (True, OfflineCode.GRANTED_STAFF)


@pytest.mark.parametrize("how", ["other key", "tampered", "unsigned"])
@pytest.mark.parametrize("badge", [STAFF, MEMBER])
def test_a_bad_signature_grants_nobody_not_even_staff(how: str, badge: str) -> None:
    snap = snapshot(key=b"x" * 32 if how == "other key" else KEY)
    if how == "tampered":  # a member turned into staff after signing
        entries = tuple(e.model_copy(update={"staff": True}) for e in snap.entries)
        snap = snap.model_copy(update={"entries": entries})
    elif how == "unsigned":
        snap = snap.model_copy(update={"signature": ""})
    verdict = decide_offline(snap, KEY, "printer-1", badge, NOW)
    assert (verdict.granted, verdict.code) == (False, OfflineCode.BAD_SIGNATURE)
    assert verdict.ends_at is None


def test_no_snapshot_grants_nobody() -> None:
    for badge in (STAFF, MEMBER):
        verdict = decide_offline(None, KEY, "printer-1", badge, NOW)
        assert (verdict.granted, verdict.code) == (False, OfflineCode.NO_POLICY)
        assert verdict.snapshot_version is None


def test_every_message_fits_a_reader_screen() -> None:
    snaps = [None, snapshot(), snapshot(valid_until=NOW), snapshot(key=b"y" * 32)]
    snaps.append(snapshot(quota={"fablab": 0}))
    messages = {
        decide_offline(s, KEY, m, b, NOW).message
        for s in snaps
        for m in (*MACHINES, "lathe-1")
        for b in (STAFF, MEMBER, STRANGER)
    }
    assert len(messages) >= 9
    for message in messages:
        assert 0 < len(message) <= 160, message


def test_time_used_on_this_edge_since_the_snapshot_is_taken_off_the_quota() -> None:
    snap = snapshot(quota={"fablab": 90})
    verdict = decide_offline(snap, KEY, "printer-1", MEMBER, NOW, used_s=50 * 60)
    assert verdict.granted
    assert verdict.ends_at == NOW + timedelta(minutes=40)
    spent = decide_offline(snap, KEY, "printer-1", MEMBER, NOW, used_s=89.5 * 60)
    assert not spent.granted
    assert spent.code is OfflineCode.QUOTA_EXHAUSTED
