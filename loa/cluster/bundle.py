"""The audio bundle: one Redis message per 20 ms tick per receiving node, carrying every Opus
packet that node needs from the sender (one per broadcast it has listeners of). One message
per packet costs 20-60 µs of client CPU per packet and tops out near 9,000 messages/s in a
Python publisher; a bundle amortises that over all the tick's packets.

Wire format (all integers big-endian):

| bytes | field |
|---|---|
| 0-1 | magic ``LB`` |
| 2 | version ``1`` |
| 3 | sender node id length N (1-255) |
| 4-11 | sent: µs since the Unix epoch, the sender's wall clock (latency of the hop) |
| 12-15 | tick: the sender's 20 ms tick counter (u32, wraps) |
| 16-(16+N-1) | sender node id, UTF-8 |
| then | packet count (u16), then each packet: |
|  | key length K (u8, 1-255), K bytes broadcast key (UTF-8), frame index (u32, wraps), |
|  | flags (u8), payload length L (u16, 1-1276), L bytes Opus packet |

A frame index is the broadcast's own 20 ms frame counter, so a receiver puts packets in
order, sees a gap, and drops a duplicate. Flags: ``START`` the first frame of the broadcast
(or after a gap in its source), ``ITEM_END`` the last frame of an item (file, playlist
entry: the router's ``ItemBoundary``), ``END`` the last frame of the broadcast. Undefined
flag bits are refused, so a newer sender's meaning is never silently dropped.

``Bundler`` builds them: packets go in once per tick (each serialised once, shared by every
node that needs it) and ``flush`` returns one message per receiving node.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

MAGIC = b"LB"
VERSION = 1
START, ITEM_END, END = 1, 2, 4
KNOWN_FLAGS = START | ITEM_END | END
MAX_PAYLOAD = 1276  # one TOC byte and the largest Opus frame, 1275 bytes (RFC 6716 §3.2.1)
MAX_PACKETS = 0xFFFF

_HEAD = struct.Struct("!2sBBQI")  # magic, version, node id length, sent µs, tick
_COUNT = struct.Struct("!H")
_FRAME = struct.Struct("!IBH")  # frame index, flags, payload length


@dataclass(frozen=True, slots=True)
class Packet:
    """One Opus packet of one broadcast."""

    key: str
    frame: int
    flags: int
    payload: bytes

    def __post_init__(self) -> None:
        size = len(self.key.encode())
        if not 1 <= size <= 255:
            raise ValueError(f"broadcast key must be 1-255 bytes of UTF-8, got {size}")
        if not 0 <= self.frame <= 0xFFFFFFFF:
            raise ValueError(f"packet {self.key}: frame index must be 0..2^32-1, got {self.frame}")
        if self.flags & ~KNOWN_FLAGS or self.flags < 0:
            raise ValueError(f"packet {self.key}: unknown flags 0x{self.flags:02x}")
        if not 1 <= len(self.payload) <= MAX_PAYLOAD:
            raise ValueError(
                f"packet {self.key}: payload must be 1-{MAX_PAYLOAD} bytes, got {len(self.payload)}"
            )

    def __bytes__(self) -> bytes:
        key = self.key.encode()
        return (
            bytes((len(key),))
            + key
            + _FRAME.pack(self.frame, self.flags, len(self.payload))
            + self.payload
        )


@dataclass(frozen=True, slots=True)
class Bundle:
    sender: str
    sent_us: int
    tick: int
    packets: tuple[Packet, ...]

    def __post_init__(self) -> None:
        size = len(self.sender.encode())
        if not 1 <= size <= 255:
            raise ValueError(f"sender node id must be 1-255 bytes of UTF-8, got {size}")
        if not 0 <= self.sent_us < 2**64:
            raise ValueError(f"sent_us must be 0..2^64-1, got {self.sent_us}")
        if not 0 <= self.tick <= 0xFFFFFFFF:
            raise ValueError(f"tick must be 0..2^32-1, got {self.tick}")
        if len(self.packets) > MAX_PACKETS:
            raise ValueError(f"a bundle holds at most {MAX_PACKETS} packets")

    def __bytes__(self) -> bytes:
        return encode(self.sender, self.sent_us, self.tick, [bytes(p) for p in self.packets])

    @classmethod
    def parse(cls, data: bytes) -> Self:
        view = memoryview(data)
        if len(view) < _HEAD.size:
            raise ValueError(f"bundle of {len(view)} bytes is shorter than its 16-byte header")
        magic, version, node_len, sent_us, tick = _HEAD.unpack_from(view)
        if magic != MAGIC:
            raise ValueError(f"not an audio bundle: magic {bytes(magic)!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise ValueError(f"audio bundle version {version} is not supported (only {VERSION})")
        at = _HEAD.size + node_len
        if node_len == 0 or len(view) < at + _COUNT.size:
            raise ValueError(f"audio bundle truncated in its sender id ({len(view)} bytes)")
        sender = _text(view[_HEAD.size : at], "sender node id")
        (count,) = _COUNT.unpack_from(view, at)
        at += _COUNT.size
        packets = []
        for index in range(count):
            packet, at = _packet(view, at, index)
            packets.append(packet)
        if at != len(view):
            raise ValueError(f"audio bundle has {len(view) - at} bytes after its {count} packets")
        return cls(sender, sent_us, tick, tuple(packets))


def _text(raw: memoryview, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"audio bundle: {what} is not UTF-8") from None


def _packet(view: memoryview, at: int, index: int) -> tuple[Packet, int]:
    where = f"audio bundle packet {index}"
    if at >= len(view):
        raise ValueError(f"{where}: truncated before its key")
    key_len = view[at]
    start = at + 1 + key_len
    if key_len == 0 or start + _FRAME.size > len(view):
        raise ValueError(f"{where}: truncated in its key or header")
    key = _text(view[at + 1 : start], f"packet {index} key")
    frame, flags, size = _FRAME.unpack_from(view, start)
    body = start + _FRAME.size
    if body + size > len(view):
        raise ValueError(f"{where} ({key}): payload of {size} bytes runs past the end")
    try:
        packet = Packet(key, frame, flags, bytes(view[body : body + size]))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return packet, body + size


def encode(sender: str, sent_us: int, tick: int, packets: list[bytes]) -> bytes:
    """A bundle from packets already serialised (``bytes(Packet)``)."""
    if len(packets) > MAX_PACKETS:
        raise ValueError(f"a bundle holds at most {MAX_PACKETS} packets, got {len(packets)}")
    node = sender.encode()
    head = _HEAD.pack(MAGIC, VERSION, len(node), sent_us, tick)
    return b"".join((head, node, _COUNT.pack(len(packets)), *packets))


class Bundler:
    """Collects one tick's packets for each receiving node. Sans-IO: the bus publishes what
    ``flush`` returns, one message per node, on that node's audio channel."""

    def __init__(self, sender: str) -> None:
        Bundle(sender, 0, 0, ())  # validates the id
        self.sender = sender
        self._routes: dict[str, frozenset[str]] = {}  # broadcast key → receiving nodes
        self._pending: dict[str, list[bytes]] = {}

    def route(self, key: str, nodes: Iterable[str]) -> None:
        """The nodes (other than this one) that have listeners of broadcast ``key``."""
        receivers = frozenset(nodes) - {self.sender}
        if receivers:
            self._routes[key] = receivers
        else:
            self._routes.pop(key, None)

    def routes(self) -> Mapping[str, frozenset[str]]:
        return self._routes

    def add(self, packet: Packet) -> int:
        """Queue a packet for every node that needs it; how many nodes that is."""
        receivers = self._routes.get(packet.key, ())
        if receivers:
            raw = bytes(packet)
            for node in receivers:
                self._pending.setdefault(node, []).append(raw)
        return len(receivers)

    def flush(self, sent_us: int, tick: int) -> dict[str, bytes]:
        """One bundle per node with packets this tick (nodes with none get nothing)."""
        pending, self._pending = self._pending, {}
        tick &= 0xFFFFFFFF
        return {node: encode(self.sender, sent_us, tick, raws) for node, raws in pending.items()}
