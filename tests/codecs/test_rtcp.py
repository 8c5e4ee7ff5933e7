"""RTCP wire format and RTP/RTCP demux: hex fixtures that round-trip, bad fixtures and their
errors, hypothesis properties (noise included), and aiortc's parser as a real peer."""

from __future__ import annotations

from collections.abc import Callable

import aiortc.rtp as peer
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs.rtcp import (
    SDES_CNAME,
    SDES_TOOL,
    Bye,
    GenericNack,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    is_rtcp,
    parse_rtcp,
    serialize_rtcp,
)
from loa.codecs.rtp import RtpPacket
from tests.codecs.test_rtp import RTP_FULL, RTP_OPUS, h, rtp_packets, u32, words
from tests.support.rtp import opus_packet

# --- fixtures, written out field by field --------------------------------------------------

SR = h(
    "81 c8 000c"  # V=2 RC=1 PT=200, 13 words
    "01020304"  # sender SSRC
    "e8f3a1b2 80000000"  # NTP timestamp
    "00abcdef 00000064 00003e80"  # RTP timestamp, 100 packets, 16000 octets
    "cafebabe 19 fffffe"  # block: SSRC, fraction 25/256, cumulative lost -2
    "00010010 00000020"  # extended highest seq (1 cycle, seq 16), jitter 32
    "a1b28000 00010000"  # LSR, DLSR 1 s
)
RR = h(
    "81 c9 0007 0b0b0b0b"  # V=2 RC=1 PT=201, 8 words, reporter SSRC
    "deadbeef 40 7fffff"  # block: fraction 64/256, cumulative lost 8388607 (max)
    "0002fffe 000003c0 00000000 00000000"  # highest seq, jitter 960, no SR yet
)
SDES = h(
    "83 ca 0009"  # V=2 SC=3 PT=202, 10 words
    "01020304 01 03 6c6f61 000000"  # CNAME "loa", 1 null ends + 2 pad
    "05060708 01 02 6162 06 01 78 00"  # CNAME "ab", TOOL "x", a single null
    "090a0b0c 01 02 6162 00000000"  # items end on a word: a whole word of nulls
)
BYE = h("82 cb 0005 01020304 05060708 08 73687574646f776e 000000")  # reason "shutdown"
SR_SDES = h(
    "80 c8 0006 01020304 e8f3a1b2 80000000 00abcdef 00000064 00003e80"
    "81 ca 0003 01020304 01 03 6c6f61 000000"
)


def test_sr_fixture() -> None:
    (sr,) = parse_rtcp(SR)
    assert sr == SenderReport(
        ssrc=0x01020304,
        ntp_timestamp=0xE8F3A1B2_80000000,
        rtp_timestamp=0x00ABCDEF,
        packet_count=100,
        octet_count=16000,
        reports=(ReportBlock(0xCAFEBABE, 25, -2, 0x00010010, 32, 0xA1B28000, 0x10000),),
    )
    assert bytes(sr) == SR
    assert SenderReport.parse(SR) == sr


def test_rr_fixture() -> None:
    rr = ReceiverReport.parse(RR)
    assert rr == ReceiverReport(
        0x0B0B0B0B, (ReportBlock(0xDEADBEEF, 64, 8388607, 0x0002FFFE, 960, 0, 0),)
    )
    assert bytes(rr) == RR
    assert bytes(ReceiverReport(0x0B0B0B0B)) == h("80c90001 0b0b0b0b")


def test_sdes_fixture() -> None:
    sdes = SourceDescription.parse(SDES)
    assert sdes.chunks == (
        SdesChunk(0x01020304, ((SDES_CNAME, b"loa"),)),
        SdesChunk(0x05060708, ((SDES_CNAME, b"ab"), (SDES_TOOL, b"x"))),
        SdesChunk(0x090A0B0C, ((SDES_CNAME, b"ab"),)),
    )
    assert sdes.chunks[1].get(SDES_TOOL) == b"x"
    assert sdes.chunks[0].get(SDES_TOOL) is None
    assert bytes(sdes) == SDES


def test_bye_fixture() -> None:
    bye = Bye.parse(BYE)
    assert bye == Bye((0x01020304, 0x05060708), "shutdown")
    assert bytes(bye) == BYE
    assert bytes(Bye((7,))) == h("81cb0001 00000007")
    assert Bye.parse(h("80cb0000")) == Bye()


def test_compound_sr_sdes() -> None:
    packets = parse_rtcp(SR_SDES)
    assert packets == [
        SenderReport(0x01020304, 0xE8F3A1B2_80000000, 0x00ABCDEF, 100, 16000),
        SourceDescription.for_cname(0x01020304, "loa"),
    ]
    assert serialize_rtcp(packets) == SR_SDES


