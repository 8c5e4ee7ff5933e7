"""RTP helpers for tests: building Opus packets, an in-place header rewrite, sequence
extension (RFC 3550 A.1), ordering and timestamp addition. The relay needs none of them:
its rewriter packs headers itself and the speaker's jitter buffer tracks sequence numbers
its own way."""

from __future__ import annotations

from typing import ClassVar

from loa.codecs import OPUS_PAYLOAD_TYPE
from loa.codecs.rtp import HEADER, _check_uint, seq_add, seq_diff


def opus_packet(
    payload: bytes,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool = False,
    payload_type: int = OPUS_PAYLOAD_TYPE,
) -> bytes:
    """Build one RTP packet carrying one Opus packet (RFC 7587): 48 kHz clock, dynamic PT."""
    if not 96 <= payload_type <= 127:
        raise ValueError(f"Opus payload type must be dynamic (96..127), got {payload_type}")
    if not payload:
        raise ValueError("Opus RTP payload is empty: an Opus packet has at least its TOC byte")
    _check_uint("RTP sequence", sequence, 16)
    _check_uint("RTP timestamp", timestamp, 32)
    _check_uint("RTP SSRC", ssrc, 32)
    return HEADER.pack(0x80, (marker << 7) | payload_type, sequence, timestamp, ssrc) + payload


def rewrite_header(
    packet: bytearray | memoryview, sequence: int, timestamp: int, ssrc: int, marker: bool
) -> None:
    """Rewrite sequence, timestamp, SSRC and marker of a CSRC-free RTP packet in place.

    Version bits and payload type are kept. ``sequence`` and ``timestamp`` are taken modulo
    2**16 and 2**32 so a per-endpoint rewriter can add its offsets without wrapping first.
    """
    HEADER.pack_into(
        packet, 0, packet[0], (packet[1] & 0x7F) | (marker << 7),
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc,
    )  # fmt: skip


def seq_lt(a: int, b: int) -> bool:
    """True when sequence ``a`` comes before ``b`` (across the 65535 → 0 wrap).

    Exactly 32768 apart there is no order (RFC 1982); each then compares as before the other.
    """
    return seq_diff(a, b) < 0


class ExtendedSequence:
    """Extends 16-bit sequence numbers to unbounded ones (RFC 3550 A.1), fed each arrival.

    A packet up to ``MAX_DROPOUT`` ahead of the highest so far, or up to ``MAX_MISORDER``
    behind it, gets the extended number nearest to the highest. Anything further away is
    refused (``None``) unless the next packet follows it directly: then the sender restarted
    its numbering, the counter resyncs forward (``restarts`` counts it) and stays monotonic.
    """

    MAX_DROPOUT: ClassVar[int] = 3000
    MAX_MISORDER: ClassVar[int] = 100
    __slots__ = ("_bad", "_highest", "restarts")

    def __init__(self) -> None:
        self._highest = -1
        self._bad = -1  # the sequence that would confirm a restart after a big jump
        self.restarts = 0

    @property
    def highest(self) -> int:
        """The highest extended sequence seen, -1 before the first packet."""
        return self._highest

    @property
    def cycles(self) -> int:
        """How many times the 16-bit sequence has wrapped."""
        return max(self._highest, 0) >> 16

    def feed(self, seq: int) -> int | None:
        """The extended number of ``seq``, or None for a stray packet too far from the stream."""
        _check_uint("RTP sequence", seq, 16)
        if self._highest < 0:
            self._highest = seq
            return seq
        delta = seq_diff(seq, self._highest & 0xFFFF)
        if -self.MAX_MISORDER <= delta <= self.MAX_DROPOUT:
            self._bad = -1
            ext = self._highest + delta
            if delta > 0:
                self._highest = ext
            return ext if ext >= 0 else None
        if seq == self._bad:
            self._highest += (seq - self._highest) & 0xFFFF
            self._bad = -1
            self.restarts += 1
            return self._highest
        self._bad = seq_add(seq, 1)
        return None


def ts_add(a: int, n: int) -> int:
    """``a + n`` as a 32-bit RTP timestamp."""
    return (a + n) & 0xFFFFFFFF
