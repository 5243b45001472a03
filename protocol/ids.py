"""Identifier types shared by every part of fabrique.

Site, edge and machine ids appear inside MQTT topics, so they are restricted to
``[a-z0-9-]{1,32}``: never ``+``, ``#`` or ``/``, which would turn a topic into a
wildcard or change its depth. Badge identifiers never travel raw: the edge sends a
keyed hash (HMAC-SHA256 with the per-site secret) of the normalised UID.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[a-z0-9-]{1,32}$"
_ID_RE = re.compile(ID_PATTERN)

#: A site, edge, machine or zone id, safe inside an MQTT topic level.
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: A keyed badge hash: 64 lowercase hex digits (HMAC-SHA256).
BADGE_HASH_PATTERN = r"^[0-9a-f]{64}$"
BadgeHash = Annotated[str, StringConstraints(pattern=BADGE_HASH_PATTERN)]

#: Request, event, command and session ids chosen by their producer (UUID hex or similar).
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # noqa: S105 - not a secret
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]

_UID_SEPARATORS = re.compile(r"[\s:\-]")
_HEX_RE = re.compile(r"^[0-9A-F]+$")


def is_ident(value: str) -> bool:
    """Tell whether ``value`` is a valid site/edge/machine/zone id."""
    return bool(_ID_RE.match(value))


def normalise_uid(raw: str) -> str:
    """Return a badge UID in its canonical form: uppercase hex, no separators.

    Readers print the same card as ``04:a2:2b:1c``, ``04A22B1C`` or ``04 A2 2B 1C``;
    all of them must hash to the same value. Non-hex UIDs (some keyboard-wedge
    readers print decimal) are kept as their stripped uppercase digits.

    Raises:
        ValueError: the UID is empty once separators are removed, or holds
            characters that are neither hex digits nor separators.
    """
    uid = _UID_SEPARATORS.sub("", raw).upper()
    if not uid:
        raise ValueError("empty badge UID")
    if not _HEX_RE.match(uid):
        raise ValueError(f"badge UID {raw!r} is not hexadecimal")
    return uid


def badge_hash(site_secret: bytes, raw_uid: str) -> str:
    """Keyed hash of a badge UID, the only form a badge takes outside the reader.

    HMAC-SHA256 keyed with the per-site secret: without the secret, a leaked
    database or MQTT capture cannot be matched against cloned cards.
    """
    if len(site_secret) < 16:
        raise ValueError("the site secret must be at least 16 bytes")
    uid = normalise_uid(raw_uid)
    return hmac.new(site_secret, uid.encode("ascii"), hashlib.sha256).hexdigest()
