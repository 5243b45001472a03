"""What every badge reader offers, plus the pieces the drivers share.

Threading model
---------------
A reader is a blocking object owned by **one thread**. The edge runs it like this::

    with reader:                       # open(): claim the port, start reconnecting
        while not stopping.is_set():
            uid = reader.read(timeout=0.5)
            if uid is not None and debouncer.accept(uid):
                queue.put(uid)         # hand over to the agent's own thread/loop

``read(timeout)`` waits at most ``timeout`` seconds and returns one normalised UID
(uppercase hex, no separators) or ``None``. It never raises for the ordinary troubles
of cheap hardware: noise, bad checksums, partial frames and a reader unplugged and
plugged back are logged and absorbed inside ``read`` (the serial and evdev readers
reconnect with backoff while the caller keeps calling ``read``). The ``connected``
property tells the caller whether the hardware is there right now, so the edge can
report the reader offline. ``read`` raises :class:`~devices.errors.DeviceError`
only for mistakes that retrying cannot fix (reader not opened).

A short timeout (≤ 1 s) keeps the loop responsive to ``stopping``; close the reader
from the thread that reads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from devices.backoff import Backoff
from devices.errors import DeviceUnavailable
from devices.lifecycle import Managed

__all__ = [
    "MAX_UID_HEX",
    "MIN_UID_HEX",
    "POLL_S",
    "BadgeReader",
    "DebouncedReader",
    "Debouncer",
    "ReaderBase",
    "ReconnectingReader",
    "parse_uid",
]

_LOGGER = logging.getLogger(__name__)

#: Shortest UID accepted (2 bytes); shorter strings are noise, not badges.
MIN_UID_HEX = 4
#: Longest UID accepted (16 bytes; ISO 14443 UIDs are 4, 7 or 10 bytes, EM4100 5).
MAX_UID_HEX = 32

_SEPARATORS = re.compile(r"[\s:\-]")
_HEX = re.compile(r"[0-9A-F]+")


def parse_uid(raw: str) -> str:
    """Return a badge UID in canonical form: uppercase hex without separators.

    The same card may be printed as ``04:a2:2b:1c``, ``04A22B1C`` or ``04 a2 2b 1c``
    by different readers; all must give one string (the edge hashes it). Decimal
    output of keyboard-wedge readers is made of hex digits too and passes unchanged.
    This is the same canonical form as the protocol's ``normalise_uid``, with
    length bounds added because a reader also produces noise.

    Raises:
        ValueError: empty, not hexadecimal, or outside 4..32 digits.
    """
    uid = _SEPARATORS.sub("", raw).upper()
    if not _HEX.fullmatch(uid):
        raise ValueError(f"badge UID {raw!r} is not hexadecimal")
    if not MIN_UID_HEX <= len(uid) <= MAX_UID_HEX:
        raise ValueError(
            f"badge UID {raw!r} has {len(uid)} digits, not {MIN_UID_HEX}..{MAX_UID_HEX}"
        )
    return uid


@runtime_checkable
class BadgeReader(Protocol):
    """A source of badge UIDs: a context manager with a blocking, bounded ``read``."""

    @property
    def connected(self) -> bool:
        """Whether the reader hardware is present and open right now."""
        ...

    def open(self) -> None:
        """Claim the reader. Never fails because the hardware is absent (see ``connected``)."""
        ...

    def close(self) -> None:
        """Release the reader; idempotent."""
        ...

    def read(self, timeout: float | None = None) -> str | None:
        """Wait up to ``timeout`` seconds (``None``: forever) for one normalised UID."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ReaderBase(Managed):
    """Context-manager plumbing shared by the readers: ``with`` is ``open``/``close``."""


class Debouncer:
    """Count a badge once however long it is held on the reader.

    An RDM6300 repeats the frame every few tens of milliseconds while a tag is in
    the field, and people tap twice. A UID is accepted when it was not seen during
    the last ``window_s`` seconds; every sighting, accepted or not, restarts its
    window, so a badge left on the reader counts once until it is taken away for
    ``window_s``. Other UIDs are independent (two people can tap in turn).

    Args:
        window_s: quiet time after which the same UID counts again.
        clock: monotonic clock in seconds (injected by tests).
    """

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        self.window_s = window_s
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def accept(self, uid: str) -> bool:
        """Record a sighting of ``uid``; tell whether it counts as a new tap."""
        now = self._clock()
        with self._lock:
            # Forget old sightings so the table stays as small as the room.
            for old in [u for u, t in self._last_seen.items() if now - t >= self.window_s]:
                del self._last_seen[old]
            fresh = uid not in self._last_seen
            self._last_seen[uid] = now
        if not fresh:
            _LOGGER.debug("badge repeated within %.1f s, ignored", self.window_s)
        return fresh


