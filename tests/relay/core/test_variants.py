"""Packet variants, sans-IO: a broadcast's 20 ms source packets joined 2 or 3 to a packet, a
packet cut short where frames cannot join (a skipped index, another TOC) or the broadcast
ends, and the rewriter's timestamps, runs and retransmission lookups over such packets."""

from __future__ import annotations

import pytest

from loa.codecs import OPUS_PAYLOAD_TYPE, RED_PAYLOAD_TYPE
from loa.codecs.opus_packet import frames
from loa.codecs.red import RedPayload
from loa.relay.core.repair import PacketHistory, Repairer
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.variants import (
    PLAIN,
    VARIANT_BITS,
    Packer,
    Ready,
    Variant,
    broadcast_of,
    stream_key,
)
from loa.relay.core.zones import AudioSettings

SILK = 0x48  # TOC: SILK WB 20 ms, one frame
CELT = 0xF8  # TOC: CELT FB 20 ms, one frame


def source(i: int, toc: int = SILK) -> bytes:
    """Frame ``i``'s source packet: placeholder header, TOC, two bytes naming the frame."""
    return Rewriter.source_packet(bytes((toc,)) + i.to_bytes(2, "big"))


def feed(packer: Packer, indices: list[int], toc: dict[int, int] | None = None) -> list[Ready]:
    toc = toc or {}
    out = [packer.add(source(i, toc.get(i, SILK)), i) for i in indices]
    return [r for r in out if r is not None]


def frame_ids(ready: Ready) -> list[int]:
    """The frame numbers a packet carries, from its Opus frames."""
    return [int.from_bytes(f) for f in frames(ready.packet[12:])[1]]


def test_variants_of_zone_settings_and_their_stream_keys() -> None:
    assert Variant.of(AudioSettings(60, True, 300)) == Variant(3, True)
    assert Variant.of(AudioSettings(20, False, 300)) is not PLAIN
    assert Variant.of(AudioSettings(20, False, 300)) == PLAIN
    indices = {Variant(f, r).index for f in (1, 2, 3) for r in (False, True)}
    assert len(indices) == 6 and max(indices) < 1 << VARIANT_BITS  # unique, in the key's bits
    assert {broadcast_of(stream_key(41, Variant(f))) for f in (1, 2, 3)} == {41}
    assert stream_key(41, Variant(2)) != stream_key(41, Variant(3)) != stream_key(42, Variant(3))
    with pytest.raises(ValueError, match=r"a packet holds 1\.\.3 frames of 20 ms, got 4"):
        Variant(4)


def test_plain_packets_are_the_source_packets_themselves() -> None:
    packet = source(7)
    ready = Packer(PLAIN, 5).add(packet, 7)
    assert ready is not None and ready.packet is packet
    assert (ready.frame_index, ready.frames, ready.key) == (7, 1, stream_key(5, PLAIN))


@pytest.mark.parametrize("n", [2, 3])
def test_frames_are_joined_n_to_a_packet(n: int) -> None:
    packer = Packer(Variant(n), 1)
    ready = feed(packer, list(range(10, 10 + 4 * n)))
    assert [frame_ids(r) for r in ready] == [
        list(range(10 + k * n, 10 + (k + 1) * n)) for k in range(4)
    ]
    assert [(r.frame_index, r.frames) for r in ready] == [(10 + k * n, n) for k in range(4)]
    assert all(r.packet[:12] == source(0)[:12] for r in ready)  # the source header, as shared


def test_a_skipped_frame_index_cuts_the_packet_short() -> None:
    packer = Packer(Variant(3), 1)
    ready = feed(packer, [0, 1, 2, 3, 4, 9, 10, 11])  # 5..8 never came
    assert [frame_ids(r) for r in ready] == [[0, 1, 2], [3, 4], [9, 10, 11]]
    assert [r.frame_index for r in ready] == [0, 3, 9]


def test_a_frame_with_another_toc_starts_the_next_packet() -> None:
    packer = Packer(Variant(2), 1)
    ready = feed(packer, [0, 1, 2, 3, 4, 5], toc={3: CELT, 4: CELT})  # mode switch at 3
    parsed = [(frames(r.packet[12:])[0].config, frame_ids(r)) for r in ready]
    assert parsed == [(9, [0, 1]), (9, [2]), (31, [3, 4])]
    assert packer.flush() is not None  # frame 5 (SILK again), held
    assert packer.flush() is None


def test_flush_sends_what_is_held() -> None:
    packer = Packer(Variant(3), 1)
    assert feed(packer, [0, 1, 2, 3]) and (held := packer.flush()) is not None
    assert (frame_ids(held), held.frame_index, held.frames) == ([3], 3, 1)
    assert held.packet == source(3)  # one frame: the source packet as it was


