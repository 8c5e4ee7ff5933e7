"""Loss repair, relay side, at the packet level with a fake clock: a NACKed sequence number is
traced back to its frame through the rewriter's runs (switches, gaps, skipped frames, wrap),
resent byte for byte from the broadcast's history, at most once per NACK, rate-limited per
endpoint; NACKs reach the repairer through the session table, malformed ones are ignored."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpRtpfbPacket
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs import OPUS_PAYLOAD_TYPE, RED_PAYLOAD_TYPE
from loa.codecs.red import RedPayload
from loa.codecs.rtcp import GenericNack
from loa.codecs.rtp import RtpPacket
from loa.relay.core.repair import (
    HISTORY_FRAMES,
    NACK_BURST,
    PacketHistory,
    Repairer,
    payload_start,
    red_packet,
)
from loa.relay.core.rewriter import LOCATE_HORIZON, RUNS_KEPT, Rewriter
from loa.relay.core.session import Accepted, RtcpReceived, SessionTable
from loa.relay.core.wire import ControlDatagram, DatagramType

SSRC = 0x0BADCAFE
KEY = bytes(range(32))
SID = bytes.fromhex("0102030405060708")
PHONE = ("203.0.113.9", 40000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


def source(key: int, frame: int, stamp: bool = False) -> bytes:
    """A distinct source packet per (broadcast, frame); with a one-word header extension
    (RFC 8285 one-byte form) if ``stamp``."""
    packet = Rewriter.source_packet(bytes([key, frame % 256]) * 20)
    if not stamp:
        return packet
    extension = bytes.fromhex("bede0001 10") + bytes([frame % 256]) + bytes(2)
    return bytes([packet[0] | 0x10]) + packet[1:12] + extension + packet[12:]


class Stream:
    """One endpoint's fan-out: what the relay sent it, with the histories NACKs are served from."""

    def __init__(self, initial_sequence: int = 65530) -> None:
        self.rewriter = Rewriter(SSRC, initial_sequence, 4_000_000_000)
        # by payload type, then broadcast: as the node keeps them
        self.histories: dict[int, dict[int, PacketHistory]] = {
            OPUS_PAYLOAD_TYPE: {},
            RED_PAYLOAD_TYPE: {},
        }
        self.sent: dict[int, bytes] = {}  # sequence -> packet as first sent

    def send(self, key: int, frame: int, *, red: bool = False) -> bytes:
        packet = source(key, frame, stamp=key % 2 == 0)
        plain = self.histories[OPUS_PAYLOAD_TYPE].setdefault(key, PacketHistory())
        plain.add(frame, packet)
        if red:
            packet = red_packet(packet, plain.get(frame - 1))
            self.histories[RED_PAYLOAD_TYPE].setdefault(key, PacketHistory()).add(frame, packet)
        out = self.rewriter.rewrite(packet, key, frame)
        self.sent[int.from_bytes(out[2:4])] = out
        return out


def test_a_resent_packet_is_the_packet_first_sent_across_switches_gaps_skips_and_wrap() -> None:
    s = Stream()
    for frame in range(10):
        s.send(1, frame)
    s.send(2, 500)  # a switch: marker, new run
    s.send(2, 501)
    s.send(2, 505)  # frames skipped within a broadcast: no marker, still a new run
    s.rewriter.gap(7)
    s.send(2, 506)  # after an idle gap: marker
    s.send(1, 10)  # back to the first broadcast
    repairer = Repairer()
    lost = tuple(s.sent)
    assert len(lost) == 15 and 0 in lost and 65535 in lost  # the sequence wrapped
    resent = repairer.on_nack(lost, s.rewriter, s.histories, now=0.0)
    assert resent.packets == tuple(s.sent[q] for q in lost)
    assert (resent.unknown, resent.expired, resent.limited) == (0, 0, 0)
    markers = [q for q in lost if s.sent[q][1] & 0x80]
    assert len(markers) == 4  # first ever, switch, after the gap, switch back


