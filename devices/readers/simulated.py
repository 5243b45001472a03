"""A badge reader fed by code: the demo's virtual badges and the edge's tests.

:meth:`SimulatedReader.present` queues a UID as if a badge were tapped; it may be
called from any thread. :meth:`unplug` and :meth:`replug` let tests drive the
edge's "reader offline" handling without hardware.
"""

from __future__ import annotations

import queue
import threading

from devices.errors import DeviceUnavailable
from devices.readers.base import ReaderBase, parse_uid

__all__ = ["SimulatedReader"]


class SimulatedReader(ReaderBase):
    """A reader whose badges are pushed by :meth:`present`."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._opened = False
        self._plugged = threading.Event()
        self._plugged.set()

    @property
    def connected(self) -> bool:
        """Whether the reader is open and not "unplugged"."""
        return self._opened and self._plugged.is_set()

    def open(self) -> None:
        """Start reading."""
        self._opened = True

    def close(self) -> None:
        """Stop reading; queued badges are kept for a later ``open``."""
        self._opened = False

    def present(self, uid: str) -> str:
        """Tap a badge: queue its normalised UID and return it.

        Raises:
            ValueError: ``uid`` is not a badge UID.
        """
        normalised = parse_uid(uid)
        self._queue.put(normalised)
        return normalised

    def unplug(self) -> None:
        """Pretend the reader was unplugged: ``connected`` is false, taps are lost."""
        self._plugged.clear()
        while not self._queue.empty():
            self._queue.get_nowait()

    def replug(self) -> None:
        """Pretend the reader is back."""
        self._plugged.set()

    def read(self, timeout: float | None = None) -> str | None:
        """Return the next presented UID, or ``None`` after ``timeout`` seconds.

        Raises:
            DeviceUnavailable: the reader was not opened (or was closed).
        """
        if not self._opened:
            raise DeviceUnavailable("SimulatedReader is not open")
        try:
            uid = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return uid if self._plugged.is_set() else None
