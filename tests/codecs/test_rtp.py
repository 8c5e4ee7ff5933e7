"""RTP wire format: hex fixtures that round-trip, bad fixtures and their errors, hypothesis
properties, wrap-aware seq/ts maths, the header-rewrite fast path, and aiortc's parser as a peer."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiortc.rtp as peer
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loa.codecs.rtp import (
    OPUS_CLOCK_RATE,
    OPUS_FRAME_TICKS,
    RtpExtension,
    RtpPacket,
    seq_add,
    seq_diff,
    ts_diff,
)
from tests.support.rtp import ExtendedSequence, opus_packet, rewrite_header, seq_lt, ts_add


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- fixtures, written out field by field --------------------------------------------------

RTP_FULL = h(
    "b2 ef 1234"  # V=2 P=1 X=1 CC=2 | M=1 PT=111 | seq 0x1234
    "0000fa00"  # timestamp 64000
    "deadbeef"  # SSRC
    "00000001 00000002"  # CSRC list
    "bede 0001 10aa0000"  # extension: profile 0xBEDE, 1 word of data
    "010203"  # payload
    "00000004"  # 4 octets of padding, count last
)
RTP_OPUS = h("80 6f ffff fffffc40 01020304 fcfffe")  # PT 111, seq 65535, ts 2**32-960


def test_rtp_fixture_fields_and_round_trip() -> None:
    p = RtpPacket.parse(RTP_FULL)
    assert p == RtpPacket(
        payload_type=111,
        sequence=0x1234,
        timestamp=64000,
        ssrc=0xDEADBEEF,
        payload=b"\x01\x02\x03",
        marker=True,
        csrc=(1, 2),
        extension=RtpExtension(0xBEDE, h("10aa0000")),
        padding_len=4,
    )
    assert bytes(p) == RTP_FULL


def test_opus_packet_matches_fixture() -> None:
    assert opus_packet(h("fcfffe"), 65535, 2**32 - 960, 0x01020304) == RTP_OPUS
    p = RtpPacket.parse(RTP_OPUS)
    assert (p.payload_type, p.marker, p.csrc, p.extension, p.padding_len) == (
        111,
        False,
        (),
        None,
        0,
    )


def test_opus_clock_and_frame_ticks() -> None:
    assert (OPUS_CLOCK_RATE, OPUS_FRAME_TICKS) == (48_000, 960)
    # 50 frames of 20 ms are one second of 48 kHz clock, even across the 32-bit wrap
    ts = 2**32 - 3 * OPUS_FRAME_TICKS
    for _ in range(50):
        ts = ts_add(ts, OPUS_FRAME_TICKS)
    assert ts_diff(ts, 2**32 - 3 * OPUS_FRAME_TICKS) == OPUS_CLOCK_RATE


# --- bad input ----------------------------------------------------------------------------

BAD_RTP = [
    (h("80ef1234 000000"), "RTP packet too short: 7 bytes, need at least 12"),
    (b"", "RTP packet too short: 0 bytes, need at least 12"),
    (h("40ef1234 00000000 00000000"), "RTP version must be 2, got 1"),
    (
        h("83ef1234 00000000 00000000 00000001 00000002"),
        "RTP CSRC count 3 needs 24 bytes, packet has 20",
    ),
    (h("a0ef1234 00000000 00000000 0102 28"), "RTP padding length 40 exceeds payload of 3 bytes"),
    (h("a0ef1234 00000000 00000000 00"), "RTP padding bit set but padding length is 0"),
    (
        h("90ef1234 00000000 00000000 bede"),
        "RTP header extension header needs 16 bytes, packet has 14",
    ),
    (
        h("90ef1234 00000000 00000000 bede0002 10aa0000"),
        "RTP header extension length 2 words needs 24 bytes, packet has 20",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_RTP)
def test_bad_rtp(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        RtpPacket.payload_of(data)
    assert str(info.value) == message


BAD_VALUES = [
    (lambda: RtpPacket(111, 70000, 0, 0), "RTP sequence must be 0..65535, got 70000"),
    (lambda: RtpPacket(128, 0, 0, 0), "RTP payload type must be 0..127, got 128"),
    (lambda: RtpPacket(111, 0, 2**32, 0), "RTP timestamp must be 0..4294967295, got 4294967296"),
    (lambda: RtpPacket(111, 0, 0, -1), "RTP SSRC must be 0..4294967295, got -1"),
    (lambda: RtpPacket(111, 0, 0, 0, csrc=(0,) * 16), "RTP CSRC list: at most 15, got 16"),
    (
        lambda: RtpPacket(111, 0, 0, 0, padding_len=256),
        "RTP padding length must be 0..255, got 256",
    ),
    (
        lambda: RtpExtension(0xBEDE, b"abc"),
        "RTP header extension data must be whole 32-bit words, got 3 bytes",
    ),
    (lambda: RtpExtension(0x10000), "RTP header extension profile must be 0..65535, got 65536"),
    (
        lambda: opus_packet(b"\xfc", 0, 0, 0, payload_type=0),
        "Opus payload type must be dynamic (96..127), got 0",
    ),
    (
        lambda: opus_packet(b"", 0, 0, 0),
        "Opus RTP payload is empty: an Opus packet has at least its TOC byte",
    ),
    (lambda: opus_packet(b"\xfc", 65536, 0, 0), "RTP sequence must be 0..65535, got 65536"),
    (lambda: ExtendedSequence().feed(-1), "RTP sequence must be 0..65535, got -1"),
]


@pytest.mark.parametrize(("build", "message"), BAD_VALUES)
def test_bad_values(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


# --- hypothesis: parse(bytes(p)) == p ------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=32).map(lambda b: b[: len(b) - len(b) % 4])

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | st.builds(RtpExtension, profile=u16, data=words),
    padding_len=st.integers(0, 255),
)


@given(rtp_packets)
def test_rtp_round_trip(p: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(p)) == p
    assert RtpPacket.payload_of(bytes(p)) == p.payload


@given(st.binary(max_size=64) | rtp_packets.map(bytes).map(lambda b: b[: len(b) // 2]))
def test_payload_of_agrees_with_parse_on_anything(data: bytes) -> None:
    try:
        payload = RtpPacket.parse(data).payload
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            RtpPacket.payload_of(data)
    else:
        assert RtpPacket.payload_of(data) == payload


# --- hypothesis: wrap-around ---------------------------------------------------------------


@given(u16, st.integers(-32768, 32767))
@example(65535, 1)
@example(0, -1)
def test_seq_add_diff_inverse(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert 0 <= b <= 0xFFFF
    assert seq_diff(b, a) == n
    if n != -32768:  # half the space apart: no order (RFC 1982), both compare as earlier
        assert seq_lt(a, b) == (n > 0)
        assert seq_lt(b, a) == (n < 0)
    else:
        assert seq_lt(a, b)
        assert seq_lt(b, a)


@given(u32, st.integers(-(2**31), 2**31 - 1))
@example(2**32 - 1, 1)
def test_ts_add_diff_inverse(a: int, n: int) -> None:
    b = ts_add(a, n)
    assert 0 <= b < 2**32
    assert ts_diff(b, a) == n


def test_ordering_across_the_wrap() -> None:
    assert seq_lt(65535, 0)
    assert not seq_lt(0, 65535)
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(32768, 0) == -32768
    assert ts_diff(0, 2**32 - 960) == 960


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A start and a walk of true sequence numbers: jumps ahead (loss) and late arrivals."""
    start = draw(st.integers(0, 0xFFFF) | st.integers(0xFF00, 0xFFFF))
    highest, walk = start, []
    for _ in range(draw(st.integers(1, 200))):
        if draw(st.integers(0, 4)):
            highest += draw(st.integers(1, ExtendedSequence.MAX_DROPOUT))
            walk.append(highest)
        else:
            walk.append(highest - draw(st.integers(0, ExtendedSequence.MAX_MISORDER)))
    return start, walk


