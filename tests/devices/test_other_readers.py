"""Keyboard-wedge (stdin, evdev) and simulated readers."""

from __future__ import annotations

import errno
import io
import logging
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.readers import BadgeReader, EvdevReader, SimulatedReader, StdinReader
from tests.devices.conftest import read_all, wait_until

# --------------------------------------------------------------------------- stdin


def test_stdin_reader_reads_lines_and_skips_junk(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO("04:a2:2b:1c\n\nhello\n0012345678\n")
    reader = StdinReader(stream)
    with reader, caplog.at_level(logging.WARNING):
        assert read_all(reader, 2) == ["04A22B1C", "0012345678"]
        assert reader.read(0.05) is None
    assert "not hexadecimal" in caplog.text


def test_stdin_reader_over_a_real_pipe_ends_at_eof() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as stream, StdinReader(stream) as reader:
        os.write(write_fd, b"CAFE01\n")
        assert reader.read(3.0) == "CAFE01"
        assert reader.connected
        os.close(write_fd)
        assert reader.read(0.05) is None
        # The pump thread notices the closed pipe.
        assert wait_until(lambda: not reader.connected)


def test_stdin_reader_must_be_open() -> None:
    with pytest.raises(DeviceUnavailable):
        StdinReader(io.StringIO("")).read(0)


# --------------------------------------------------------------------------- evdev


@dataclass
class FakeEvent:
    type: int
    code: int
    value: int


class FakeEvdev(types.ModuleType):
    """Just enough of python-evdev: InputDevice with fd, read, grab, close.

    Each device is a pipe, so the driver's ``select`` really waits on a descriptor.
    """

    def __init__(self) -> None:
        super().__init__("evdev")
        self.present: set[str] = set()
        self.devices: list[FakeInputDevice] = []
        fake = self

        class InputDevice(FakeInputDevice):
            def __init__(self, path: str) -> None:
                if path not in fake.present:
                    raise FileNotFoundError(errno.ENOENT, "No such device", path)
                super().__init__(path)
                fake.devices.append(self)

        self.InputDevice = InputDevice

    def type_keys(self, codes: list[int]) -> None:
        """The reader types key codes (down, then up) on the newest device."""
        events = []
        for code in codes:
            events += [FakeEvent(1, code, 1), FakeEvent(1, code, 0)]
        events.append(FakeEvent(0, 0, 0))  # EV_SYN
        self.devices[-1].push(events)

    def unplug(self, path: str) -> None:
        self.present.discard(path)
        for dev in self.devices:
            dev.gone = True
            os.write(dev.w, b"x")  # wake the select, like the kernel does


class FakeInputDevice:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd, self.w = os.pipe()
        self.queue: list[FakeEvent] = []
        self.grabbed = False
        self.gone = False
        self.closed = False

    def push(self, events: list[FakeEvent]) -> None:
        self.queue += events
        os.write(self.w, b"x")

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def read(self) -> Iterator[FakeEvent]:
        os.read(self.fd, 1024)
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        events, self.queue = self.queue, []
        return iter(events)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
            os.close(self.w)


@pytest.fixture
def fake_evdev(monkeypatch: pytest.MonkeyPatch) -> FakeEvdev:
    fake = FakeEvdev()
    monkeypatch.setitem(sys.modules, "evdev", fake)
    return fake


PATH = "/dev/input/by-id/usb-reader-event-kbd"
# KEY_0 KEY_4 KEY_A KEY_2 KEY_B KEY_1 KEY_C KEY_ENTER
UID_KEYS = [11, 5, 30, 3, 48, 2, 46, 28]


def test_evdev_reader_decodes_key_events_and_grabs(fake_evdev: FakeEvdev) -> None:
    fake_evdev.present.add(PATH)
    with EvdevReader(PATH, reconnect_initial_s=0.01) as reader:
        assert reader.connected
        assert fake_evdev.devices[-1].grabbed
        fake_evdev.type_keys(UID_KEYS)
        assert reader.read(3.0) == "04A2B1C"
    assert fake_evdev.devices[-1].closed


def test_evdev_reader_reconnects_after_unplug(
    fake_evdev: FakeEvdev, caplog: pytest.LogCaptureFixture
) -> None:
    fake_evdev.present.add(PATH)
    with EvdevReader(PATH, reconnect_initial_s=0.01, reconnect_max_s=0.05) as reader:
        fake_evdev.unplug(PATH)
        with caplog.at_level(logging.WARNING):
            assert reader.read(0.2) is None
        assert not reader.connected
        assert "reader disconnected" in caplog.text
        count = len(fake_evdev.devices)
        fake_evdev.present.add(PATH)
        # The reconnect loop reopens the device while the caller keeps reading.
        assert wait_until(lambda: reader.read(0.02) is None and len(fake_evdev.devices) > count)
        assert reader.connected
        fake_evdev.type_keys(UID_KEYS)
        assert reader.read(3.0) == "04A2B1C"


def test_evdev_missing_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evdev", None)  # makes the import fail
    with pytest.raises(DeviceConfigError, match="pip install evdev"):
        EvdevReader(PATH).open()


# --------------------------------------------------------------------------- simulated


def test_simulated_reader_returns_presented_badges() -> None:
    reader = SimulatedReader()
    assert isinstance(reader, BadgeReader)
    with reader:
        assert reader.present("04:a2:2b:1c") == "04A22B1C"
        reader.present("CAFE01")
        assert read_all(reader, 2) == ["04A22B1C", "CAFE01"]
        assert reader.read(0.01) is None


def test_simulated_reader_unplug_loses_taps() -> None:
    with SimulatedReader() as reader:
        reader.present("CAFE01")
        reader.unplug()
        assert not reader.connected
        assert reader.read(0.01) is None
        reader.replug()
        reader.present("CAFE02")
        assert reader.read(1.0) == "CAFE02"


def test_simulated_reader_rejects_bad_uids() -> None:
    with pytest.raises(ValueError, match="badge UID"):
        SimulatedReader().present("not a badge")
