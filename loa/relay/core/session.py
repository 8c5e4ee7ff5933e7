"""Speaker sessions, server side: UDP hello/keepalive/ack, address binding, transport, RTCP demux.

Sans-IO. The WebSocket adapter opens and closes sessions (it supplies the random session
id, key and SSRC); the UDP adapter hands every datagram on the relay port to
``SessionTable.on_datagram`` and acts on the result; the fan-out reads
``session.transport`` and ``session.destination`` and rewrites with ``session.rewriter``.

Transport, per session:

- ``NONE``: control channel only; no UDP path proven yet, or it timed out;
- ``UDP``: an accepted hello/keepalive bound an address; RTP goes there;
- ``WS``: the speaker asked for audio on its WebSocket. Hellos are still accepted and bind
  the address (the speaker keeps probing UDP and is acked), but audio stays on the
  WebSocket until the speaker asks for ``udp`` again.

A hello or keepalive that carries the speaker's time ``t1`` (a clock probe, see
``loa.relay.core.wire``) is acked with ``t1`` echoed and the server's wall-clock time of
its arrival as both ``t2`` and ``t3`` (the caller passes it as ``unix_s``; the reply leaves
at once, and the UDP adapter's own latency counts as path delay, which the speaker's
estimator is built to ride out). Without ``unix_s`` the ack is plain.

Bad datagrams are dropped and counted in ``SessionTable.drops``; nothing here raises on
network input.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, get_args

from loa.codecs.rtcp import FMT_GENERIC_NACK, RTCP_RTPFB, GenericNack, parse_rtcp
from loa.relay.core.reception import ntp_timestamp
from loa.relay.core.repair import Repairer
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.wire import (
    KEY_LEN,
    SESSION_ID_LEN,
    ControlDatagram,
    DatagramType,
    looks_like_control,
)

Addr = tuple[str, int]
DropReason = Literal[
    "malformed",
    "unknown_session",
    "bad_mac",
    "replay",
    "unexpected_type",
    "rtp_from_peer",
    "unknown_address",
]
DROP_REASONS: Final[tuple[DropReason, ...]] = get_args(DropReason)

_RTCP_HEADER: Final = struct.Struct("!BBH")  # V/P/count, packet type, length in words - 1
_REPORT_BLOCK: Final = struct.Struct("!IIIIII")  # SSRC, lost word, highest, jitter, LSR, DLSR
_RTCP_SR: Final = 200
_RTCP_RR: Final = 201
_SR_INFO_LEN: Final = 20  # sender info after the SR's own SSRC


class Transport(Enum):
    NONE = "none"
    UDP = "udp"
    WS = "ws"


class Watch:
    """How many times anything a steady group's members must keep has changed: a session's
    UDP destination, an endpoint's session, variant or rejoining (``Endpoint``). The fan-out
    checks its groups member by member only after a change (``loa.relay.fanout``)."""

    changes = 0


class Session:
    """One speaker's session: driven by its WebSocket (open, transport, close) and its UDP."""

    __slots__ = (
        "_wants_ws",
        "acks",
        "addr",
        "closed",
        "counter",
        "cumulative_lost",
        "destination",
        "endpoint_id",
        "fraction_lost",
        "highest_sequence",
        "id",
        "jitter",
        "key",
        "last_report_at",
        "last_seen",
        "nacks",
        "opened_at",
        "receiver_reports",
        "red",
        "repairer",
        "rewriter",
        "rtcp_packets",
        "transport",
    )

    def __init__(
        self, endpoint_id: str, session_id: bytes, key: bytes, rewriter: Rewriter, now: float
    ) -> None:
        self.endpoint_id: Final = endpoint_id
        self.id: Final = session_id
        self.key: Final = key
        self.rewriter: Final = rewriter
        self.opened_at: Final = now
        self.last_seen: float | None = None  # time of the last accepted hello/keepalive
        self.counter = -1  # last accepted counter; the first datagram may use 0
        self.addr: Addr | None = None  # bound UDP address, also while on WS
        self.transport = Transport.NONE
        self.red = False  # the speaker takes RFC 2198 RED packets (its hello said so)
        self.destination: Addr | None = None  # where RTP goes now: addr when on UDP
        self.closed = False
        self._wants_ws = False
        self.acks = 0  # accepted hellos/keepalives, each answered with an ack
        self.rtcp_packets = 0
        self.receiver_reports = 0  # RR packets; SRs with report blocks are not counted
        self.nacks = 0  # generic NACKs about our stream
        self.repairer = Repairer()
        # Latest report block about our SSRC (RFC 3550 §6.4.1), None until one arrives.
        self.fraction_lost: int | None = None  # lost/expected × 256 since the last report
        self.cumulative_lost: int | None = None
        self.highest_sequence: int | None = None  # extended highest sequence received
        self.jitter: int | None = None  # timestamp units (1/48000 s)
        self.last_report_at: float | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name == "destination":
            Watch.changes += 1
        object.__setattr__(self, name, value)

    @property
    def hex_id(self) -> str:
        return self.id.hex()

    @property
    def packets_sent(self) -> int:
        return self.rewriter.sent

    @property
    def bytes_sent(self) -> int:
        """RTP bytes handed to the transport, headers included."""
        return self.rewriter.octets + 12 * self.rewriter.sent

    @property
    def jitter_ms(self) -> float | None:
        return None if self.jitter is None else self.jitter / 48.0

    def _refresh(self) -> None:
        if self._wants_ws:
            self.transport = Transport.WS
        elif self.addr is not None:
            self.transport = Transport.UDP
        else:
            self.transport = Transport.NONE
        self.destination = self.addr if self.transport is Transport.UDP else None

    def __repr__(self) -> str:
        return (
            f"Session({self.hex_id} ep={self.endpoint_id} {self.transport.value} "
            f"dest={self.destination})"
        )


