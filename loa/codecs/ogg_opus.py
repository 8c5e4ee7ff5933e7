"""Ogg Opus (RFC 7845): the OpusHead and OpusTags headers and a writer of Ogg pages (the
listen mount's stream).

Everything here works on bytes; nothing reads a file, a socket or a clock. Reading Ogg Opus
back is for tests only (``tests/support/ogg.py``): what the relay ingests, av decodes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from loa.codecs.ogg import (
    PAGE_TARGET_BYTES,
    _Bytes,
    _check_range,
    _Paginator,
)

MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz, the longest Opus packet (RFC 6716 §3.2.5)

_HEAD = struct.Struct("<8sBBHIhB")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The Ogg Opus identification header (RFC 7845 §5.1), channel mapping family 0 only."""

    channels: int = 1
    pre_skip: int = 312  # 48 kHz samples the decoder discards at the start
    input_sample_rate: int = 48_000  # informational; 0 means unspecified
    output_gain: int = 0  # Q7.8 dB
    version: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 15:
            raise ValueError(
                f"unsupported OpusHead version {self.version}: only 1..15 (major version 0) "
                "is understood"
            )
        if self.channels not in (1, 2):
            raise ValueError(
                f"OpusHead channel count {self.channels} needs a channel mapping table; "
                "mapping family 0 carries 1 or 2 channels"
            )
        _check_range("OpusHead pre-skip", self.pre_skip, 0, 0xFFFF)
        _check_range("OpusHead input sample rate", self.input_sample_rate, 0, 0xFFFFFFFF)
        _check_range("OpusHead output gain", self.output_gain, -0x8000, 0x7FFF)

    @property
    def output_gain_db(self) -> float:
        return self.output_gain / 256

    @classmethod
    def parse(cls, data: _Bytes) -> OpusHead:
        """Parse an identification header; bytes after the 19 that version 1 defines are
        ignored, as RFC 7845 asks of readers for later minor versions."""
        if bytes(data[:8]) != b"OpusHead":
            raise ValueError(f"bad OpusHead magic {bytes(data[:8])!r}, expected b'OpusHead'")
        if len(data) < _HEAD.size:
            raise ValueError(f"truncated OpusHead: need 19 bytes, got {len(data)}")
        _, version, channels, pre_skip, rate, gain, family = _HEAD.unpack_from(data)
        if family != 0:
            raise ValueError(
                f"unsupported OpusHead channel mapping family {family}: only family 0 is supported"
            )
        return cls(channels, pre_skip, rate, gain, version)

    def __bytes__(self) -> bytes:
        return _HEAD.pack(
            b"OpusHead", self.version, self.channels, self.pre_skip, self.input_sample_rate,
            self.output_gain, 0,
        )  # fmt: skip


def _check_comment(comment: str) -> None:
    key, eq, _ = comment.partition("=")
    if not eq or not key or any(not 0x20 <= ord(c) <= 0x7D for c in key):
        raise ValueError(
            f"OpusTags comment {comment!r} is not KEY=value with a printable ASCII KEY"
        )


@dataclass(frozen=True, slots=True)
class OpusTags:
    """The Ogg Opus comment header (RFC 7845 §5.2): vendor string and ``KEY=value`` comments."""

    vendor: str = "loa"
    comments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for comment in self.comments:
            _check_comment(comment)

    @classmethod
    def parse(cls, data: _Bytes) -> OpusTags:
        """Parse a comment header; bytes after the last comment (padding or binary data that
        RFC 7845 allows there) are ignored."""
        data = bytes(data)
        if data[:8] != b"OpusTags":
            raise ValueError(f"bad OpusTags magic {data[:8]!r}, expected b'OpusTags'")
        vendor, pos = _read_string(data, 8, "vendor string")
        count, pos = _read_u32(data, pos, "comment count")
        if count * 4 > len(data) - pos:
            raise ValueError(
                f"truncated OpusTags: {count} comments need at least {count * 4} bytes, "
                f"{len(data) - pos} left"
            )
        comments = []
        for i in range(count):
            comment, pos = _read_string(data, pos, f"comment {i}")
            comments.append(comment)
        return cls(vendor, tuple(comments))

    def __bytes__(self) -> bytes:
        parts = [b"OpusTags", _string(self.vendor), _U32.pack(len(self.comments))]
        parts += [_string(c) for c in self.comments]
        return b"".join(parts)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U32.pack(len(raw)) + raw


