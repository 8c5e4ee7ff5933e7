"""An impairing UDP link on loopback: what a 4G network does to a pole's packets, on demand.

Where the kernel has no ``netem`` (``tc qdisc add … netem`` answers "unknown qdisc" on some
of these machines) the link is simulated here, between speakers and a relay on one host.
Speakers are told (``relay.public_udp_port``) to send to the link's front port; for each
speaker address the link opens its own socket towards the relay, so the relay sees one
"NAT mapping" per speaker, and forwards what the relay sends back out of the front port.

Each direction has its ``Impairment``: random loss, Gilbert–Elliott bursts, a delay with
uniform jitter (which reorders, as netem's does), extra reordering. ``blackhole`` drops
everything both ways (a dead path); ``rebind()`` gives every speaker a new mapping (a NAT
rebinding: the relay sees a new source port, and what it still sends to the old one is
lost). Counters say what was forwarded and dropped. Runs in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field

Addr = tuple[str, int]


@dataclass
class Impairment:
    """One direction's impairments; change the fields at any time."""

    loss: float = 0.0  # independent loss probability
    # Gilbert–Elliott: P(good→bad), P(bad→good) per packet, loss probability in the bad state
    burst: tuple[float, float, float] | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # each packet's delay is uniform in delay ± jitter
    reorder: float = 0.0  # probability that a packet is held back reorder_ms more
    reorder_ms: float = 25.0
    _bad: bool = field(default=False, repr=False)

    def fate(self, rng: random.Random) -> float | None:
        """None: the packet is lost; else its delay in seconds."""
        if self.burst is not None:
            p, r, bad_loss = self.burst
            self._bad = (rng.random() >= r) if self._bad else (rng.random() < p)
            if self._bad and rng.random() < bad_loss:
                return None
        if self.loss and rng.random() < self.loss:
            return None
        delay = self.delay_ms
        if self.jitter_ms:
            delay += rng.uniform(-self.jitter_ms, self.jitter_ms)
        if self.reorder and rng.random() < self.reorder:
            delay += self.reorder_ms
        return max(0.0, delay) / 1000.0


@dataclass
class Counts:
    forwarded: int = 0
    dropped: int = 0
    bytes: int = 0  # what entered the link this way, dropped or not (what a pole pays for)


class ImpairingLink:
    """Owned by a test or the bench: ``start()``, then impair at will, then ``close()``."""

    def __init__(
        self,
        *,
        down: Impairment | None = None,
        up: Impairment | None = None,
        seed: int = 1,
        host: str = "127.0.0.1",
    ) -> None:
        self.down = down or Impairment()  # relay → speaker
        self.up = up or Impairment()  # speaker → relay
        self.blackhole = False
        self.host = host
        self.upstream: Addr | None = None  # the relay's UDP address
        self.counts = {"down": Counts(), "up": Counts()}
        self.rebinds = 0
        self._rng = random.Random(seed)
        self._front: socket.socket | None = None
        self._backs: dict[Addr, socket.socket] = {}  # speaker address → its mapping
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def port(self) -> int:
        assert self._front is not None
        return int(self._front.getsockname()[1])

    def bind(self) -> int:
        """Bind the front port (before the relay starts: it must advertise it); returns it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, 0))
        sock.setblocking(False)
        self._front = sock
        return self.port

    def start(self, upstream: Addr) -> None:
        """Start forwarding between the front port and the relay at ``upstream``."""
        if self._front is None:
            self.bind()
        assert self._front is not None
        self.upstream = upstream
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._front.fileno(), self._read_front)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for sock in self._backs.values():
            self._drop_back(sock)
        self._backs.clear()
        if self._front is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._front.fileno())
            self._front.close()
            self._front = None

    def rebind(self) -> None:
        """Every speaker gets a new mapping: new source port towards the relay; the old
        mapping is gone, so what the relay sends to it is lost."""
        old, self._backs = self._backs, {}
        for sock in old.values():
            self._drop_back(sock)
        self.rebinds += 1

    def mappings(self) -> list[Addr]:
        """The addresses the relay sees the speakers at now."""
        return [s.getsockname()[:2] for s in self._backs.values()]

    # --- forwarding ----------------------------------------------------------------------

    def _drop_back(self, sock: socket.socket) -> None:
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def _back(self, speaker: Addr) -> socket.socket:
        sock = self._backs.get(speaker)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.host, 0))
            sock.setblocking(False)
            self._backs[speaker] = sock
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._read_back, sock, speaker)
        return sock

    def _read_front(self) -> None:
        assert self._front is not None
        for _ in range(64):
            try:
                data, addr = self._front.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send: ignore
            back = self._back(addr[:2])
            assert self.upstream is not None
            self._pass("up", self.up, data, back, self.upstream)

    def _read_back(self, sock: socket.socket, speaker: Addr) -> None:
        for _ in range(64):
            try:
                data, _ = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if self._front is not None:
                self._pass("down", self.down, data, self._front, speaker)

    def _pass(self, way: str, imp: Impairment, data: bytes, sock: socket.socket, to: Addr) -> None:
        counts = self.counts[way]
        counts.bytes += len(data) + 28  # with the IPv4 and UDP headers
        delay = None if self.blackhole else imp.fate(self._rng)
        if delay is None:
            counts.dropped += 1
            return
        counts.forwarded += 1
        if delay <= 0:
            _send(sock, data, to)
            return
        assert self._loop is not None
        timer: asyncio.TimerHandle

        def later() -> None:
            self._timers.discard(timer)
            if sock.fileno() >= 0:  # a rebinding may have closed the mapping meanwhile
                _send(sock, data, to)

        timer = self._loop.call_later(delay, later)
        self._timers.add(timer)


def _send(sock: socket.socket, data: bytes, to: Addr) -> None:
    try:
        sock.sendto(data, to)
    except OSError:
        pass  # a full buffer or a closed peer: the link loses it, as a network would
