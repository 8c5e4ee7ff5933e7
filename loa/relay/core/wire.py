"""The speaker protocol's UDP control datagrams: hello, keepalive and ack (version 1).

Layout (docs/DESIGN.md, "Speaker protocol, on the wire"): magic ``LOA``, version, type,
8-byte session id, u32 counter, then the first 8 bytes of HMAC-SHA256(key, bytes 0..16)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

MAGIC = b"LOA"
VERSION = 1
SESSION_ID_LEN = 8
KEY_LEN = 32
MAC_LEN = 8
_BODY = struct.Struct("!3sBB8sI")
SIZE = _BODY.size + MAC_LEN  # 25


class DatagramType(IntEnum):
    HELLO = 1
    KEEPALIVE = 2
    ACK = 3


def looks_like_control(data: bytes) -> bool:
    """Cheap demux from RTP/RTCP on the shared port: RTP's first byte is 0x80..0xBF, ours 'L'."""
    return len(data) >= 3 and data[:3] == MAGIC


def mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_LEN]


@dataclass(frozen=True, slots=True)
class ControlDatagram:
    """One hello/keepalive/ack. ``parse`` checks the layout; ``verify`` checks the MAC."""

    type: DatagramType
    session: bytes
    counter: int
    tag: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) != SIZE:
            raise ValueError(f"control datagram must be {SIZE} bytes, got {len(data)}")
        magic, version, kind, session, counter = _BODY.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f"control datagram magic must be b'LOA', got {magic!r}")
        if version != VERSION:
            raise ValueError(f"control datagram version {version} is not supported (want 1)")
        try:
            dtype = DatagramType(kind)
        except ValueError:
            raise ValueError(f"control datagram type {kind} is unknown") from None
        return cls(dtype, session, counter, data[_BODY.size :])

    @classmethod
    def signed(cls, kind: DatagramType, session: bytes, counter: int, key: bytes) -> Self:
        if len(session) != SESSION_ID_LEN:
            raise ValueError(f"session id must be {SESSION_ID_LEN} bytes, got {len(session)}")
        if not 0 <= counter <= 0xFFFFFFFF:
            raise ValueError(f"counter must fit in 32 bits, got {counter}")
        body = _BODY.pack(MAGIC, VERSION, kind, session, counter)
        return cls(kind, session, counter, mac(key, body))

    def body(self) -> bytes:
        return _BODY.pack(MAGIC, VERSION, self.type, self.session, self.counter)

    def verify(self, key: bytes) -> bool:
        return hmac.compare_digest(self.tag, mac(key, self.body()))

    def __bytes__(self) -> bytes:
        return self.body() + self.tag
