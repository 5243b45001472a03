"""The policy snapshot in use: verified on arrival, kept across restarts.

:class:`PolicyStore` owns the hub's latest signed policy snapshot for this edge
(what :func:`edge.offline.decide_offline` decides from) and its cache file:

* a snapshot is accepted only when it is for this edge and its signature verifies
  with the edge's policy key; an older version than the one in use is ignored;
* each accepted snapshot is written to the cache file atomically (temporary file,
  then rename), and the cache is read back at start, verified again: a damaged or
  forged file is ignored, never trusted;
* a new version records a *policy mark* in the journal (the seq when it arrived):
  the snapshot's quotas cannot know what was used on this edge after that, so
  :meth:`PolicyStore.used_since` reads it from the journal.

Runs on the agent thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from edge.journal import Journal, JournalError
from protocol.errors import PayloadError
from protocol.files import write_private
from protocol.messages import PolicySnapshot, decode, encode
from protocol.signing import verify_snapshot

__all__ = ["PolicyStore"]

logger = logging.getLogger(__name__)


class PolicyStore:
    """The verified policy snapshot of one edge and its cache file (see the module docstring).

    Args:
        path: the cache file (``policy.json`` beside the journal by default).
        edge_id: snapshots for another edge are refused.
        key: this edge's policy key (:func:`protocol.signing.policy_key`).
        journal: where policy marks are recorded and usage since them is read.
    """

    def __init__(self, path: Path, edge_id: str, key: bytes, journal: Journal) -> None:
        self.path = path
        self.edge_id = edge_id
        self.key = key
        self.journal = journal
        self._snapshot: PolicySnapshot | None = None
        #: Journal seq when the snapshot in use arrived (its quotas predate what follows).
        self._mark = 0

    @property
    def snapshot(self) -> PolicySnapshot | None:
        """The verified snapshot in use, if any."""
        return self._snapshot

    @property
    def version(self) -> int | None:
        """Version of the snapshot in use, if any."""
        snapshot = self._snapshot
        return snapshot.version if snapshot is not None else None

    def restore(self) -> None:
        """At start (journal open): the cached snapshot, if it verifies, and its mark."""
        self._snapshot = self._load()
        mark = self.journal.policy_mark()
        # No mark yet (a cache from before marks existed): count from now on.
        self._mark = mark if mark is not None else self.journal.last_seq()

    def accept(self, snapshot: PolicySnapshot) -> bool:
        """A snapshot from the hub: keep it when it verifies and is not older."""
        if snapshot.edge != self.edge_id or not verify_snapshot(snapshot, self.key):
            logger.error(
                "edge %s: policy snapshot v%d rejected (bad signature or edge)",
                self.edge_id,
                snapshot.version,
            )
            return False
        current = self._snapshot
        if current is not None and snapshot.version < current.version:
            logger.info(
                "older policy snapshot v%d ignored (have v%d)", snapshot.version, current.version
            )
            return False
        if current is None or snapshot.version > current.version:
            try:
                self._mark = self.journal.remember_policy()
            except JournalError as err:  # the older mark over-counts: the safe side
                logger.error("cannot record the policy mark: %s", err)
        self._snapshot = snapshot
        logger.info(
            "edge %s: policy snapshot v%d (%d badges)",
            self.edge_id,
            snapshot.version,
            len(snapshot.entries),
        )
        self._save(snapshot)
        return True

    def used_since(self, machine: str, badge: str) -> float:
        """Seconds ``badge`` used this edge's machines of ``machine``'s zone since the
        snapshot in use arrived: its quotas cannot know them."""
        snapshot = self._snapshot
        if snapshot is None:
            return 0.0
        zone = next((m.zone for m in snapshot.machines if m.machine == machine), None)
        same_zone: Collection[str] = {m.machine for m in snapshot.machines if m.zone == zone}
        try:
            return self.journal.badge_usage_after(self._mark, badge, same_zone)
        except JournalError as err:
            logger.error("cannot read this badge's usage from the journal: %s", err)
            return 0.0

    # ------------------------------------------------------------------ the file

    def _load(self) -> PolicySnapshot | None:
        path = self.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            logger.warning("cannot read the policy cache %s: %s", path, err)
            return None
        try:
            snapshot = decode(PolicySnapshot, raw)
        except PayloadError as err:
            logger.warning("policy cache %s unreadable: %s", path, err)
            return None
        if snapshot.edge != self.edge_id or not verify_snapshot(snapshot, self.key):
            logger.warning("policy cache %s does not verify: ignored", path)
            return None
        logger.info("policy snapshot v%d restored from %s", snapshot.version, path)
        return snapshot

    def _save(self, snapshot: PolicySnapshot) -> None:
        path = self.path
        try:
            write_private(path, encode(snapshot))  # 0600: entitlements per badge hash
        except OSError as err:
            logger.warning("cannot keep the policy snapshot in %s: %s", path, err)
