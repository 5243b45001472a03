"""Authentication of what the hub sends an edge: policy snapshots and commands.

Each edge has **its own key**: 32 random bytes the hub generates and keeps
(``fabrique hub edge-key EDGE``, stored by :mod:`hub.edgekeys`) and that only this
edge holds besides the hub. Nothing about it derives from the site secret, which
every edge and gaming PC holds to hash badges: a player who reads a gaming PC's
files learns that PC's key, and so can forge only what that PC would accept anyway,
never another edge's snapshot or commands.

HMAC-SHA256 keeps the edge free of any public-key dependency. Two things are signed:

* a :class:`~protocol.messages.PolicySnapshot`: ``signature`` over the canonical JSON
  of every other field (unchanged since contract version 1, only the key changed);
* every :class:`~protocol.messages.Signed` command (``cmd/access``, ``cmd/journal``,
  ``cmd/session``, ``cmd/machine``): ``mac`` over :func:`canonical_bytes`, the
  message's type name and canonical JSON of every field but ``mac``. Generic over the
  model, so a field or an action added later is covered without more code; the type
  name keeps a MAC from being valid for another kind of message.

Demo and tests only: :func:`demo_edge_key` derives a key from the site secret for an
edge that was given none (hub and edge both in ``demo`` mode). Never in production.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any, Final, TypeVar

from protocol.messages import PolicySnapshot, Signed

#: Length of an edge key, in bytes (its file holds it as 64 hex characters).
KEY_BYTES: Final = 32

S = TypeVar("S", bound=Signed)


class EdgeKeyError(ValueError):
    """An edge key's text is not 64 hex characters."""


def new_edge_key() -> bytes:
    """A fresh random edge key."""
    return secrets.token_bytes(KEY_BYTES)


def key_to_text(key: bytes) -> str:
    """The key as written in a key file (hex, no newline)."""
    return key.hex()


def key_from_text(text: str) -> bytes:
    """Parse a key file's content (hex, surrounding blanks ignored).

    Raises:
        EdgeKeyError: not exactly 64 hex characters.
    """
    value = text.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError as err:
        raise EdgeKeyError("an edge key is 64 hexadecimal characters") from err
    if len(key) != KEY_BYTES:
        raise EdgeKeyError("an edge key is 64 hexadecimal characters")
    return key


def demo_edge_key(site_secret: bytes, edge: str) -> bytes:
    """Demo/tests only: a key derived from the site secret (anyone holding it can forge)."""
    return hmac.new(site_secret, f"fabrique-demo-edge-key:{edge}".encode(), hashlib.sha256).digest()


def policy_key(site_secret: bytes, edge: str) -> bytes:
    """Contract version 1's snapshot key (derived from the site secret): tests only."""
    return hmac.new(site_secret, f"fabrique-policy:{edge}".encode(), hashlib.sha256).digest()


def canonical_json(data: dict[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- commands


def canonical_bytes(message: Signed) -> bytes:
    """What a command's MAC covers: its type name, a newline, canonical JSON of all
    fields but ``mac`` (as they travel: the JSON form of the model)."""
    data = message.model_dump(mode="json", exclude={"mac"})
    return type(message).__name__.encode() + b"\n" + canonical_json(data)


def mac_of(message: Signed, key: bytes) -> str:
    """The hex MAC of ``message`` under ``key``."""
    return hmac.new(key, canonical_bytes(message), hashlib.sha256).hexdigest()


def sign(message: S, key: bytes) -> S:
    """A copy of ``message`` carrying its MAC under ``key`` (the receiving edge's)."""
    return message.model_copy(update={"mac": mac_of(message, key)})


def verify(message: Signed, key: bytes) -> bool:
    """True when ``message`` carries a MAC valid under ``key``."""
    if not message.mac or not key:
        return False
    return hmac.compare_digest(message.mac, mac_of(message, key))


# --------------------------------------------------------------------------- snapshots


def _digest(snapshot: PolicySnapshot, key: bytes) -> str:
    data = snapshot.model_dump(mode="json", exclude={"signature"})
    return hmac.new(key, canonical_json(data), hashlib.sha256).hexdigest()


def sign_snapshot(snapshot: PolicySnapshot, key: bytes) -> PolicySnapshot:
    """Return a copy of ``snapshot`` carrying its signature."""
    return snapshot.model_copy(update={"signature": _digest(snapshot, key)})


def verify_snapshot(snapshot: PolicySnapshot, key: bytes) -> bool:
    """True when the signature matches the snapshot's content."""
    if not snapshot.signature or not key:
        return False
    return hmac.compare_digest(snapshot.signature, _digest(snapshot, key))
