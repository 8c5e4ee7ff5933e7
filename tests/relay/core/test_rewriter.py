"""Per-endpoint RTP rewriting: continuity across switches, gaps and wrap-around, checked with
aiortc's RTP parser as an independent reader of what we write."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket as PeerPacket
from hypothesis import given
from hypothesis import strategies as st

from loa.relay.core.rewriter import FRAME_TICKS, Rewriter

PAYLOAD = bytes(range(1, 81))  # an 80-byte "Opus packet": 32 kbit/s for 20 ms
SOURCE = Rewriter.source_packet(PAYLOAD)
SSRC = 0xDEADBEEF


def read(packet: bytes) -> PeerPacket:
    parsed = PeerPacket.parse(packet)
    assert parsed.version == 2
    assert parsed.payload_type == 111
    assert parsed.ssrc == SSRC
    assert parsed.payload == PAYLOAD
    assert len(packet) == 12 + len(PAYLOAD)
    return parsed


def test_frame_ticks_is_20_ms_at_48_khz() -> None:
    assert FRAME_TICKS == 960


def test_source_packet_layout() -> None:
    assert b"\x80\x6f" + bytes(10) + PAYLOAD == SOURCE
    assert Rewriter.source_packet(b"\xfc", payload_type=96)[:2] == b"\x80\x60"


def test_source_packet_rejects_marker_bit_payload_type() -> None:
    with pytest.raises(ValueError) as info:
        Rewriter.source_packet(PAYLOAD, payload_type=128)
    assert str(info.value) == "RTP payload type must be 0..127, got 128"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1 << 32, 0, 0), "SSRC must be 0..4294967295, got 4294967296"),
        ((1, 65536, 0), "initial sequence must be 0..65535, got 65536"),
        ((1, 0, -1), "initial timestamp must be 0..4294967295, got -1"),
    ],
)
def test_constructor_checks_ranges(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Rewriter(*args)
    assert str(info.value) == message


def test_first_packet_uses_initial_values_and_marker() -> None:
    rw = Rewriter(SSRC, 1000, 50_000)
    assert rw.last_sequence is None
    assert rw.last_timestamp is None
    assert rw.broadcast_key is None
    p = read(rw.rewrite(SOURCE, 7, 123))
    assert (p.sequence_number, p.timestamp, p.marker) == (1000, 50_000, 1)
    assert (rw.last_sequence, rw.last_timestamp, rw.broadcast_key) == (1000, 50_000, 7)
    assert (rw.sent, rw.octets, rw.switches) == (1, 80, 0)


def test_same_broadcast_follows_frame_index() -> None:
    rw = Rewriter(SSRC, 0, 0)
    rw.rewrite(SOURCE, 1, 10)
    p = read(rw.rewrite(SOURCE, 1, 11))
    assert (p.sequence_number, p.timestamp, p.marker) == (1, 960, 0)
    # frames 12..14 never reached this endpoint (DTX, or dropped as stale): time still moves
    p = read(rw.rewrite(SOURCE, 1, 15))
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 5 * 960, 0)
    assert (rw.switches, rw.resyncs) == (0, 0)


def test_switch_continues_one_frame_on_with_marker() -> None:
    rw = Rewriter(SSRC, 0, 0)
    rw.rewrite(SOURCE, 1, 500)
    rw.rewrite(SOURCE, 1, 501)
    p = read(rw.rewrite(SOURCE, 2, 3))  # the other broadcast's numbering is unrelated
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 2 * 960, 1)
    p = read(rw.rewrite(SOURCE, 2, 4))
    assert (p.sequence_number, p.timestamp, p.marker) == (3, 3 * 960, 0)
    p = read(rw.rewrite(SOURCE, 1, 900))  # back to the first: its frame jump is not ours
    assert (p.sequence_number, p.timestamp, p.marker) == (4, 4 * 960, 1)
    assert rw.switches == 2


def test_gap_advances_the_clock_and_marks_the_next_packet() -> None:
    rw = Rewriter(SSRC, 0, 0)
    rw.gap(1000)  # before the first packet there is no clock to advance
    assert rw.gaps == 0
    rw.rewrite(SOURCE, 1, 0)
    rw.gap(40)
    rw.gap(10)
    p = read(rw.rewrite(SOURCE, 1, 1))  # same broadcast, resumed after 1 s of silence
    assert (p.sequence_number, p.timestamp, p.marker) == (1, 51 * 960, 1)
    rw.gap(5)
    p = read(rw.rewrite(SOURCE, 2, 0))  # a new broadcast after a gap
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 57 * 960, 1)
    p = read(rw.rewrite(SOURCE, 2, 1))
    assert (p.timestamp, p.marker) == (58 * 960, 0)
    assert (rw.gaps, rw.switches, rw.resyncs) == (55, 1, 0)


def test_gap_rejects_negative() -> None:
    with pytest.raises(ValueError) as info:
        Rewriter(SSRC, 0, 0).gap(-1)
    assert str(info.value) == "gap must be a frame count >= 0, got -1"


@pytest.mark.parametrize("frame_index", [7, 3])
def test_frame_index_not_moving_forward_is_a_resync(frame_index: int) -> None:
    rw = Rewriter(SSRC, 0, 0)
    rw.rewrite(SOURCE, 1, 7)
    p = read(rw.rewrite(SOURCE, 1, frame_index))
    assert (p.sequence_number, p.timestamp, p.marker) == (1, 960, 1)
    p = read(rw.rewrite(SOURCE, 1, frame_index + 2))
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 3 * 960, 0)
    assert (rw.resyncs, rw.switches) == (1, 0)


def test_sequence_and_timestamp_wrap() -> None:
    rw = Rewriter(SSRC, 65534, 0xFFFF_FFFF - 960)
    got = [read(rw.rewrite(SOURCE, 1, i)) for i in range(4)]
    assert [p.sequence_number for p in got] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in got] == [0xFFFF_FFFF - 960, 0xFFFF_FFFF, 959, 1919]
    assert rw.last_sequence == 1
    p = read(rw.rewrite(SOURCE, 2, 0))  # a switch across the wrap too
    assert (p.sequence_number, p.timestamp) == (2, 2879)


def test_timestamp_wraps_on_a_long_skip_within_a_broadcast() -> None:
    rw = Rewriter(SSRC, 0, 0xFFFF_0000)
    rw.rewrite(SOURCE, 1, 0)
    p = read(rw.rewrite(SOURCE, 1, 100))
    assert p.timestamp == (0xFFFF_0000 + 96_000) % (1 << 32)


def test_endpoints_share_one_source_packet_independently() -> None:
    a, b = Rewriter(SSRC, 10, 0), Rewriter(SSRC ^ 1, 20_000, 7)
    source = bytes(SOURCE)
    for i in range(3):
        pa, pb = a.rewrite(source, 1, i), b.rewrite(source, 1, i)
        assert pa[12:] == pb[12:] == PAYLOAD
    assert source == SOURCE  # the shared bytes are never written to
    assert (PeerPacket.parse(pa).sequence_number, PeerPacket.parse(pb).sequence_number) == (
        12,
        20_002,
    )
    assert PeerPacket.parse(pb).ssrc == SSRC ^ 1


# One delivery: (broadcast, frames that broadcast advanced since it was last delivered here,
# idle frames reported with gap() just before it).
DELIVERY = st.tuples(st.integers(0, 3), st.integers(1, 3000), st.integers(0, 2))


@given(
    initial_sequence=st.integers(0, 0xFFFF),
    initial_timestamp=st.integers(0, 0xFFFF_FFFF),
    deliveries=st.lists(DELIVERY, min_size=1, max_size=60),
    gaps=st.booleans(),
)
def test_stream_stays_continuous(
    initial_sequence: int,
    initial_timestamp: int,
    deliveries: list[tuple[int, int, int]],
    gaps: bool,
) -> None:
    rw = Rewriter(SSRC, initial_sequence, initial_timestamp)
    frame = dict.fromkeys(range(4), 1000)  # each broadcast's own frame counter
    previous: PeerPacket | None = None
    previous_key = -1
    switches = 0
    for key, step, idle in deliveries:
        idle = idle if gaps else 0
        if idle:
            rw.gap(idle)
        frame[key] += step
        packet = rw.rewrite(SOURCE, key, frame[key])
        p = read(packet)
        if previous is None:
            assert (p.sequence_number, p.timestamp, p.marker) == (
                initial_sequence,
                initial_timestamp,
                1,
            )
        else:
            switched = key != previous_key
            switches += switched
            assert p.sequence_number == (previous.sequence_number + 1) % (1 << 16)
            advance = (p.timestamp - previous.timestamp) % (1 << 32)
            assert 960 <= advance < 1 << 31  # strictly later, modulo 2**32
            assert advance % 960 == 0
            if switched or idle:
                assert advance == 960 * (1 + idle)
            else:
                assert advance == 960 * step
            assert p.marker == int(switched or idle > 0)
        previous, previous_key = p, key
    assert (rw.sent, rw.switches, rw.resyncs) == (len(deliveries), switches, 0)
    assert rw.octets == 80 * len(deliveries)