@given(arrivals())
def test_extended_sequence_recovers_true_numbers(case: tuple[int, list[int]]) -> None:
    start, walk = case
    ext = ExtendedSequence()
    assert ext.feed(start) == start
    previous = ext.highest
    for true in walk:
        assert ext.feed(true & 0xFFFF) == (true if true >= 0 else None)
        assert ext.highest >= previous
        assert ext.cycles == ext.highest >> 16
        previous = ext.highest
    assert ext.highest == max(start, *walk)
    assert ext.restarts == 0


def test_extended_sequence_counts_cycles() -> None:
    ext = ExtendedSequence()
    got = [ext.feed(s) for s in (65534, 65535, 0, 65533, 1)]
    assert got == [65534, 65535, 65536, 65533, 65537]
    assert (ext.highest, ext.cycles) == (65537, 1)


def test_extended_sequence_late_before_first_is_refused() -> None:
    ext = ExtendedSequence()
    assert ext.feed(3) == 3
    assert ext.feed(65534) is None
    assert ext.highest == 3


# both the jump and the follower must fall outside the window -MAX_MISORDER..MAX_DROPOUT
@given(u16, st.integers(ExtendedSequence.MAX_DROPOUT + 1, 65534 - ExtendedSequence.MAX_MISORDER))
def test_extended_sequence_resyncs_after_restart(first: int, jump: int) -> None:
    ext = ExtendedSequence()
    for k in range(5):
        ext.feed(seq_add(first, k))
    before = ext.highest
    restart = seq_add(first, 4 + jump)
    assert ext.feed(restart) is None  # a lone stray packet is refused...
    assert ext.highest == before
    second = ext.feed(seq_add(restart, 1))  # ...but a sequential follower confirms a restart
    assert second is not None
    assert second > before
    assert second & 0xFFFF == seq_add(restart, 1)
    assert ext.feed(seq_add(restart, 2)) == second + 1
    assert ext.restarts == 1