def test_numbers_never_sent_or_too_old_are_unknown_and_dropped_frames_expired() -> None:
    s = Stream(initial_sequence=100)
    assert Repairer().on_nack((100,), s.rewriter, s.histories, 0.0).unknown == 1  # nothing yet
    for frame in range(HISTORY_FRAMES + 10):
        s.send(1, frame)
    last = s.rewriter.last_sequence
    assert last is not None
    resent = Repairer().on_nack(((last + 1) & 0xFFFF, 100, last), s.rewriter, s.histories, 0.0)
    # the next number was never sent; 100 carried frame 0, which left the 64-frame history
    assert (resent.unknown, resent.expired, len(resent.packets)) == (1, 1, 1)
    assert resent.packets[0] == s.sent[last]


def test_the_locate_horizon_and_the_runs_kept_bound_the_search() -> None:
    s = Stream(initial_sequence=0)
    for frame in range(LOCATE_HORIZON + 5):
        s.send(1, frame)
    assert s.rewriter.locate(4) is None  # more than LOCATE_HORIZON packets back
    assert s.rewriter.locate(5) is not None
    t = Stream(initial_sequence=0)
    for key in range(1, RUNS_KEPT + 3):  # one packet per broadcast: one run each
        t.send(key, 0)
    assert t.rewriter.locate(1) is None  # its run was forgotten
    assert t.rewriter.locate(2) is not None


def test_a_nack_naming_a_number_twice_gets_it_once() -> None:
    s = Stream()
    s.send(1, 0)
    resent = Repairer().on_nack((65530, 65530, 65530), s.rewriter, s.histories, 0.0)
    assert len(resent.packets) == 1


def test_rate_limit_per_endpoint_with_a_fake_clock() -> None:
    clock = FakeClock()
    s = Stream()
    for frame in range(60):
        s.send(1, frame)
    everything = tuple(s.sent)
    a, b = Repairer(rate_per_s=50.0, burst=NACK_BURST), Repairer(rate_per_s=50.0)
    first = a.on_nack(everything, s.rewriter, s.histories, clock.now)
    assert (len(first.packets), first.limited) == (int(NACK_BURST), 60 - int(NACK_BURST))
    assert len(a.on_nack(everything[:1], s.rewriter, s.histories, clock.now).packets) == 0
    assert len(b.on_nack(everything[:5], s.rewriter, s.histories, clock.now).packets) == 5
    clock.advance(0.1)  # 5 tokens back at 50 a second
    again = a.on_nack(everything, s.rewriter, s.histories, clock.now)
    assert len(again.packets) == 5
    clock.advance(10.0)  # refilled up to the burst, not beyond
    assert len(a.on_nack(everything, s.rewriter, s.histories, clock.now).packets) == NACK_BURST
    clock.advance(-5.0)  # a clock going backwards gives nothing
    assert len(a.on_nack(everything, s.rewriter, s.histories, clock.now).packets) == 0
    assert a.resent == NACK_BURST + 5 + NACK_BURST


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="need rate_per_s > 0 and burst >= 1, got 0, 5"):
        Repairer(rate_per_s=0, burst=5)
    with pytest.raises(ValueError, match="history must hold at least 1 frame, got 0"):
        PacketHistory(0)


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2)), max_size=60),
)
def test_every_recent_packet_is_found_again(
    initial: int, steps: list[tuple[int, int, int]]
) -> None:
    # any mix of switches, frame skips and idle gaps: every packet still in the history
    # comes back exactly as it was sent
    s = Stream(initial)
    frames = dict.fromkeys((1, 2, 3), 0)
    for key, skip, idle in steps:
        frames[key] += skip
        if idle:
            s.rewriter.gap(idle)
        s.send(key, frames[key])
    recent = list(s.sent)[-RUNS_KEPT:]
    resent = Repairer(burst=100).on_nack(tuple(recent), s.rewriter, s.histories, 0.0)
    assert resent.packets == tuple(s.sent[q] for q in recent)


# --- NACKs through the session table ---------------------------------------------------


