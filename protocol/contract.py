"""The MQTT contract as data: for each topic, who publishes, its QoS, retain flag and messages.

:mod:`protocol.topics` builds and parses the topic strings and :mod:`protocol.messages`
defines the payloads; this table ties them together, so that the contract is written
once in code. ``docs/protocol.md`` presents it and ``tests/protocol/test_contract_doc.py``
fails when the page and this table (or the message models) disagree. The contract's
version is :data:`~protocol.messages.SCHEMA_VERSION`; what changed between versions, and
how a site migrates, is the page's "Versions and migration".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.messages import (
    SCHEMA_VERSION,
    AccessDecision,
    AccessRequest,
    CommandOutcome,
    EdgeStatus,
    HubStatus,
    JobEnded,
    JobStarted,
    JournalCommand,
    MachineCommand,
    MachineFault,
    MachineRearmed,
    MachineState,
    Message,
    OfflineDecision,
    PolicySnapshot,
    SessionCommand,
    SessionEnded,
    SessionStarted,
    Telemetry,
    UsageTick,
)
from protocol.topics import Kind

__all__ = ["CONTRACT", "SCHEMA_VERSION", "Direction", "TopicSpec", "spec"]


class Direction(enum.StrEnum):
    """Who publishes on a topic, and who reads it."""

    HUB_TO_ALL = "hub→all"
    HUB_TO_EDGE = "hub→edge"
    EDGE_TO_HUB = "edge→hub"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic of the contract (its path is ``kind`` below the site or edge root)."""

    kind: Kind
    direction: Direction
    qos: int
    retained: bool
    #: The message models that may travel on the topic.
    messages: tuple[type[Message], ...]
    #: What it is for, in a few words.
    what: str


CONTRACT: tuple[TopicSpec, ...] = (
    TopicSpec(
        Kind.HUB_STATUS,
        Direction.HUB_TO_ALL,
        1,
        True,
        (HubStatus,),
        "hub online/offline (its last will says offline), hub time",
    ),
    TopicSpec(
        Kind.EDGE_STATUS,
        Direction.EDGE_TO_HUB,
        1,
        True,
        (EdgeStatus,),
        "edge online/offline (last will), epoch, version, machines",
    ),
    TopicSpec(
        Kind.REQ_ACCESS,
        Direction.EDGE_TO_HUB,
        1,
        False,
        (AccessRequest,),
        "a badge was presented at a machine",
    ),
    TopicSpec(
        Kind.CMD_ACCESS,
        Direction.HUB_TO_EDGE,
        0,
        False,
        (AccessDecision,),
        "grant or refusal for one request (QoS 0: it expires, see below)",
    ),
    TopicSpec(
        Kind.EVT,
        Direction.EDGE_TO_HUB,
        1,
        False,
        (
            SessionStarted,
            UsageTick,
            SessionEnded,
            OfflineDecision,
            MachineFault,
            JobEnded,
            JobStarted,
            MachineRearmed,
        ),
        "journaled events, one topic so that order holds",
    ),
    TopicSpec(
        Kind.CMD_JOURNAL,
        Direction.HUB_TO_EDGE,
        1,
        False,
        (JournalCommand,),
        "acknowledgement or replay request",
    ),
    TopicSpec(
        Kind.CMD_SESSION,
        Direction.HUB_TO_EDGE,
        1,
        False,
        (SessionCommand,),
        "end / extend / warn a session",
    ),
    TopicSpec(
        Kind.CMD_MACHINE,
        Direction.HUB_TO_EDGE,
        1,
        False,
        (MachineCommand,),
        "maintenance, pause / resume / cancel a job, re-arm a laser",
    ),
    TopicSpec(
        Kind.OUTCOME,
        Direction.EDGE_TO_HUB,
        1,
        False,
        (CommandOutcome,),
        "applied / refused (code, French reason) / expired, per cmd_id",
    ),
    TopicSpec(
        Kind.POLICY,
        Direction.HUB_TO_EDGE,
        1,
        True,
        (PolicySnapshot,),
        "the edge's signed offline policy snapshot",
    ),
    TopicSpec(
        Kind.STATE,
        Direction.EDGE_TO_HUB,
        1,
        True,
        (MachineState,),
        "a machine's availability and state",
    ),
    TopicSpec(
        Kind.TELE,
        Direction.EDGE_TO_HUB,
        0,
        False,
        (Telemetry,),
        "telemetry (temperatures, progress, power); never used for metering",
    ),
)


def spec(kind: Kind) -> TopicSpec:
    """The contract's row for ``kind``."""
    for row in CONTRACT:
        if row.kind is kind:
            return row
    raise KeyError(kind)  # pragma: no cover - the table covers every Kind (tested)
