"""Hub→edge commands, signed with the receiving edge's own key, then published.

Every :class:`~protocol.messages.Signed` message (decisions, journal commands,
session and machine commands, and any added later) leaves the hub through
:meth:`EdgeCommands.send`: it finds the message's topic in the contract
(:mod:`protocol.contract`), signs it (:func:`protocol.signing.sign`) with the edge's
key from :class:`~hub.edgekeys.EdgeKeys`, and publishes it at the contract's QoS.
An edge the hub holds no key for gets nothing (counted ``unsigned_dropped`` by
message type, logged at most every 10 s): it would drop an unsigned message anyway.
"""

from __future__ import annotations

import logging
from typing import Protocol

from hub.edgekeys import EdgeKeys
from hub.metrics import Metrics, RateLimitedLog
from protocol.contract import CONTRACT, Direction
from protocol.messages import Message, Signed
from protocol.signing import sign
from protocol.topics import Kind, Topics

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

#: Which topic each signed message type travels on, from the contract.
_KIND_OF: dict[type[Message], tuple[Kind, int]] = {
    model: (row.kind, row.qos)
    for row in CONTRACT
    if row.direction is Direction.HUB_TO_EDGE
    for model in row.messages
    if issubclass(model, Signed)
}


class Publisher(Protocol):
    def publish(
        self, topic: str, message: Message, *, qos: int = 1, retain: bool = False
    ) -> bool: ...


class EdgeCommands:
    """Signs and publishes hub→edge commands (see the module docstring)."""

    def __init__(
        self, publisher: Publisher, topics: Topics, keys: EdgeKeys, metrics: Metrics
    ) -> None:
        self._publisher = publisher
        self._topics = topics
        self.keys = keys
        self._metrics = metrics
        self._topic_cache: dict[tuple[str, Kind], str] = {}

    def send(self, edge: str, message: Signed) -> bool:
        """Sign ``message`` for ``edge`` and publish it; False if not sent."""
        kind, qos = _KIND_OF[type(message)]
        key = self.keys.key(edge)
        if key is None:
            self._metrics.inc("unsigned_dropped", type(message).__name__)
            _limited.warning(
                f"nokey:{edge}",
                "edge %s has no key (fabrique hub edge-key %s): %s not sent",
                edge,
                edge,
                type(message).__name__,
            )
            return False
        topic = self._topic_cache.get((edge, kind))
        if topic is None:
            topic = self._topics.edge(edge, kind)
            if len(self._topic_cache) < 10_000:
                self._topic_cache[(edge, kind)] = topic
        return self._publisher.publish(topic, sign(message, key), qos=qos)
