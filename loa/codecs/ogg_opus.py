"""Ogg Opus (RFC 7845): the OpusHead and OpusTags headers, a writer and a reader of Ogg pages.

Everything here works on bytes; nothing reads a file, a socket or a clock.

Reader policy. ``OggOpusReader`` separates damage in transit from a stream it cannot carry:

* Damage is skipped and counted, never raised: bytes that are not a page (``garbage_bytes``),
  candidate pages that fail their CRC or header checks (``bad_pages``; the reader then
  resynchronises on the next ``OggS``), gaps in the page sequence (``lost_pages``) and the
  pieces of packets those leave incomplete (``dropped_fragments``).
* A stream it cannot carry raises ``ValueError``: one whose first packet is not ``OpusHead``,
  malformed ``OpusHead``/``OpusTags`` headers, pages before the first BOS page, several
  logical streams at once (multiplexing), a packet over ``max_packet_bytes``. The reader is
  unusable after such an error. Chained streams (a new BOS after an EOS, as Icecast sources
  send at a track change) are followed: ``head`` and ``tags`` describe the current link.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from loa.codecs.ogg import (
    CAPTURE,
    PAGE_TARGET_BYTES,
    OggPage,
    _Bytes,
    _check_range,
    _page_length,
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


class OggOpusReader:
    """Reassembles Opus packets from Ogg Opus bytes as they arrive; driven by ``feed``.

    ``head``/``tags`` are the current stream's headers once read, ``granule`` the granule
    position of the last page that ended a packet. See the module docstring for what is
    skipped and counted and what raises.
    """

    def __init__(self, *, max_packet_bytes: int = 1 << 20) -> None:
        self.max_packet_bytes = max_packet_bytes
        self.head: OpusHead | None = None
        self.tags: OpusTags | None = None
        self.granule = 0
        self.serial: int | None = None
        self.ended = False
        self.garbage_bytes = 0
        self.bad_pages = 0
        self.lost_pages = 0
        self.dropped_fragments = 0
        self._buf = bytearray()
        self._next_sequence = 0
        self._partial: bytearray | None = None
        self._discarding = False  # inside a packet whose start was lost

    @property
    def buffered(self) -> int:
        """Bytes held back until the rest of their page arrives."""
        return len(self._buf)

    def feed(self, data: _Bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the audio packets they complete."""
        self._buf += data
        out: list[bytes] = []
        pos = 0
        try:
            while True:
                pos, page = self._next_page(pos)
                if page is None:
                    return out
                out += self._on_page(page)
        finally:
            del self._buf[:pos]

    def finish(self) -> None:
        """Declare the end of input: raise if it stopped inside a page or held no Opus stream."""
        if self._buf:
            raise ValueError(
                f"truncated Ogg stream: the last {len(self._buf)} bytes are not a complete page"
            )
        if self.head is None:
            raise ValueError("no Ogg Opus stream in the input")
        if self.tags is None:
            raise ValueError("Ogg Opus stream ends before its OpusTags header")

    def _next_page(self, pos: int) -> tuple[int, OggPage | None]:
        """Skip garbage from ``pos``; return where to go on and the next intact page, if in."""
        buf = self._buf
        while True:
            at = buf.find(CAPTURE, pos)
            if at < 0:
                at = max(pos, len(buf) - 3)  # the tail may begin a capture pattern
            self.garbage_bytes += at - pos
            pos = at
            size = _page_length(buf, pos)
            if size is None or len(buf) - pos < size:
                return pos, None
            try:
                page, _ = OggPage.parse(bytes(buf[pos : pos + size]))
            except ValueError:  # damaged, or "OggS" inside garbage: resync one byte on
                self.bad_pages += 1
                self.garbage_bytes += 1
                pos += 1
                continue
            return pos + size, page

    def _on_page(self, page: OggPage) -> list[bytes]:
        self._follow(page)
        out: list[bytes] = []
        for packet in self._split(page):
            if self.head is None:
                if not packet.startswith(b"OpusHead"):
                    raise ValueError(f"not an Ogg Opus stream: first packet starts {packet[:8]!r}")
                self.head = OpusHead.parse(packet)
            elif self.tags is None:
                self.tags = OpusTags.parse(packet)
            else:
                out.append(packet)
        if page.granule_position != -1:
            self.granule = page.granule_position
        if page.eos:
            self.ended = True
            self._drop_partial()
        return out

    def _follow(self, page: OggPage) -> None:
        """Track the logical stream: its BOS, a chained successor, gaps in the sequence."""
        if page.bos:
            if self.serial is not None and not self.ended:
                raise ValueError(
                    f"BOS page of serial 0x{page.serial:08x} while stream 0x{self.serial:08x} "
                    "is open: multiplexed Ogg streams are not supported"
                )
            self.serial, self.ended, self.head, self.tags = page.serial, False, None, None
            self.granule, self._next_sequence = 0, page.sequence
            self._partial, self._discarding = None, False
        elif self.serial is None:
            raise ValueError(
                f"Ogg page of serial 0x{page.serial:08x} (sequence {page.sequence}) before "
                "any BOS page: the stream must start with its headers"
            )
        elif page.serial != self.serial:
            raise ValueError(
                f"Ogg page of serial 0x{page.serial:08x} inside stream 0x{self.serial:08x}: "
                "multiplexed Ogg streams are not supported"
            )
        elif self.ended:
            raise ValueError(f"Ogg page of serial 0x{page.serial:08x} after its EOS page")
        gap = (page.sequence - self._next_sequence) & 0xFFFFFFFF
        if gap:
            self.lost_pages += gap
            self._drop_partial()
        self._next_sequence = (page.sequence + 1) & 0xFFFFFFFF

    def _split(self, page: OggPage) -> list[bytes]:
        """The packets this page completes, joined to any piece carried from earlier pages."""
        if not page.continued:
            self._drop_partial()
        elif self._partial is None and not self._discarding:
            self._discarding = True  # continues a packet that began on a page we lack
            self.dropped_fragments += 1
        out: list[bytes] = []
        start = size = 0
        for lacing in page.segments:  # at most 255 per page
            size += lacing
            if lacing < 255:
                packet = self._join(page.body[start : start + size])
                if packet is not None:
                    out.append(packet)
                start, size = start + size, 0
        if page.segments[-1:] == b"\xff":
            self._carry(page.body[start:])
        return out

    def _join(self, piece: bytes) -> bytes | None:
        if self._discarding:
            self._discarding = False
            return None
        if self._partial is not None:
            self._carry(piece)
            piece, self._partial = bytes(self._partial), None
        if len(piece) > self.max_packet_bytes:
            raise ValueError(f"Ogg packet of {len(piece)} bytes exceeds {self.max_packet_bytes}")
        return piece

    def _carry(self, piece: bytes) -> None:
        if self._discarding:
            return
        if self._partial is None:
            self._partial = bytearray()
        self._partial += piece
        if len(self._partial) > self.max_packet_bytes:
            raise ValueError(
                f"Ogg packet of at least {len(self._partial)} bytes exceeds {self.max_packet_bytes}"
            )

    def _drop_partial(self) -> None:
        if self._partial is not None:
            self.dropped_fragments += 1
        self._partial, self._discarding = None, False


def iter_packets(data: _Bytes) -> Iterator[bytes]:
    """The audio packets of a whole Ogg Opus stream held in memory."""
    reader = OggOpusReader()
    yield from reader.feed(data)
    reader.finish()