def test_unknown_rtcp_types_are_kept_not_dropped() -> None:
    # APP (204) with a name, then PSFB PLI (206): neither interpreted, both kept
    data = RR + h("80 cc 0002 01020304 6c6f6121") + h("81 ce 0002 00000001 00000002")
    packets = parse_rtcp(data)
    assert packets[1:] == [
        UnknownRtcp(204, 0, h("01020304 6c6f6121")),
        UnknownRtcp(206, 1, h("00000001 00000002")),
    ]
    assert serialize_rtcp(packets) == data


def test_rtcp_padding_is_stripped() -> None:
    assert parse_rtcp(h("a0c90002 0b0b0b0b 00000004")) == [ReceiverReport(0x0B0B0B0B)]
    padded_app = h("a0cc0002 6162636465 000003")
    assert parse_rtcp(padded_app) == [UnknownRtcp(204, 0, b"abcde")]
    assert bytes(UnknownRtcp(204, 0, b"abcde")) == padded_app


def test_is_rtcp_demux() -> None:
    for rtcp in (SR, RR, SDES, BYE, h("81ce0002 00000001 00000002")):
        assert is_rtcp(rtcp)
    for other in (
        RTP_FULL,
        RTP_OPUS,
        opus_packet(b"\xfc", 1, 2, 3, marker=True),
        b"LOA\x01",
        b"\x80",
    ):
        assert not is_rtcp(other)


# --- bad input ----------------------------------------------------------------------------

BAD_RTCP = [
    (b"", "RTCP packet is empty"),
    (h("41c90001 0b0b0b0b"), "RTCP version must be 2, got 1 at offset 0"),
    (h("81c9000c 0b0b0b0b"), "RTCP length field at offset 0 says 52 bytes, only 8 left"),
    (
        h("80c90001 0b0b0b0b 80c90003 0b0b0b0b"),
        "RTCP length field at offset 8 says 16 bytes, only 8 left",
    ),
    (h("80c90001 0b0b0b0b 80c9"), "RTCP header at offset 8 truncated: 2 bytes, need 4"),
    (h("a0c90002 0b0b0b0b 00000009"), "RTCP padding length 9 invalid for 8-byte body"),
    (h("a0c90002 0b0b0b0b 00000000"), "RTCP padding length 0 invalid for 8-byte body"),
    (h("80c80001 01020304"), "RTCP SR needs 24 bytes of sender info, has 4"),
    (h("82c90007") + RR[4:], "RTCP RR with 2 report blocks needs 52 bytes, has 28"),
    (h("80c90000"), "RTCP RR needs 4 bytes of SSRC, has 0"),
    (h("80c90002 0b0b0b0b 00"), "RTCP length field at offset 0 says 12 bytes, only 9 left"),
    (h("81ca0002 01020304 01026162"), "RTCP SDES chunk 0 has no null terminator"),
    (h("81ca0002 01020304 01056162"), "RTCP SDES chunk 0 item at offset 4 runs past 8 bytes"),
    (
        h("82ca0003 01020304 01026162 00000000"),
        "RTCP SDES chunk 1 needs 4 bytes of SSRC at offset 12",
    ),
    (h("81ca0004 01020304 01026162 00000000 05060708"), "RTCP SDES has 4 bytes after its 1 chunks"),
    (h("a1ca0003 01020304 01026100 00000002"), "RTCP SDES chunk 0 padding runs past 10 bytes"),
    (h("82cb0001 01020304"), "RTCP BYE count 2 needs 8 bytes, has 4"),
    (h("81cb0002 01020304 09616263"), "RTCP BYE reason length 9 exceeds packet"),
    (h("81cb0002 01020304 02fffe00"), "RTCP BYE reason is not valid UTF-8"),
]


