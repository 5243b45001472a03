"""The one context-manager shape every driver shares: ``with`` is ``open()``/``close()``.

Readers, actuators and session locks each define what opening and closing mean
(claim a port, switch off, lock a session); the ``with`` plumbing is written once here.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Managed:
    """``__enter__`` calls :meth:`open`, ``__exit__`` calls :meth:`close` (errors or not)."""

    def open(self) -> None:
        """Acquire the device and put it in its safe state (overridden by each driver)."""
        raise NotImplementedError

    def close(self) -> None:
        """Put the device in its safe state and release it (overridden by each driver)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
