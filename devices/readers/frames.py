"""Byte-stream decoders for serial badge readers: pure logic, no I/O.

A serial port hands over bytes in arbitrary chunks: a frame may arrive in two reads,
two frames in one, and a reader being plugged in or a loose wire adds noise. Each
decoder keeps the unfinished tail between calls to :meth:`feed`, returns every UID
completed by the new bytes, and resynchronises on garbage instead of failing.
"""

from __future__ import annotations

import logging
from typing import Protocol

from devices.readers.base import parse_uid

__all__ = ["ETX", "STX", "FrameDecoder", "LineDecoder", "Rdm6300Decoder", "rdm6300_frame"]

_LOGGER = logging.getLogger(__name__)

#: Start and end of an RDM6300 frame.
STX = 0x02
ETX = 0x03
_FRAME_LEN = 14  # STX + 10 data + 2 checksum + ETX
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


class FrameDecoder(Protocol):
    """Turns chunks of bytes into UIDs, keeping partial input between calls."""

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data``; return the UIDs it completed (possibly none)."""
        ...

    def reset(self) -> None:
        """Forget any partial input (after a reconnect the tail is meaningless)."""
        ...


def rdm6300_frame(uid: str, *, checksum: int | None = None) -> bytes:
    """Build the RDM6300 frame for a 10-hex-digit ``uid`` (used by tests and the demo).

    ``checksum`` overrides the computed one, to produce a corrupt frame.
    """
    data = bytes.fromhex(uid)
    if len(data) != 5:
        raise ValueError("an RDM6300 UID is 10 hex digits (version + 32-bit tag)")
    xor = 0
    for byte in data:
        xor ^= byte
    check = xor if checksum is None else checksum
    body = uid.upper().encode("ascii") + f"{check:02X}".encode("ascii")
    return bytes([STX]) + body + bytes([ETX])


class Rdm6300Decoder:
    """Decoder for the 125 kHz RDM6300 (EM4100) serial frame.

    Frame: ``STX(0x02)``, 10 ASCII hex digits (2 version/customer + 8 tag),
    2 ASCII hex digits of checksum (XOR of the 5 data bytes), ``ETX(0x03)``.
    The UID returned is the 10 data digits: the whole EM4100 id, unique per card
    (the 8-digit decimal printed on many cards is only the tag part).

    Resynchronisation: bytes before an STX are noise and dropped; an STX inside a
    frame means the previous frame was cut, and decoding restarts there; a frame
    without ETX at its end, with non-hex digits or with a wrong checksum is logged
    and skipped. Data digits are ASCII, so they can never be mistaken for STX.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        """Forget any partial frame."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data``; return the UIDs of the frames it completed."""
        self._buf.extend(data)
        uids: list[str] = []
        while True:
            start = self._buf.find(STX)
            if start < 0:
                if self._buf:
                    _LOGGER.debug("RDM6300: %d bytes of noise dropped", len(self._buf))
                self._buf.clear()
                return uids
            if start > 0:
                _LOGGER.debug("RDM6300: %d bytes of noise before STX dropped", start)
                del self._buf[:start]
            # A second STX before the frame is complete: the first frame was cut.
            restart = self._buf.find(STX, 1, _FRAME_LEN)
            if restart > 0:
                _LOGGER.warning("RDM6300: partial frame dropped (%d bytes)", restart)
                del self._buf[:restart]
                continue
            if len(self._buf) < _FRAME_LEN:
                return uids  # wait for the rest of the frame
            frame = bytes(self._buf[:_FRAME_LEN])
            uid = self._decode(frame)
            if uid is None:
                del self._buf[:1]  # skip this STX; look for the next one
            else:
                del self._buf[:_FRAME_LEN]
                uids.append(uid)

    @staticmethod
    def _decode(frame: bytes) -> str | None:
        body = frame[1:13]
        if frame[13] != ETX or not _HEX_DIGITS.issuperset(body):
            # Length only: a damaged frame may still hold most of a child's badge UID.
            _LOGGER.warning("RDM6300: malformed frame skipped (%d bytes)", len(frame))
            return None
        data = bytes.fromhex(body[:10].decode("ascii"))
        expected = int(body[10:12], 16)
        actual = 0
        for byte in data:
            actual ^= byte
        if actual != expected:
            _LOGGER.warning(
                "RDM6300: checksum error (got %02X, computed %02X), frame skipped", expected, actual
            )
            return None
        return body[:10].decode("ascii").upper()


class LineDecoder:
    """Decoder for readers that print one UID per line (CR, LF or CRLF).

    Lines that are not a UID (banner text, noise) are logged and skipped; a line
    longer than ``max_line`` bytes without a newline is noise and dropped.

    Args:
        max_line: longest line kept while waiting for its end.
    """

    def __init__(self, max_line: int = 64) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def reset(self) -> None:
        """Forget any partial line."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data``; return the UIDs of the lines it completed."""
        self._buf.extend(data)
        uids: list[str] = []
        while True:
            ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not ends:
                if len(self._buf) > self.max_line:
                    _LOGGER.warning("line reader: %d bytes without newline dropped", len(self._buf))
                    self._buf.clear()
                return uids
            end = min(ends)
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if not line.strip():
                continue  # the LF of a CRLF, or an empty line
            try:
                uids.append(parse_uid(line.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                _LOGGER.warning("line reader: %r is not a badge UID, skipped", line[:80])
