"""Packet variants: what one broadcast's shared 20 ms source packets become for a zone.

A broadcast encodes each 20 ms frame once (``Rewriter.source_packet``). A zone whose packets
last 40 or 60 ms (``AudioSettings.frame_ms``) gets 2 or 3 consecutive frames in one packet,
joined by ``loa.codecs.opus_packet.join`` into an Opus code 3 packet; a zone with RFC 2198
redundancy gets redundant packets. Each distinct combination is a ``Variant``; every endpoint
of one variant gets the same payload bytes, so the fan-out shares one payload per variant per
packet, as it shares one per frame.

``Packer`` makes one variant's packets from one broadcast's frames, sans-IO. A packet is
emitted when its ``frames`` frames are in; earlier, with the frames held so far, when the
next frame cannot join them: its frame index does not follow (the source skipped or
restarted) or its Opus TOC configuration differs (the encoder changed mode or bandwidth:
RFC 6716 §3.1 allows one TOC a packet). ``flush`` emits what is held (the broadcast ended).
So a packet may be shorter than its variant says; receivers read the duration from the TOC.

A packet is a source packet too: the first frame's 12-byte header (and its RTP header
extension, when frames are stamped) followed by the joined Opus payload. ``Ready`` carries
it with the frame index of its first frame and its frame count, which is all the
``Rewriter`` needs for the timestamp, and the *stream key* its retransmission history is
filed under (``stream_key``: the broadcast key and the variant together).

A ``redundancy`` variant's packets are RFC 2198 RED (``loa.relay.core.repair.red_packet``):
the packet's frames joined as above, after the previous packet of the variant as the
redundant block, when that one ends where this one starts (its own duration as the
timestamp offset; the receiver puts it back one sequence number earlier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loa.codecs.opus_packet import join
from loa.relay.core.repair import red_packet
from loa.relay.core.rewriter import HEADER_SIZE
from loa.relay.core.zones import AudioSettings

VARIANT_BITS: Final = 3  # a stream key is the broadcast key << 3 | the variant's index
FRAME_MS: Final = 20


@dataclass(frozen=True, slots=True)
class Variant:
    """How a zone's packets are made: ``frames`` 20 ms frames each, RFC 2198 or not."""

    frames: int = 1
    redundancy: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.frames <= 3:
            raise ValueError(f"a packet holds 1..3 frames of 20 ms, got {self.frames}")

    @classmethod
    def of(cls, audio: AudioSettings, *, takes_red: bool = True) -> Variant:
        """A zone's variant for an endpoint (``takes_red``: it can receive RED)."""
        return cls(audio.frame_ms // FRAME_MS, audio.redundancy and takes_red)

    @property
    def plain(self) -> Variant:
        """The same packets without redundancy."""
        return Variant(self.frames) if self.redundancy else self

    @property
    def frame_ms(self) -> int:
        return self.frames * FRAME_MS

    @property
    def index(self) -> int:
        """Unique per variant, below 8: the low bits of its stream keys."""
        return (self.frames - 1) | self.redundancy << 2


PLAIN: Final = Variant()  # one 20 ms frame a packet: the source packets as they are


def stream_key(broadcast_key: int, variant: Variant) -> int:
    """The key of one variant's packets of one broadcast (what a ``Rewriter`` and the
    retransmission history know them by)."""
    return broadcast_key << VARIANT_BITS | variant.index


def broadcast_of(key: int) -> int:
    """The broadcast key a stream key belongs to."""
    return key >> VARIANT_BITS


@dataclass(slots=True)
class Ready:
    """One packet of a variant, ready to fan out: a source packet (placeholder header), the
    frame index of its first frame, its frame count, its stream key; ``slot`` is the fan-out's
    handle on its shared payload (-1 until it registers it)."""

    packet: bytes
    frame_index: int
    frames: int
    key: int
    slot: int = -1


def _head_size(packet: bytes) -> int:
    """The RTP header of a source packet with its header extension (the bench's stamp)."""
    if packet[0] & 0x10 and len(packet) >= HEADER_SIZE + 4:
        return HEADER_SIZE + 4 + 4 * int.from_bytes(packet[HEADER_SIZE + 2 : HEADER_SIZE + 4])
    return HEADER_SIZE


class Packer:
    """One variant's packets from one broadcast's frames; driven by its fan-out, one ``add``
    a frame."""

    __slots__ = ("_first", "_held", "_next", "_previous", "key", "variant")

    def __init__(self, variant: Variant, broadcast_key: int) -> None:
        self.variant = variant
        self.key = stream_key(broadcast_key, variant)
        self._held: list[bytes] = []  # source packets of the frames held, in order
        self._first = 0  # frame index of the first one held
        self._next = 0  # the frame index that may join them
        # RED: the last packet made (plain), its first frame index and frame count
        self._previous: tuple[bytes, int, int] | None = None

    def add(self, packet: bytes, frame_index: int) -> Ready | None:
        """Take one frame's source packet; the packet it completes, or the one it could not
        join (then this frame starts the next), or None."""
        if self.variant.frames == 1 and not self.variant.redundancy:
            return Ready(packet, frame_index, 1, self.key)  # nothing to make
        out = None
        held = self._held
        if held and (frame_index != self._next or not _joinable(held[0], packet)):
            out = self.flush()
        if not held:
            self._first = frame_index
        held.append(packet)
        self._next = frame_index + 1
        if len(held) == self.variant.frames:
            return self.flush()
        return out

    def flush(self) -> Ready | None:
        """The packet of the frames held so far (shorter than the variant's), or None."""
        held = self._held
        if not held:
            return None
        packet = _joined(held)
        if self.variant.redundancy:
            packet = self._red(packet, self._first, len(held))
        ready = Ready(packet, self._first, len(held), self.key)
        held.clear()
        return ready

    def _red(self, packet: bytes, first: int, frames: int) -> bytes:
        """``packet`` as RFC 2198 RED, after the previous packet when it ends where this one
        starts (else alone: the primary only)."""
        previous, self._previous = self._previous, (packet, first, frames)
        if previous is not None and previous[1] + previous[2] == first:
            return red_packet(packet, previous[0], previous[2])
        return red_packet(packet, None)


def _joined(packets: list[bytes]) -> bytes:
    """The packet of ``packets`` (consecutive frames that share a TOC): the first one's header,
    then their Opus frames joined."""
    if len(packets) == 1:
        return packets[0]
    head = _head_size(packets[0])
    return packets[0][:head] + join([p[_head_size(p) :] for p in packets])


def _joinable(a: bytes, b: bytes) -> bool:
    """Whether source packets ``a`` and ``b`` carry Opus frames with one TOC configuration."""
    ha, hb = _head_size(a), _head_size(b)
    return len(a) > ha and len(b) > hb and (a[ha] ^ b[hb]) & 0xFC == 0
