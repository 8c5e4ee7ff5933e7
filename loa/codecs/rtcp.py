"""RTCP on the wire (RFC 3550 §6) and its demux from RTP on a shared port (RFC 5761).

Parsers take whole datagrams and raise ``ValueError`` naming the field and the sizes involved;
serialisers are ``__bytes__``. Generic NACKs (RTPFB FMT 1, RFC 4585) are parsed;
other unknown RTCP types (APP, other RTPFB, PSFB, XR, ...) inside a compound
packet are neither an error nor dropped: they come back as ``UnknownRtcp`` holding their body,
so a compound packet still round-trips and callers ``match`` on the types they handle.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

from loa.codecs.rtp import RTP_VERSION, BytesLike, _check_count, _check_uint, _check_words

_WORD = struct.Struct("!I")
_RTCP_HEADER = struct.Struct("!BBH")  # V/P/count, packet type, length in words minus one
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP time, RTP time, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE = 200, 201, 202, 203
RTCP_RTPFB = 205  # transport-layer feedback (RFC 4585 §6.2)
FMT_GENERIC_NACK = 1
_NACK_FCI = struct.Struct("!HH")  # PID, BLP
_FEEDBACK_SSRCS = struct.Struct("!II")  # packet sender, media source
MAX_NACK_FCI = 64  # FCI entries a NACK we build or accept may carry (each names up to 17)
SDES_END, SDES_CNAME, SDES_NAME, SDES_TOOL = 0, 1, 2, 6


def is_rtcp(data: BytesLike) -> bool:
    """Tell RTCP from RTP on a shared port (RFC 5761 §4): byte 1 in 192..223.

    Wider than SR..APP (200..204) so feedback (205, 206) and XR (207) are not taken for RTP;
    RTP payload types 64..95 are reserved for exactly this reason.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def _rtcp_header(packet_type: int, count: int, body_len: int) -> bytes:
    return _RTCP_HEADER.pack(0x80 | count, packet_type, body_len // 4)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1), driven by a receiver's statistics for a source."""

    ssrc: int
    fraction_lost: int  # fixed point, lost/expected * 256
    cumulative_lost: int  # 24-bit signed: duplicates can make it negative
    highest_seq: int  # extended highest sequence received
    jitter: int  # timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP time
    dlsr: int  # delay since that SR, 1/65536 s

    SIZE: ClassVar[int] = _REPORT_BLOCK.size

    def __post_init__(self) -> None:
        _check_uint("RTCP report SSRC", self.ssrc, 32)
        _check_uint("RTCP fraction lost", self.fraction_lost, 8)
        if not -(1 << 23) <= self.cumulative_lost < 1 << 23:
            raise ValueError(
                f"RTCP cumulative lost must be -8388608..8388607, got {self.cumulative_lost}"
            )
        for name in ("highest_seq", "jitter", "lsr", "dlsr"):
            _check_uint(f"RTCP report {name}", getattr(self, name), 32)

    @classmethod
    def parse(cls, data: BytesLike) -> Self:
        if len(data) != cls.SIZE:
            raise ValueError(f"RTCP report block must be 24 bytes, got {len(data)}")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack(data)
        lost = lost_word & 0xFFFFFF
        lost -= (lost & 0x800000) << 1  # sign-extend 24 bits
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost_word = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        return _REPORT_BLOCK.pack(
            self.ssrc, lost_word, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )


def _parse_blocks(kind: str, count: int, body: bytes, pos: int) -> tuple[ReportBlock, ...]:
    need = pos + count * ReportBlock.SIZE
    if len(body) < need:
        raise ValueError(
            f"RTCP {kind} with {count} report blocks needs {need} bytes, has {len(body)}"
        )
    size = ReportBlock.SIZE
    return tuple(ReportBlock.parse(body[p : p + size]) for p in range(pos, need, size))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """An RTCP SR (RFC 3550 §6.4.1), driven by an active sender's RTCP interval."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format: seconds since 1900 << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    profile_extension: bytes = b""

    packet_type: ClassVar[int] = RTCP_SR

    def __post_init__(self) -> None:
        _check_uint("RTCP SR SSRC", self.ssrc, 32)
        _check_uint("RTCP SR NTP timestamp", self.ntp_timestamp, 64)
        _check_uint("RTCP SR RTP timestamp", self.rtp_timestamp, 32)
        _check_uint("RTCP SR packet count", self.packet_count, 32)
        _check_uint("RTCP SR octet count", self.octet_count, 32)
        _check_count("RTCP SR report blocks", len(self.reports), 31)
        _check_words("RTCP SR profile extension", self.profile_extension)

    @classmethod
    def parse(cls, data: BytesLike) -> SenderReport:
        return _parse_single(SenderReport, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        if len(body) < _SENDER_INFO.size:
            raise ValueError(f"RTCP SR needs 24 bytes of sender info, has {len(body)}")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _parse_blocks("SR", count, body, _SENDER_INFO.size)
        rest = bytes(body[_SENDER_INFO.size + 24 * count :])
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, rest)

    def __bytes__(self) -> bytes:
        info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body = b"".join((info, *map(bytes, self.reports), self.profile_extension))
        return _rtcp_header(RTCP_SR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """An RTCP RR (RFC 3550 §6.4.2), driven by a receiver's RTCP interval (our speakers')."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    profile_extension: bytes = b""

    packet_type: ClassVar[int] = RTCP_RR

    def __post_init__(self) -> None:
        _check_uint("RTCP RR SSRC", self.ssrc, 32)
        _check_count("RTCP RR report blocks", len(self.reports), 31)
        _check_words("RTCP RR profile extension", self.profile_extension)

    @classmethod
    def parse(cls, data: BytesLike) -> ReceiverReport:
        return _parse_single(ReceiverReport, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        if len(body) < 4:
            raise ValueError(f"RTCP RR needs 4 bytes of SSRC, has {len(body)}")
        reports = _parse_blocks("RR", count, body, 4)
        return cls(_WORD.unpack_from(body)[0], reports, bytes(body[4 + 24 * count :]))

    def __bytes__(self) -> bytes:
        body = b"".join((_WORD.pack(self.ssrc), *map(bytes, self.reports), self.profile_extension))
        return _rtcp_header(RTCP_RR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One source's SDES items (RFC 3550 §6.5): (item type, value) pairs, CNAME first by custom."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_uint("RTCP SDES SSRC", self.ssrc, 32)
        for item_type, value in self.items:
            if not 1 <= item_type <= 255:
                raise ValueError(f"RTCP SDES item type must be 1..255, got {item_type}")
            _check_count("RTCP SDES item value bytes", len(value), 255)

    def get(self, item_type: int) -> bytes | None:
        return next((v for t, v in self.items if t == item_type), None)

    def __bytes__(self) -> bytes:
        items = b"".join(bytes((t, len(v))) + v for t, v in self.items)
        # one null octet ends the list, more pad the chunk to the next 32-bit boundary
        return _WORD.pack(self.ssrc) + items + bytes(4 - len(items) % 4)


def _parse_chunk(index: int, body: bytes, pos: int) -> tuple[SdesChunk, int]:
    n = len(body)
    if n < pos + 4:
        raise ValueError(f"RTCP SDES chunk {index} needs 4 bytes of SSRC at offset {pos}")
    ssrc = _WORD.unpack_from(body, pos)[0]
    pos += 4
    items = []
    while pos < n and body[pos] != SDES_END:
        if pos + 2 > n or pos + 2 + body[pos + 1] > n:
            raise ValueError(f"RTCP SDES chunk {index} item at offset {pos} runs past {n} bytes")
        length = body[pos + 1]
        items.append((body[pos], bytes(body[pos + 2 : pos + 2 + length])))
        pos += 2 + length
    if pos >= n:
        raise ValueError(f"RTCP SDES chunk {index} has no null terminator")
    end = (pos + 4) & ~3  # chunks start on 32-bit boundaries
    if end > n:
        raise ValueError(f"RTCP SDES chunk {index} padding runs past {n} bytes")
    return SdesChunk(ssrc, tuple(items)), end


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """An RTCP SDES packet (RFC 3550 §6.5), driven by each RTCP interval: who a source is."""

    chunks: tuple[SdesChunk, ...] = ()

    packet_type: ClassVar[int] = RTCP_SDES

    def __post_init__(self) -> None:
        _check_count("RTCP SDES chunks", len(self.chunks), 31)

    @classmethod
    def for_cname(cls, ssrc: int, cname: str) -> Self:
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode()),)),))

    @classmethod
    def parse(cls, data: BytesLike) -> SourceDescription:
        return _parse_single(SourceDescription, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        chunks, pos = [], 0
        for index in range(count):
            chunk, pos = _parse_chunk(index, body, pos)
            chunks.append(chunk)
        if pos != len(body):
            raise ValueError(f"RTCP SDES has {len(body) - pos} bytes after its {count} chunks")
        return cls(tuple(chunks))

    def __bytes__(self) -> bytes:
        body = b"".join(map(bytes, self.chunks))
        return _rtcp_header(RTCP_SDES, len(self.chunks), len(body)) + body


@dataclass(frozen=True, slots=True)
class Bye:
    """An RTCP BYE (RFC 3550 §6.6), driven by sources leaving; the reason is UTF-8 text."""

    ssrcs: tuple[int, ...] = ()
    reason: str | None = None

    packet_type: ClassVar[int] = RTCP_BYE

    def __post_init__(self) -> None:
        _check_count("RTCP BYE SSRCs", len(self.ssrcs), 31)
        for ssrc in self.ssrcs:
            _check_uint("RTCP BYE SSRC", ssrc, 32)
        if self.reason is not None:
            _check_count("RTCP BYE reason bytes", len(self.reason.encode()), 255)

    @classmethod
    def parse(cls, data: BytesLike) -> Bye:
        return _parse_single(Bye, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        pos = 4 * count
        if len(body) < pos:
            raise ValueError(f"RTCP BYE count {count} needs {pos} bytes, has {len(body)}")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        if len(body) == pos:
            return cls(ssrcs)
        end = pos + 1 + body[pos]
        if end > len(body):
            raise ValueError(f"RTCP BYE reason length {body[pos]} exceeds packet")
        try:
            return cls(ssrcs, bytes(body[pos + 1 : end]).decode())
        except UnicodeDecodeError:
            raise ValueError("RTCP BYE reason is not valid UTF-8") from None

    def __bytes__(self) -> bytes:
        body = b"".join(map(_WORD.pack, self.ssrcs))
        if self.reason is not None:
            text = self.reason.encode()
            body += bytes((len(text),)) + text + bytes(-(len(text) + 1) % 4)
        return _rtcp_header(RTCP_BYE, len(self.ssrcs), len(body)) + body


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet of a type this module does not interpret (APP, feedback, XR), kept whole.

    ``body`` is what follows the common header, padding removed; serialising pads it back to
    whole words with zero octets and the P bit, as the sender must have done.
    """

    packet_type: int
    count: int
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.packet_type in _PARSERS:
            raise ValueError(f"RTCP packet type {self.packet_type} is known: use its class")
        if self.packet_type == RTCP_RTPFB and self.count == FMT_GENERIC_NACK:
            raise ValueError("RTCP generic NACK is known: use GenericNack")
        _check_uint("RTCP packet type", self.packet_type, 8)
        _check_uint("RTCP count", self.count, 5)
        _check_count("RTCP packet body bytes", len(self.body), 4 * 0xFFFF)

    def __bytes__(self) -> bytes:
        pad = -len(self.body) % 4
        if not pad:
            return _rtcp_header(self.packet_type, self.count, len(self.body)) + self.body
        body = self.body + bytes(pad - 1) + bytes((pad,))
        return _RTCP_HEADER.pack(0xA0 | self.count, self.packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class GenericNack:
    """An RTCP generic NACK (RFC 4585 §6.2.1, PT 205 FMT 1), driven by a receiver's gaps:
    the RTP sequence numbers of ``media_ssrc`` it misses, packed as (PID, BLP) pairs."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]  # 16-bit sequence numbers, in the order the FCI names them

    packet_type: ClassVar[int] = RTCP_RTPFB

    def __post_init__(self) -> None:
        _check_uint("RTCP NACK sender SSRC", self.sender_ssrc, 32)
        _check_uint("RTCP NACK media SSRC", self.media_ssrc, 32)
        if not self.lost:
            raise ValueError("RTCP NACK names no sequence number")
        for seq in self.lost:
            _check_uint("RTCP NACK sequence", seq, 16)

    @classmethod
    def parse(cls, data: BytesLike) -> GenericNack:
        packets = parse_rtcp(data)
        if len(packets) != 1 or not isinstance(packets[0], GenericNack):
            kinds = ", ".join(type(p).__name__ for p in packets)
            raise ValueError(f"RTCP data holds {kinds}, expected one GenericNack")
        return packets[0]

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        n = len(body)
        if n < 12 or n % 4:
            raise ValueError(f"RTCP NACK needs two SSRCs and whole FCI words, has {n} bytes")
        if (n - 8) // 4 > MAX_NACK_FCI:
            raise ValueError(f"RTCP NACK has {(n - 8) // 4} FCI entries, over {MAX_NACK_FCI}")
        sender, media = _FEEDBACK_SSRCS.unpack_from(body)
        lost: list[int] = []
        for pos in range(8, n, 4):
            pid, blp = _NACK_FCI.unpack_from(body, pos)
            lost.append(pid)
            lost.extend((pid + 1 + i) & 0xFFFF for i in range(16) if blp >> i & 1)
        return cls(sender, media, tuple(lost))

    def fci(self) -> list[tuple[int, int]]:
        """(PID, BLP) pairs covering ``lost``: each PID with the next 16 as a bitmask."""
        pairs: list[tuple[int, int]] = []
        for seq in self.lost:
            if pairs:
                pid, blp = pairs[-1]
                offset = (seq - pid - 1) & 0xFFFF
                # only forward within the pair, so parsing gives ``lost`` back in its order
                if offset < 16 and blp >> offset == 0:
                    pairs[-1] = (pid, blp | 1 << offset)
                    continue
            pairs.append((seq, 0))
        return pairs

    def __bytes__(self) -> bytes:
        pairs = self.fci()
        if len(pairs) > MAX_NACK_FCI:
            raise ValueError(f"RTCP NACK needs {len(pairs)} FCI entries, over {MAX_NACK_FCI}")
        body = _FEEDBACK_SSRCS.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _NACK_FCI.pack(pid, blp) for pid, blp in pairs
        )
        return _rtcp_header(RTCP_RTPFB, FMT_GENERIC_NACK, len(body)) + body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | GenericNack | UnknownRtcp
_PARSERS: dict[int, type[SenderReport | ReceiverReport | SourceDescription | Bye]] = {
    cls.packet_type: cls for cls in (SenderReport, ReceiverReport, SourceDescription, Bye)
}


def parse_rtcp(data: BytesLike) -> list[RtcpPacket]:
    """Split a compound RTCP datagram into its packets; padding (P bit) is stripped."""
    if not data:
        raise ValueError("RTCP packet is empty")
    packets: list[RtcpPacket] = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < _RTCP_HEADER.size:
            raise ValueError(f"RTCP header at offset {pos} truncated: {n - pos} bytes, need 4")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTCP version must be 2, got {first >> 6} at offset {pos}")
        end = pos + 4 + 4 * words
        if end > n:
            raise ValueError(
                f"RTCP length field at offset {pos} says {end - pos} bytes, only {n - pos} left"
            )
        body = bytes(data[pos + 4 : end])
        if first & 0x20:
            padding = body[-1] if body else 0
            if not 0 < padding <= len(body):
                raise ValueError(f"RTCP padding length {padding} invalid for {len(body)}-byte body")
            body = body[:-padding]
        parser = _PARSERS.get(packet_type)
        count = first & 0x1F
        if parser is not None:
            packets.append(parser._from_body(count, body))
        elif packet_type == RTCP_RTPFB and count == FMT_GENERIC_NACK:
            packets.append(GenericNack._from_body(count, body))
        else:
            packets.append(UnknownRtcp(packet_type, count, body))
        pos = end
    return packets


def serialize_rtcp(packets: list[RtcpPacket]) -> bytes:
    """Join RTCP packets into one compound datagram (RFC 3550 §6.1)."""
    return b"".join(map(bytes, packets))


_Known = TypeVar("_Known", SenderReport, ReceiverReport, SourceDescription, Bye)


def _parse_single(cls: type[_Known], data: BytesLike) -> _Known:
    packets = parse_rtcp(data)
    if len(packets) != 1 or not isinstance(packets[0], cls):
        kinds = ", ".join(type(p).__name__ for p in packets)
        raise ValueError(f"RTCP data holds {kinds}, expected one {cls.__name__}")
    return packets[0]
