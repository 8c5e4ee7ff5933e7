"""RTP on the wire (RFC 3550, RFC 7587 Opus) and wrap-aware seq/ts maths.

The one RTP parser: ``RtpPacket.parse`` takes a whole datagram and raises ``ValueError``
naming the field and the sizes involved; the serialiser is ``__bytes__``. The relay's hot
loop never builds an ``RtpPacket`` (``relay.core.rewriter`` packs headers itself). Padding is
written as zero octets, so a packet with non-zero padding parses fine but does not serialise
back to the same bytes. RTCP lives in ``rtcp.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE

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
        start, end, padding = _layout(data)
        first, m_pt, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        cc = first & 0x0F
        csrc = _CSRC[cc].unpack_from(data, HEADER.size)
        extension = None
        if first & 0x10:
            at = HEADER.size + 4 * cc
            profile = _EXT_HEADER.unpack_from(data, at)[0]
            extension = RtpExtension(profile, bytes(data[at + 4 : start]))
        return cls(
            m_pt & 0x7F, sequence, timestamp, ssrc, bytes(data[start:end]),
            bool(m_pt & 0x80), csrc, extension, padding,
        )  # fmt: skip

    @staticmethod
    def payload_of(data: BytesLike) -> bytes:
        """Just the payload, checked as ``parse`` checks it, without building a packet: the
        per-listener path of the fan-out (the Ogg mount, WHEP) needs nothing else."""
        start, end, _ = _layout(data)
        return bytes(data[start:end])

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


def _layout(data: BytesLike) -> tuple[int, int, int]:
    """Where the payload of an RTP datagram starts and ends, and its padding length; every
    ``ValueError`` an RTP datagram can earn is raised here."""
    n = len(data)
    if n < HEADER.size:
        raise ValueError(f"RTP packet too short: {n} bytes, need at least {HEADER.size}")
    first = data[0]
    if first >> 6 != RTP_VERSION:
        raise ValueError(f"RTP version must be 2, got {first >> 6}")
    cc = first & 0x0F
    pos = HEADER.size + 4 * cc
    if n < pos:
        raise ValueError(f"RTP CSRC count {cc} needs {pos} bytes, packet has {n}")
    if first & 0x10:
        if n < pos + 4:
            raise ValueError(f"RTP header extension header needs {pos + 4} bytes, packet has {n}")
        words = _EXT_HEADER.unpack_from(data, pos)[1]
        end = pos + 4 + 4 * words
        if end > n:
            raise ValueError(
                f"RTP header extension length {words} words needs {end} bytes, packet has {n}"
            )
        pos = end
    if not first & 0x20:
        return pos, n, 0
    padding = data[-1]
    if padding == 0:
        raise ValueError("RTP padding bit set but padding length is 0")
    if padding > n - pos:
        raise ValueError(f"RTP padding length {padding} exceeds payload of {n - pos} bytes")
    return pos, n - padding, padding


# --- wrap-aware arithmetic ---------------------------------------------------------------


def seq_add(a: int, n: int) -> int:
    """``a + n`` as a 16-bit RTP sequence number."""
    return (a + n) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between RTP timestamps, in -2**31..2**31-1."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000
