"""The speaker's receive step for RTP audio, sans-IO: Opus as is, RED (RFC 2198) unwrapped.

A RED packet's primary block is pushed into the jitter buffer as the packet itself; each
redundant block then fills the slot of the packet it copies, if that is still missing
(``JitterBuffer.fill``). Which packet a block copies follows from its timestamp offset
and its own duration (the Opus TOC): ``offset / duration`` packets back, which must be a
whole number of packets and at least one; a block of another length is not ours to place
and is skipped. The first packet of a segment (marker bit) fills nothing: the packets
before it belong to the previous stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from loa.codecs.opus_packet import packet_samples
from loa.codecs.red import RedPayload
from loa.codecs.rtp import RtpPacket, seq_add
from loa.speaker.jitter import JitterBuffer


@dataclass(frozen=True, slots=True)
class Received:
    """What one packet came to: whether it was audio at all, how many slots its
    redundancy filled."""

    ok: bool  # False: a malformed RED payload, dropped whole
    filled: int = 0


_MALFORMED = Received(False)
_PLAIN = Received(True)


def receive(
    jitter: JitterBuffer, packet: RtpPacket, now: float, *, opus_type: int, red_type: int | None
) -> Received:
    """Push ``packet`` (already checked to be of this stream, of ``opus_type`` or
    ``red_type``) into ``jitter``; a malformed RED payload pushes nothing."""
    if packet.payload_type != red_type:
        jitter.push(packet.sequence, packet.timestamp, packet.payload, now, packet.marker)
        return _PLAIN
    try:
        red = RedPayload.parse(packet.payload, payload_type=opus_type)
    except ValueError:
        return _MALFORMED
    jitter.push(packet.sequence, packet.timestamp, red.primary, now, packet.marker)
    if packet.marker:
        return _PLAIN
    filled = 0
    for block in red.redundant:
        try:
            duration = packet_samples(block.data)
        except ValueError:
            continue  # not an Opus packet: the block cannot be placed
        back, rest = divmod(block.offset, duration)
        if rest or back < 1:
            continue
        seq = seq_add(packet.sequence, -back)
        ts = (packet.timestamp - block.offset) & 0xFFFFFFFF
        filled += jitter.fill(seq, ts, block.data, duration, now)
    return Received(True, filled)
