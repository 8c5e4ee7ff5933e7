"""The node with a fake UDP transport: chime, failure, pause vs live, listeners, and a timer
armed only for the core's deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.opus import OpusDecoder
from loa.codecs.pcm import dominant_frequency
from loa.config import with_changes
from loa.errors import Conflict, NotFound
from loa.relay.broadcast import State
from loa.relay.core.control import Message, Playing, Transport
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.wire import ControlDatagram, DatagramType
from loa.relay.node import Node
from loa.relay.sendmmsg import Batch
from loa.streamer.base import Frame
from loa.streamer.playlist import Playlist
from loa.streamer.tone import ChimeSource, ToneSource
from tests.conftest import tree_config


class FakeTransport:
    """Captures what the node sends, per destination."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], list[bytes]] = defaultdict(list)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent[addr].append(data)

    family = socket.AF_INET  # what loa.relay.sendmmsg.Batch asks of a socket

    def fileno(self) -> int:
        return -1

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5004)

    def close(self) -> None:
        self.sent.clear()


@pytest.fixture
async def node(tmp_path: Path) -> Any:
    config = tree_config(tmp_path, communes=2, per_commune=0, rtp=("10.9.0.1:1", "10.9.0.2:2"))
    node = Node(config)
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    yield node
    await node.close()


def decode(packets: list[bytes]) -> np.ndarray:
    decoder = OpusDecoder()
    return np.concatenate([decoder.decode(p[12:]) for p in packets])


def spec(bc_id: str, priority: Priority, **kw: Any) -> BroadcastSpec:
    kw.setdefault("target_zones", frozenset({"p"}))
    return BroadcastSpec(id=bc_id, priority=priority, **kw)


async def run_until(node: Node, bc_id: str, timeout: float = 10.0) -> None:
    task = node._tasks.get(bc_id)
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    await asyncio.sleep(0)


@pytest.mark.slow
async def test_emergency_chime_then_message(node: Node) -> None:
    source = Playlist([ChimeSource(), ToneSource(700, duration_s=0.6)])
    await node.start_broadcast(
        spec("em", Priority.EMERGENCY, resumable=True),
        source,
        what="em",
        source_kind="tts",
        created_by="t",
    )
    await run_until(node, "em")
    pcm = decode(node.transport.sent[("10.9.0.1", 1)])  # type: ignore[union-attr]
    assert pcm.size == pytest.approx(48000 * 2.1, abs=960 * 2)
    notes = [dominant_frequency(pcm[i : i + 9600]) for i in (7200, 31200, 55200)]
    assert notes == pytest.approx([523.25, 659.25, 783.99], rel=0.01)
    assert dominant_frequency(pcm[-19200:]) == pytest.approx(700, rel=0.01)
    assert node.history[-1].state == "finished"


class Broken:
    name = "broken"
    live = False
    resumable = True

    def __init__(self) -> None:
        self.n = 0
        self.closed = False

    async def read(self) -> Frame | None:
        self.n += 1
        if self.n > 5:
            raise OSError("disk on fire")
        return Frame(np.zeros(960, np.int16), (self.n - 1) * 960)

    async def aclose(self) -> None:
        self.closed = True


async def test_a_broken_source_fails_its_broadcast_only(node: Node) -> None:
    broken = Broken()
    await node.start_broadcast(
        spec("bad", Priority.LIVE, resumable=True),
        broken,
        what="x",
        source_kind="media",
        created_by="t",
    )
    await run_until(node, "bad")
    entry = node.history[-1]
    assert (entry.state, entry.reason) == ("failed", "disk on fire")
    assert broken.closed
    assert "bad" not in node.broadcasts
    assert node.router.holder("rtp0") is None


class LiveTone(ToneSource):
    """Stands for a microphone: a frame every 20 ms of real time, never paced by the relay."""

    live = True

    def __init__(self) -> None:
        super().__init__(500)

    async def read(self) -> Frame | None:
        await asyncio.sleep(0.02)
        return await super().read()


