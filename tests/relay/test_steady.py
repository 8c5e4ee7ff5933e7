"""Steady groups in the fan-out (``loa.relay.core.steady``): with them and without, every
receiver gets the very same bytes on real loopback sockets, through a random run of what
changes a stream (frames skipped, preemption, gaps, 20 → 40 ms, RED, NACKs and SR counts
read mid-stream, endpoints leaving and coming back, WebSocket fallback, NAT rebinding), and
the rewriters answer ``sent``, ``octets`` and ``locate`` alike."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest

from loa.config import EndpointSpec
from loa.relay.broadcast import Broadcast
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.router import Router
from loa.relay.core.session import Session, Transport, Watch
from loa.relay.core.steady import SteadyGroup
from loa.relay.core.variants import PLAIN, Variant
from loa.relay.endpoint import Endpoint
from loa.relay.fanout import MIN_GROUP, FanOut, _Member
from loa.relay.metrics import Metrics
from loa.relay.sendmmsg import NAME_SIZE, Batch
from tests.relay.test_sendmmsg import needs_sendmmsg, receivers

N = 3 * MIN_GROUP  # endpoints: enough for groups, and for some to stay out of them
VARIANTS = (PLAIN, Variant(2), Variant(1, redundancy=True), Variant(2, redundancy=True))


@dataclass
class _Broadcast:  # what the fan-out reads of a broadcast
    id: str
    key: int


class _Router:
    """Who hears which broadcast; like ``Router.listeners``, a new tuple on every change."""

    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {"a": [], "b": []}
        self._cache: dict[str, tuple[str, ...]] = {}

    def listeners(self, broadcast_id: str) -> tuple[str, ...]:
        cached = self._cache.get(broadcast_id)
        if cached is None:
            cached = self._cache[broadcast_id] = tuple(self.held[broadcast_id])
        return cached

    def move(self, ep_id: str, to: str | None) -> None:
        for bc_id, held in self.held.items():
            if ep_id in held:
                held.remove(ep_id)
                self._cache.pop(bc_id, None)
        if to is not None:
            self.held[to].append(ep_id)
            self._cache.pop(to, None)


class _Peer:
    def __init__(self) -> None:
        self.audio: list[bytes] = []

    def send_audio(self, packet: bytes) -> None:
        self.audio.append(packet)


class World:
    """A fan-out, its endpoints (each with a session and two UDP receivers: its address and
    the one a NAT rebinds it to) and what they received."""

    def __init__(self, steady_groups: bool) -> None:
        self.router = _Router()
        self.endpoints: dict[str, Endpoint] = {}
        self.fanout = FanOut(
            self.endpoints, cast(Router, self.router), Metrics(), steady_groups=steady_groups
        )
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.tx.setblocking(False)
        self.fanout.batch = Batch(self.tx)
        self.rx = receivers(2 * N)
        for r in self.rx:
            r.setblocking(False)
        self.got: dict[int, list[bytes]] = {i: [] for i in range(2 * N)}
        self.leased_max = 0
        for i in range(N):
            ep_id = f"e{i}"
            ep = Endpoint(EndpointSpec(ep_id, ep_id, "z"), None, 80, 100)
            ep.session = Session(ep_id, bytes(16), bytes(16), Rewriter(i + 1, 100 * i, 7 * i), 0)
            ep.session.addr = ep.session.destination = self.rx[2 * i].getsockname()
            ep.session.transport = Transport.UDP
            ep.peer = cast(Any, _Peer())
            self.endpoints[ep_id] = ep
            self.router.move(ep_id, "a")

    def close(self) -> None:
        self.tx.close()
        for r in self.rx:
            r.close()

    def rewriter(self, i: int) -> Rewriter:
        session = self.endpoints[f"e{i}"].session
        assert session is not None
        return session.rewriter

    def drain(self) -> None:
        for i, r in enumerate(self.rx):
            while True:
                try:
                    self.got[i].append(r.recv(2048))
                except BlockingIOError:
                    break
        leased = sum(self.rewriter(i)._lease is not None for i in range(N))
        self.leased_max = max(self.leased_max, leased)

    def received(self) -> tuple[dict[int, list[bytes]], list[list[bytes]]]:
        self.drain()
        ws = [cast(_Peer, self.endpoints[f"e{i}"].peer).audio for i in range(N)]
        return self.got, ws


@pytest.fixture
def worlds() -> Iterator[tuple[World, World]]:
    on, off = World(True), World(False)
    yield on, off
    on.close()
    off.close()


def _step(
    rng: random.Random, world: World, frame: dict[str, int], payloads: list[bytes], calm: bool
) -> Any:
    """One random event, the same in each world (``rng`` is reseeded per world); what the
    rewriters answered, to compare. ``calm``: only frames and reads (groups last long)."""
    i = rng.randrange(N)
    ep = world.endpoints[f"e{i}"]
    session = ep.session
    assert session is not None
    event = rng.choices(
        ["frames", "skip", "move", "leave", "gap", "variant", "nack", "counts", "ws", "nat"],
        weights=[80, 0, 0, 0, 0, 0, 4, 4, 0, 0] if calm else [60, 3, 4, 2, 2, 3, 4, 4, 2, 2],
    )[0]
    answer: Any = None
    if event in ("frames", "skip"):
        for bc_id, key in (("a", 1), ("b", 2)):
            frame[bc_id] += 2 if event == "skip" and rng.random() < 0.5 else 1
            packet = payloads[frame[bc_id] % len(payloads)]
            world.fanout.frame(cast(Broadcast, _Broadcast(bc_id, key)), packet, frame[bc_id])
        world.drain()
    elif event == "move":
        world.router.move(ep.id, rng.choice("ab"))
    elif event == "leave":
        world.router.move(ep.id, None)
    elif event == "gap":
        session.rewriter.gap(rng.randrange(1, 4))
    elif event == "variant":
        ep.variant, ep.rejoining = rng.choice(VARIANTS), True
    elif event == "nack":
        rw = session.rewriter
        last = rw.last_sequence
        if last is not None:
            answer = rw.locate((last - rng.randrange(40)) & 0xFFFF)
    elif event == "counts":
        answer = (session.rewriter.sent, session.rewriter.octets, session.rewriter.next_frame)
    elif event == "ws":
        on_ws = session.transport is Transport.WS
        session.transport = Transport.UDP if on_ws else Transport.WS
        session.destination = session.addr if on_ws else None
    elif event == "nat":
        other = world.rx[2 * i + (session.addr == world.rx[2 * i].getsockname())]
        session.addr = other.getsockname()
        if session.transport is Transport.UDP:
            session.destination = session.addr
    return event, answer


@needs_sendmmsg
@pytest.mark.parametrize("seed", range(4))
def test_groups_on_or_off_every_receiver_gets_the_same_bytes(
    worlds: tuple[World, World], seed: int
) -> None:
    payloads = [Rewriter.source_packet(random.Random(n).randbytes(20 + n)) for n in range(7)]
    answers = []
    for world in worlds:
        rng = random.Random(seed)
        frame = {"a": 0, "b": 1000}
        calm = [n // 100 % 2 == 1 for n in range(2000)]  # 100 steps calm, 100 busy…
        answers.append([_step(rng, world, frame, payloads, c) for c in calm])
    on, off = worlds
    assert answers[0] == answers[1]
    assert sum(a is not None for _, a in answers[0]) > 50  # NACKs and counts were read
    assert on.received() == off.received()
    assert sum(map(len, on.got.values())) > 10 * N  # it did send
    for i in range(N):
        a, b = on.rewriter(i), off.rewriter(i)
        assert (a.sent, a.octets, a.last_sequence, a.last_timestamp, a.next_frame) == (
            b.sent,
            b.octets,
            b.last_sequence,
            b.last_timestamp,
            b.next_frame,
        )
        last = b.last_sequence
        if last is not None:
            back = [(last - k) & 0xFFFF for k in range(60)]
            assert [a.locate(s) for s in back] == [b.locate(s) for s in back]
    assert on.leased_max >= MIN_GROUP  # the groups were used
    assert off.leased_max == 0


def _steady(n: int, frame: int = 5) -> list[Rewriter]:
    rewriters = [Rewriter(i + 1, (0xFFFF - i) & 0xFFFF, 0xFFFF_FFFF - 500 * i) for i in range(n)]
    packet = Rewriter.source_packet(b"x" * 30)
    for rw in rewriters:
        rw.rewrite(packet, 9, frame)
    return rewriters


def test_a_nack_or_a_report_mid_group_sees_the_counts_the_group_sent() -> None:
    """A NACK (``locate``) and an RTCP SR (``sent``, ``octets``) read a leased rewriter:
    they see every packet the group advanced it by, wrapped sequence and timestamp too."""
    packet = Rewriter.source_packet(b"x" * 30)
    leased, reference = _steady(3), _steady(3)
    group = SteadyGroup(leased, 9, 5, 1, packet[0], packet[1])
    for frame in range(6, 16):
        assert group.continues(packet, 9, frame, 1)
        group.advance(packet, frame)
        last = [rw.rewrite(packet, 9, frame)[:12] for rw in reference]
        assert [bytes(group.raw[12 * i : 12 * (i + 1)]) for i in range(3)] == last
    for a, b in zip(leased, reference, strict=True):
        assert a._lease is group
        assert (a.sent, a.octets, a.next_frame) == (b.sent, b.octets, 16) == (11, 330, 16)
        assert [a.locate((b.last_sequence or 0) - k & 0xFFFF) for k in range(12)] == [
            b.locate((b.last_sequence or 0) - k & 0xFFFF) for k in range(12)
        ]
        assert a._lease is group  # reading settles, it does not release
    assert group.continues(packet, 9, 16, 1)
    leased[1].gap(1)  # a write releases it: the group advances no more
    assert leased[1]._lease is None and group.departed == 1
    assert not group.continues(packet, 9, 16, 1)
    group.dissolve()
    assert all(rw._lease is None for rw in leased)
    assert [rw.rewrite(packet, 9, 16) for rw in leased] == [
        rw.rewrite(packet, 9, 16) for rw in [reference[0], _gapped(reference[1]), reference[2]]
    ]


def _gapped(rw: Rewriter) -> Rewriter:
    rw.gap(1)
    return rw


def test_a_group_refuses_a_rewriter_that_is_not_steady_on_its_stream() -> None:
    packet = Rewriter.source_packet(b"x" * 30)
    rewriters = _steady(2)
    rewriters[1].gap(2)
    with pytest.raises(ValueError, match="is not steady on stream 9"):
        SteadyGroup(rewriters, 9, 5, 1, packet[0], packet[1])


def test_a_member_is_checked_again_after_any_change_it_must_survive() -> None:
    """A group's members are checked one by one only after something they must keep
    changed (``Watch``): then each change of an endpoint's session, variant or rejoining,
    or of a session's UDP destination, ends the group; a change elsewhere does not."""
    packet = Rewriter.source_packet(bytes(80))
    endpoints, sessions, addrs = [], [], []
    for i in range(MIN_GROUP):
        rw = Rewriter(i + 1, i, i)
        rw.header(packet, 7, 0, 1)
        ep = Endpoint(EndpointSpec(f"s{i}", f"s{i}", "z"), None, 80, 100)
        ep.session = Session(f"s{i}", bytes(16), bytes(16), rw, 0)
        ep.session.destination = ("127.0.0.1", 4000 + i)
        endpoints.append(ep)
        sessions.append(ep.session)
        addrs.append(ep.session.destination)
    rewriters = [s.rewriter for s in sessions]

    def member() -> _Member:
        group = SteadyGroup(rewriters, 7, 0, 1, packet[0], packet[1])
        return _Member(group, PLAIN, [e.id for e in endpoints], endpoints, sessions, addrs,
                       np.zeros(MIN_GROUP * NAME_SIZE, np.uint8))  # fmt: skip

    m = member()
    assert m.holds()
    endpoints[0].heard_since = 5.0  # not something a group keeps
    assert m.holds() and m.seen == Watch.changes
    ep, session = endpoints[3], sessions[3]
    for change, undo in [
        (lambda: setattr(ep, "variant", Variant(2)), lambda: setattr(ep, "variant", PLAIN)),
        (lambda: setattr(ep, "rejoining", True), lambda: setattr(ep, "rejoining", False)),
        (lambda: setattr(ep, "session", None), lambda: setattr(ep, "session", session)),
        (
            lambda: setattr(session, "destination", ("127.0.0.1", 9)),
            lambda: setattr(session, "destination", addrs[3]),
        ),
    ]:
        seen = Watch.changes
        change()
        assert Watch.changes > seen and not m.holds()
        undo()
        assert m.holds()  # all as it was: it goes on (checked once, then trusted again)
        assert m.seen == Watch.changes
        m.group.dissolve()
        m = member()
