"""The agent's use of offline decisions: one signature check per snapshot, not per badge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.offline import OfflineCode, decide_offline
from edge.session import (
    Append,
    Feedback,
    FeedbackKind,
    PowerOff,
    SessionConfig,
    SessionMachine,
    State,
)
from protocol.messages import (
    EndReason,
    OfflineRule,
    PolicySnapshot,
    SessionEndedBody,
    SnapshotEntry,
    SnapshotMachine,
    SnapshotWindow,
)
from protocol.signing import policy_key, sign_snapshot

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
KEY = policy_key(b"offline-test-secret-0123", "pi-a")
BADGE = "ab" * 32


def snapshot() -> PolicySnapshot:
    window = SnapshotWindow(
        start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=2), machines=("m-1",)
    )
    return sign_snapshot(
        PolicySnapshot(
            edge="pi-a",
            version=3,
            issued_at=NOW,
            valid_until=NOW + timedelta(hours=30),
            machines=(SnapshotMachine(machine="m-1", zone="fablab", rule=OfflineRule.ALLOW),),
            entries=(SnapshotEntry(badge=BADGE, windows=(window,)),),
        ),
        KEY,
    )


def test_verified_skips_only_the_signature_check() -> None:
    good = snapshot()
    tampered = good.model_copy(update={"version": 4})
    assert decide_offline(good, KEY, "m-1", BADGE, NOW).granted
    refused = decide_offline(tampered, KEY, "m-1", BADGE, NOW)
    assert refused.code is OfflineCode.BAD_SIGNATURE
    # The agent passes verified=True only for snapshots it verified on arrival.
    trusted = decide_offline(good, KEY, "m-1", BADGE, NOW, verified=True)
    assert trusted.granted
    assert trusted.ends_at == NOW + timedelta(hours=2)
    unknown = decide_offline(good, KEY, "m-1", "cd" * 32, NOW, verified=True)
    assert unknown.code is OfflineCode.UNKNOWN_BADGE


def test_shutdown_ends_the_session_exactly_and_switches_off() -> None:
    machine = SessionMachine("m-1", SessionConfig(), new_id=iter(["r1", "s1"]).__next__)
    machine.link(False, 0.0)
    machine.badge(BADGE, 10.0)
    verdict = decide_offline(snapshot(), KEY, "m-1", BADGE, NOW, verified=True)
    machine.offline_verdict("r1", verdict, 10.0, NOW)
    assert machine.state is State.ACTIVE
    effects = machine.shutdown(95.5)
    ended = [e.body for e in effects if isinstance(e, Append)]
    assert len(ended) == 2  # the last minute tick, then the end
    assert isinstance(ended[-1], SessionEndedBody)
    assert ended[-1].reason is EndReason.EDGE_RESTART
    assert ended[-1].duration_s == 85.5
    assert isinstance(effects[-2], PowerOff)
    assert isinstance(effects[-1], Feedback)
    assert effects[-1].kind is FeedbackKind.INFO
    assert machine.state is State.IDLE
    # Nothing running: shutdown still switches off, and forgets a pending request.
    idle = SessionMachine("m-2")
    idle.link(True, 0.0)
    idle.badge(BADGE, 1.0)
    assert idle.shutdown(2.0) == [PowerOff()]
    assert idle.state is State.IDLE