def _bound_table() -> tuple[SessionTable, Stream]:
    table = SessionTable(keepalive_s=10, session_timeout_s=35)
    session = table.open("pole", SID, KEY, SSRC, now=0.0, initial_sequence=10).session
    hello = bytes(ControlDatagram.signed(DatagramType.HELLO, SID, 1, KEY))
    assert isinstance(table.on_datagram(hello, PHONE, 0.0), Accepted)
    stream = Stream()
    stream.rewriter = session.rewriter
    return table, stream


def test_a_nack_from_the_bound_address_names_what_to_resend() -> None:
    table, s = _bound_table()
    for frame in range(5):
        s.send(1, frame)
    theirs = RtcpRtpfbPacket(fmt=1, ssrc=0x5151, media_ssrc=SSRC)
    theirs.lost = [11, 13]  # aiortc, a real peer, writes the NACK
    result = table.on_datagram(bytes(theirs), PHONE, 1.0)
    assert isinstance(result, RtcpReceived)
    assert (result.lost, result.bad_nacks) == ((11, 13), 0)
    assert result.session.nacks == 1
    resent = result.session.repairer.on_nack(result.lost, s.rewriter, s.histories, 1.0)
    assert resent.packets == (s.sent[11], s.sent[13])


@pytest.mark.parametrize(
    "nack",
    [
        bytes(GenericNack(1, 0x12345678, (11,))),  # about another stream
        bytes.fromhex("81cd0002 00000001 0badcafe"),  # no FCI
        bytes.fromhex("a1cd0003 00000001 0badcafe 000b0000"),  # padding bit, bad padding
    ],
)
def test_malformed_nacks_are_counted_and_ignored(nack: bytes) -> None:
    table, s = _bound_table()
    s.send(1, 0)
    rr = bytes.fromhex("80c90001 00005151")  # an empty RR first: the datagram itself is fine
    result = table.on_datagram(rr + nack, PHONE, 1.0)
    assert isinstance(result, RtcpReceived)
    assert (result.lost, result.bad_nacks, result.session.nacks) == ((), 1, 0)
    assert table.malformed_nacks == 1
    assert result.session.receiver_reports == 1


def test_red_packets_carry_the_previous_frame_and_are_resent_as_sent() -> None:
    s = Stream()
    for frame in range(4):
        s.send(1, frame)
    for frame in range(4, 8):  # the endpoint's zone turns redundancy on mid-broadcast
        s.send(1, frame, red=True)
    s.send(2, 0, red=True)  # a switch, stamped: the first frame has no previous one
    s.send(2, 1, red=True)
    s.send(1, 8)  # back, redundancy off again
    lost = tuple(s.sent)
    resent = Repairer().on_nack(lost, s.rewriter, s.histories, now=0.0)
    assert resent.packets == tuple(s.sent[q] for q in lost)  # byte for byte, either type
    packets = [RtpPacket.parse(s.sent[q]) for q in lost]
    assert [p.payload_type for p in packets] == [111] * 4 + [112] * 6 + [111]
    red = [RedPayload.parse(p.payload, payload_type=111) for p in packets[4:10]]
    primaries = [(1, f) for f in range(4, 8)] + [(2, 0), (2, 1)]
    assert [r.primary for r in red] == [source(k, f)[12:] for k, f in primaries]
    assert [len(r.redundant) for r in red] == [1, 1, 1, 1, 0, 1]
    assert red[0].redundant[0].data == source(1, 3)[12:]  # the frame before, 960 ticks back
    assert red[0].redundant[0].offset == 960
    assert red[5].redundant[0].data == source(2, 0)[12:]
    assert packets[8].extension is not None  # broadcast 2's stamp stays in its RED packets


def test_red_packet_keeps_the_extension_and_knows_where_the_payload_starts() -> None:
    stamped = source(2, 7, stamp=True)
    assert payload_start(stamped) == 20 and payload_start(source(1, 7)) == 12
    red = RtpPacket.parse(red_packet(stamped, source(2, 6, stamp=True)))
    assert red.extension is not None and red.extension.data == stamped[16:20]
    assert RedPayload.parse(red.payload).redundant[0].data == source(2, 6)[12:]
    alone = RedPayload.parse(RtpPacket.parse(red_packet(stamped, None)).payload)
    assert (alone.primary, alone.redundant) == (stamped[20:], ())
