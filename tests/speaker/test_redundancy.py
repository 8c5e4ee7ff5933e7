"""RED (RFC 2198) at the packet level, with a fake clock: the relay's payloads pushed through
the speaker's receive step into its jitter buffer. A lost packet is rebuilt from the next
one's redundant block and counted ``redundant``; duplicates and late copies are ignored;
malformed RED is dropped whole and never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from loa.codecs.red import red_payload
from loa.codecs.rtp import RtpPacket
from loa.speaker.jitter import JitterBuffer, Play, PlayoutItem
from loa.speaker.redundancy import Received, receive
from tests.speaker.test_jitter import F, assert_balanced, payload, summary

OPUS, RED = 111, 112


def red_packet(seq: int, *, marker: bool = False) -> RtpPacket:
    """Packet ``seq`` of a RED stream: its frame, and the previous frame as redundancy (the
    relay's first packet of a stream carries the marker)."""
    data = red_payload(payload(seq & 0xFFFF), OPUS, payload((seq - 1) & 0xFFFF), 960)
    return RtpPacket(RED, seq & 0xFFFF, (960 * seq) & 0xFFFFFFFF, 7, data, marker)


def deliver(jb: JitterBuffer, packet: RtpPacket, now: float) -> Received:
    return receive(jb, packet, now, opus_type=OPUS, red_type=RED)


def play_all(jb: JitterBuffer, first_slot: int, slots: int) -> list[PlayoutItem]:
    return [jb.pop((first_slot + i) * F) for i in range(slots)]


def test_a_lost_packet_is_played_from_the_next_ones_redundant_block() -> None:
    jb = JitterBuffer()
    for i, seq in enumerate((100, 101, 102, 104, 105)):  # 103 lost
        got = deliver(jb, red_packet(seq, marker=not i), i * F)
        assert got == Received(True, 1 if seq == 104 else 0)
    assert jb.take_nacks(9.0) == []  # the gap was filled before its NACK was due
    items = play_all(jb, 5, 8)
    played = [(i.seq, i.payload, i.redundant) for i in items if isinstance(i, Play)]
    assert played == [(s, payload(s), s == 103) for s in range(100, 106)]
    assert (jb.redundant, jb.played, jb.lost, jb.concealed, jb.nacked) == (1, 6, 0, 0, 0)
    assert jb.played - jb.retransmitted - jb.redundant == 5  # played as sent
    assert jb.stats().redundant == 1
    assert_balanced(jb)


def test_duplicates_and_copies_of_what_is_held_are_ignored() -> None:
    jb = JitterBuffer()
    deliver(jb, red_packet(100, marker=True), 0.0)
    deliver(jb, red_packet(101), F)  # its block copies 100, already held: nothing filled
    assert deliver(jb, red_packet(101), F) == Received(True, 0)  # the same packet twice
    deliver(jb, red_packet(103), 2 * F)  # 102 filled from the copy
    deliver(jb, red_packet(102), 2 * F)  # then the original (reordered): a duplicate
    assert (jb.received, jb.duplicates, jb.filled) == (3, 2, 1)
    played = [summary(i) for i in play_all(jb, 3, 6)]
    assert [s for kind, s in played if kind == "play"] == [100, 101, 102, 103]
    assert jb.redundant == 1
    assert_balanced(jb)


def test_a_copy_whose_slot_has_passed_is_not_taken() -> None:
    jb = JitterBuffer()
    for i in range(4):
        deliver(jb, red_packet(100 + i, marker=not i), i * F)
    items = [summary(jb.pop(t * F)) for t in range(4, 8)]  # plays 100..101, then more
    assert ("play", 100) in items
    deliver(jb, red_packet(106), 8 * F)  # 104, 105 lost: 105 filled, 104 left to the NACK
    assert jb.filled == 1
    assert jb.take_nacks(9.0) == [104]
    assert jb.fill(100, 96000, payload(100), 960, 9.0) is False  # played already
    assert jb.fill(106, 960 * 106, payload(106), 960, 9.0) is False  # held (and the newest)


def test_the_first_packet_of_a_segment_fills_nothing() -> None:
    jb = JitterBuffer()
    deliver(jb, red_packet(100, marker=True), 0.0)
    assert deliver(jb, red_packet(102, marker=True), F) == Received(True, 0)
    assert jb.filled == 0


def test_a_block_that_is_not_a_whole_number_of_packets_back_is_skipped() -> None:
    jb = JitterBuffer()
    deliver(jb, red_packet(100, marker=True), 0.0)
    data = red_payload(payload(103), OPUS, payload(101), 1920)  # two packets back: 101
    assert deliver(jb, RtpPacket(RED, 103, 960 * 103, 7, data), F) == Received(True, 1)
    data = red_payload(payload(104), OPUS, payload(102), 480)  # half a packet back
    assert deliver(jb, RtpPacket(RED, 104, 960 * 104, 7, data), 2 * F) == Received(True, 0)
    assert jb.filled == 1


def test_plain_opus_still_plays() -> None:
    jb = JitterBuffer()
    got = deliver(jb, RtpPacket(OPUS, 5, 4800, 7, payload(5)), 0.0)
    assert got == Received(True, 0) and jb.received == 1


def test_malformed_red_is_dropped_whole() -> None:
    jb = JitterBuffer()
    for bad in (b"\xef\x0f", b"\xef\x0f\x00\x09\x6f\xaa", b"\x6f", b"\x60\xaa"):
        assert deliver(jb, RtpPacket(RED, 1, 960, 7, bad), 0.0) == Received(False)
    assert (jb.received, len(jb)) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=30))
def test_noise_as_red_never_raises(packets: list[tuple[int, bytes]]) -> None:
    jb = JitterBuffer()
    for i, (seq, data) in enumerate(packets):
        if data:
            deliver(jb, RtpPacket(RED, seq, 960 * seq, 7, data), i * F)
        jb.pop(i * F)
    assert_balanced(jb)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=10, max_size=60))
def test_every_single_loss_is_rebuilt(lost: list[bool]) -> None:
    """With no two losses in a row, RED alone plays every frame."""
    lost = [a and not b for a, b in zip(lost, [False, *lost], strict=False)]
    lost[-1] = False
    jb = JitterBuffer()
    jb.asking = False
    for i, gone in enumerate(lost):
        if not gone:
            deliver(jb, red_packet(1000 + i, marker=not i), i * F)
        jb.pop(i * F)
    for i in range(len(lost), len(lost) + 10):
        jb.pop(i * F)
    assert (jb.played, jb.concealed, jb.redundant) == (len(lost), 0, sum(lost))
    assert_balanced(jb)
