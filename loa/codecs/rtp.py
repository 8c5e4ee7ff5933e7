"""RTP on the wire (RFC 3550, RFC 7587 Opus), the in-place header rewrite, wrap-aware seq/ts maths.

Parsers take whole datagrams and raise ``ValueError`` naming the field and the sizes involved;
serialisers are ``__bytes__``. The relay's hot loop uses ``rewrite_header`` (one ``pack_into``)
and never builds an ``RtpPacket``. Padding is written as zero octets, so a packet with non-zero
padding parses fine but does not serialise back to the same bytes. RTCP lives in ``rtcp.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from loa.codecs import FRAME_SAMPLES, OPUS_PAYLOAD_TYPE, SAMPLE_RATE

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_WORD = struct.Struct("!I")
_EXT_HEADER = struct.Struct("!HH")  # profile, length in 32-bit words
_CSRC = tuple(struct.Struct(f"!{count}I") for count in range(16))

RTP_VERSION = 2
OPUS_CLOCK_RATE = SAMPLE_RATE  # RFC 7587 §4.1: always 48 kHz, whatever the coded bandwidth
OPUS_FRAME_TICKS = FRAME_SAMPLES  # timestamp advance per 20 ms frame (960)

BytesLike = bytes | bytearray | memoryview


def _check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be 0..{(1 << bits) - 1}, got {value}")


def _check_count(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise ValueError(f"{what}: at most {limit}, got {count}")


def _check_words(what: str, data: bytes) -> None:
    if len(data) % 4:
        raise ValueError(f"{what} must be whole 32-bit words, got {len(data)} bytes")


# --- RTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RTP header extension (RFC 3550 §5.3.1): a 16-bit profile and whole words of data."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("RTP header extension profile", self.profile, 16)
        _check_words("RTP header extension data", self.data)
        _check_count("RTP header extension words", len(self.data) // 4, 0xFFFF)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 §5.1), driven by whoever parses or builds a datagram."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding_len: int = 0  # octets of padding, the count octet included; 0 means none

    def __post_init__(self) -> None:
        _check_uint("RTP payload type", self.payload_type, 7)
        _check_uint("RTP sequence", self.sequence, 16)
        _check_uint("RTP timestamp", self.timestamp, 32)
        _check_uint("RTP SSRC", self.ssrc, 32)
        _check_count("RTP CSRC list", len(self.csrc), 15)
        for csrc in self.csrc:
            _check_uint("RTP CSRC", csrc, 32)
        _check_uint("RTP padding length", self.padding_len, 8)

    @classmethod
    def parse(cls, data: BytesLike) -> Self:
        n = len(data)
        if n < HEADER.size:
            raise ValueError(f"RTP packet too short: {n} bytes, need at least {HEADER.size}")
        first, m_pt, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTP version must be 2, got {first >> 6}")
        cc = first & 0x0F
        pos = HEADER.size + 4 * cc
        if n < pos:
            raise ValueError(f"RTP CSRC count {cc} needs {pos} bytes, packet has {n}")
        csrc = _CSRC[cc].unpack_from(data, HEADER.size)
        extension = None
        if first & 0x10:
            extension, pos = _parse_extension(data, pos)
        end = n
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise ValueError("RTP padding bit set but padding length is 0")
            if padding > n - pos:
                raise ValueError(f"RTP padding length {padding} exceeds payload of {n - pos} bytes")
            end -= padding
        else:
            padding = 0
        return cls(
            m_pt & 0x7F, sequence, timestamp, ssrc, bytes(data[pos:end]),
            bool(m_pt & 0x80), csrc, extension, padding,
        )  # fmt: skip

    def __bytes__(self) -> bytes:
        ext = self.extension
        first = (
            0x80
            | (0x20 if self.padding_len else 0)
            | (0x10 if ext is not None else 0)
            | len(self.csrc)
        )
        m_pt = (0x80 if self.marker else 0) | self.payload_type
        parts = [HEADER.pack(first, m_pt, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(_WORD.pack(c) for c in self.csrc)
        if ext is not None:
            parts += (_EXT_HEADER.pack(ext.profile, len(ext.data) // 4), ext.data)
        parts.append(self.payload)
        if self.padding_len:
            parts.append(bytes(self.padding_len - 1) + bytes((self.padding_len,)))
        return b"".join(parts)


def _parse_extension(data: BytesLike, pos: int) -> tuple[RtpExtension, int]:
    n = len(data)
    if n < pos + 4:
        raise ValueError(f"RTP header extension header needs {pos + 4} bytes, packet has {n}")
    profile, words = _EXT_HEADER.unpack_from(data, pos)
    end = pos + 4 + 4 * words
    if end > n:
        raise ValueError(
            f"RTP header extension length {words} words needs {end} bytes, packet has {n}"
        )
    return RtpExtension(profile, bytes(data[pos + 4 : end])), end


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


# --- wrap-aware arithmetic ---------------------------------------------------------------


def seq_add(a: int, n: int) -> int:
    """``a + n`` as a 16-bit RTP sequence number."""
    return (a + n) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_lt(a: int, b: int) -> bool:
    """True when sequence ``a`` comes before ``b`` (across the 65535 → 0 wrap).

    Exactly 32768 apart there is no order (RFC 1982); each then compares as before the other.
    """
    return seq_diff(a, b) < 0


def ts_add(a: int, n: int) -> int:
    """``a + n`` as a 32-bit RTP timestamp."""
    return (a + n) & 0xFFFFFFFF


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between RTP timestamps, in -2**31..2**31-1."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


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
