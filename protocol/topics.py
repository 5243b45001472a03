"""MQTT topics of the contract (DESIGN §3), built and parsed in one place.

All topics live under ``fabrique/v1/{site}``. Builders validate every id so that no
topic can ever contain a wildcard; :func:`parse_topic` is the inverse and raises
:class:`~protocol.errors.TopicError` for anything outside the contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.errors import TopicError
from protocol.ids import is_ident

PREFIX = "fabrique/v1"


class Kind(enum.StrEnum):
    """What a topic carries; the value is its path below ``edge/{edge}/``."""

    HUB_STATUS = "hub/status"
    EDGE_STATUS = "status"
    REQ_ACCESS = "req/access"
    CMD_ACCESS = "cmd/access"
    EVT = "evt"
    CMD_JOURNAL = "cmd/journal"
    CMD_SESSION = "cmd/session"
    CMD_MACHINE = "cmd/machine"
    OUTCOME = "outcome"
    POLICY = "policy"
    STATE = "state"
    TELE = "tele"


_EDGE_KINDS = {k.value: k for k in Kind if k not in (Kind.HUB_STATUS, Kind.STATE, Kind.TELE)}


def _check(kind: str, value: str) -> str:
    if not is_ident(value):
        raise TopicError(f"invalid {kind} id {value!r}: expected [a-z0-9-]{{1,32}}", reason="id")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one site.

    >>> Topics("marseille").req_access("pi-laser")
    'fabrique/v1/marseille/edge/pi-laser/req/access'
    """

    site: str

    def __post_init__(self) -> None:
        _check("site", self.site)

    @property
    def root(self) -> str:
        """``fabrique/v1/{site}``."""
        return f"{PREFIX}/{self.site}"

    def hub_status(self) -> str:
        """Retained hub liveness, with the hub's last will."""
        return f"{self.root}/hub/status"

    def edge(self, edge: str, kind: Kind, machine: str | None = None) -> str:
        """Topic of ``kind`` for ``edge`` (and ``machine`` for state/tele)."""
        base = f"{self.root}/edge/{_check('edge', edge)}/{kind.value}"
        if kind in (Kind.STATE, Kind.TELE):
            if machine is None:
                raise TopicError(f"{kind.value} topics need a machine id", reason="id")
            return f"{base}/{_check('machine', machine)}"
        if machine is not None:
            raise TopicError(f"{kind.value} topics take no machine id", reason="id")
        if kind is Kind.HUB_STATUS:
            raise TopicError("hub/status is not under an edge", reason="id")
        return base

    def edge_status(self, edge: str) -> str:
        return self.edge(edge, Kind.EDGE_STATUS)

    def req_access(self, edge: str) -> str:
        return self.edge(edge, Kind.REQ_ACCESS)

    def cmd_access(self, edge: str) -> str:
        return self.edge(edge, Kind.CMD_ACCESS)

    def evt(self, edge: str) -> str:
        return self.edge(edge, Kind.EVT)

    def cmd_journal(self, edge: str) -> str:
        return self.edge(edge, Kind.CMD_JOURNAL)

    def cmd_session(self, edge: str) -> str:
        return self.edge(edge, Kind.CMD_SESSION)

    def cmd_machine(self, edge: str) -> str:
        return self.edge(edge, Kind.CMD_MACHINE)

    def outcome(self, edge: str) -> str:
        return self.edge(edge, Kind.OUTCOME)

    def policy(self, edge: str) -> str:
        return self.edge(edge, Kind.POLICY)

    def state(self, edge: str, machine: str) -> str:
        return self.edge(edge, Kind.STATE, machine)

    def tele(self, edge: str, machine: str) -> str:
        return self.edge(edge, Kind.TELE, machine)

    # Subscription filters (wildcards only ever appear here).
    def all_edges(self, kind: Kind) -> str:
        """Filter matching ``kind`` for every edge of the site."""
        if kind in (Kind.STATE, Kind.TELE):
            return f"{self.root}/edge/+/{kind.value}/+"
        if kind is Kind.HUB_STATUS:
            return self.hub_status()
        return f"{self.root}/edge/+/{kind.value}"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A topic taken apart: site, kind, and the edge and machine it names."""

    site: str
    kind: Kind
    edge: str | None = None
    machine: str | None = None


def parse_topic(topic: str) -> ParsedTopic:
    """Inverse of the builders.

    Raises:
        TopicError: the topic is not one of the contract's topics.
    """
    parts = topic.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise TopicError(f"topic {topic!r} is not under {PREFIX}/", reason="root")
    site = _check("site", parts[2])
    rest = parts[3:]
    if rest == ["hub", "status"]:
        return ParsedTopic(site=site, kind=Kind.HUB_STATUS)
    if len(rest) < 3 or rest[0] != "edge":
        raise TopicError(f"unknown topic {topic!r}", reason="kind")
    edge = _check("edge", rest[1])
    tail = rest[2:]
    if len(tail) == 2 and tail[0] in (Kind.STATE.value, Kind.TELE.value):
        return ParsedTopic(
            site=site, kind=Kind(tail[0]), edge=edge, machine=_check("machine", tail[1])
        )
    kind = _EDGE_KINDS.get("/".join(tail))
    if kind is None:
        raise TopicError(f"unknown topic {topic!r}", reason="kind")
    return ParsedTopic(site=site, kind=kind, edge=edge)
