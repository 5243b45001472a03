"""The hub's store of per-edge keys: one ``0600`` file per edge in ``edge_keys_dir``.

The hub must compute MACs with each edge's key (:mod:`protocol.signing`), so a keyed
digest of the key would not do: the key itself is kept, in a file only the hub's
account can read (``{edge_keys_dir}/{edge}.key``, 64 hex characters, written through
:func:`protocol.files.write_private`; the directory is ``0700``). Files rather than
database rows: a database dump or backup then holds no key, and an edge's key is
provisioned, rotated or revoked with a file operation the administrator can see
(``fabrique hub edge-key EDGE``, ``--rotate``; deleting the file revokes it).

Reads are cached for :data:`CACHE_S` seconds (hits and misses), so a key provisioned
or rotated while the hub runs is used within that delay, without a restart, and the
decision path reads no file on most badges.

Demo mode only (``demo = true``): an edge without a key file gets
:func:`protocol.signing.demo_edge_key`, derived from the site secret, which the
demo's edges derive the same way. A production hub has no such fallback: it sends
nothing to an edge it holds no key for (counted ``unsigned_dropped``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Final

from protocol.files import write_private
from protocol.ids import is_ident
from protocol.signing import EdgeKeyError, demo_edge_key, key_from_text, key_to_text, new_edge_key

logger = logging.getLogger(__name__)

#: How long a read key file (or its absence) is believed, in seconds.
CACHE_S: Final = 10.0


class EdgeKeys:
    """Per-edge keys of one hub (see the module docstring).

    Args:
        directory: where the key files live.
        demo_secret: the site secret when the hub runs in demo mode (enables the
            derived fallback), else None.
    """

    def __init__(self, directory: Path, *, demo_secret: bytes | None = None) -> None:
        self.directory = directory
        self._demo_secret = demo_secret
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def path(self, edge: str) -> Path:
        """The key file of ``edge``.

        Raises:
            ValueError: ``edge`` is not a valid id (no path tricks).
        """
        if not is_ident(edge):
            raise ValueError(f"invalid edge id {edge!r}")
        return self.directory / f"{edge}.key"

    def key(self, edge: str) -> bytes | None:
        """``edge``'s key, or None when it has none (never raises)."""
        now = time.monotonic()
        cached = self._cache.get(edge)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        key = self._read(edge)
        if key is None and self._demo_secret is not None:
            key = demo_edge_key(self._demo_secret, edge)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: edge ids come from the network
                self._cache.clear()
            self._cache[edge] = (now, key)
        return key

    def _read(self, edge: str) -> bytes | None:
        try:
            text = self.path(edge).read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            logger.error("edge %s: key file unreadable: %s", edge, type(err).__name__)
            return None
        try:
            return key_from_text(text)
        except EdgeKeyError:
            logger.error("edge %s: key file %s is not a valid key", edge, self.path(edge))
            return None

    def edges(self) -> list[str]:
        """The edges that have a key file (sorted; empty when the folder is missing)."""
        try:
            names = [p.stem for p in self.directory.glob("*.key")]
        except OSError:
            return []
        return sorted(n for n in names if is_ident(n))

    def provision(self, edge: str, *, rotate: bool = False) -> tuple[bytes, bool]:
        """``edge``'s key, created if missing (or replaced when ``rotate``).

        Returns (key, created).

        Raises:
            ValueError: invalid edge id.
            OSError: the key file cannot be written.
        """
        path = self.path(edge)
        existing = None if rotate else self._read(edge)
        if existing is not None:
            return existing, False
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = new_edge_key()
        write_private(path, (key_to_text(key) + "\n").encode())
        with self._lock:
            self._cache.pop(edge, None)
        logger.info("edge %s: key %s", edge, "rotated" if rotate else "created")
        return key, True
