"""RTCP sender reports out and receiver reports in (loa.relay.core.reception), sans-IO."""

from __future__ import annotations

import pytest

from loa.codecs.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    parse_rtcp,
)
from loa.relay.core.reception import (
    ntp_middle,
    ntp_timestamp,
    read_reception,
    sender_report,
)
from loa.relay.core.rewriter import Rewriter

PACKET = Rewriter.source_packet(b"x" * 80)


def test_ntp_timestamp_of_known_times() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(1.5) == (2_208_988_801 << 32) | (1 << 31)
    assert ntp_middle(ntp_timestamp(1.5)) == ((2_208_988_801 & 0xFFFF) << 16) | 0x8000


def test_no_sender_report_before_the_first_packet() -> None:
    assert sender_report(Rewriter(7, 0, 1000), 1e9, 0.0) is None


def test_sender_report_ties_the_last_timestamp_to_wall_time() -> None:
    rw = Rewriter(0xDEADBEEF, 100, 0xFFFF_FF00)
    for frame in range(3):
        rw.rewrite(PACKET, 1, frame)
    data = sender_report(rw, 1_700_000_000.25, 0.5)
    assert data is not None
    sr, sdes = parse_rtcp(data)
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert sr.ssrc == 0xDEADBEEF
    assert sr.ntp_timestamp == ntp_timestamp(1_700_000_000.25)
    # last timestamp (2 frames after the first) + 0.5 s at 48 kHz, wrapping at 2^32
    assert sr.rtp_timestamp == (0xFFFF_FF00 + 2 * 960 + 24_000) & 0xFFFF_FFFF
    assert (sr.packet_count, sr.octet_count) == (3, 240)
    assert sdes.chunks[0].ssrc == 0xDEADBEEF and sdes.chunks[0].get(1) == b"loa"


def rr(ssrc: int, *, lsr: int = 0, dlsr: int = 0, other: int = 99) -> bytes:
    blocks = (
        ReportBlock(other, 1, 1, 1, 1, 0, 0),
        ReportBlock(ssrc, 64, 12, 70_000, 480, lsr, dlsr),
    )
    return bytes(ReceiverReport(0x1234, blocks))


def test_receiver_report_gives_loss_jitter_and_round_trip() -> None:
    sent_at = 1_700_000_000.0
    lsr = ntp_middle(ntp_timestamp(sent_at))
    # the receiver held our SR 0.25 s; it arrives back 0.3 s after we sent it: 50 ms trip
    got = read_reception(rr(42, lsr=lsr, dlsr=int(0.25 * 65536)), 42, sent_at + 0.3, now=7.0)
    assert got is not None
    assert got.fraction_lost == 0.25 and got.cumulative_lost == 12
    assert got.highest_sequence == 70_000
    assert got.jitter_s == pytest.approx(0.01)
    assert got.rtt_s == pytest.approx(0.05, abs=1e-4)
    assert got.at == 7.0
    assert got.as_dict() == {
        "fraction_lost": 0.25,
        "cumulative_lost": 12,
        "highest_sequence": 70_000,
        "jitter_ms": 10.0,
        "rtt_ms": pytest.approx(50.0, abs=0.1),
    }


def test_no_round_trip_before_an_sr_or_when_it_would_be_negative() -> None:
    got = read_reception(rr(42), 42, 1e9, now=0.0)
    assert got is not None and got.rtt_s is None
    lsr = ntp_middle(ntp_timestamp(1e9 + 5))  # "sent" in our future: a clock step
    assert read_reception(rr(42, lsr=lsr), 42, 1e9, now=0.0).rtt_s is None  # type: ignore[union-attr]


def test_a_report_about_other_sources_is_none_and_junk_raises() -> None:
    assert read_reception(rr(42), 41, 1e9, now=0.0) is None
    with pytest.raises(ValueError):
        read_reception(b"\x80\xc9\x00\x07" + b"\x00" * 8, 42, 1e9, now=0.0)
