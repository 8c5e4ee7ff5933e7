"""The speaker protocol's UDP control datagrams: hello, keepalive and ack (version 1).

Layout (docs/DESIGN.md, "Speaker protocol, on the wire"): magic ``LOA``, version, type,
8-byte session id, u32 counter, then the first 8 bytes of HMAC-SHA256(key, bytes 0..16).

Clock probes (synchronised playout) ride on the same datagrams as u64 *times* after the
MAC, which then covers them too (HMAC over bytes 0..16 and the times): a hello or keepalive
with one time (``t1``, the speaker's, opaque to the server) asks the ack to carry three,
``t1`` echoed, then ``t2`` and ``t3``, when the server received it and answered (64-bit NTP
times of its wall clock). 25, 33 or 49 bytes; a 25-byte datagram is exactly version 1's."""

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
_TIMES = {SIZE: 0, SIZE + 8: 1, SIZE + 24: 3}  # datagram size → number of u64 times
_TIME = struct.Struct("!Q")


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
    times: tuple[int, ...] = ()  # () plain; (t1,) a probe; (t1, t2, t3) a probe's answer

    @classmethod
    def parse(cls, data: bytes) -> Self:
        count = _TIMES.get(len(data))
        if count is None:
            raise ValueError(f"control datagram must be 25, 33 or 49 bytes, got {len(data)}")
        magic, version, kind, session, counter = _BODY.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f"control datagram magic must be b'LOA', got {magic!r}")
        if version != VERSION:
            raise ValueError(f"control datagram version {version} is not supported (want 1)")
        try:
            dtype = DatagramType(kind)
        except ValueError:
            raise ValueError(f"control datagram type {kind} is unknown") from None
        times = struct.unpack_from(f"!{count}Q", data, SIZE)
        return cls(dtype, session, counter, data[_BODY.size : SIZE], times)

    @classmethod
    def signed(
        cls,
        kind: DatagramType,
        session: bytes,
        counter: int,
        key: bytes,
        times: tuple[int, ...] = (),
    ) -> Self:
        if len(session) != SESSION_ID_LEN:
            raise ValueError(f"session id must be {SESSION_ID_LEN} bytes, got {len(session)}")
        if not 0 <= counter <= 0xFFFFFFFF:
            raise ValueError(f"counter must fit in 32 bits, got {counter}")
        if len(times) not in (0, 1, 3) or not all(0 <= t < 1 << 64 for t in times):
            raise ValueError(f"times must be 0, 1 or 3 unsigned 64-bit values, got {times}")
        body = _BODY.pack(MAGIC, VERSION, kind, session, counter)
        return cls(kind, session, counter, mac(key, body + _packed(times)), times)

    def body(self) -> bytes:
        return _BODY.pack(MAGIC, VERSION, self.type, self.session, self.counter)

    def verify(self, key: bytes) -> bool:
        return hmac.compare_digest(self.tag, mac(key, self.body() + _packed(self.times)))

    def __bytes__(self) -> bytes:
        return self.body() + self.tag + _packed(self.times)


def _packed(times: tuple[int, ...]) -> bytes:
    return b"".join(_TIME.pack(t) for t in times)
