"""Frame duration per zone on the node (fake UDP transport, real encoder): zones at 20, 40 and
60 ms get packets of their duration that decode to exactly the audio of the 20 ms ones; the
broadcast's last frames go out as a shorter packet; a preempted zone switches at its next
packet and loses no audio of the new broadcast; a NACKed 40 ms packet is resent byte for byte."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.opus import OpusDecoder
from loa.codecs.opus_packet import Toc
from loa.codecs.pcm import dominant_frequency
from loa.config import EndpointSpec, with_changes
from loa.relay.core.priority import Priority
from loa.relay.core.repair import Repairer
from loa.relay.core.zones import ZoneAudio
from loa.relay.node import Node
from loa.relay.sendmmsg import Batch
from loa.streamer.tone import ToneSource
from tests.conftest import tree_config
from tests.relay.test_node import FakeTransport, run_until, spec

ADDRESS = {20: ("10.9.0.1", 1), 40: ("10.9.0.2", 2), 60: ("10.9.0.3", 3)}
ZONE = {20: "c0", 40: "c1", 60: "c2"}


@pytest.fixture
async def node(tmp_path: Path) -> Any:
    """Communes c0, c1, c2 at 20, 40 and 60 ms, one RTP receiver each (rtp20, rtp40, rtp60)."""
    config = tree_config(tmp_path, communes=3, per_commune=0)
    endpoints = tuple(
        EndpointSpec(f"rtp{ms}", f"RTP {ms}", ZONE[ms], kind="rtp", address=f"{host}:{port}")
        for ms, (host, port) in ADDRESS.items()
    )
    node = Node(with_changes(config, endpoints=endpoints))
    node.transport = node._sock = FakeTransport()  # type: ignore[assignment]
    node.fanout.batch = Batch(node._sock, batched=False)  # type: ignore[arg-type]
    node.set_zone_audio("c1", ZoneAudio(frame_ms=40))
    node.set_zone_audio("p", ZoneAudio(frame_ms=60))  # c2 inherits it; c0 sets 20 itself
    node.set_zone_audio("c0", ZoneAudio(frame_ms=20))
    yield node
    await node.close()


def received(node: Node, ms: int) -> list[bytes]:
    return list(node.transport.sent[ADDRESS[ms]])  # type: ignore[union-attr]


def decoded(packets: list[bytes]) -> np.ndarray:
    decoder = OpusDecoder()
    return np.concatenate([decoder.decode(p[12:]) for p in packets])


def fields(packet: bytes) -> tuple[int, int, int]:
    """(sequence, timestamp, Opus frames) of an RTP packet."""
    seq, ts = int.from_bytes(packet[2:4]), int.from_bytes(packet[4:8])
    return seq, ts, Toc.parse(packet[12:]).frame_count


async def test_each_zone_gets_packets_of_its_duration_with_the_same_audio(node: Node) -> None:
    tone = ToneSource(700, duration_s=0.5)  # 25 frames: 60 ms packets end with a short one
    await node.start_broadcast(
        spec("t", Priority.SCHEDULED), tone, what="t", source_kind="tone", created_by="t"
    )
    await run_until(node, "t")
    by_zone = {ms: received(node, ms) for ms in ADDRESS}
    for ms, packets in by_zone.items():
        sizes = [fields(p)[2] for p in packets]
        full = sizes.count(ms // 20)
        # every frame once; all packets full but the last (25 frames) and, rarely, one cut
        # short where the encoder changed its TOC (it settles its bandwidth at the start)
        assert (sum(sizes), max(sizes)) == (25, ms // 20), ms
        assert full >= len(sizes) - 2, ms
    for ms, packets in by_zone.items():
        seqs, stamps, sizes = zip(*map(fields, packets), strict=True)
        assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(len(packets))), ms
        steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)]
        assert steps == [960 * n for n in sizes[:-1]], ms  # by each packet's samples
    reference = decoded(by_zone[20])
    assert reference.size == 25 * 960
    for ms in (40, 60):  # one encoding, joined: the very same samples
        assert np.array_equal(decoded(by_zone[ms]), reference), ms
    assert dominant_frequency(reference[4800:]) == pytest.approx(700, rel=0.01)


async def test_a_zone_switches_at_its_next_packet_and_drops_the_old_partial(node: Node) -> None:
    """An emergency preempts a background tone: each zone's first emergency packet holds the
    emergency's first frames (none of its audio waits more than one packet), and no packet
    of the background reaches a zone after the emergency's first frame left the encoder."""
    events: list[tuple[str, Any]] = []
    deliver, sendto = node.deliver, node.transport.sendto  # type: ignore[union-attr]

    def delivering(bc: Any, packet: bytes, index: int, item_end: bool) -> None:
        events.append(("frame", (bc.id, index)))
        deliver(bc, packet, index, item_end)

    def sending(data: bytes, addr: tuple[str, int]) -> None:
        events.append(("packet", (addr, data)))
        sendto(data, addr)

    node.deliver = delivering  # type: ignore[method-assign]
    node.transport.sendto = sending  # type: ignore[union-attr,method-assign]
    background = ToneSource(400, duration_s=3)
    await node.start_broadcast(
        spec("bg", Priority.BACKGROUND, resumable=True),
        background,
        what="bg",
        source_kind="tone",
        created_by="t",
    )
    await asyncio.sleep(0.31)  # mid-packet for the 40 and 60 ms zones, most likely
    emergency = ToneSource(1500, duration_s=0.6)
    await node.start_broadcast(
        spec("em", Priority.EMERGENCY), emergency, what="em", source_kind="tone", created_by="t"
    )
    await run_until(node, "em")
    await node.stop_broadcast("bg")
    em_first = events.index(next(e for e in events if e[0] == "frame" and e[1][0] == "em"))
    for ms, addr in ADDRESS.items():
        after = [i for i, e in enumerate(events) if e[0] == "packet" and e[1][0] == addr]
        first_em = next(i for i in after if i > em_first)
        em_frames = [e for e in events[em_first:first_em] if e[0] == "frame" and e[1][0] == "em"]
        assert len(em_frames) == ms // 20, ms  # sent when its packet of em's frames is full
        packet = events[first_em][1][1]
        assert packet[1] >> 7 == 1 and fields(packet)[2] == ms // 20  # marker: a new stream
        pcm = decoded([events[i][1][1] for i in after if i >= first_em][:10])
        assert dominant_frequency(pcm[1920:]) == pytest.approx(1500, rel=0.02)


