"""RTP payload for redundant audio data (RFC 2198, "RED"), sans-IO: build and parse.

A RED payload is a list of block headers, then the blocks' data in the same order, the
primary (the packet's own frame) last (RFC 2198 §3)::

    redundant block header, 4 bytes:  F=1 | block PT (7) | timestamp offset (14) | length (10)
    primary block header, 1 byte:     F=0 | block PT (7)

The timestamp offset says how many clock ticks (48 kHz for Opus) before the packet's own
RTP timestamp the redundant block's frame started; its length is in bytes. Here every packet
carries the previous frame of its stream as its one redundant block (``red_payload``), so a
lost packet is rebuilt from the next one without a round trip, at the price of about twice
the audio bytes.

``RedPayload.parse`` is strict, because the bytes come from the network: a truncated header,
a length past the end, a timestamp offset of 0 or over the caller's bound, offsets not
strictly decreasing, a block of another payload type than expected or an empty primary all
raise ``ValueError`` naming the block and the numbers; the receiver drops such a packet and
counts it. A zero-length redundant block (RFC 2198 allows one) carries nothing and is left
out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Self

MAX_OFFSET: Final = (1 << 14) - 1  # 16383 ticks, 341 ms at 48 kHz: the field's width
MAX_BLOCK_LEN: Final = (1 << 10) - 1  # 1023 bytes: the field's width
MAX_REDUNDANT: Final = 8  # more redundant blocks than this in one packet is not audio we use
_HEADER: Final = struct.Struct("!I")  # F (1) | block PT (7) | offset (14) | length (10)

BytesLike = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class RedBlock:
    """One redundant block: an older frame of the stream, ``offset`` ticks before the
    packet's timestamp."""

    payload_type: int
    offset: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RED block payload type must be 0..127, got {self.payload_type}")
        if not 0 < self.offset <= MAX_OFFSET:
            raise ValueError(
                f"RED timestamp offset must be 1..{MAX_OFFSET} ticks, got {self.offset}"
            )
        if len(self.data) > MAX_BLOCK_LEN:
            raise ValueError(
                f"RED block length must be at most {MAX_BLOCK_LEN} bytes, got {len(self.data)}"
            )


@dataclass(frozen=True, slots=True)
class RedPayload:
    """A RED packet's payload: redundant blocks, oldest first, then the primary; built by
    the relay once per frame, parsed by the receiver."""

    payload_type: int  # the primary block's
    primary: bytes
    redundant: tuple[RedBlock, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RED primary payload type must be 0..127, got {self.payload_type}")
        if not self.primary:
            raise ValueError("RED primary block is empty")
        if len(self.redundant) > MAX_REDUNDANT:
            raise ValueError(
                f"RED: at most {MAX_REDUNDANT} redundant blocks, got {len(self.redundant)}"
            )
        for older, newer in zip(self.redundant, self.redundant[1:], strict=False):
            if newer.offset >= older.offset:
                raise ValueError(
                    "RED timestamp offsets must decrease towards the primary, got "
                    f"{older.offset} then {newer.offset}"
                )

    @classmethod
    def parse(
        cls, data: BytesLike, *, payload_type: int | None = None, max_offset: int = MAX_OFFSET
    ) -> Self:
        """Parse a RED payload; ``payload_type``, if given, is the only block type accepted,
        and ``max_offset`` bounds how far back a redundant block may go."""
        n = len(data)
        if n == 0:
            raise ValueError("RED payload is empty")
        heads: list[tuple[int, int, int]] = []  # (payload type, offset, length)
        pos = 0
        while True:
            if pos >= n:
                raise ValueError(f"RED header {len(heads) + 1} is missing: payload ends at {n}")
            first = data[pos]
            if not first & 0x80:  # the primary's one-byte header ends the list
                heads.append((first, 0, -1))
                pos += 1
                break
            if len(heads) == MAX_REDUNDANT:
                raise ValueError(f"RED: more than {MAX_REDUNDANT} redundant blocks")
            if pos + _HEADER.size > n:
                raise ValueError(
                    f"RED header {len(heads) + 1} truncated: needs 4 bytes at {pos}, "
                    f"payload has {n}"
                )
            word = _HEADER.unpack_from(data, pos)[0]
            heads.append((first & 0x7F, word >> 10 & MAX_OFFSET, word & MAX_BLOCK_LEN))
            pos += _HEADER.size
        blocks: list[RedBlock] = []
        for number, (pt, offset, length) in enumerate(heads[:-1], 1):
            _check_type(pt, payload_type, number)
            if not 0 < offset <= max_offset:
                raise ValueError(
                    f"RED block {number}: timestamp offset {offset} is outside 1..{max_offset}"
                )
            end = pos + length
            if end > n:
                raise ValueError(
                    f"RED block {number}: length {length} needs {end} bytes, payload has {n}"
                )
            if length:
                blocks.append(RedBlock(pt, offset, bytes(data[pos:end])))
            pos = end
        primary_type = heads[-1][0]
        _check_type(primary_type, payload_type, len(heads))
        if pos >= n:
            raise ValueError(f"RED primary block is empty: its data would start at {pos} of {n}")
        return cls(primary_type, bytes(data[pos:]), tuple(blocks))

    def __bytes__(self) -> bytes:
        heads = [_HEADER.pack(_word(b.payload_type, b.offset, len(b.data))) for b in self.redundant]
        return b"".join(
            (*heads, bytes((self.payload_type,)), *(b.data for b in self.redundant), self.primary)
        )


def _check_type(got: int, want: int | None, number: int) -> None:
    if want is not None and got != want:
        raise ValueError(f"RED block {number}: payload type {got}, expected {want}")


def _word(payload_type: int, offset: int, length: int) -> int:
    return (0x80 | payload_type) << 24 | offset << 10 | length


def red_payload(primary: bytes, payload_type: int, previous: bytes = b"", offset: int = 0) -> bytes:
    """The RED payload carrying ``primary`` and, as its redundant block, ``previous``
    (``offset`` ticks earlier). Without a previous frame, or with one that cannot be said
    (offset out of 1..16383, over 1023 bytes), it carries the primary alone."""
    if not 0 <= payload_type <= 127:
        raise ValueError(f"RED payload type must be 0..127, got {payload_type}")
    head = bytes((payload_type,))
    if previous and 0 < offset <= MAX_OFFSET and len(previous) <= MAX_BLOCK_LEN:
        word = _HEADER.pack(_word(payload_type, offset, len(previous)))
        return b"".join((word, head, previous, primary))
    return head + primary