def test_extended_sequence_ignores_single_stray() -> None:
    ext = ExtendedSequence()
    assert [ext.feed(s) for s in (10, 11, 40000, 12, 13)] == [10, 11, None, 12, 13]
    assert ext.restarts == 0


# --- the fan-out fast path -----------------------------------------------------------------


@given(
    u16,
    u32,
    u32,
    st.booleans(),
    st.sampled_from([96, 111, 127]),
    st.binary(min_size=1, max_size=40),
)
def test_rewrite_header_equals_building_the_packet(
    seq: int, ts: int, ssrc: int, marker: bool, pt: int, payload: bytes
) -> None:
    shared = opus_packet(payload, 1, 2, 3, marker=not marker, payload_type=pt)
    buf = bytearray(shared)
    rewrite_header(buf, seq, ts, ssrc, marker)
    expected = bytes(RtpPacket(pt, seq, ts, ssrc, payload, marker))
    assert bytes(buf) == expected == opus_packet(payload, seq, ts, ssrc, marker, pt)
    assert shared == opus_packet(payload, 1, 2, 3, marker=not marker, payload_type=pt)


def test_rewrite_header_wraps_and_accepts_memoryview() -> None:
    buf = bytearray(RTP_OPUS)
    rewrite_header(memoryview(buf), 65536 + 5, 2**32 + 7, 9, True)
    p = RtpPacket.parse(buf)
    assert (p.sequence, p.timestamp, p.ssrc, p.marker, p.payload) == (5, 7, 9, True, h("fcfffe"))


# --- a real peer's parser: aiortc ----------------------------------------------------------


@pytest.mark.parametrize(
    "ours",
    [
        RtpPacket.parse(RTP_OPUS),
        RtpPacket(111, 7, 123456, 0xCAFE, b"\xfc\x01", marker=True, csrc=(5, 6, 7), padding_len=3),
        RtpPacket(96, 65535, 2**32 - 1, 1, bytes(160)),
    ],
)
def test_aiortc_parses_our_rtp(ours: RtpPacket) -> None:
    theirs = peer.RtpPacket.parse(bytes(ours))
    assert (theirs.payload_type, theirs.sequence_number, theirs.timestamp, theirs.ssrc) == (
        ours.payload_type,
        ours.sequence,
        ours.timestamp,
        ours.ssrc,
    )
    assert (bool(theirs.marker), theirs.csrc, theirs.payload) == (
        ours.marker,
        list(ours.csrc),
        ours.payload,
    )
    assert theirs.padding_size == ours.padding_len