@pytest.mark.parametrize(("data", "message"), BAD_RTCP)
def test_bad_rtcp(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rtcp(data)
    assert str(info.value) == message


def test_rtcp_class_parse_wants_exactly_its_own_type() -> None:
    with pytest.raises(
        ValueError, match=r"^RTCP data holds ReceiverReport, expected one SenderReport$"
    ):
        SenderReport.parse(RR)
    with pytest.raises(
        ValueError, match=r"^RTCP data holds SenderReport, SourceDescription, expected one Bye$"
    ):
        Bye.parse(SR_SDES)


def test_report_block_parse_wants_24_bytes() -> None:
    with pytest.raises(ValueError, match=r"^RTCP report block must be 24 bytes, got 23$"):
        ReportBlock.parse(RR[8:31])


BAD_VALUES = [
    (
        lambda: ReportBlock(1, 0, 1 << 23, 0, 0, 0, 0),
        "RTCP cumulative lost must be -8388608..8388607, got 8388608",
    ),
    (lambda: ReportBlock(1, 256, 0, 0, 0, 0, 0), "RTCP fraction lost must be 0..255, got 256"),
    (lambda: ReportBlock(1, 0, 0, 0, -1, 0, 0), "RTCP report jitter must be 0..4294967295, got -1"),
    (
        lambda: ReceiverReport(1, (ReportBlock(1, 0, 0, 0, 0, 0, 0),) * 32),
        "RTCP RR report blocks: at most 31, got 32",
    ),
    (
        lambda: SenderReport(1, 2**64, 0, 0, 0),
        "RTCP SR NTP timestamp must be 0..18446744073709551615, got 18446744073709551616",
    ),
    (
        lambda: SenderReport(1, 0, 0, 0, 0, profile_extension=b"ab"),
        "RTCP SR profile extension must be whole 32-bit words, got 2 bytes",
    ),
    (lambda: SdesChunk(1, ((0, b"x"),)), "RTCP SDES item type must be 1..255, got 0"),
    (
        lambda: SdesChunk(1, ((SDES_CNAME, bytes(256)),)),
        "RTCP SDES item value bytes: at most 255, got 256",
    ),
    (lambda: Bye((1,), "á" * 128), "RTCP BYE reason bytes: at most 255, got 256"),
    (lambda: UnknownRtcp(200, 0), "RTCP packet type 200 is known: use its class"),
    (lambda: UnknownRtcp(204, 32), "RTCP count must be 0..31, got 32"),
    (lambda: UnknownRtcp(205, 1), "RTCP generic NACK is known: use GenericNack"),
    (lambda: GenericNack(1, 2, ()), "RTCP NACK names no sequence number"),
    (lambda: GenericNack(1, 2, (65536,)), "RTCP NACK sequence must be 0..65535, got 65536"),
    (
        lambda: bytes(GenericNack(1, 2, tuple(range(0, 65 * 17, 17)))),
        "RTCP NACK needs 65 FCI entries, over 64",
    ),
]


@pytest.mark.parametrize(("build", "message"), BAD_VALUES)
def test_bad_values(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


# --- hypothesis: parse(bytes(p)) == p ------------------------------------------------------

blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_seq=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)
block_lists = st.lists(blocks, max_size=4).map(tuple)
senders = st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32, block_lists, words)
receivers = st.builds(ReceiverReport, u32, block_lists, words)
items = st.tuples(st.integers(1, 255), st.binary(max_size=255))
sdes = st.builds(
    SourceDescription,
    st.lists(st.builds(SdesChunk, u32, st.lists(items, max_size=4).map(tuple)), max_size=4).map(
        tuple
    ),
)
byes = st.builds(
    Bye,
    st.lists(u32, max_size=31).map(tuple),
    st.none() | st.text(st.characters(codec="utf-8"), max_size=60),
)
unknowns = st.builds(
    UnknownRtcp,
    st.integers(192, 223).filter(lambda t: not 200 <= t <= 203 and t != 205),
    st.integers(0, 31),
    st.binary(max_size=40),
)
nacks = st.builds(
    GenericNack, u32, u32, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40).map(tuple)
)
rtcp_packets = senders | receivers | sdes | byes | unknowns | nacks


@given(rtcp_packets)
def test_rtcp_round_trip(p: RtcpPacket) -> None:
    data = bytes(p)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [p]
    assert is_rtcp(data)


@given(st.lists(rtcp_packets, min_size=1, max_size=5))
def test_rtcp_compound_round_trip(packets: list[RtcpPacket]) -> None:
    assert parse_rtcp(serialize_rtcp(packets)) == packets


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """Valid RTP or compound RTCP with one byte overwritten and maybe the tail cut off."""
    if draw(st.booleans()):
        data = bytearray(bytes(draw(rtp_packets)))
    else:
        data = bytearray(serialize_rtcp(draw(st.lists(rtcp_packets, min_size=1, max_size=3))))
    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@given(st.binary(max_size=80) | damaged())
def test_noise_gives_a_packet_or_a_value_error(data: bytes) -> None:
    # whatever a peer sends: either a packet that serialises stably, or a ValueError we wrote
    rtp, rtp_error = _outcome(RtpPacket.parse, data)
    if rtp_error is None:
        assert isinstance(rtp, RtpPacket)
        assert RtpPacket.parse(bytes(rtp)) == rtp
    else:
        assert rtp_error.startswith("RTP ")
    rtcp, rtcp_error = _outcome(parse_rtcp, data)
    if rtcp_error is None:
        assert isinstance(rtcp, list)
        assert parse_rtcp(serialize_rtcp(rtcp)) == rtcp
    else:
        assert rtcp_error.startswith("RTCP ")


