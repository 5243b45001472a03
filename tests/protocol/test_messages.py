"""The contract's codec: every bad payload becomes a typed error, never a crash."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import protocol as p

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
BADGE = "ab" * 32


def request(**kw: object) -> dict[str, object]:
    data: dict[str, object] = {
        "v": 1,
        "req_id": "r1",
        "edge": "pi-1",
        "machine": "laser-1",
        "badge": BADGE,
        "ts": NOW.isoformat(),
    }
    data.update(kw)
    return data


def test_round_trip_every_message() -> None:
    msgs: list[p.Message] = [
        p.HubStatus(online=True, ts=NOW, version="0.1"),
        p.EdgeStatus(online=False, epoch=3, machines=("m-1",)),
        p.AccessRequest(req_id="r1", edge="e", machine="m", badge=BADGE, ts=NOW),
        p.AccessDecision(
            req_id="r1",
            machine="m",
            granted=True,
            code="granted",
            message="C'est parti !",
            session_id="s1",
            ends_at=NOW + timedelta(hours=1),
            warn_at=(NOW + timedelta(minutes=50),),
            break_rule=p.BreakRule(play_min=50, break_min=10),
            not_after=NOW + timedelta(seconds=10),
        ),
        p.JournalCommand(ack_through=5, not_after=NOW),
        p.JournalCommand(replay_from=3, not_after=NOW),
        p.SessionCommand(cmd_id="c1", session_id="s1", action=p.SessionAction.END, not_after=NOW),
        p.MachineCommand(cmd_id="c2", machine="m", action=p.MachineAction.PAUSE, not_after=NOW),
        p.MachineState(machine="m", availability=p.Availability.IN_USE, ts=NOW),
        p.MachineState(
            machine="m",
            availability=p.Availability.FAULT,
            session_id="s1",
            detail=p.MachineDetail(
                kind="laser",
                state="active",
                reader=True,
                ends_at=NOW + timedelta(hours=1),
                job=True,
                faults=("actuator", "grbl"),
            ),
            ts=NOW,
        ),
        p.Telemetry(machine="m", ts=NOW, values={"bed": 60.5, "state": "Printing"}),
        p.PolicySnapshot(edge="e", version=1, issued_at=NOW, valid_until=NOW),
    ]
    for msg in msgs:
        assert p.decode(type(msg), p.encode(msg)) == msg


def test_round_trip_events() -> None:
    ev = p.SessionEnded(
        edge="e",
        seq=7,
        event_id="ev7",
        ts=NOW,
        body=p.SessionEndedBody(
            session_id="s1",
            machine="m",
            reason=p.EndReason.BADGE_OUT,
            duration_s=61.5,
            ended_at=NOW,
        ),
    )
    back = p.decode_event(p.encode(ev))
    assert back == ev
    assert back.type == "session_ended"


def test_session_ended_carries_the_run_time_of_a_laser() -> None:
    body = p.SessionEndedBody(
        session_id="s1",
        machine="laser-1",
        reason=p.EndReason.BADGE_OUT,
        duration_s=600.0,
        ended_at=NOW,
        run_s=212.5,
    )
    ev = p.SessionEnded(edge="e", seq=8, event_id="ev8", ts=NOW, body=body)
    back = p.decode_event(p.encode(ev))
    assert isinstance(back, p.SessionEnded)
    assert back.body.run_s == 212.5
    with pytest.raises(ValidationError, match="greater than or equal"):
        p.SessionEndedBody(
            session_id="s1",
            machine="m",
            reason=p.EndReason.IDLE,
            duration_s=1.0,
            ended_at=NOW,
            run_s=-1.0,
        )


def test_round_trip_job_ended() -> None:
    ev = p.JobEnded(
        edge="e",
        seq=9,
        event_id="ev9",
        ts=NOW,
        body=p.JobEndedBody(
            session_id="s1",
            machine="printer-1",
            job="porte-cles.gcode",
            result=p.JobResult.CANCELLED,
            duration_s=1834.0,
            filament_mm=412.7,
            ended_at=NOW,
        ),
    )
    back = p.decode_event(p.encode(ev))
    assert back == ev
    assert back.type == "job_ended"
    bad = json.loads(p.encode(ev))
    bad["body"]["result"] = "exploded"
    with pytest.raises(p.SchemaError):
        p.decode_event(json.dumps(bad).encode())


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", p.MalformedPayload),
        (b"42", p.MalformedPayload),
        (b"null", p.MalformedPayload),
        (b"[]", p.MalformedPayload),
        (b'"text"', p.MalformedPayload),
        (b"", p.MalformedPayload),
        (b"\xff\xfe{}", p.MalformedPayload),
        (b"{" + b" " * (p.messages.MAX_PAYLOAD + 1) + b"}", p.MalformedPayload),
        (json.dumps(request(v=2)).encode(), p.UnsupportedVersion),
        (
            json.dumps({k: v for k, v in request().items() if k != "v"}).encode(),
            p.UnsupportedVersion,
        ),
        (json.dumps({k: v for k, v in request().items() if k != "badge"}).encode(), p.SchemaError),
        (json.dumps(request(extra=1)).encode(), p.SchemaError),
        (json.dumps(request(machine="laser/#")).encode(), p.SchemaError),
        (json.dumps(request(machine="A")).encode(), p.SchemaError),
        (json.dumps(request(badge="04A22B1C")).encode(), p.SchemaError),
        (json.dumps(request(ts="2026-11-25T15:00:00")).encode(), p.SchemaError),
        (json.dumps(request(req_id=7)).encode(), p.SchemaError),
    ],
)
def test_bad_payloads_raise_typed_errors(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        p.decode(p.AccessRequest, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"42",
        b"null",
        b'{"v":1}',
        b'{"v":1,"type":"nope","body":{}}',
        b'{"v":1,"type":"usage_tick"}',
    ],
)
def test_bad_events_raise_typed_errors(payload: bytes) -> None:
    with pytest.raises(p.PayloadError):
        p.decode_event(payload)


def test_event_wrong_version_is_a_version_error() -> None:
    ev = p.UsageTick(
        edge="e",
        seq=1,
        event_id="x",
        ts=NOW,
        body=p.UsageTickBody(session_id="s", machine="m", minute=1, elapsed_s=60),
    )
    data = json.loads(p.encode(ev))
    data["v"] = 9
    with pytest.raises(p.UnsupportedVersion):
        p.decode_event(json.dumps(data).encode())


def test_grant_without_session_is_refused() -> None:
    with pytest.raises(ValueError, match="session_id"):
        p.AccessDecision(
            req_id="r", machine="m", granted=True, code="granted", message="", not_after=NOW
        )


def test_journal_command_needs_exactly_one_field() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        p.JournalCommand(not_after=NOW)
    with pytest.raises(ValueError, match="exactly one"):
        p.JournalCommand(ack_through=1, replay_from=2, not_after=NOW)


def test_machine_detail_is_typed() -> None:
    """A state's detail is a fixed set of typed fields, not a free dictionary."""
    base = {"v": 1, "machine": "m", "availability": "in_use", "ts": NOW.isoformat()}
    ok = p.decode(
        p.MachineState, json.dumps(base | {"detail": {"kind": "printer", "job": True}}).encode()
    )
    assert ok.detail is not None
    assert (ok.detail.kind, ok.detail.job, ok.detail.faults) == ("printer", True, ())
    for bad in (
        {"kind": "printer", "progress": 0.4},  # not a field
        {"kind": "printer", "job": "plaque.gcode"},  # not a bool
        {"job": True},  # no kind
        {"kind": "printer", "faults": ["x" * 65]},
        {"kind": "printer", "ends_at": "2026-11-25T15:00:00"},  # naive time
    ):
        with pytest.raises(p.PayloadError):
            p.decode(p.MachineState, json.dumps(base | {"detail": bad}).encode())


def test_messages_are_frozen() -> None:
    msg = p.HubStatus(online=True, ts=NOW)
    with pytest.raises(ValueError, match="frozen"):
        msg.online = False  # type: ignore[misc]


@given(st.binary(max_size=512))
def test_decode_never_raises_anything_else(payload: bytes) -> None:
    for model in (p.AccessRequest, p.EdgeStatus, p.MachineState, p.Telemetry):
        with contextlib.suppress(p.PayloadError):
            p.decode(model, payload)
    with contextlib.suppress(p.PayloadError):
        p.decode_event(payload)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_decode_any_json_never_raises_anything_else(value: object) -> None:
    payload = json.dumps(value).encode()
    with contextlib.suppress(p.PayloadError):
        p.decode(p.AccessRequest, payload)
