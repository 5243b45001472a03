"""Serial badge readers over pyserial, with an explicit reconnect loop.

USB-serial readers get unplugged, knocked loose and plugged back, and the agent
must survive all of it. :class:`SerialReader` owns the port; when the port vanishes
(pyserial raises ``SerialException``, the kernel reports EIO) the shared loop of
:class:`~devices.readers.base.ReconnectingReader` logs it once, closes the port and
reopens the same path with exponential backoff, while ``read`` keeps returning
``None`` at its timeout. Configure a stable path such as
``/dev/serial/by-id/usb-…`` (a udev symlink) so the replugged reader is found again
even when it comes back as another ``ttyUSBn``.

The byte stream is decoded by a pure :mod:`devices.readers.frames` decoder;
:class:`Rdm6300Reader` and :class:`LineReader` only choose the decoder.
"""

from __future__ import annotations

import logging
from typing import Any

import serial

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.readers.base import ReconnectingReader
from devices.readers.frames import FrameDecoder, LineDecoder, Rdm6300Decoder

__all__ = ["LineReader", "Rdm6300Reader", "SerialReader"]

_LOGGER = logging.getLogger(__name__)


class SerialReader(ReconnectingReader):
    """A badge reader on a serial port, decoded by ``decoder``; reconnects by itself.

    Args:
        port: device path, e.g. ``/dev/serial/by-id/usb-…`` or ``/dev/ttyAMA0``.
        decoder: turns the byte stream into UIDs.
        baudrate: line speed.
        reconnect_initial_s: first delay before reopening a vanished port.
        reconnect_max_s: longest delay between reopen attempts.
    """

    def __init__(
        self,
        port: str,
        decoder: FrameDecoder,
        baudrate: int = 9600,
        *,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        super().__init__(reconnect_initial_s=reconnect_initial_s, reconnect_max_s=reconnect_max_s)
        self.port = port
        self.baudrate = baudrate
        self._decoder = decoder
        self._serial: Any = None  # serial.Serial while attached

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.port!r}, baudrate={self.baudrate})"

    def _attach(self) -> None:
        self._decoder.reset()  # a tail from before the unplug is meaningless
        try:
            # exclusive: a second agent on the same reader would steal half the frames.
            # Opening also flushes bytes that queued up while nobody listened.
            self._serial = serial.Serial(
                port=self.port, baudrate=self.baudrate, timeout=0, exclusive=True
            )
        except ValueError as err:
            raise DeviceConfigError(f"{self!r}: invalid serial settings: {err}") from err
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(str(err)) from err

    def _poll(self, wait_s: float) -> list[str]:
        try:
            self._serial.timeout = wait_s
            # Wait for one byte, then take whatever else has already arrived.
            data: bytes = self._serial.read(max(1, self._serial.in_waiting))
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(str(err)) from err
        return self._decoder.feed(data) if data else []

    def _detach(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as err:
                _LOGGER.debug("%r: error while closing: %s", self, err)


class Rdm6300Reader(SerialReader):
    """The 125 kHz RDM6300 module (EM4100 tags): 9600 8N1, STX/ETX framed output.

    Args:
        port: serial device path.
        baudrate: line speed (the module's fixed 9600 by default).
        reconnect_initial_s: first delay before reopening a vanished port.
        reconnect_max_s: longest delay between reopen attempts.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        super().__init__(
            port,
            Rdm6300Decoder(),
            baudrate,
            reconnect_initial_s=reconnect_initial_s,
            reconnect_max_s=reconnect_max_s,
        )


class LineReader(SerialReader):
    """A serial reader that prints one UID per line, CR and/or LF terminated.

    Many 13.56 MHz USB-serial modules work this way.

    Args:
        port: serial device path.
        baudrate: line speed.
        reconnect_initial_s: first delay before reopening a vanished port.
        reconnect_max_s: longest delay between reopen attempts.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        super().__init__(
            port,
            LineDecoder(),
            baudrate,
            reconnect_initial_s=reconnect_initial_s,
            reconnect_max_s=reconnect_max_s,
        )
