"""RTCP between the relay and its receivers (RFC 3550 §6.4), sans-IO.

The relay is the sender of every endpoint's stream, so it sends each one a sender report
(SR + SDES CNAME, a compound packet) tying its RTP timestamps to wall-clock (NTP) time, and
reads the receiver reports (RR) speakers and plain RTP receivers (ffmpeg, GStreamer) send
back: loss, jitter and, from the LSR/DLSR fields, the round-trip time. Times come in as
arguments (Unix seconds for NTP, the caller's own clock for elapsed time)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from loa.codecs import SAMPLE_RATE
from loa.codecs.rtcp import (
    RTCP_SDES,
    RTCP_SR,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    parse_rtcp,
)
from loa.relay.core.rewriter import Rewriter

NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_TS_MASK: Final = 0xFFFF_FFFF
CNAME: Final = "loa"


def ntp_timestamp(unix_s: float) -> int:
    """64-bit NTP time (seconds since 1900 << 32 | fraction) of a Unix time."""
    seconds = int(unix_s // 1)
    fraction = int((unix_s - seconds) * (1 << 32)) & _TS_MASK
    return ((seconds + NTP_EPOCH_OFFSET) & _TS_MASK) << 32 | fraction


def unix_time(ntp: int) -> float:
    """The Unix time of a 64-bit NTP time (the inverse of ``ntp_timestamp``)."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & _TS_MASK) / (1 << 32)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP time: what LSR carries (1/65536 s units)."""
    return (ntp >> 16) & _TS_MASK


# SR (RFC 3550 §6.4.1, no report blocks) then SDES with one chunk: SSRC, CNAME "loa", end.
# Packed in one go: the node sends one per endpoint per interval, on the event loop (the
# dataclasses of loa.codecs.rtcp took 30 µs a report, 30 ms a round at 1,000 endpoints).
_SR_SDES: Final = struct.Struct("!BBHIQIIIBBHI")
_CNAME_ITEM: Final = bytes((1, len(CNAME))) + CNAME.encode() + bytes(3)  # padded to 8 bytes


def sender_report(rewriter: Rewriter, unix_s: float, since_last_packet_s: float) -> bytes | None:
    """The compound SR + SDES for the stream ``rewriter`` writes, at wall time ``unix_s``;
    ``since_last_packet_s`` is how long ago its last packet left. None before any packet."""
    last = rewriter.last_timestamp
    if last is None:
        return None
    rtp_now = (last + round(max(0.0, since_last_packet_s) * SAMPLE_RATE)) & _TS_MASK
    ssrc = rewriter.ssrc
    sr = (0x80, RTCP_SR, 6, ssrc, ntp_timestamp(unix_s), rtp_now)
    counts = (rewriter.sent & _TS_MASK, rewriter.octets & _TS_MASK)
    return _SR_SDES.pack(*sr, *counts, 0x81, RTCP_SDES, 3, ssrc) + _CNAME_ITEM


@dataclass(frozen=True, slots=True)
class Reception:
    """What a receiver last reported about our stream to it (RFC 3550 §6.4.1)."""

    fraction_lost: float  # 0..1, since its previous report
    cumulative_lost: int
    highest_sequence: int  # extended
    jitter_s: float
    rtt_s: float | None  # None until it has seen one of our SRs
    at: float  # caller's clock when the report arrived

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "fraction_lost": round(self.fraction_lost, 4),
            "cumulative_lost": self.cumulative_lost,
            "highest_sequence": self.highest_sequence,
            "jitter_ms": round(self.jitter_s * 1000, 3),
            "rtt_ms": None if self.rtt_s is None else round(self.rtt_s * 1000, 3),
        }


def read_reception(data: bytes, ssrc: int, unix_s: float, now: float) -> Reception | None:
    """The report block about ``ssrc`` in a compound RTCP packet, or None if there is none.
    ``unix_s`` (wall time of arrival) gives the round trip from LSR and DLSR. Raises
    ValueError (from the parser) for a malformed packet."""
    block: ReportBlock | None = None
    for packet in parse_rtcp(data):
        if isinstance(packet, ReceiverReport | SenderReport):
            for candidate in packet.reports:
                if candidate.ssrc == ssrc:
                    block = candidate
    if block is None:
        return None
    rtt_s: float | None = None
    if block.lsr:
        units = (ntp_middle(ntp_timestamp(unix_s)) - block.lsr - block.dlsr) & _TS_MASK
        if units < 1 << 31:  # a negative round trip (clock steps) is no round trip
            rtt_s = units / 65536
    return Reception(
        block.fraction_lost / 256,
        block.cumulative_lost,
        block.highest_seq,
        block.jitter / SAMPLE_RATE,
        rtt_s,
        now,
    )
