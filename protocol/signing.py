"""Signing of policy snapshots.

The hub signs each edge's snapshot with a per-edge key derived from the site secret,
and the edge verifies it before deciding anything offline. HMAC keeps the edge free
of any public-key dependency; a stolen edge already holds the site secret (it hashes
badges with it), so the per-edge derivation limits the blast radius of a forged
snapshot to the topics that edge may publish anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from protocol.messages import PolicySnapshot


def policy_key(site_secret: bytes, edge: str) -> bytes:
    """The key that signs ``edge``'s policy snapshots."""
    return hmac.new(site_secret, f"fabrique-policy:{edge}".encode(), hashlib.sha256).digest()


def canonical_json(data: dict[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(snapshot: PolicySnapshot, key: bytes) -> str:
    data = snapshot.model_dump(mode="json", exclude={"signature"})
    return hmac.new(key, canonical_json(data), hashlib.sha256).hexdigest()


def sign_snapshot(snapshot: PolicySnapshot, key: bytes) -> PolicySnapshot:
    """Return a copy of ``snapshot`` carrying its signature."""
    return snapshot.model_copy(update={"signature": _digest(snapshot, key)})


def verify_snapshot(snapshot: PolicySnapshot, key: bytes) -> bool:
    """True when the signature matches the snapshot's content."""
    if not snapshot.signature:
        return False
    return hmac.compare_digest(snapshot.signature, _digest(snapshot, key))
