"""Badge readers: one blocking ``read(timeout)`` API over serial, keyboard and simulated readers.

See :mod:`devices.readers.base` for the threading model the edge follows.
"""

from devices.readers.base import (
    BadgeReader,
    DebouncedReader,
    Debouncer,
    ReaderBase,
    ReconnectingReader,
    parse_uid,
)
from devices.readers.frames import LineDecoder, Rdm6300Decoder, rdm6300_frame
from devices.readers.keyboard import EvdevReader, KeyDecoder, StdinReader
from devices.readers.serialport import LineReader, Rdm6300Reader, SerialReader
from devices.readers.simulated import SimulatedReader

__all__ = [
    "BadgeReader",
    "DebouncedReader",
    "Debouncer",
    "EvdevReader",
    "KeyDecoder",
    "LineDecoder",
    "LineReader",
    "Rdm6300Decoder",
    "Rdm6300Reader",
    "ReaderBase",
    "ReconnectingReader",
    "SerialReader",
    "SimulatedReader",
    "StdinReader",
    "parse_uid",
    "rdm6300_frame",
]
