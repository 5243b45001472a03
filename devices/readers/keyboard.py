"""Keyboard-wedge badge readers: USB readers that "type" the UID and press Enter.

Two ways to listen to them:

* :class:`EvdevReader` (Linux, production) reads the input device directly through
  the optional ``evdev`` package and grabs it, so the UID is not also typed into
  whatever window has the focus (a kiosk browser, a game). It works on raw key
  codes, which do not depend on the keyboard layout: on a French AZERTY system a
  wedge reader's digits would otherwise come out as ``&é"'(-è_çà``.
* :class:`StdinReader` (development, demo) reads lines from standard input or any
  text stream.
"""

from __future__ import annotations

import importlib
import logging
import queue
import select
import sys
import threading
from types import ModuleType
from typing import Any, TextIO

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.readers.base import MAX_UID_HEX, ReaderBase, ReconnectingReader, parse_uid

__all__ = ["KEY_CHARS", "KEY_ENTER", "KEY_KPENTER", "EvdevReader", "KeyDecoder", "StdinReader"]

_LOGGER = logging.getLogger(__name__)

#: Linux input key codes (``linux/input-event-codes.h``, a stable kernel ABI) that a
#: wedge reader uses for UIDs: digits of both rows and the hex letters.
KEY_CHARS: dict[int, str] = {
    2: "1", 3: "2", 4: "3", 5: "4", 6: "5", 7: "6", 8: "7", 9: "8", 10: "9", 11: "0",
    30: "A", 48: "B", 46: "C", 32: "D", 18: "E", 33: "F",
    79: "1", 80: "2", 81: "3", 75: "4", 76: "5", 77: "6", 71: "7", 72: "8", 73: "9", 82: "0",
}  # fmt: skip
KEY_ENTER = 28
KEY_KPENTER = 96
_EV_KEY = 1
_KEY_DOWN = 1
#: Modifiers a reader may press around letters; they carry no character.
_MODIFIERS = frozenset({42, 54, 29, 97})  # left/right shift, left/right ctrl


class KeyDecoder:
    """Builds UIDs from key-down codes; Enter ends one.

    A key that is neither a hex character nor a modifier spoils the UID being
    typed (someone typing on a real keyboard, a reader in another mode): it is
    dropped with a warning at the next Enter.
    """

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._spoiled = False

    def reset(self) -> None:
        """Forget a partially typed UID."""
        self._chars.clear()
        self._spoiled = False

    def key_down(self, code: int) -> str | None:
        """Consume one key press; return a UID when ``code`` is Enter and one is complete."""
        if code in (KEY_ENTER, KEY_KPENTER):
            chars, spoiled = "".join(self._chars), self._spoiled
            self.reset()
            if not chars:
                return None
            if spoiled:
                _LOGGER.warning("keyboard reader: input with foreign keys dropped")
                return None
            try:
                return parse_uid(chars)
            except ValueError as err:
                _LOGGER.warning("keyboard reader: %s", err)
                return None
        char = KEY_CHARS.get(code)
        if char is not None and len(self._chars) <= MAX_UID_HEX:
            self._chars.append(char)
        elif code not in _MODIFIERS:
            self._spoiled = True
        return None


def _import_evdev() -> ModuleType:
    try:
        return importlib.import_module("evdev")
    except ImportError as err:
        raise DeviceConfigError(
            "the evdev reader needs the 'evdev' package (pip install evdev; "
            "Linux only); use reader.stdin for development"
        ) from err


class EvdevReader(ReconnectingReader):
    """A keyboard-wedge reader read from ``/dev/input`` with python-evdev.

    ``evdev`` is imported by :meth:`open`, not at module import, so the rest of the
    drivers work where it is not installed (macOS laptops, CI).

    Args:
        device: input device path; prefer ``/dev/input/by-id/usb-…-event-kbd``,
            which survives replugging.
        grab: take the device exclusively so its keys reach no other program.
        reconnect_initial_s: first delay before reopening a vanished device.
        reconnect_max_s: longest delay between reopen attempts.
    """

    def __init__(
        self,
        device: str,
        *,
        grab: bool = True,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        super().__init__(reconnect_initial_s=reconnect_initial_s, reconnect_max_s=reconnect_max_s)
        self.device = device
        self.grab = grab
        self._decoder = KeyDecoder()
        self._evdev: ModuleType | None = None
        self._dev: Any = None  # evdev.InputDevice while attached

    def __repr__(self) -> str:
        return f"EvdevReader({self.device!r})"

    def open(self) -> None:
        """Import evdev, then attach as the other readers do.

        Raises:
            DeviceConfigError: evdev is not installed.
        """
        self._evdev = _import_evdev()
        super().open()

    def _attach(self) -> None:
        assert self._evdev is not None
        self._decoder.reset()
        try:
            dev = self._evdev.InputDevice(self.device)
        except OSError as err:
            raise DeviceUnavailable(str(err)) from err
        try:
            if self.grab:
                dev.grab()
        except OSError as err:
            dev.close()
            raise DeviceUnavailable(f"cannot grab {self.device}: {err}") from err
        self._dev = dev

    def _poll(self, wait_s: float) -> list[str]:
        uids: list[str] = []
        try:
            ready, _, _ = select.select([self._dev.fd], [], [], wait_s)
            if not ready:
                return uids
            events = list(self._dev.read())
        except BlockingIOError:
            return uids
        except OSError as err:  # ENODEV once the reader is unplugged
            raise DeviceUnavailable(str(err)) from err
        for event in events:
            if event.type == _EV_KEY and event.value == _KEY_DOWN:
                uid = self._decoder.key_down(int(event.code))
                if uid is not None:
                    uids.append(uid)
        return uids

    def _detach(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        try:
            if self.grab:
                dev.ungrab()
        except OSError:
            pass  # already gone with the device
        try:
            dev.close()
        except OSError as err:
            _LOGGER.debug("%r: error while closing: %s", self, err)


class StdinReader(ReaderBase):
    """UIDs typed on standard input, one per line (development and demo).

    A daemon thread reads the stream and queues valid UIDs (a blocking ``readline``
    cannot be given a timeout portably); invalid lines are logged and skipped. At
    end of input ``read`` keeps returning ``None`` and ``connected`` turns false.

    Args:
        stream: text stream to read; ``sys.stdin`` when omitted.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._eof = threading.Event()
        self._opened = False

    @property
    def connected(self) -> bool:
        """Whether the stream is open and not at its end."""
        return self._opened and not self._eof.is_set()

    def open(self) -> None:
        """Start the thread that reads the stream (once per reader)."""
        self._opened = True
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._pump, name="stdin-badge-reader", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop returning UIDs. The daemon thread ends with the stream or the process."""
        self._opened = False

    def read(self, timeout: float | None = None) -> str | None:
        """Return the next typed UID, or ``None`` after ``timeout`` seconds.

        Raises:
            DeviceUnavailable: the reader was not opened (or was closed).
        """
        if not self._opened:
            raise DeviceUnavailable("StdinReader is not open")
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _pump(self) -> None:
        stream = self._stream if self._stream is not None else sys.stdin
        try:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    self._queue.put(parse_uid(line))
                except ValueError as err:
                    _LOGGER.warning("stdin reader: %s", err)
        except (OSError, ValueError) as err:  # closed stream
            _LOGGER.warning("stdin reader stopped: %s", err)
        finally:
            self._eof.set()