def _outcome(parse: Callable[[bytes], object], data: bytes) -> tuple[object, str | None]:
    try:
        return parse(data), None
    except ValueError as e:
        return None, str(e)


# --- a real peer's parser: aiortc ----------------------------------------------------------


def test_aiortc_parses_our_rtcp() -> None:
    # one SDES chunk: aiortc 1.x does not realign to 32 bits between chunks, so it misreads
    # multi-chunk SDES such as the RFC 3550 §6.5 fixture above (our parser takes both)
    one_chunk = h("81ca0003 05060708 01 02 6162 06 01 78 00")
    theirs = peer.RtcpPacket.parse(SR + RR + one_chunk + h("81cb0001 01020304"))
    sr, rr, sdes, bye = theirs
    assert isinstance(sr, peer.RtcpSrPacket)
    assert (sr.ssrc, sr.sender_info.ntp_timestamp, sr.sender_info.octet_count) == (
        0x01020304,
        0xE8F3A1B2_80000000,
        16000,
    )
    assert sr.reports[0].packets_lost == -2
    assert sr.reports[0].highest_sequence == 0x00010010
    assert isinstance(rr, peer.RtcpRrPacket)
    assert rr.reports[0].packets_lost == 8388607
    assert isinstance(sdes, peer.RtcpSdesPacket)
    assert [(c.ssrc, c.items) for c in sdes.chunks] == [(0x05060708, [(1, b"ab"), (6, b"x")])]
    assert parse_rtcp(one_chunk) == [
        SourceDescription((SdesChunk(0x05060708, ((SDES_CNAME, b"ab"), (SDES_TOOL, b"x"))),))
    ]
    assert isinstance(bye, peer.RtcpByePacket)
    assert bye.sources == [0x01020304]


def test_we_parse_aiortc_rtcp() -> None:
    info = peer.RtcpReceiverInfo(
        ssrc=9, fraction_lost=3, packets_lost=-100, highest_sequence=70000, jitter=5, lsr=6, dlsr=7
    )
    rr = peer.RtcpRrPacket(ssrc=42, reports=[info])
    bye = peer.RtcpByePacket(sources=[42, 43])
    assert parse_rtcp(bytes(rr) + bytes(bye)) == [
        ReceiverReport(42, (ReportBlock(9, 3, -100, 70000, 5, 6, 7),)),
        Bye((42, 43)),
    ]


# --- generic NACK (RFC 4585 §6.2.1) --------------------------------------------------------

NACK = h(
    "81 cd 0004"  # V=2 FMT=1 PT=205, 5 words
    "01020304 cafebabe"  # packet sender, media source
    "fffe 0005"  # PID 65534, BLP bits 0 and 2: 65535 and 1 (across the wrap)
    "0010 0000"  # PID 16 alone
)


def test_generic_nack_fixture() -> None:
    nack = GenericNack(0x01020304, 0xCAFEBABE, (65534, 65535, 1, 16))
    assert GenericNack.parse(NACK) == nack
    assert parse_rtcp(NACK) == [nack]
    assert bytes(nack) == NACK
    assert is_rtcp(NACK)
    assert nack.fci() == [(65534, 0b101), (16, 0)]


def test_generic_nack_keeps_the_order_it_was_given() -> None:
    nack = GenericNack(1, 2, (10, 12, 11, 11))
    assert nack.fci() == [(10, 0b10), (11, 0), (11, 0)]
    assert GenericNack.parse(bytes(nack)) == nack


def test_other_transport_feedback_stays_unknown() -> None:
    tmmbr = h("83cd0004 00000001 00000002 00000003 00000004")  # FMT 3: TMMBR
    assert parse_rtcp(tmmbr) == [UnknownRtcp(205, 3, h("00000001 00000002 00000003 00000004"))]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            h("81cd0002 00000001 00000002"),
            "RTCP NACK needs two SSRCs and whole FCI words, has 8 bytes",
        ),
        (h("81cd0000"), "RTCP NACK needs two SSRCs and whole FCI words, has 0 bytes"),
        (
            h("81cd0043 00000001 00000002") + bytes(4 * 65),
            "RTCP NACK has 65 FCI entries, over 64",
        ),
        (RR, "RTCP data holds ReceiverReport, expected one GenericNack"),
    ],
)
def test_bad_generic_nacks(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        GenericNack.parse(data)
    assert str(info.value) == message


def test_aiortc_parses_our_nack() -> None:
    nack = GenericNack(7, 9, (100, 101, 117, 300))
    (theirs,) = peer.RtcpPacket.parse(bytes(nack))
    assert isinstance(theirs, peer.RtcpRtpfbPacket)
    assert (theirs.fmt, theirs.ssrc, theirs.media_ssrc) == (1, 7, 9)
    assert sorted(theirs.lost) == [100, 101, 117, 300]