class Stalling(LiveTone):
    """A live source that sends ``frames`` frames, then nothing (and does not end): a relayed
    copy whose encoding node died, a publisher whose network froze."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.left = frames

    async def read(self) -> Frame | None:
        if self.left == 0:
            await asyncio.Event().wait()
        self.left -= 1
        return await super().read()


def rtp_timestamps(packets: list[bytes]) -> list[tuple[int, bool]]:
    """(timestamp, marker) of each RTP packet among ``packets`` (SRs left out)."""
    return [
        (int.from_bytes(p[4:8], "big"), bool(p[1] & 0x80))
        for p in packets
        if 96 <= p[1] & 0x7F <= 127
    ]


@pytest.mark.parametrize("via_idle", [False, True])
async def test_a_stream_after_a_stalled_holder_starts_at_the_time_that_passed(
    node: Node, via_idle: bool
) -> None:
    """The holder sent 5 frames, then nothing for 0.6 s while it kept the floor (its SRs
    extrapolate its RTP clock meanwhile); the next stream's first timestamp is at least
    that much later, directly (preempted) or after the stalled holder ended (idle)."""
    address = node.endpoint("rtp0").address
    assert address is not None
    await node.start_broadcast(
        spec("relayed", Priority.LIVE), Stalling(5), what="r", source_kind="tone", created_by="t"
    )  # fmt: skip
    await asyncio.sleep(0.1 + 0.6)
    sent = node._sock.sent[address]  # type: ignore[attr-defined]
    [*_, (last, _)] = rtp_timestamps(sent)
    before = len(sent)
    if via_idle:
        await node.stop_broadcast("relayed")
        await asyncio.sleep(0)
    await node.start_broadcast(
        spec("em", Priority.EMERGENCY), ToneSource(900), what="e", source_kind="tone",
        created_by="t",
    )  # fmt: skip
    await asyncio.sleep(0.05)
    (first, marker), *_ = rtp_timestamps(sent[before:])
    assert marker
    assert (first - last) & 0xFFFFFFFF >= 48_000 * 0.6  # not 960: the silence counted


async def test_resumable_pauses_unheard_but_live_keeps_running(node: Node) -> None:
    await node.start_broadcast(
        spec("em", Priority.EMERGENCY),
        ToneSource(900),
        what="em",
        source_kind="tone",
        created_by="t",
    )
    file_like = ToneSource(400, duration_s=5)
    live_like = LiveTone()
    await node.start_broadcast(
        spec("prog", Priority.SCHEDULED, resumable=True),
        file_like,
        what="p",
        source_kind="tone",
        created_by="t",
    )
    await node.start_broadcast(
        spec("mic", Priority.LIVE, live=True),
        live_like,
        what="m",
        source_kind="tone",
        created_by="t",
    )
    await asyncio.sleep(0.3)
    prog, mic = node.broadcasts["prog"], node.broadcasts["mic"]
    assert prog.state is State.PAUSED and prog.frames == 0
    assert mic.frames > 5  # read (and dropped) although nobody hears it
    await node.stop_broadcast("em")
    await asyncio.sleep(0.2)
    assert node.router.holder("rtp0") == "mic"  # live outranks scheduled
    await node.stop_broadcast("mic")
    await asyncio.sleep(0.3)
    assert prog.state is State.PLAYING and prog.frames > 5


async def test_exclusive_refusal_closes_the_source(node: Node) -> None:
    await node.start_broadcast(
        spec("a", Priority.LIVE), ToneSource(900), what="a", source_kind="tone", created_by="t"
    )
    source = Broken()
    with pytest.raises(Conflict) as err:
        await node.start_broadcast(
            spec("b", Priority.SCHEDULED, exclusive=True),
            source,
            what="b",
            source_kind="tone",
            created_by="t",
        )
    assert err.value.fields["holder"] == "a"
    assert source.closed
    with pytest.raises(NotFound):
        await node.stop_broadcast("b")


class Peer:
    """A speaker's control channel as the node sees it: records what it is told."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def send_audio(self, packet: bytes) -> None:
        raise AssertionError("no audio over the WebSocket in this test")

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_the_timer_is_armed_for_an_expiry_and_only_then(node: Node) -> None:
    loop = asyncio.get_running_loop()
    assert node._timer is None  # nothing is due: the node does not wake at all
    await node.start_broadcast(
        spec("hold", Priority.LIVE), ToneSource(900), what="h", source_kind="tone", created_by="t"
    )
    assert node._timer is None
    expires = loop.time() + 0.2
    await node.start_broadcast(
        spec("late", Priority.SCHEDULED, expires_at=expires),
        ToneSource(400),
        what="l",
        source_kind="tone",
        created_by="t",
    )
    assert node._timer is not None and node._timer.when() == expires
    assert node.router.holder("rtp0") == "hold"  # "late" waits everywhere...
    await asyncio.sleep(0.35)
    assert "late" not in node.broadcasts  # ...and expired at its deadline, with no tick
    assert [e.state for e in node.history] == ["expired"]
    assert node._timer is None


