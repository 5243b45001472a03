"""The MAC of hub→edge commands (contract v2) and the bounds of what an edge reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import Field

from protocol import messages as p
from protocol.errors import MalformedPayload, UnsupportedVersion
from protocol.signing import (
    EdgeKeyError,
    canonical_bytes,
    key_from_text,
    key_to_text,
    new_edge_key,
    sign,
    verify,
)

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
KEY_A = new_edge_key()
KEY_B = new_edge_key()


def commands() -> list[p.Signed]:
    return [
        p.AccessDecision(
            req_id="r1",
            machine="m",
            granted=True,
            code="granted",
            message="C'est parti !",
            session_id="s1",
            ends_at=NOW + timedelta(hours=1),
            warn_at=(NOW + timedelta(minutes=50),),
            not_after=NOW + timedelta(seconds=10),
        ),
        p.JournalCommand(ack_through=5, not_after=NOW),
        p.SessionCommand(cmd_id="c1", session_id="s1", action=p.SessionAction.END, not_after=NOW),
        p.MachineCommand(cmd_id="c2", machine="m", action=p.MachineAction.PAUSE, not_after=NOW),
    ]


@pytest.mark.parametrize("command", commands(), ids=lambda c: type(c).__name__)
def test_a_signed_command_verifies_after_the_wire_under_its_key_only(command: p.Signed) -> None:
    signed = sign(command, KEY_A)
    received = p.decode(type(command), p.encode(signed))
    assert received.v == 2
    assert verify(received, KEY_A)
    assert not verify(received, KEY_B)
    assert not verify(command, KEY_A)  # unsigned
    assert not verify(received, b"")


@pytest.mark.parametrize("command", commands(), ids=lambda c: type(c).__name__)
def test_changing_any_field_breaks_the_mac(command: p.Signed) -> None:
    signed = sign(command, KEY_A)
    data = json.loads(p.encode(signed))
    for field, value in data.items():
        if field in ("mac", "v"):
            continue
        tampered = dict(data)
        if isinstance(value, bool):
            tampered[field] = not value
        elif isinstance(value, int):
            tampered[field] = value + 1
        elif isinstance(value, str) and field in ("not_after", "ends_at"):
            tampered[field] = (NOW + timedelta(days=1)).isoformat()
        elif isinstance(value, str) and field == "action":
            tampered[field] = "resume" if value != "resume" else "end"
        elif isinstance(value, str):
            tampered[field] = value + "x"
        else:
            continue
        try:
            again = p.decode(type(command), json.dumps(tampered).encode())
        except p.PayloadError:
            continue  # the schema refuses it anyway
        assert not verify(again, KEY_A), field


def test_the_mac_is_generic_over_the_model() -> None:
    """A field added later (i9's new actions, outcome messages) is covered with no code."""

    class FutureCommand(p.Signed):
        cmd_id: str
        extra: int = Field(default=0)

    cmd = FutureCommand(cmd_id="c", extra=1, not_after=NOW)
    signed = sign(cmd, KEY_A)
    assert verify(signed, KEY_A)
    assert not verify(signed.model_copy(update={"extra": 2}), KEY_A)
    assert canonical_bytes(cmd).startswith(b"FutureCommand\n")


def test_a_mac_is_bound_to_its_message_type() -> None:
    session = p.SessionCommand(
        cmd_id="c1", session_id="s1", action=p.SessionAction.END, not_after=NOW
    )
    assert canonical_bytes(session).startswith(b"SessionCommand\n")
    assert b'"mac"' not in canonical_bytes(sign(session, KEY_A))


def test_a_version_1_command_is_refused() -> None:
    data = json.loads(p.encode(commands()[3]))
    data["v"] = 1
    with pytest.raises(UnsupportedVersion, match="v2"):
        p.decode(p.MachineCommand, json.dumps(data).encode())


def test_an_oversized_snapshot_is_refused_on_its_size_alone() -> None:
    with pytest.raises(MalformedPayload, match="exceeds"):
        p.decode(p.PolicySnapshot, b"{" + b" " * p.MAX_POLICY_PAYLOAD)


def test_key_text_round_trip_and_bad_keys() -> None:
    key = new_edge_key()
    assert key_from_text(key_to_text(key) + "\n") == key
    for bad in ("", "zz" * 32, "ab" * 31, "ab" * 33):
        with pytest.raises(EdgeKeyError):
            key_from_text(bad)
