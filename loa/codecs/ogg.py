"""The Ogg container (RFC 3533): its CRC, pages, and laying one stream's packets into pages.

Everything here works on bytes; nothing reads a file, a socket or a clock. The Opus mapping
(RFC 7845: headers, writer, reader) is in ``ogg_opus.py``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_Bytes = bytes | bytearray | memoryview

CAPTURE = b"OggS"
FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04
MAX_SEGMENTS = 255
# libogg closes a page near 4 KiB too: small pages keep listeners' buffering and seeking cheap.
PAGE_TARGET_BYTES = 4096

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, nseg
_CRC = struct.Struct("<I")

# Bit-reversal of every byte value: the one 256-entry table, built once. The Ogg CRC is the
# unreflected form of the CRC zlib computes in C, so mirroring the bits in and out lets
# zlib do the work instead of a per-byte Python loop.
_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def crc32_ogg(data: _Bytes) -> int:
    """CRC-32 of Ogg pages: polynomial 0x04C11DB7, unreflected, initial value 0, no final xor."""
    # zlib's running value v starts its register at v ^ 0xFFFFFFFF and xors that onto the result.
    raw = zlib.crc32(bytes(data).translate(_REV8), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(raw.to_bytes(4, "little").translate(_REV8), "big")


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, got {value}")


@dataclass(frozen=True, slots=True)
class OggPage:
    """One Ogg page; ``segments`` is the lacing table, whose values sum to ``len(body)``."""

    serial: int
    sequence: int
    granule_position: int  # signed 64; -1 when no packet ends on this page
    segments: bytes
    body: bytes
    continued: bool = False
    bos: bool = False
    eos: bool = False

    def __post_init__(self) -> None:
        _check_range("Ogg page serial", self.serial, 0, 0xFFFFFFFF)
        _check_range("Ogg page sequence", self.sequence, 0, 0xFFFFFFFF)
        _check_range("Ogg page granule position", self.granule_position, -(2**63), 2**63 - 1)
        if len(self.segments) > MAX_SEGMENTS:
            raise ValueError(f"Ogg page has {len(self.segments)} segments, at most 255 fit")
        if sum(self.segments) != len(self.body):
            raise ValueError(
                f"Ogg page segment table sums to {sum(self.segments)} bytes "
                f"but the body has {len(self.body)}"
            )

    @property
    def header_type(self) -> int:
        return (
            (FLAG_CONTINUED if self.continued else 0)
            | (FLAG_BOS if self.bos else 0)
            | (FLAG_EOS if self.eos else 0)
        )

    @classmethod
    def parse(cls, data: _Bytes) -> tuple[OggPage, int]:
        """Parse the page at the start of ``data``; return it and the bytes it took."""
        if len(data) < _HEADER.size:
            raise ValueError(f"truncated Ogg page header: need 27 bytes, got {len(data)}")
        capture, version, flags, granule, serial, seq, crc, nseg = _HEADER.unpack_from(data)
        if capture != CAPTURE:
            raise ValueError(f"bad Ogg capture pattern {capture!r}, expected b'OggS'")
        if version != 0:
            raise ValueError(f"unsupported Ogg stream structure version {version}, expected 0")
        if flags & ~(FLAG_CONTINUED | FLAG_BOS | FLAG_EOS):
            raise ValueError(f"Ogg page header_type 0x{flags:02x} has reserved bits set")
        body_at = _HEADER.size + nseg
        if len(data) < body_at:
            raise ValueError(
                f"truncated Ogg page header: segment table needs {body_at} bytes, got {len(data)}"
            )
        segments = bytes(data[_HEADER.size : body_at])
        end = body_at + sum(segments)
        if len(data) < end:
            raise ValueError(f"truncated Ogg page body: page needs {end} bytes, got {len(data)}")
        raw = bytearray(data[:end])
        raw[22:26] = bytes(4)
        computed = crc32_ogg(raw)
        if computed != crc:
            raise ValueError(
                f"Ogg page CRC mismatch: header says 0x{crc:08x}, computed 0x{computed:08x}"
            )
        page = cls(
            serial, seq, granule, segments, bytes(raw[body_at:]),
            continued=bool(flags & FLAG_CONTINUED), bos=bool(flags & FLAG_BOS),
            eos=bool(flags & FLAG_EOS),
        )  # fmt: skip
        return page, end

    def __bytes__(self) -> bytes:
        header = _HEADER.pack(
            CAPTURE, 0, self.header_type, self.granule_position, self.serial, self.sequence,
            0, len(self.segments),
        )  # fmt: skip
        raw = bytearray(header + self.segments + self.body)
        _CRC.pack_into(raw, 22, crc32_ogg(raw))
        return bytes(raw)


class _Paginator:
    """Lays the packets of one logical stream into pages; driven by OggOpusWriter."""

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.sequence = 0
        self._lacing = bytearray()
        self._body = bytearray()
        self._ends: list[tuple[int, int]] = []  # (segments up to a packet's end, its granule)
        self._continued = False  # the next page starts inside a packet
        self._granule = 0  # of the last packet put on a page

    @property
    def packets(self) -> int:
        """Packets whose last segment waits for a page."""
        return len(self._ends)

    @property
    def body_bytes(self) -> int:
        return len(self._body)

    def add(self, packet: bytes, granule: int) -> bytes:
        """Queue a packet; return the full pages it completes past the 255-segment limit."""
        self._lacing += b"\xff" * (len(packet) // 255) + bytes((len(packet) % 255,))
        self._body += packet
        self._ends.append((len(self._lacing), granule))
        out = b""
        while len(self._lacing) > MAX_SEGMENTS:
            out += self._page(MAX_SEGMENTS)
        return out

    def flush(self, *, bos: bool = False, eos: bool = False) -> bytes:
        """Pages for everything queued; with ``eos``, an EOS page even if nothing is queued."""
        out = b""
        while self._lacing or (eos and not out):
            count = min(MAX_SEGMENTS, len(self._lacing))
            out += self._page(count, bos=bos and not out, eos=eos and count == len(self._lacing))
        return out

    def _page(self, count: int, *, bos: bool = False, eos: bool = False) -> bytes:
        segments = bytes(self._lacing[:count])
        size = sum(segments)
        done = [g for end, g in self._ends if end <= count]
        if done:
            self._granule = done[-1]
        # An empty (EOS) page repeats the last granule, since readers take the length from it.
        granule = self._granule if done or not segments else -1
        self._ends = [(end - count, g) for end, g in self._ends[len(done) :]]
        page = OggPage(
            self.serial, self.sequence, granule, segments, bytes(self._body[:size]),
            continued=self._continued, bos=bos, eos=eos,
        )  # fmt: skip
        del self._lacing[:count], self._body[:size]
        self._continued = segments[-1:] == b"\xff"
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return bytes(page)
