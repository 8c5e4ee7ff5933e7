"""Loss repair on the relay side, sans-IO: a short packet history per broadcast, and the
retransmissions a speaker's generic NACK (RFC 4585) asks for, rate-limited per endpoint.

A broadcast's history holds its last ``HISTORY_FRAMES`` shared source packets by frame
index (the payload bytes every endpoint got). A NACK names the endpoint's own sequence
numbers; its ``Rewriter.locate`` turns each back into (broadcast, frame, header fields), so
a retransmission is the endpoint's original 12-byte header, rebuilt, in front of the shared
payload: byte for byte the packet first sent (RFC 4588 §1 calls this plain retransmission
in the original stream; the receiver's duplicate detection keeps it harmless).

``Repairer`` (one per endpoint) holds the token bucket that bounds what one endpoint can
make the relay send: ``NACK_RATE_PER_S`` packets a second with bursts of ``NACK_BURST``,
so a lying or broken receiver costs at most that and the fan-out is never slowed.

Redundancy (RFC 2198) is the other repair, for links whose round trip the playout delay
cannot wait for: ``red_packet`` turns a source packet into its RED form (payload type
``RED_PAYLOAD_TYPE``, the previous packet's payload as the redundant block, its own last),
built once per frame and shared like the plain one. Histories are kept per payload type, so
a NACKed RED packet is resent as the RED packet it was (the located run says which type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loa.codecs import FRAME_SAMPLES, RED_PAYLOAD_TYPE
from loa.codecs.red import red_payload
from loa.relay.core.rewriter import HEADER, HEADER_SIZE, Rewriter

HISTORY_FRAMES: Final = 64  # 1.28 s of 20 ms frames: past any playout delay (300 ms default)
NACK_RATE_PER_S: Final = 50.0  # one stream's worth: a pole may lose everything and get it back
NACK_BURST: Final = 25.0  # half a second of frames at once (a burst loss)


class PacketHistory:
    """One broadcast's recent source packets by frame index; driven by its fan-out."""

    __slots__ = ("_packets", "_size")

    def __init__(self, frames: int = HISTORY_FRAMES) -> None:
        if frames < 1:
            raise ValueError(f"history must hold at least 1 frame, got {frames}")
        self._size = frames
        self._packets: list[tuple[int, bytes] | None] = [None] * frames

    def add(self, frame_index: int, packet: bytes) -> None:
        self._packets[frame_index % self._size] = (frame_index, packet)

    def get(self, frame_index: int) -> bytes | None:
        """The source packet of ``frame_index`` if it is still held."""
        held = self._packets[frame_index % self._size]
        return held[1] if held is not None and held[0] == frame_index else None


def payload_start(packet: bytes) -> int:
    """Where a source packet's payload starts: after its 12-byte header and, on a stamped
    packet, its header extension (a source packet has no CSRCs)."""
    if not packet[0] & 0x10:
        return HEADER_SIZE
    words = int.from_bytes(packet[HEADER_SIZE + 2 : HEADER_SIZE + 4], "big")
    return HEADER_SIZE + 4 + 4 * words


def red_packet(packet: bytes, previous: bytes | None, frames: int = 1) -> bytes:
    """The RED form of source packet ``packet``: the same header (extension included) with
    payload type ``RED_PAYLOAD_TYPE``, and an RFC 2198 payload whose redundant block is the
    payload of ``previous`` (the source packet ``frames`` frames earlier; None: not held,
    so the primary goes alone)."""
    start = payload_start(packet)
    older = previous[payload_start(previous) :] if previous is not None else b""
    red = red_payload(packet[start:], packet[1] & 0x7F, older, FRAME_SAMPLES * frames)
    return b"".join((packet[:1], bytes((RED_PAYLOAD_TYPE,)), packet[2:start], red))


@dataclass(frozen=True, slots=True)
class Resent:
    """What one NACK came to: the packets to send, and what could not be sent, by cause."""

    packets: tuple[bytes, ...]
    unknown: int  # never sent to this endpoint, or too far back to trace
    expired: int  # its frame left the broadcast's history
    limited: int  # over the endpoint's rate limit


class Repairer:
    """One endpoint's retransmissions; driven by the NACKs its receiver sends."""

    __slots__ = ("_at", "_tokens", "burst", "rate_per_s", "resent")

    def __init__(self, rate_per_s: float = NACK_RATE_PER_S, burst: float = NACK_BURST) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"need rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s: Final = rate_per_s
        self.burst: Final = burst
        self._tokens = burst
        self._at: float | None = None
        self.resent = 0

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        if self._at is None or now > self._at:
            self._at = now

    def on_nack(
        self,
        lost: tuple[int, ...],
        rewriter: Rewriter,
        histories: dict[int, dict[int, PacketHistory]],
        now: float,
    ) -> Resent:
        """The packets to resend for the sequence numbers ``lost``, each at most once;
        ``histories``: by payload type, each broadcast's history of packets of that type."""
        self._refill(now)
        packets: list[bytes] = []
        unknown = expired = limited = 0
        for seq in dict.fromkeys(lost):  # a NACK naming a number twice gets it once
            where = rewriter.locate(seq)
            if where is None:
                unknown += 1
                continue
            history = histories.get(where.m_pt & 0x7F, {}).get(where.broadcast_key)
            source = history.get(where.frame_index) if history is not None else None
            if source is None:
                expired += 1
                continue
            if self._tokens < 1.0:
                limited += 1
                continue
            self._tokens -= 1.0
            header = HEADER.pack(source[0], where.m_pt, seq, where.timestamp, rewriter.ssrc)
            packets.append(header + source[HEADER_SIZE:])
        self.resent += len(packets)
        return Resent(tuple(packets), unknown, expired, limited)
