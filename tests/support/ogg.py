"""Reading Ogg Opus back, for tests: ``OggOpusReader`` reassembles the Opus packets of the
streams the listen mount writes (the relay itself never parses Ogg: av decodes what comes in).

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

from collections.abc import Iterator

from loa.codecs.ogg import _HEADER, CAPTURE, OggPage, _Bytes
from loa.codecs.ogg_opus import OpusHead, OpusTags


def _page_length(buf: _Bytes, pos: int) -> int | None:
    """Length of the page whose header starts at ``pos``, or None until its header is in."""
    if len(buf) - pos < _HEADER.size:
        return None
    body_at = pos + _HEADER.size + buf[pos + 26]
    if len(buf) < body_at:
        return None
    return body_at - pos + sum(buf[pos + _HEADER.size : body_at])


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