class DebouncedReader(ReaderBase):
    """A reader that returns each tap once (see :class:`Debouncer`).

    Args:
        reader: the reader to wrap; opened and closed with this one.
        debouncer: decides which sightings count.
    """

    def __init__(self, reader: BadgeReader, debouncer: Debouncer) -> None:
        self.reader = reader
        self.debouncer = debouncer

    @property
    def connected(self) -> bool:
        """Whether the wrapped reader is connected."""
        return self.reader.connected

    def open(self) -> None:
        """Open the wrapped reader."""
        self.reader.open()

    def close(self) -> None:
        """Close the wrapped reader."""
        self.reader.close()

    def read(self, timeout: float | None = None) -> str | None:
        """Return the next UID that counts as a new tap, within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            uid = self.reader.read(remaining)
            if uid is not None and self.debouncer.accept(uid):
                return uid
            if deadline is not None and time.monotonic() >= deadline:
                return None


#: Longest single wait on the hardware, so ``read(None)`` still notices an unplug.
POLL_S = 0.5


class ReconnectingReader(ReaderBase):
    """The reconnect loop shared by readers on hot-pluggable hardware.

    ``open`` tries to attach once; ``read`` polls the hardware and, whenever it is
    missing or vanishes, detaches, logs once and re-attaches with :class:`Backoff`
    while returning ``None`` at each timeout. Subclasses implement three hooks and
    translate their library's errors to :class:`~devices.errors.DeviceUnavailable`:

    * ``_attach()``: open the hardware, raise ``DeviceUnavailable`` if absent;
    * ``_poll(wait_s)``: wait up to ``wait_s`` for input, return completed UIDs,
      raise ``DeviceUnavailable`` if the hardware went away;
    * ``_detach()``: release the hardware; never raises.

    Args:
        reconnect_initial_s: first delay before re-attaching.
        reconnect_max_s: longest delay between attempts (a replugged reader is
            found again within this time).
    """

    def __init__(self, *, reconnect_initial_s: float = 0.5, reconnect_max_s: float = 5.0) -> None:
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self._attached = False
        self._attached_at = 0.0
        self._opened = False
        self._absent_reported = False
        self._pending: deque[str] = deque()

    @property
    def connected(self) -> bool:
        """Whether the hardware is attached right now."""
        return self._attached

    def open(self) -> None:
        """Start using the reader and try to attach once; absence is not an error."""
        self._opened = True
        self._backoff.succeeded()
        self._try_attach()

    def close(self) -> None:
        """Detach and stop reconnecting; idempotent."""
        self._opened = False
        self._pending.clear()
        if self._attached:
            self._attached = False
            self._detach()

    def read(self, timeout: float | None = None) -> str | None:
        """Return the next UID, or ``None`` after ``timeout`` seconds without one.

        Noise, bad frames and vanished hardware are logged and absorbed here;
        ``timeout=0`` polls once without waiting.

        Raises:
            DeviceUnavailable: the reader was not opened (or was closed).
        """
        if not self._opened:
            raise DeviceUnavailable(f"{self!r} is not open")
        deadline = None if timeout is None else time.monotonic() + timeout
        polled = False  # read(0) still polls the hardware once
        while True:
            if self._pending:
                return self._pending.popleft()
            remaining = POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining <= 0 and polled:
                return None
            polled = True
            if not self._attached:
                if self._backoff.ready():
                    self._try_attach()
                else:
                    time.sleep(min(self._backoff.wait_s(), remaining))
                continue
            try:
                self._pending.extend(self._poll(min(remaining, POLL_S)))
            except DeviceUnavailable as err:
                _LOGGER.warning("%r: reader disconnected (%s); reconnecting", self, err)
                self._attached = False
                self._detach()
                # Only a connection that held for a while resets the backoff, so a
                # flapping reader (opens, then fails at once) is retried ever slower
                # instead of flooding the log twice a second.
                if time.monotonic() - self._attached_at >= self._backoff.max_s:
                    self._backoff.succeeded()
                self._backoff.failed()
                self._absent_reported = True

    def _try_attach(self) -> None:
        try:
            self._attach()
        except DeviceUnavailable as err:
            delay = self._backoff.failed()
            if self._absent_reported:
                _LOGGER.debug("%r: still unavailable (%s); retry in %.1f s", self, err, delay)
            else:
                _LOGGER.warning("%r: unavailable (%s); retrying", self, err)
                self._absent_reported = True
            return
        self._attached = True
        self._attached_at = time.monotonic()
        _LOGGER.info("%r: reader connected%s", self, " again" if self._absent_reported else "")
        self._absent_reported = False

    def _attach(self) -> None:
        raise NotImplementedError

    def _poll(self, wait_s: float) -> list[str]:
        raise NotImplementedError

    def _detach(self) -> None:
        raise NotImplementedError
