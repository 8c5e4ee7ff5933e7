"""Opus packets without libopus (RFC 6716 §3): the TOC byte, a packet split into its frames,
and frames joined into one packet.

The relay encodes 20 ms frames once and, for a zone whose packets last 40 or 60 ms, joins 2 or
3 consecutive ones into one packet (``join``): a code 3 packet (§3.2.5), CBR when the frames
are the same size, else VBR with the frame lengths. Frames can share a packet only when they
share a TOC configuration (§3.1: one TOC for all): ``joinable`` says so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Self

from loa.codecs import SAMPLE_RATE

# RFC 6716 §3.4 R2: one frame never exceeds 1275 bytes.
MAX_PACKET_BYTES: Final = 1275
# RFC 6716 §3.4 R5: a packet lasts at most 120 ms.
MAX_PACKET_SAMPLES: Final = SAMPLE_RATE * 120 // 1000

# RFC 6716 §3.1, table 2: configurations 0-11 SILK, 12-15 hybrid, 16-31 CELT.
_BANDWIDTH_HZ: Final = (4000,) * 4 + (6000,) * 4 + (8000,) * 4 + (12000,) * 2 + (20000,) * 2
_CELT_BANDWIDTH_HZ: Final = (4000, 8000, 12000, 20000)
_SILK_FRAME: Final = (480, 960, 1920, 2880)
_HYBRID_FRAME: Final = (480, 960)
_CELT_FRAME: Final = (120, 240, 480, 960)


@dataclass(frozen=True, slots=True)
class Toc:
    """An Opus packet's table-of-contents byte (RFC 6716 §3.1), with the frame-count byte
    that follows it in a code 3 packet. Only the header is parsed; frames are not checked."""

    config: int
    stereo: bool = False
    code: int = 0
    frame_count: int = 1
    vbr: bool = False
    padding: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.config <= 31:
            raise ValueError(f"opus TOC config must be 0..31, got {self.config}")
        if not 0 <= self.code <= 3:
            raise ValueError(f"opus TOC code must be 0..3, got {self.code}")
        expected = {0: 1, 1: 2, 2: 2}.get(self.code)
        if expected is not None and self.frame_count != expected:
            raise ValueError(
                f"a code {self.code} opus packet has {expected} frame(s), got {self.frame_count}"
            )
        if self.code != 3 and (self.vbr or self.padding):
            raise ValueError("only a code 3 opus packet has vbr and padding flags")
        if not 1 <= self.frame_count <= 63:
            raise ValueError(f"opus packet declares {self.frame_count} frames, needs 1..63")
        if self.samples > MAX_PACKET_SAMPLES:
            raise ValueError(f"opus packet lasts {self.samples / 48:g} ms, over the 120 ms limit")

    @classmethod
    def parse(cls, packet: bytes) -> Self:
        if not packet:
            raise ValueError("empty opus packet")
        toc = packet[0]
        code = toc & 0x3
        vbr = padding = False
        if code == 3:
            if len(packet) < 2:
                raise ValueError("code 3 opus packet lacks its frame-count byte")
            count = packet[1] & 0x3F
            vbr, padding = bool(packet[1] & 0x80), bool(packet[1] & 0x40)
            if count == 0:
                raise ValueError("opus packet declares 0 frames")
        else:
            count = 1 if code == 0 else 2
        return cls(toc >> 3, bool(toc & 0x4), code, count, vbr, padding)

    def __bytes__(self) -> bytes:
        first = self.config << 3 | self.stereo << 2 | self.code
        if self.code != 3:
            return bytes((first,))
        return bytes((first, self.vbr << 7 | self.padding << 6 | self.frame_count))

    @property
    def mode(self) -> str:
        return "silk" if self.config < 12 else "hybrid" if self.config < 16 else "celt"

    @property
    def bandwidth_hz(self) -> int:
        """Audio bandwidth: 4000 (NB), 6000 (MB), 8000 (WB), 12000 (SWB) or 20000 (FB)."""
        if self.config < 16:
            return _BANDWIDTH_HZ[self.config]
        return _CELT_BANDWIDTH_HZ[(self.config - 16) // 4]

    @property
    def frame_samples(self) -> int:
        """Samples per frame at 48 kHz."""
        if self.config < 12:
            return _SILK_FRAME[self.config % 4]
        if self.config < 16:
            return _HYBRID_FRAME[self.config % 2]
        return _CELT_FRAME[self.config % 4]

    @property
    def samples(self) -> int:
        """Samples per channel at 48 kHz in the whole packet."""
        return self.frame_samples * self.frame_count


def packet_samples(packet: bytes) -> int:
    """Samples (48 kHz) an Opus packet lasts, from its header alone; no libopus needed."""
    return Toc.parse(packet).samples


def has_fec(packet: bytes) -> bool:
    """Whether ``packet`` carries in-band FEC (SILK LBRR data) for the audio before it.

    RFC 6716 §4.2.3: a SILK or hybrid frame's range-coded stream opens with one VAD flag per
    20 ms SILK frame and then the LBRR flag, each with probability 1/2, which a range coder
    writes as plain bits: the flag is bit ``7 - silk_frames`` of the frame's first byte. In a
    packet of several frames it is the first frame's (libopus rebuilds the 20 ms before the
    packet from it). CELT-only packets (music at higher bitrates) carry none."""
    if len(packet) < 2:
        return False
    toc = Toc.parse(packet)
    if toc.mode == "celt":
        return False
    first = packet[1:] if toc.code == 0 else frames(packet)[1][0]
    if not first:
        return False
    silk_frames = max(1, toc.frame_samples // 960)
    return bool(first[0] >> (7 - silk_frames) & 1)


def _length(packet: bytes, at: int) -> tuple[int, int]:
    """A frame length coded in 1 or 2 bytes at ``at`` (§3.2.1): (length, bytes used)."""
    if at >= len(packet):
        raise ValueError("opus packet ends inside a frame length")
    first = packet[at]
    if first < 252:
        return first, 1
    if at + 1 >= len(packet):
        raise ValueError("opus packet ends inside a two-byte frame length")
    return first + 4 * packet[at + 1], 2


def _code_length(n: int) -> bytes:
    """``n`` (0..1275) as a 1 or 2 byte frame length (§3.2.1)."""
    if n < 252:
        return bytes((n,))
    first = 252 + (n - 252) % 4
    return bytes((first, (n - first) // 4))


def frames(packet: bytes) -> tuple[Toc, tuple[bytes, ...]]:
    """The packet's TOC and its frames' compressed data, checked against RFC 6716 §3.4
    (R1–R7): ValueError naming the rule a malformed packet breaks."""
    toc = Toc.parse(packet)
    if toc.code == 0:
        out: tuple[bytes, ...] = (packet[1:],)
    elif toc.code == 1:
        if (len(packet) - 1) % 2:
            raise ValueError("code 1 opus packet has an odd number of frame bytes")
        half = (len(packet) - 1) // 2
        out = (packet[1 : 1 + half], packet[1 + half :])
    elif toc.code == 2:
        n, used = _length(packet, 1)
        if 1 + used + n > len(packet):
            raise ValueError("code 2 opus packet: its first frame is longer than the packet")
        out = (packet[1 + used : 1 + used + n], packet[1 + used + n :])
    else:
        out = _code3(packet, toc)
    if any(len(f) > MAX_PACKET_BYTES for f in out):
        raise ValueError(f"opus frame over {MAX_PACKET_BYTES} bytes")
    return toc, out


def _code3(packet: bytes, toc: Toc) -> tuple[bytes, ...]:
    at, end = 2, len(packet)
    if toc.padding:
        while True:
            if at >= end:
                raise ValueError("code 3 opus packet ends inside its padding length")
            pad = packet[at]
            at += 1
            end -= 254 if pad == 255 else pad
            if pad != 255:
                break
    count = toc.frame_count
    if toc.vbr:
        sizes = []
        for _ in range(count - 1):
            n, used = _length(packet, at)
            sizes.append(n)
            at += used
        sizes.append(end - at - sum(sizes))
        if sizes[-1] < 0:
            raise ValueError("code 3 opus packet: its frame lengths exceed the packet")
    else:
        if end < at or (end - at) % count:
            raise ValueError("code 3 CBR opus packet: its frame bytes do not divide by its frames")
        sizes = [(end - at) // count] * count
    out = []
    for n in sizes:
        out.append(packet[at : at + n])
        at += n
    return tuple(out)


def joinable(a: bytes, b: bytes) -> bool:
    """Whether packets ``a`` and ``b`` may share one packet: the same configuration and
    channels (TOC bits 7..2; §3.1)."""
    return bool(a) and bool(b) and (a[0] ^ b[0]) & 0xFC == 0


def join(packets: Sequence[bytes]) -> bytes:
    """One packet holding every frame of ``packets``, in order: the only packet as it is, else
    a code 3 packet (§3.2.5), CBR when all frames are the same size. ValueError if they do not
    share a TOC configuration (``joinable``) or would last over 120 ms."""
    if len(packets) == 1:
        return bytes(packets[0])
    if not packets:
        raise ValueError("no opus packets to join")
    config = packets[0][0] & 0xFC if packets[0] else -1
    parts: list[bytes] = []
    for packet in packets:
        if not packet or packet[0] & 0xFC != config:
            raise ValueError("opus packets with different TOC configurations cannot be joined")
        if packet[0] & 0x3 == 0:
            parts.append(packet[1:])  # the usual case: one frame, no parsing needed
        else:
            parts.extend(frames(packet)[1])
    toc = Toc(config >> 3, bool(config & 0x4), 3, len(parts), vbr=len(set(map(len, parts))) > 1)
    if not toc.vbr:
        return bytes(toc) + b"".join(parts)
    sizes = b"".join(_code_length(len(p)) for p in parts[:-1])
    return bytes(toc) + sizes + b"".join(parts)