def test_a_stamped_header_extension_stays_in_front() -> None:
    ext = bytes((0xBE, 0xDE, 0, 3)) + bytes(12)  # RFC 8285 one-byte form, 3 words

    def stamped(i: int) -> bytes:
        return bytes((0x90,)) + source(i)[1:12] + ext + bytes((SILK,)) + i.to_bytes(2, "big")

    packer = Packer(Variant(2), 1)
    assert packer.add(stamped(0), 0) is None
    ready = packer.add(stamped(1), 1)
    assert ready is not None and ready.packet[:28] == stamped(0)[:28]
    assert [int.from_bytes(f) for f in frames(ready.packet[28:])[1]] == [0, 1]


# -- the rewriter over longer packets -------------------------------------------------------


def test_timestamps_advance_by_a_packets_samples_and_sequence_by_one() -> None:
    rw = Rewriter(ssrc=1, initial_sequence=65534, initial_timestamp=1000)
    key = stream_key(3, Variant(2))
    headers = [rw.header(source(i), key, i, 2) for i in (0, 2, 4, 6)]
    seqs = [int.from_bytes(h[2:4]) for h in headers]
    stamps = [int.from_bytes(h[4:8]) for h in headers]
    assert seqs == [65534, 65535, 0, 1]
    assert stamps == [1000, 2920, 4840, 6760]
    assert [h[1] >> 7 for h in headers] == [1, 0, 0, 0]  # the marker opens the stream only


def test_a_switch_continues_after_the_last_packets_duration() -> None:
    rw = Rewriter(ssrc=1, initial_sequence=0, initial_timestamp=0)
    rw.header(source(0), stream_key(1, Variant(3)), 0, 3)
    first_of_b = rw.header(source(50), stream_key(2, Variant(3)), 50, 3)
    assert int.from_bytes(first_of_b[4:8]) == 2880 and first_of_b[1] >> 7 == 1
    rw.gap(5)  # 100 ms of nothing
    after_gap = rw.header(source(60), stream_key(2, Variant(3)), 60, 3)
    assert int.from_bytes(after_gap[4:8]) == 2880 * 2 + 5 * 960


def test_a_nack_of_a_long_packet_resends_it_byte_for_byte() -> None:
    """Runs of multi-frame packets, a short packet among them, a switch: each sequence number
    traced back to its packet, resent exactly as first sent."""
    rw = Rewriter(ssrc=9, initial_sequence=100, initial_timestamp=5)
    histories: dict[int, PacketHistory] = {}
    sent: dict[int, bytes] = {}
    plan = [(1, Variant(2), list(range(20))), (2, Variant(3), list(range(16)))]
    for bc, variant, indices in plan:
        packer = Packer(variant, bc)
        for ready in feed(packer, indices) + [r for r in [packer.flush()] if r is not None]:
            history = histories.setdefault(ready.key, PacketHistory())
            history.add(ready.frame_index, ready.packet)
            packet = rw.rewrite(ready.packet, ready.key, ready.frame_index, ready.frames)
            sent[int.from_bytes(packet[2:4])] = packet
    assert len(sent) == 10 + 6  # 20 frames by 2; 16 by 3 (the last packet one frame)
    resent = Repairer().on_nack(tuple(sent), rw, {OPUS_PAYLOAD_TYPE: histories}, now=0.0)
    assert resent.packets == tuple(sent.values())
    assert (resent.unknown, resent.expired, resent.limited) == (0, 0, 0)


def test_a_redundancy_variant_sends_red_with_the_previous_packet_of_its_length() -> None:
    """RFC 2198 over 40 ms packets: the joined frames as the primary, the previous packet as
    the redundant block one packet duration back; after a gap in the frames, the primary
    alone; a NACKed RED packet resent as the RED packet it was."""
    packer = Packer(Variant(2, redundancy=True), 1)
    ready = feed(packer, [0, 1, 2, 3, 4, 5, 9, 10])  # 6..8 never came
    plain = feed(Packer(Variant(2), 1), [0, 1, 2, 3, 4, 5, 9, 10])
    assert [r.packet[1] for r in ready] == [RED_PAYLOAD_TYPE] * 4
    parsed = [RedPayload.parse(r.packet[12:], payload_type=OPUS_PAYLOAD_TYPE) for r in ready]
    assert [p.primary for p in parsed] == [r.packet[12:] for r in plain]
    assert [[(b.offset, b.data) for b in p.redundant] for p in parsed] == [
        [],
        [(1920, plain[0].packet[12:])],
        [(1920, plain[1].packet[12:])],
        [],  # frames 9, 10 do not follow 4, 5: nothing to repeat
    ]
    rw = Rewriter(ssrc=2, initial_sequence=0, initial_timestamp=0)
    history = PacketHistory()
    sent = []
    for r in ready:
        history.add(r.frame_index, r.packet)
        sent.append(rw.rewrite(r.packet, r.key, r.frame_index, r.frames))
    resent = Repairer().on_nack((1, 2), rw, {RED_PAYLOAD_TYPE: {ready[0].key: history}}, 0.0)
    assert resent.packets == (sent[1], sent[2])