async def test_closing_the_node_disarms_its_timer(tmp_path: Path) -> None:
    node = Node(tree_config(tmp_path, communes=1, per_commune=0, rtp=("10.9.0.1:1",)))
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    await node.start_broadcast(
        spec("far", Priority.SCHEDULED, expires_at=loop.time() + 3600),
        ToneSource(400),
        what="f",
        source_kind="tone",
        created_by="t",
    )
    timer = node._timer
    assert timer is not None
    await node.close()
    assert node._timer is None and timer.cancelled()


async def test_a_silent_udp_path_times_out_at_its_deadline(tmp_path: Path) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=1)
    config = with_changes(
        config, relay=with_changes(config.relay, keepalive_s=0.1, session_timeout_s=0.3)
    )
    node = Node(config)
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        peer = Peer()
        session = node.attach_speaker(node.endpoint("c0-e0"), peer, loop.time())
        assert node._timer is None  # no UDP path yet: nothing can time out
        hello = ControlDatagram.signed(DatagramType.HELLO, session.id, 1, session.key)
        now = loop.time()
        assert node.on_datagram(bytes(hello), ("10.0.0.9", 4000), now) is not None
        assert session.destination == ("10.0.0.9", 4000)
        assert node._timer is not None and node._timer.when() == now + 0.3
        await asyncio.sleep(0.45)
        assert session.destination is None
        assert peer.sent == [Transport("none", "udp timeout")]
        assert node._timer is None
    finally:
        await node.close()


async def test_a_speaker_hears_its_levels_and_what_plays(tmp_path: Path) -> None:
    node = Node(tree_config(tmp_path, communes=1, per_commune=1))
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    try:
        peer, ep = Peer(), node.endpoint("c0-e0")
        node.attach_speaker(ep, peer, asyncio.get_running_loop().time())
        before = time.time()
        await node.start_broadcast(
            spec("em", Priority.EMERGENCY), ToneSource(900), what="em", source_kind="tone",
            created_by="t",
        )  # fmt: skip
        after = time.time()
        assert peer.sent == []  # held until the broadcast's first frame has gone out
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        [playing] = peer.sent
        assert playing.since is not None and before <= playing.since <= after  # the switch
        assert playing == Playing("em", "emergency", "em", ep.emergency_volume, True, playing.since)
        assert node.playing_message(ep) == dataclasses.replace(playing, since=None)
    finally:
        await node.close()


class CountingPeer(Peer):
    """Records, with each message, how many audio packets had reached ``address`` by then."""

    def __init__(self, transport: FakeTransport, address: tuple[str, int]) -> None:
        super().__init__()
        self.transport, self.address = transport, address
        self.packets_before: list[int] = []

    def send(self, message: Message) -> None:
        self.packets_before.append(len(self.transport.sent[self.address]))
        super().send(message)


