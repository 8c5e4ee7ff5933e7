"""The speaker's receiver statistics and reports (loa.speaker.reports), with a fake clock."""

from __future__ import annotations

import pytest

from loa.codecs.rtcp import ReceiverReport, SenderReport, SourceDescription, parse_rtcp
from loa.speaker.reports import ReceptionStats

SSRC = 0x5151_0001


def feed(stats: ReceptionStats, seqs: list[int], *, start: float = 100.0) -> None:
    for i, seq in enumerate(seqs):
        stats.on_rtp(seq & 0xFFFF, (seq * 960) & 0xFFFF_FFFF, start + 0.02 * i)


def block(data: bytes) -> tuple[ReceiverReport, SourceDescription]:
    rr, sdes = parse_rtcp(data)
    assert isinstance(rr, ReceiverReport) and isinstance(sdes, SourceDescription)
    return rr, sdes


def test_nothing_to_report_before_the_first_packet() -> None:
    stats = ReceptionStats()
    stats.reset(SSRC)
    assert stats.receiver_report(7, 0.0, "x") is None


def test_loss_over_a_sequence_wrap_and_per_interval_fraction() -> None:
    stats = ReceptionStats()
    stats.reset(SSRC)
    # 65530..65545 across the wrap, 4 of them missing
    seqs = [s for s in range(65530, 65546) if s not in (65533, 65536, 65537, 65540)]
    feed(stats, seqs)
    rr, sdes = block(stats.receiver_report(7, 101.0, "loa-speaker@e1") or b"")
    (b,) = rr.reports
    assert rr.ssrc == 7 and b.ssrc == SSRC
    assert b.highest_seq == 65545 and b.cumulative_lost == 4
    assert b.fraction_lost == (4 << 8) // 16
    assert sdes.chunks[0].get(1) == b"loa-speaker@e1"
    # next interval: 10 in a row, no loss in it, cumulative stays
    feed(stats, list(range(65546, 65556)), start=101.0)
    (b,) = block(stats.receiver_report(7, 102.0, "x") or b"")[0].reports
    assert b.fraction_lost == 0 and b.cumulative_lost == 4 and b.highest_seq == 65555


def test_jitter_is_zero_when_paced_and_grows_with_late_packets() -> None:
    stats = ReceptionStats()
    stats.reset(SSRC)
    feed(stats, list(range(50)))
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    for i in range(50, 100):  # every other packet 4 ms late
        stats.on_rtp(i, i * 960, 100.0 + 0.02 * i + (0.004 if i % 2 else 0.0))
    assert stats.status()["jitter_ms"] == pytest.approx(4.0, rel=0.1)


def test_last_sender_report_and_delay_since_it() -> None:
    stats = ReceptionStats()
    stats.reset(SSRC)
    feed(stats, [1, 2, 3])
    other = SenderReport(SSRC + 1, 0x1122_3344_5566_7788, 0, 0, 0)
    assert stats.on_rtcp(bytes(other), 50.0) is False and stats.lsr == 0
    ours = SenderReport(SSRC, 0x1122_3344_5566_7788, 0, 0, 0)
    assert stats.on_rtcp(bytes(ours), 50.0) is True
    (b,) = block(stats.receiver_report(7, 50.25, "x") or b"")[0].reports
    assert b.lsr == 0x3344_5566
    assert b.dlsr == 16384  # 0.25 s in 1/65536 s
    with pytest.raises(ValueError):
        stats.on_rtcp(b"\x80\xc8\x00\x09" + b"\x00" * 4, 51.0)


def test_a_big_sequence_jump_starts_the_count_afresh() -> None:
    stats = ReceptionStats()
    stats.reset(SSRC)
    feed(stats, [10, 11, 12])
    feed(stats, [30_000, 30_001], start=101.0)
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)