@dataclass(frozen=True, slots=True)
class Opened:
    """What ``open`` did: the new session, and the one it replaced (close its WebSocket)."""

    session: Session
    replaced: Session | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A hello/keepalive passed: send ``reply`` (the signed ack) back to the datagram's source."""

    session: Session
    reply: bytes
    addr_changed: bool


@dataclass(frozen=True, slots=True)
class RtcpReceived:
    """RTCP from a session's bound address; the session's report fields are already updated.
    ``lost``: the sequence numbers its generic NACKs (if any) ask to be sent again;
    ``bad_nacks``: NACKs in it that were malformed or about another stream (ignored)."""

    session: Session
    data: bytes
    lost: tuple[int, ...] = ()
    bad_nacks: int = 0


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason


Result = Accepted | RtcpReceived | Dropped
_DROPPED: Final = {reason: Dropped(reason) for reason in DROP_REASONS}


class SessionTable:
    """All speaker sessions, driven by the WebSocket adapter, the UDP socket and a timer."""

    def __init__(self, *, keepalive_s: float = 10.0, session_timeout_s: float = 35.0) -> None:
        if not 0 < keepalive_s < session_timeout_s:
            raise ValueError(
                "session_timeout_s must exceed keepalive_s > 0, "
                f"got keepalive_s={keepalive_s} session_timeout_s={session_timeout_s}"
            )
        self.keepalive_s: Final = keepalive_s
        self.session_timeout_s: Final = session_timeout_s
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.takeovers = 0  # an address moved from one session to another
        self.malformed_nacks = 0  # NACKs that did not parse or named another stream: ignored
        self._by_id: dict[bytes, Session] = {}
        self._by_endpoint: dict[str, Session] = {}
        self._by_addr: dict[Addr, Session] = {}

    # --- the WebSocket side ----------------------------------------------------------

    def open(
        self,
        endpoint_id: str,
        session_id: bytes,
        key: bytes,
        ssrc: int,
        now: float,
        *,
        initial_sequence: int = 0,
        initial_timestamp: int = 0,
    ) -> Opened:
        """A new session for ``endpoint_id``, replacing (and closing) any it already had."""
        if len(session_id) != SESSION_ID_LEN:
            raise ValueError(f"session id must be {SESSION_ID_LEN} bytes, got {len(session_id)}")
        if len(key) != KEY_LEN:
            raise ValueError(f"session key must be {KEY_LEN} bytes, got {len(key)}")
        if session_id in self._by_id:
            raise ValueError(f"session id {session_id.hex()} is already open")
        rewriter = Rewriter(ssrc, initial_sequence, initial_timestamp)
        replaced = self._by_endpoint.get(endpoint_id)
        if replaced is not None:
            self._remove(replaced)
        session = Session(endpoint_id, session_id, key, rewriter, now)
        self._by_id[session_id] = session
        self._by_endpoint[endpoint_id] = session
        return Opened(session, replaced)

    def close(self, session_id: bytes) -> Session | None:
        """Forget a session (its WebSocket ended); None if it was already gone or replaced."""
        session = self._by_id.get(session_id)
        if session is not None:
            self._remove(session)
        return session

    def set_transport(self, session_id: bytes, mode: str) -> Session:
        """The speaker asked for audio on ``"ws"`` or back on ``"udp"``."""
        if mode not in ("ws", "udp"):
            raise ValueError(f"transport mode must be 'ws' or 'udp', got {mode!r}")
        session = self._by_id.get(session_id)
        if session is None:
            raise KeyError(f"no open session {session_id.hex()}")
        session._wants_ws = mode == "ws"
        session._refresh()
        return session

    # --- the timer -------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``expire`` next has something to do: the earliest moment a bound address
        falls silent for ``session_timeout_s`` (None while no address is bound). O(n)."""
        seen = [s.last_seen for s in self._by_addr.values() if s.last_seen is not None]
        return min(seen) + self.session_timeout_s if seen else None

    def expire(self, now: float) -> list[Session]:
        """Unbind addresses silent for ``session_timeout_s``; return sessions that left UDP."""
        deadline = now - self.session_timeout_s
        stale = [
            s for s in self._by_addr.values() if s.last_seen is not None and s.last_seen <= deadline
        ]
        left_udp = []
        for session in stale:
            was_udp = session.transport is Transport.UDP
            self._unbind(session)
            if was_udp:
                left_udp.append(session)
        return left_udp

    # --- the UDP side ----------------------------------------------------------------

    def on_datagram(
        self, data: bytes, addr: Addr, now: float, unix_s: float | None = None
    ) -> Result:
        """Classify one datagram from the relay port; never raises on what a peer sends.
        ``unix_s``: wall-clock time of its arrival, for the answer to a clock probe."""
        if looks_like_control(data):
            return self._on_control(data, addr, now, unix_s)
        if len(data) < 2 or data[0] >> 6 != 2:
            return self._drop("malformed")
        if 192 <= data[1] <= 223:  # RFC 5761 §4: RTCP packet types 192..223 (SR..XR)
            return self._on_rtcp(data, addr, now)
        if len(data) < 12:
            return self._drop("malformed")
        return self._drop("rtp_from_peer")

    def _on_control(self, data: bytes, addr: Addr, now: float, unix_s: float | None) -> Result:
        try:
            dgram = ControlDatagram.parse(data)
        except ValueError:
            return self._drop("malformed")
        if dgram.type is DatagramType.ACK or len(dgram.times) > 1:
            return self._drop("unexpected_type")
        session = self._by_id.get(dgram.session)
        if session is None:
            return self._drop("unknown_session")
        if not dgram.verify(session.key):
            return self._drop("bad_mac")
        if dgram.counter <= session.counter:
            return self._drop("replay")
        session.counter = dgram.counter
        session.last_seen = now
        session.acks += 1
        changed = session.addr != addr
        if changed:
            self._bind(session, addr)
        times: tuple[int, ...] = ()
        if dgram.times and unix_s is not None:
            now_ntp = ntp_timestamp(unix_s)
            times = (dgram.times[0], now_ntp, now_ntp)
        ack = ControlDatagram.signed(
            DatagramType.ACK, session.id, dgram.counter, session.key, times
        )
        return Accepted(session, bytes(ack), changed)

    def _on_rtcp(self, data: bytes, addr: Addr, now: float) -> Result:
        session = self._by_addr.get(addr)
        if session is None:
            return self._drop("unknown_address")
        lost: list[int] = []
        found = _read_reports(session, data, now, lost)
        if found is None:
            return self._drop("malformed")
        self.malformed_nacks += found
        session.rtcp_packets += 1
        return RtcpReceived(session, data, tuple(lost), found)

    def _drop(self, reason: DropReason) -> Dropped:
        self.drops[reason] += 1
        return _DROPPED[reason]

    # --- bookkeeping -----------------------------------------------------------------

    def _bind(self, session: Session, addr: Addr) -> None:
        if session.addr is not None:
            del self._by_addr[session.addr]
        other = self._by_addr.get(addr)
        if other is not None:
            # The NAT gave this mapping to another speaker; the stale binding must go.
            self.takeovers += 1
            self._unbind(other)
        session.addr = addr
        self._by_addr[addr] = session
        session._refresh()

    def _unbind(self, session: Session) -> None:
        if session.addr is not None:
            del self._by_addr[session.addr]
            session.addr = None
            session._refresh()

    def _remove(self, session: Session) -> None:
        self._unbind(session)
        del self._by_id[session.id]
        if self._by_endpoint.get(session.endpoint_id) is session:
            del self._by_endpoint[session.endpoint_id]
        session.closed = True

    # --- lookups ---------------------------------------------------------------------

    def get(self, session_id: bytes) -> Session | None:
        return self._by_id.get(session_id)

    def for_endpoint(self, endpoint_id: str) -> Session | None:
        return self._by_endpoint.get(endpoint_id)

    def for_address(self, addr: Addr) -> Session | None:
        return self._by_addr.get(addr)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))


def _read_reports(session: Session, data: bytes, now: float, lost: list[int]) -> int | None:
    """Walk a compound RTCP packet (RFC 3550 A.2 checks); keep the block about our SSRC and
    append what generic NACKs about our stream ask for to ``lost``.

    None when the lengths do not add up, a version is not 2 or an SR/RR claims more report
    blocks than it holds: the datagram is dropped. Otherwise the number of NACKs ignored as
    malformed (bad FCI, or about another SSRC): the rest of the datagram still counts.
    """
    ours = session.rewriter.ssrc
    pos, n = 0, len(data)
    found: tuple[int, ...] | None = None
    receiver_reports = bad_nacks = 0
    while pos < n:
        if n - pos < 4:
            return None
        first, ptype, words = _RTCP_HEADER.unpack_from(data, pos)
        end = pos + 4 * (words + 1)
        if first >> 6 != 2 or end > n:
            return None
        if ptype == RTCP_RTPFB and first & 0x1F == FMT_GENERIC_NACK:
            nack = _nack(data[pos:end])
            if nack is None or nack.media_ssrc != ours:
                bad_nacks += 1
            else:
                session.nacks += 1
                lost.extend(nack.lost)
        elif ptype in (_RTCP_SR, _RTCP_RR):
            receiver_reports += ptype == _RTCP_RR
            blocks = pos + 8 + (_SR_INFO_LEN if ptype == _RTCP_SR else 0)
            stop = blocks + (first & 0x1F) * _REPORT_BLOCK.size
            if stop > end:
                return None
            for at in range(blocks, stop, _REPORT_BLOCK.size):
                block = _REPORT_BLOCK.unpack_from(data, at)
                if block[0] == ours:
                    found = block
        pos = end
    session.receiver_reports += receiver_reports
    if found is not None:
        _, lost_word, highest, jitter, _lsr, _dlsr = found
        lost24 = lost_word & 0xFFFFFF
        session.fraction_lost = lost_word >> 24
        session.cumulative_lost = lost24 - ((lost24 & 0x800000) << 1)  # 24-bit signed
        session.highest_sequence = highest
        session.jitter = jitter
        session.last_report_at = now
    return bad_nacks


def _nack(data: bytes) -> GenericNack | None:
    try:
        (packet,) = parse_rtcp(data)
    except ValueError:
        return None
    return packet if isinstance(packet, GenericNack) else None
