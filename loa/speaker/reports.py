"""The speaker's side of RTCP (RFC 3550): what it received, as receiver reports.

``ReceptionStats`` follows one incoming stream (the server's SSRC for this session): the
extended highest sequence and the packets received (§A.1, simplified: no probation, a new
session starts afresh), the interarrival jitter (§A.8) and the last sender report (for LSR
and DLSR, from which the server computes the round trip). ``receiver_report`` builds the RR
+ SDES compound the speaker sends on its UDP socket; the server reads loss, jitter and the
round trip from it (``loa.relay.core.reception``). No I/O and no clock: times come in."""

from __future__ import annotations

from typing import Any, Final

from loa.codecs import SAMPLE_RATE
from loa.codecs.rtcp import (
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    serialize_rtcp,
)
from loa.relay.core.reception import unix_time

_SEQ_MOD: Final = 1 << 16
_MAX_DROPOUT: Final = 3000
_MAX_MISORDER: Final = 100


class ReceptionStats:
    """Driven by the speaker: ``reset`` per session, ``on_rtp`` per packet, ``on_rtcp`` per
    RTCP datagram from the server, ``receiver_report`` every report interval."""

    __slots__ = (
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_max_seq",
        "_received_prior",
        "_sr_arrival",
        "_transit",
        "jitter",
        "last_sr",
        "lsr",
        "received",
        "sender_reports",
        "ssrc",
    )

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, ssrc: int) -> None:
        """A new session: the server's stream is ``ssrc``; nothing received yet."""
        self.ssrc = ssrc
        self.received = 0
        self.sender_reports = 0
        self.jitter = 0.0  # timestamp units (RFC 3550 A.8, kept unrounded)
        self.lsr = 0  # middle 32 bits of the last SR's NTP time, 0 before one
        # the last SR's (RTP timestamp, NTP time as Unix seconds): capture times
        self.last_sr: tuple[int, float] = (0, 0.0)
        self._sr_arrival = 0.0
        self._base_seq = self._max_seq = self._cycles = 0
        self._expected_prior = self._received_prior = 0
        self._transit: float | None = None

    def on_rtp(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        """One RTP packet of the stream, arrived at ``arrival_s`` (any monotonic clock)."""
        if self.received == 0:
            self._base_seq = self._max_seq = sequence
        else:
            delta = (sequence - self._max_seq) % _SEQ_MOD
            if delta < _MAX_DROPOUT:
                if sequence < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = sequence
            elif delta <= _SEQ_MOD - _MAX_MISORDER:  # a big jump: the stream restarted
                self._base_seq = self._max_seq = sequence
                self._cycles = 0
                self._expected_prior = self._received_prior = 0
                self.received = 0
        self.received += 1
        transit = arrival_s * SAMPLE_RATE - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < SAMPLE_RATE:  # a jump of a second or more (a wrap, a restart) is no jitter
                self.jitter += (d - self.jitter) / 16
        self._transit = transit

    def on_rtcp(self, data: bytes, arrival_s: float) -> bool:
        """An RTCP datagram from the server; True if it held a sender report of our stream.
        Raises ValueError for a malformed packet (the caller counts it)."""
        for packet in parse_rtcp(data):
            if isinstance(packet, SenderReport) and packet.ssrc == self.ssrc:
                self.lsr = (packet.ntp_timestamp >> 16) & 0xFFFF_FFFF
                self.last_sr = (packet.rtp_timestamp, unix_time(packet.ntp_timestamp))
                self._sr_arrival = arrival_s
                self.sender_reports += 1
                return True
        return False

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self._base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def receiver_report(self, own_ssrc: int, now_s: float, cname: str) -> bytes | None:
        """The RR + SDES compound for the interval since the previous one, None before any
        packet. ``now_s`` is on the clock ``on_rtcp`` got (for the delay since the last SR)."""
        if self.received == 0:
            return None
        expected, received = self.expected, self.received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior, self._received_prior = expected, received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self.lsr:
            dlsr = min(0xFFFF_FFFF, max(0, round((now_s - self._sr_arrival) * 65536)))
        block = ReportBlock(
            self.ssrc,
            fraction,
            max(-(1 << 23), min((1 << 23) - 1, self.lost)),
            self.extended_max & 0xFFFF_FFFF,
            min(0xFFFF_FFFF, int(self.jitter)),
            self.lsr,
            dlsr,
        )
        sdes = SourceDescription((SdesChunk(own_ssrc, ((1, cname.encode()[:255]),)),))
        return serialize_rtcp([ReceiverReport(own_ssrc, (block,)), sdes])

    def status(self) -> dict[str, Any]:
        """For the speaker's status report."""
        return {
            "rtp_expected": self.expected,
            "rtp_lost": self.lost,
            "jitter_ms": round(self.jitter / SAMPLE_RATE * 1000, 3),
            "sender_reports": self.sender_reports,
        }