def _read_u32(data: bytes, pos: int, what: str) -> tuple[int, int]:
    if len(data) - pos < 4:
        raise ValueError(
            f"truncated OpusTags: {what} needs 4 bytes at offset {pos}, {len(data) - pos} left"
        )
    return _U32.unpack_from(data, pos)[0], pos + 4


def _read_string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    size, pos = _read_u32(data, pos, f"{what} length")
    if len(data) - pos < size:
        raise ValueError(
            f"truncated OpusTags: {what} needs {size} bytes at offset {pos}, {len(data) - pos} left"
        )
    try:
        return data[pos : pos + size].decode("utf-8"), pos + size
    except UnicodeDecodeError as e:
        raise ValueError(f"OpusTags {what} is not UTF-8: {e.reason} at byte {e.start}") from None


class OggOpusWriter:
    """Packs one Opus stream into Ogg pages; driven by the encoder's packets.

    A complete stream is ``header_pages()`` then everything ``write_packet``, ``flush`` and
    ``close`` return; ``header_pages()`` may be sent again to each listener that joins late.
    A page is closed once it holds ``packets_per_page`` packets (1, the default, for live
    listeners: no packet waits for the next) or about 4 KiB, and whenever a packet runs past
    255 segments, the rest continuing on the next page. Granule positions count the 48 kHz
    samples of every packet so far, pre-skip included (RFC 7845 §4).
    """

    def __init__(
        self,
        serial: int,
        pre_skip: int = 312,
        channels: int = 1,
        vendor: str = "loa",
        tags: Sequence[str] = (),
        *,
        packets_per_page: int = 1,
        input_sample_rate: int = 48_000,
        output_gain: int = 0,
    ) -> None:
        _check_range("Ogg stream serial", serial, 0, 0xFFFFFFFF)
        if packets_per_page < 1:
            raise ValueError(f"packets_per_page must be at least 1, got {packets_per_page}")
        self.head = OpusHead(channels, pre_skip, input_sample_rate, output_gain)
        self.tags = OpusTags(vendor, tuple(tags))
        self.packets_per_page = packets_per_page
        self._pager = _Paginator(serial)
        self._pager.add(bytes(self.head), 0)
        headers = self._pager.flush(bos=True)  # OpusHead alone on the BOS page
        headers += self._pager.add(bytes(self.tags), 0)
        self._headers = headers + self._pager.flush()  # audio starts on a fresh page
        self._granule = 0
        self._closed = False

    @property
    def serial(self) -> int:
        return self._pager.serial

    @property
    def granule(self) -> int:
        """48 kHz samples in the packets written so far, pre-skip included."""
        return self._granule

    @property
    def sequence(self) -> int:
        """Sequence number of the next page."""
        return self._pager.sequence

    def header_pages(self) -> bytes:
        """The OpusHead (BOS) and OpusTags pages; the same bytes on every call."""
        return self._headers

    def write_packet(self, packet: _Bytes, samples: int = 960) -> bytes:
        """Add one Opus packet lasting ``samples`` at 48 kHz; return the pages it completes."""
        if self._closed:
            raise RuntimeError("OggOpusWriter is closed")
        _check_range("Opus packet duration (48 kHz samples)", samples, 0, MAX_PACKET_SAMPLES)
        self._granule += samples
        out = self._pager.add(bytes(packet), self._granule)
        if (
            self._pager.packets >= self.packets_per_page
            or self._pager.body_bytes >= PAGE_TARGET_BYTES
        ):
            out += self._pager.flush()
        return out

    def flush(self) -> bytes:
        """Pages for the packets still waiting; empty if none are."""
        return b"" if self._closed else self._pager.flush()

    def close(self) -> bytes:
        """The last pages, the final one flagged EOS; empty on a second call."""
        if self._closed:
            return b""
        self._closed = True
        return self._pager.flush(eos=True)