async def test_a_preempting_broadcasts_first_frame_goes_before_the_speakers_messages(
    tmp_path: Path,
) -> None:
    """An emergency over a programme: its first frame reaches the speaker before
    ``start_broadcast`` returns (``Broadcast.prime``), before the switched speakers' control
    messages (their writes would otherwise delay it: a few hundred at a commune's scale),
    which follow on the loop's next turn in the order told and name the switch's time."""
    node = Node(tree_config(tmp_path, communes=1, per_commune=1))
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        ep, address = node.endpoint("c0-e0"), ("10.0.0.9", 4000)
        peer = CountingPeer(node._sock, address)  # type: ignore[arg-type]
        session = node.attach_speaker(ep, peer, loop.time())
        hello = ControlDatagram.signed(DatagramType.HELLO, session.id, 1, session.key)
        assert node.on_datagram(bytes(hello), address, loop.time()) is not None
        await node.start_broadcast(
            spec("prog", Priority.SCHEDULED), ToneSource(400), what="p", source_kind="tone",
            created_by="t",
        )  # fmt: skip
        await asyncio.sleep(0.1)
        heard = len(node._sock.sent[address])  # type: ignore[attr-defined]
        assert heard >= 2 and peer.packets_before[-1] >= 1  # its Playing after its frame
        told = len(peer.sent)
        switched = time.time()
        await node.start_broadcast(
            spec("em", Priority.EMERGENCY), ToneSource(900), what="em", source_kind="tone",
            created_by="t",
        )  # fmt: skip
        assert len(peer.sent) == told  # nothing yet, but the first packet is out
        assert len(node._sock.sent[address]) > heard  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        new = peer.sent[told:]
        assert [type(m) for m in new] == [Playing]
        assert new[0].broadcast == "em" and new[0].since is not None
        assert switched <= new[0].since <= time.time()
        # the emergency's first packet (and its SR: RTCP to the same address) went before
        assert peer.packets_before[told] >= heard + 1
        first = node._sock.sent[address][heard]  # type: ignore[attr-defined]
        assert first[1] & 0x80  # the marker: a new stream starts on this packet
    finally:
        await node.close()


async def test_a_listener_hears_what_its_zone_hears(node: Node) -> None:
    got: list[bytes] = []
    listener = node.attach_listener("c1", got.append)
    assert listener.online and listener.listener
    assert [e.id for e in node.poles()] == ["rtp0", "rtp1"]
    await node.start_broadcast(
        spec("prog", Priority.SCHEDULED, resumable=True),
        ToneSource(800),
        what="p",
        source_kind="tone",
        created_by="t",
    )
    await node.start_broadcast(
        spec("em", Priority.EMERGENCY, target_zones=frozenset({"c1"})),
        ToneSource(900),
        what="em",
        source_kind="tone",
        created_by="t",
    )
    await asyncio.sleep(0.3)
    assert node.router.holder(listener.id) == "em"
    heard = node.router.listeners("em")
    assert listener.id in heard and not [e for e in heard if e.startswith("rtp")]
    pcm = decode(got[-10:])
    assert dominant_frequency(pcm) == pytest.approx(900, rel=0.01)
    node.detach_listener(listener)
    count = len(got)
    await asyncio.sleep(0.1)
    assert len(got) == count
    with pytest.raises(NotFound):
        node.endpoint(listener.id)
    with pytest.raises(NotFound, match="zone nowhere not found"):
        node.attach_listener("nowhere", got.append)


def test_the_capture_timeline_follows_the_earliest_frame_and_restarts_after_a_stall(
    node: Node,
) -> None:
    """Frame i is captured at origin + 20 ms × i (what the SRs say). A frame that leaves
    early moves the origin back; one more than LATE_S late restarts it there; a move of a
    frame or more is announced once the timeline is steady again, and jitter is not."""
    capture = node.fanout._capture  # sans-IO: (broadcast key, send time, frame index)
    assert capture(7, 100.0, 0) is False  # the first frame: the SR at the start says it
    assert capture(7, 100.021, 1) is False  # late within LATE_S: on the timeline
    assert node.fanout.frame_at[7] == (pytest.approx(100.02), 1)
    for i in range(2, 16):  # a backlog: 14 frames at once, each earlier than its place
        assert capture(7, 100.022, i) is False
    assert node.fanout.frame_at[7] == (100.022, 15)
    assert capture(7, 100.043, 16) is True  # steady again: origin moved 278 ms, say so
    assert capture(7, 100.064, 17) is False  # said once
    assert capture(7, 100.063 + 0.02 + 0.3, 18) is False  # a 300 ms stall: restarted
    assert node.fanout.frame_at[7] == (pytest.approx(100.383), 18)
    assert capture(7, 100.404, 19) is True
    assert capture(7, 100.424 + 0.015, 20) is False  # jitter within a frame: not said
