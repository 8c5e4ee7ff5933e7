"""Per-endpoint RTP header rewriting: one continuous stream out of many shared broadcasts.

A broadcast encodes each 20 ms frame once and builds one *source packet* (``source_packet``):
an RTP header with placeholder sequence, timestamp and SSRC, then the Opus payload. Every
endpoint gets those payload bytes; its ``Rewriter`` only writes a fresh 12-byte header. A
zone with longer packets gets source packets of 2 or 3 frames (``loa.relay.core.variants``):
each call names the frame index of the packet's first frame and its frame count.

Timestamp rules (48 kHz clock, 960 ticks per frame):

- the first packet ever uses ``initial_timestamp`` and carries the marker;
- within one broadcast (one stream key: broadcast and variant) the timestamp follows the
  first frame's index, so frames this endpoint did not get (DTX, a dropped stale packet)
  still advance its clock;
- on a switch to another broadcast it continues right after the last packet (its frame
  count later), with the marker set (the receiver starts a new talkspurt and may reset its
  jitter buffer);
- ``gap(frames)`` reports frames during which nothing held the endpoint. The next packet,
  whatever its broadcast, lands ``frames`` frames further on and carries the marker: after
  silence the receiver's clock stays honest, and RFC 3551 §4.1 marks the first packet of
  a talkspurt. Gaps before the first packet are ignored (there is no clock yet);
- a frame index that does not move forward within one broadcast (the broadcast restarted
  its numbering) is a *resync*: it is treated like a switch and counted in ``resyncs``.

The sequence number grows by exactly one per packet rewritten for this endpoint, so the
receiver sees real loss as loss and nothing else as loss.

Retransmission (``locate``): a NACKed sequence number is traced back to the broadcast frame
it carried without a per-packet record. Packets form *runs* in which sequence advances by
one and frame index and timestamp by the packet's frame count, the same for every packet of
the run; a run is recorded only where that breaks (a discontinuity, frames skipped within a
broadcast, a packet of another length), so the hot path pays one comparison. A change of
payload type (an endpoint's zone turning RFC 2198 redundancy on or off) starts a run too, so
a retransmission has the type its packet went out with. The last
``RUNS_KEPT`` runs are kept.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import Buffer as WritableBuffer

    from loa.relay.core.steady import SteadyGroup

from loa.codecs import FRAME_SAMPLES, OPUS_PAYLOAD_TYPE

HEADER: Final = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
HEADER_SIZE: Final = HEADER.size  # 12
FRAME_TICKS: Final = FRAME_SAMPLES  # 960: timestamp advance per 20 ms frame at 48 kHz
_SEQ_MASK: Final = 0xFFFF
_TS_MASK: Final = 0xFFFF_FFFF
_MARKER: Final = 0x80
RUNS_KEPT: Final = 16
LOCATE_HORIZON: Final = 1024  # packets back at most that ``locate`` will answer for


class Located(NamedTuple):
    """Where a sent sequence number came from, and the header fields it went out with."""

    broadcast_key: int  # the stream key the packet was rewritten with
    frame_index: int  # of its first frame
    m_pt: int  # marker bit and payload type byte
    timestamp: int


def _check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be 0..{(1 << bits) - 1}, got {value}")


class Rewriter:
    """Rewrites shared source packets for one endpoint; driven by the fan-out, one call a frame.

    ``rewrite`` is the hot path: one ``struct.pack`` of the header and one concatenation
    with the payload (cheaper, measured, than copying into a bytearray and ``pack_into``).
    ``packet`` must come from ``source_packet``: a 12-byte header without CSRCs, extension
    or marker, then the payload. It is never modified.
    """

    __slots__ = (
        "_at",
        "_frame",
        "_gap",
        "_key",
        "_lease",
        "_octets",
        "_pt",
        "_runs",
        "_sent",
        "_seq",
        "_settled",
        "_step",
        "_ts",
        "gaps",
        "resyncs",
        "ssrc",
        "switches",
    )

    def __init__(self, ssrc: int, initial_sequence: int, initial_timestamp: int) -> None:
        _check_uint("SSRC", ssrc, 32)
        _check_uint("initial sequence", initial_sequence, 16)
        _check_uint("initial timestamp", initial_timestamp, 32)
        self.ssrc: Final = ssrc
        self._seq = initial_sequence  # the next sequence to send
        self._ts = initial_timestamp  # the last timestamp sent (the first one, before any)
        self._key: int | None = None  # broadcast of the last packet; None before the first
        self._frame = 0  # that broadcast's frame index of the last packet (its first frame)
        self._step = 1  # the last packet's frame count
        self._pt = -1  # the last source packet's payload type byte (marker clear)
        self._gap = 0  # idle frames reported since the last packet
        self._sent = 0  # packets rewritten
        self._octets = 0  # payload octets rewritten (the RTCP SR "sender's octet count")
        # Leased to a steady group (``loa.relay.core.steady``) at index ``_at``: the group's
        # arrays hold the sequence, timestamp, frame and counts; read through ``_settle``.
        self._lease: SteadyGroup | None = None
        self._at = -1
        self._settled = -1  # the group's packet count when its row was last copied back
        self.switches = 0  # changes of broadcast, the first packet not included
        self.resyncs = 0  # frame index did not move forward within one broadcast
        self.gaps = 0  # idle frames reported with gap(), after the first packet
        # runs: (packets sent before its first, broadcast key, first frame index,
        # first timestamp, first marker/payload type byte, frames a packet)
        self._runs: deque[tuple[int, int, int, int, int, int]] = deque(maxlen=RUNS_KEPT)

    @staticmethod
    def source_packet(payload: bytes, payload_type: int = OPUS_PAYLOAD_TYPE) -> bytes:
        """The packet a broadcast shares for one frame: placeholder header (seq, ts, SSRC 0)."""
        _check_uint("RTP payload type", payload_type, 7)
        return HEADER.pack(0x80, payload_type, 0, 0, 0) + payload

    def rewrite(
        self, packet: bytes, broadcast_key: int, frame_index: int, frames: int = 1
    ) -> bytes:
        """``packet`` (``frames`` frames from ``frame_index`` on) with this endpoint's
        sequence, timestamp, SSRC and marker."""
        m_pt, seq, ts = self._advance(packet, broadcast_key, frame_index, frames)
        return HEADER.pack(packet[0], m_pt, seq, ts, self.ssrc) + packet[HEADER_SIZE:]

    def header(self, packet: bytes, broadcast_key: int, frame_index: int, frames: int = 1) -> bytes:
        """Like ``rewrite``, but only this endpoint's 12-byte header (sent with ``packet[12:]``)."""
        m_pt, seq, ts = self._advance(packet, broadcast_key, frame_index, frames)
        return HEADER.pack(packet[0], m_pt, seq, ts, self.ssrc)

    def pack_header_into(
        self,
        buffer: WritableBuffer,
        offset: int,
        packet: bytes,
        broadcast_key: int,
        frame_index: int,
        frames: int = 1,
    ) -> None:
        """Like ``rewrite``, but only this endpoint's 12-byte header, packed into ``buffer``
        at ``offset``: the batched fan-out sends it with the shared payload ``packet[12:]``."""
        m_pt, seq, ts = self._advance(packet, broadcast_key, frame_index, frames)
        HEADER.pack_into(buffer, offset, packet[0], m_pt, seq, ts, self.ssrc)

    def _advance(
        self, packet: bytes, broadcast_key: int, frame_index: int, frames: int
    ) -> tuple[int, int, int]:
        """The next packet's (marker and payload type, sequence, timestamp); counts it."""
        if self._lease is not None:
            self._lease.release(self)
        seq = self._seq
        if broadcast_key == self._key and not self._gap and frame_index > self._frame:
            ts = (self._ts + FRAME_TICKS * (frame_index - self._frame)) & _TS_MASK
            m_pt = packet[1]
            if frame_index != self._frame + self._step or frames != self._step or m_pt != self._pt:
                # frames skipped, a packet of another length or payload type: a new run
                self._runs.append((self._sent, broadcast_key, frame_index, ts, m_pt, frames))
        else:
            ts = self._discontinuity(broadcast_key, frame_index)
            m_pt = packet[1] | _MARKER
            self._runs.append((self._sent, broadcast_key, frame_index, ts, m_pt, frames))
        self._seq = (seq + 1) & _SEQ_MASK
        self._ts = ts
        self._frame = frame_index
        self._step = frames
        self._pt = packet[1]
        self._sent += 1
        self._octets += len(packet) - HEADER_SIZE
        return m_pt, seq, ts

    def _discontinuity(self, broadcast_key: int, frame_index: int) -> int:
        """The timestamp of a packet that starts a talkspurt; updates the counters."""
        previous = self._key
        self._key = broadcast_key
        if previous is None:
            self._gap = 0
            return self._ts
        if broadcast_key != previous:
            self.switches += 1
        elif not self._gap:
            self.resyncs += 1
        idle, self._gap = self._gap, 0
        return (self._ts + FRAME_TICKS * (self._step + idle)) & _TS_MASK

    def gap(self, frames: int) -> None:
        """Report ``frames`` frame times during which nothing was sent to this endpoint."""
        if frames < 0:
            raise ValueError(f"gap must be a frame count >= 0, got {frames}")
        if self._lease is not None:
            self._lease.release(self)
        if self._key is not None:
            self._gap += frames
            self.gaps += frames

    def locate(self, sequence: int) -> Located | None:
        """The frame a sequence number already sent carried, and its header fields; None if
        it was never sent, is more than ``LOCATE_HORIZON`` packets back or its run is gone."""
        if self._lease is not None:
            self._lease.settle(self)
        if self._key is None:
            return None
        back = (self._seq - 1 - sequence) & _SEQ_MASK  # 0: the last packet sent
        if back >= min(LOCATE_HORIZON, self._sent):
            return None
        target = self._sent - 1 - back  # packets rewritten before it: no wrap-around
        for first, key, frame, ts, m_pt, step in reversed(self._runs):
            if first <= target:
                offset = target - first
                if offset == 0:
                    return Located(key, frame, m_pt, ts)
                ts = (ts + FRAME_TICKS * offset * step) & _TS_MASK
                return Located(key, frame + offset * step, m_pt & ~_MARKER, ts)
        return None

    @property
    def sent(self) -> int:
        """Packets rewritten."""
        if self._lease is not None:
            self._lease.settle(self)
        return self._sent

    @property
    def octets(self) -> int:
        """Payload octets rewritten (the RTCP SR "sender's octet count")."""
        if self._lease is not None:
            self._lease.settle(self)
        return self._octets

    @property
    def steady(self) -> bool:
        """Whether the next packet of the same stream, frame count and payload type, right
        after the last one, takes the steady path: sequence + 1, timestamp + its frames, no
        marker, no new run (what a steady group does for many rewriters at once)."""
        return self._key is not None and not self._gap and self._lease is None

    def steady_on(self, broadcast_key: int, frame_index: int, frames: int, m_pt: int) -> bool:
        """Whether the last packet was ``frames`` frames of stream ``broadcast_key`` from
        ``frame_index`` with payload type byte ``m_pt`` and the next is on the steady path
        (no gap since; not leased)."""
        return (
            self._lease is None
            and not self._gap
            and self._key == broadcast_key
            and self._frame == frame_index
            and self._step == frames
            and self._pt == m_pt
        )

    @property
    def last_sequence(self) -> int | None:
        """Sequence of the last packet rewritten, None before the first."""
        if self._lease is not None:
            self._lease.settle(self)
        return None if self._key is None else (self._seq - 1) & _SEQ_MASK

    @property
    def last_timestamp(self) -> int | None:
        """Timestamp of the last packet rewritten, None before the first."""
        if self._lease is not None:
            self._lease.settle(self)
        return None if self._key is None else self._ts

    @property
    def broadcast_key(self) -> int | None:
        """Stream key (broadcast and variant) of the last packet rewritten, None before the
        first."""
        return self._key

    @property
    def frame_index(self) -> int:
        """The first frame index of the last packet rewritten (0 before the first)."""
        if self._lease is not None:
            self._lease.settle(self)
        return self._frame

    @property
    def last_frames(self) -> int:
        """How many frames the last packet rewritten carried (a group shares its own)."""
        return self._step

    @property
    def next_frame(self) -> int:
        """The frame index after the last packet rewritten (its first frame + its frames)."""
        if self._lease is not None:
            self._lease.settle(self)
        return self._frame + self._step
