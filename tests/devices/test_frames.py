"""Pure decoding: UID normalisation, RDM6300 frames, lines, key codes, debounce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.readers import (
    Debouncer,
    KeyDecoder,
    LineDecoder,
    Rdm6300Decoder,
    parse_uid,
    rdm6300_frame,
)
from devices.readers.frames import STX

uids10 = st.binary(min_size=5, max_size=5).map(lambda b: b.hex().upper())
noise = st.binary(max_size=30).map(lambda b: b.replace(bytes([STX]), b""))


@pytest.mark.parametrize(
    ("raw", "uid"),
    [
        ("04:a2:2b:1c", "04A22B1C"),
        ("04 A2 2B 1C\r\n", "04A22B1C"),
        ("04-a2-2b-1c", "04A22B1C"),
        ("0012345678", "0012345678"),
    ],
)
def test_parse_uid_normalises(raw: str, uid: str) -> None:
    assert parse_uid(raw) == uid


@pytest.mark.parametrize("raw", ["", "  ", "04A2XY", "ABC", "0" * 33, "été"])
def test_parse_uid_rejects_noise(raw: str) -> None:
    with pytest.raises(ValueError, match="badge UID"):
        parse_uid(raw)


def test_frame_checksum_is_xor_of_data_bytes() -> None:
    # The example frame of the RDM6300 documentation: 62^E3^08^6C^ED = 08.
    assert rdm6300_frame("62E3086CED") == b"\x0262E3086CED08\x03"
    assert Rdm6300Decoder().feed(b"\x0262E3086CED08\x03") == ["62E3086CED"]


@given(st.lists(st.tuples(noise, uids10), max_size=6), st.data())
def test_rdm6300_decodes_any_chunking_with_noise(
    stream: list[tuple[bytes, str]], data: st.DataObject
) -> None:
    raw = b"".join(n + rdm6300_frame(uid) for n, uid in stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    decoder = Rdm6300Decoder()
    got: list[str] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        got += decoder.feed(raw[start:end])
    assert got == [uid for _, uid in stream]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x0262E3086CED09\x03",  # wrong checksum
        b"\x0262E3086CED08\x04",  # wrong end byte
        b"\x0262E3086CEG08\x03",  # not hex
    ],
    ids=["checksum", "etx", "hex"],
)
def test_rdm6300_skips_bad_frames(bad: bytes) -> None:
    decoder = Rdm6300Decoder()
    assert decoder.feed(bad + rdm6300_frame("1A2B3C4D5E")) == ["1A2B3C4D5E"]


def test_rdm6300_reset_forgets_a_partial_frame() -> None:
    decoder = Rdm6300Decoder()
    frame = rdm6300_frame("1A2B3C4D5E")
    assert decoder.feed(frame[:6]) == []
    decoder.reset()
    assert decoder.feed(frame[6:]) == []
    assert decoder.feed(frame) == ["1A2B3C4D5E"]


def test_line_decoder_drops_overlong_noise() -> None:
    decoder = LineDecoder(max_line=16)
    assert decoder.feed(b"x" * 40) == []
    assert decoder.feed(b"\r\nCAFE01\n") == ["CAFE01"]


def test_key_decoder_builds_uid_until_enter() -> None:
    decoder = KeyDecoder()
    # KEY_0 KEY_4 LEFTSHIFT KEY_A KEY_2 KEY_B KEY_KP1 KEY_ENTER
    out = [decoder.key_down(code) for code in (11, 5, 42, 30, 3, 48, 79, 28)]
    assert out == [None] * 7 + ["04A2B1"]


def test_key_decoder_drops_input_with_foreign_keys() -> None:
    decoder = KeyDecoder()
    for code in (2, 3, 4, 5, 57, 6, 28):  # 57 = KEY_SPACE: someone typing
        assert decoder.key_down(code) is None
    for code in (2, 3, 4, 5, 96):  # KP_ENTER also ends a UID
        result = decoder.key_down(code)
    assert result == "1234"


def test_debouncer_counts_a_held_badge_once() -> None:
    now = [0.0]
    debouncer = Debouncer(window_s=1.0, clock=lambda: now[0])
    seen = []
    for t in (0.0, 0.3, 0.6, 0.9, 1.2, 3.0):  # held 1.2 s, then tapped again later
        now[0] = t
        seen.append(debouncer.accept("AA01"))
    assert seen == [True, False, False, False, False, True]


def test_debouncer_keeps_badges_independent() -> None:
    now = [0.0]
    debouncer = Debouncer(window_s=1.0, clock=lambda: now[0])
    assert debouncer.accept("AA01")
    now[0] = 0.1
    assert debouncer.accept("BB02")
    now[0] = 0.2
    assert not debouncer.accept("AA01")
    now[0] = 1.3
    assert debouncer.accept("AA01")


def test_debouncer_rejects_negative_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        Debouncer(window_s=-1)