async def test_a_nacked_40_ms_packet_is_resent_byte_for_byte(node: Node) -> None:
    await node.start_broadcast(
        spec("t", Priority.SCHEDULED),
        ToneSource(900, duration_s=2),
        what="t",
        source_kind="tone",
        created_by="t",
    )
    await asyncio.sleep(0.5)
    ep = node.endpoints["rtp40"]
    assert ep.rewriter is not None
    sent = received(node, 40)[-6:]
    lost = tuple(fields(p)[0] for p in sent)
    resent = Repairer().on_nack(lost, ep.rewriter, node.fanout.history, 0.0)
    assert resent.packets == tuple(sent)
    assert all(fields(p)[2] == 2 for p in resent.packets)
    await node.stop_broadcast("t")


async def test_a_zone_setting_applies_at_the_next_packet(node: Node) -> None:
    await node.start_broadcast(
        spec("t", Priority.SCHEDULED),
        ToneSource(900, duration_s=1.2),
        what="t",
        source_kind="tone",
        created_by="t",
    )
    await asyncio.sleep(0.4)
    node.set_zone_audio("c1", ZoneAudio(frame_ms=60))  # 40 → 60 ms while it plays
    before = len(received(node, 40))
    await run_until(node, "t")
    sizes = [fields(p)[2] for p in received(node, 40)]
    assert max(sizes[:before]) == 2 and set(sizes[before + 1 : -1]) == {3}  # at once
    stamps = [fields(p)[1] for p in received(node, 40)]
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)]
    assert all(0 < step <= 960 * 5 for step in steps)  # never back: no audio heard twice
    missing = decoded(received(node, 20)).size - decoded(received(node, 40)).size
    assert 0 <= missing <= 2 * 960  # what the change skipped: less than one packet
