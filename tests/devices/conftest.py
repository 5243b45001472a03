"""Fixtures for the driver tests: real pseudo-terminals standing in for serial readers.

A :class:`PtyPort` is a pty pair whose slave is reached through a stable symlink,
the way udev's ``/dev/serial/by-id/…`` names a USB reader. pyserial opens the
symlink and really reads the bytes the test writes on the master side;
``unplug()`` closes the pair (the reader sees EIO, as with a pulled USB cable) and
``plug()`` creates a new pair and re-points the symlink, like a replugged reader
that comes back as another ``/dev/pts/N``.
"""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devices.readers import BadgeReader


class PtyPort:
    """A pluggable fake serial device behind the symlink ``link``."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None

    @property
    def path(self) -> str:
        """The path a reader is configured with."""
        return str(self.link)

    def plug(self) -> None:
        """Create a new pty pair and point the symlink at its slave."""
        assert self.master is None, "already plugged"
        master, slave = os.openpty()
        # Raw mode at once: no echo or line buffering before pyserial configures it.
        tty.setraw(slave)
        self.master, self.slave = master, slave
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link)  # atomic re-point, like udev

    def unplug(self) -> None:
        """Close the pair: the reader's next read fails as for a pulled cable."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def write(self, data: bytes) -> None:
        """Send bytes as the reader hardware would."""
        assert self.master is not None, "unplugged"
        os.write(self.master, data)


@pytest.fixture
def pty_port(tmp_path: Path) -> Iterator[PtyPort]:
    """A plugged-in fake serial reader; unplugged at the end."""
    port = PtyPort(tmp_path / "reader")
    port.plug()
    yield port
    port.unplug()


@pytest.fixture
def unplugged_port(tmp_path: Path) -> Iterator[PtyPort]:
    """A fake serial reader whose symlink does not exist yet."""
    port = PtyPort(tmp_path / "reader")
    yield port
    port.unplug()


def read_all(reader: BadgeReader, count: int, timeout: float = 3.0) -> list[str]:
    """Read ``count`` UIDs, each awaited up to ``timeout`` seconds; stop early on a gap."""
    uids: list[str] = []
    for _ in range(count):
        uid = reader.read(timeout)
        if uid is None:
            break
        uids.append(uid)
    return uids


def read_while_sending(
    reader: BadgeReader, send: Callable[[], None], timeout: float = 5.0
) -> str | None:
    """Keep sending (as a reader does while a tag is held) until a UID is read.

    Used after a replug: bytes sent before pyserial reopens the port are flushed
    by the open, exactly as with real hardware.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send()
        uid = reader.read(0.1)
        if uid is not None:
            return uid
    return None


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``condition`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.005)
    return True
