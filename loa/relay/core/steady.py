"""Steady groups: the headers of many endpoints' packets of one stream, advanced at once.

Most packets a ``Rewriter`` writes take its steady path: the same stream key as the last
packet, the frame right after it, the same frame count and payload type, no gap reported.
Such a packet's header is the last one with the sequence + 1 and the timestamp + 960 × its
frames; nothing else changes and no run is recorded. A ``SteadyGroup`` holds, for the
rewriters that are all steady on one stream after the same packet, the last header each
sent (one row of a big-endian structured array) and the frame, frame count and payload type
they share. ``advance`` checks that the next packet continues them and moves every row at
once: two numpy operations, whatever the group's size, instead of a Python call an endpoint.

While in a group a rewriter is *leased*: the group's rows are its sequence, timestamp, frame
and counts. Every read of them through the rewriter (``sent``, ``octets``, ``locate``,
``next_frame``…) first ``settle``s it (copies its row back), and every write (a packet
rewritten the scalar way, ``gap``) first ``release``s it: settled, it leaves the group, and
the group ``continues`` no more until the fan-out makes it again without it. Sans-IO."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import numpy as np

from loa.relay.core.rewriter import FRAME_TICKS, Rewriter

HEADERS: Final = np.dtype(
    [("b0", "u1"), ("m_pt", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")]
)  # an RTP header without CSRCs, as it goes on the wire (12 bytes)
_SEQ_TS: Final = struct.Struct(">HI")  # a row's sequence and timestamp, at its byte 2


class SteadyGroup:
    """Rewriters steady on stream ``key`` after its packet from ``frame`` on (``step``
    frames, first header bytes ``b0``, ``pt``); ``headers`` are their last headers."""

    __slots__ = (
        "_octets0",
        "_sent0",
        "b0",
        "broken",
        "departed",
        "frame",
        "headers",
        "key",
        "octets",
        "packets",
        "pt",
        "raw",
        "rewriters",
        "step",
    )

    def __init__(
        self, rewriters: Sequence[Rewriter], key: int, frame: int, step: int, b0: int, pt: int
    ) -> None:
        """Leases ``rewriters``: each must be ``steady`` and its last packet ``frame`` of
        stream ``key`` with ``step`` frames and payload type byte ``pt``."""
        for rw in rewriters:
            if not rw.steady_on(key, frame, step, pt):
                raise ValueError(f"rewriter {rw.ssrc:#x} is not steady on stream {key}")
        self.rewriters: Final = tuple(rewriters)
        self.key, self.frame, self.step, self.b0, self.pt = key, frame, step, b0, pt
        self.packets = 0  # packets each member sent since the group was made
        self.octets = 0  # payload octets each member sent since
        self.broken = False  # dissolved: it advances no more
        self.departed = 0  # members released since: it advances no more until remade
        m = len(self.rewriters)
        self.headers = np.zeros(m, dtype=HEADERS)
        self.headers["b0"] = b0
        self.headers["m_pt"] = pt
        self.headers["seq"] = [(rw._seq - 1) & 0xFFFF for rw in self.rewriters]
        self.headers["ts"] = [rw._ts for rw in self.rewriters]
        self.headers["ssrc"] = [rw.ssrc for rw in self.rewriters]
        self.raw: Final = self.headers.view(np.uint8)  # the headers as bytes, m × 12
        self._sent0 = [rw._sent for rw in self.rewriters]
        self._octets0 = [rw._octets for rw in self.rewriters]
        for i, rw in enumerate(self.rewriters):
            rw._lease, rw._at, rw._settled = self, i, 0  # its row is what it holds

    def __len__(self) -> int:
        return len(self.rewriters)

    def continues(self, packet: bytes, key: int, frame_index: int, frames: int) -> bool:
        """Whether ``packet`` (``frames`` frames of stream ``key`` from ``frame_index``) takes
        every member's steady path."""
        return (
            not self.broken
            and not self.departed
            and key == self.key
            and frame_index == self.frame + self.step
            and frames == self.step
            and packet[1] == self.pt
            and packet[0] == self.b0
        )

    def advance(self, packet: bytes, frame_index: int) -> None:
        """Every member's header for ``packet``, which ``continues`` the group."""
        headers = self.headers
        headers["seq"] += 1
        headers["ts"] += FRAME_TICKS * self.step
        self.frame = frame_index
        self.packets += 1
        self.octets += len(packet) - 12

    def settle(self, rw: Rewriter) -> None:
        """Copy ``rw``'s row back into it (it stays in the group); nothing to do when the
        group has not advanced since the last copy (an SR reads four values of it)."""
        if rw._settled == self.packets:
            return
        i = rw._at
        seq, ts = _SEQ_TS.unpack_from(self.raw.data, i * 12 + 2)
        rw._seq = (seq + 1) & 0xFFFF
        rw._ts = ts
        rw._frame = self.frame
        rw._sent = self._sent0[i] + self.packets
        rw._octets = self._octets0[i] + self.octets
        rw._settled = self.packets

    def release(self, rw: Rewriter) -> None:
        """``rw`` leaves the group, settled; the group advances no more (the fan-out makes
        it again without it: ``departed``)."""
        self.settle(rw)
        rw._lease, rw._at = None, -1
        self.departed += 1

    def dissolve(self) -> None:
        """Release every member still leased (``settle`` for all, its rows read at once)."""
        seqs = self.headers["seq"].tolist()
        stamps = self.headers["ts"].tolist()
        frame, packets, octets = self.frame, self.packets, self.octets
        for rw, seq, ts, sent0, octets0 in zip(
            self.rewriters, seqs, stamps, self._sent0, self._octets0, strict=True
        ):
            if rw._lease is self:
                rw._seq, rw._ts, rw._frame = (seq + 1) & 0xFFFF, ts, frame
                rw._sent, rw._octets = sent0 + packets, octets0 + octets
                rw._lease, rw._at = None, -1
        self.broken = True
