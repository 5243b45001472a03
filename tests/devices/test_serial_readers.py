"""The serial badge readers, through real pseudo-terminals read by pyserial."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.readers import (
    DebouncedReader,
    Debouncer,
    LineReader,
    Rdm6300Reader,
    ReconnectingReader,
    SerialReader,
    rdm6300_frame,
)
from tests.devices.conftest import PtyPort, read_all, read_while_sending, wait_until

A = "0F00ABCDEF"
B = "1A2B3C4D5E"
C = "0000000001"


def rdm(port: PtyPort) -> Rdm6300Reader:
    return Rdm6300Reader(port.path, reconnect_initial_s=0.02, reconnect_max_s=0.1)


def line(port: PtyPort) -> LineReader:
    return LineReader(port.path, reconnect_initial_s=0.02, reconnect_max_s=0.1)


def test_rdm6300_reads_valid_frames_in_order(pty_port: PtyPort) -> None:
    with rdm(pty_port) as reader:
        assert reader.connected
        pty_port.write(rdm6300_frame(A) + rdm6300_frame(B))
        pty_port.write(rdm6300_frame(C.lower()))
        assert read_all(reader, 3) == [A, B, C]


def test_rdm6300_skips_bad_checksum_and_logs_it(
    pty_port: PtyPort, caplog: pytest.LogCaptureFixture
) -> None:
    with rdm(pty_port) as reader, caplog.at_level(logging.WARNING):
        pty_port.write(rdm6300_frame(A, checksum=0x00) + rdm6300_frame(B))
        assert reader.read(3.0) == B
    assert "checksum error" in caplog.text


def test_rdm6300_resynchronises_on_noise_between_frames(pty_port: PtyPort) -> None:
    with rdm(pty_port) as reader:
        pty_port.write(b"\xff\x00\x03garbage" + rdm6300_frame(A) + b"\x13\x37\x03")
        pty_port.write(b"0F00" + rdm6300_frame(B))
        assert read_all(reader, 2) == [A, B]


def test_rdm6300_joins_a_frame_split_across_writes(pty_port: PtyPort) -> None:
    frame = rdm6300_frame(A)
    with rdm(pty_port) as reader:
        pty_port.write(frame[:5])
        # pyserial has consumed the first half by the time read gives up.
        assert reader.read(0.2) is None
        pty_port.write(frame[5:])
        assert reader.read(3.0) == A


def test_rdm6300_drops_a_cut_frame_and_reads_the_next(pty_port: PtyPort) -> None:
    with rdm(pty_port) as reader:
        pty_port.write(rdm6300_frame(A)[:7])  # tag left the field mid-frame
        pty_port.write(rdm6300_frame(B) + rdm6300_frame(C))
        assert read_all(reader, 2) == [B, C]


def test_line_reader_normalises_and_skips_junk(
    pty_port: PtyPort, caplog: pytest.LogCaptureFixture
) -> None:
    with line(pty_port) as reader, caplog.at_level(logging.WARNING):
        pty_port.write(b"READER v1.2 ready\r\n04:a2:2b:1c\r\n")
        pty_port.write(b"\n\r\nzz\n04A2")  # empty lines, junk, half a UID
        pty_port.write(b"2B1C8D\rdeadbeef\n")  # CR-only ending
        assert read_all(reader, 3) == ["04A22B1C", "04A22B1C8D", "DEADBEEF"]
    assert "is not a badge UID" in caplog.text


@pytest.mark.parametrize(
    ("make", "payload"),
    [(rdm, rdm6300_frame(A)), (line, A.encode() + b"\r\n")],
    ids=["rdm6300", "line"],
)
def test_unplugged_reader_is_logged_and_reconnected(
    pty_port: PtyPort,
    make: Callable[[PtyPort], SerialReader],
    payload: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = make(pty_port)
    with reader, caplog.at_level(logging.INFO):
        pty_port.write(payload)
        assert reader.read(3.0) == A

        pty_port.unplug()
        assert reader.read(0.3) is None  # no crash, just nothing
        assert not reader.connected
        assert "reader disconnected" in caplog.text

        pty_port.plug()  # a new /dev/pts/N behind the same path
        assert read_while_sending(reader, lambda: pty_port.write(payload)) == A
        assert reader.connected
    assert "connected again" in caplog.text


def test_reader_started_before_the_port_exists(unplugged_port: PtyPort) -> None:
    reader = rdm(unplugged_port)
    with reader:  # an absent reader does not stop the agent
        assert not reader.connected
        assert reader.read(0.1) is None
        unplugged_port.plug()
        frame = rdm6300_frame(B)
        assert read_while_sending(reader, lambda: unplugged_port.write(frame)) == B


def test_held_badge_counts_once(pty_port: PtyPort) -> None:
    reader = DebouncedReader(rdm(pty_port), Debouncer(window_s=1.0))
    with reader:
        # An RDM6300 repeats the frame while the badge stays in the field.
        pty_port.write(rdm6300_frame(A) * 3 + rdm6300_frame(B) + rdm6300_frame(A))
        assert read_all(reader, 2) == [A, B]
        assert reader.read(0.2) is None


def test_read_before_open_is_an_error(pty_port: PtyPort) -> None:
    reader = rdm(pty_port)
    with pytest.raises(DeviceUnavailable):
        reader.read(0.1)
    with reader:
        pass
    with pytest.raises(DeviceUnavailable):
        reader.read(0.1)
    assert not reader.connected


def test_invalid_serial_settings_fail_at_open(pty_port: PtyPort) -> None:
    reader = Rdm6300Reader(pty_port.path, baudrate=-1)
    with pytest.raises(DeviceConfigError, match="invalid serial settings"):
        reader.open()


def test_read_zero_polls_without_waiting(pty_port: PtyPort) -> None:
    with rdm(pty_port) as reader:
        assert reader.read(0) is None
        pty_port.write(rdm6300_frame(A))
        results: list[str | None] = []

        def poll() -> bool:
            results.append(reader.read(0))
            return results[-1] is not None

        assert wait_until(poll)
        assert results[-1] == A


class FlappingReader(ReconnectingReader):
    """Hardware that opens fine and fails at the first read (a bad cable)."""

    def __init__(self) -> None:
        super().__init__(reconnect_initial_s=0.01, reconnect_max_s=0.2)
        self.attempts = 0

    def _attach(self) -> None:
        self.attempts += 1

    def _poll(self, wait_s: float) -> list[str]:
        raise DeviceUnavailable("EIO")

    def _detach(self) -> None:
        pass


def test_a_flapping_reader_is_retried_ever_slower(caplog: pytest.LogCaptureFixture) -> None:
    with FlappingReader() as reader, caplog.at_level(logging.WARNING):
        assert reader.read(0.6) is None
    # 0.01 + 0.02 + 0.04 + 0.08 + 0.16 + 0.2 …: about 7 attempts, not one per 10 ms.
    assert 3 <= reader.attempts <= 10
    assert caplog.text.count("reader disconnected") == reader.attempts
