"""RFC 2198 redundancy (RED) end to end, per zone: a static RTP endpoint gets RED packets
its SDP describes, and GStreamer's rtpreddec plays them; turning the zone's redundancy off
goes back to plain Opus at once; a real `loa speaker` behind a lossy link plays what was
lost from the next packet's redundant copy."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.impair import ImpairingLink, Impairment
from loa.codecs.pcm import dominant_frequency
from loa.codecs.red import RedPayload
from loa.codecs.rtp import RtpPacket
from loa.config import with_changes as replace
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import free_port, on_transport, tone, tone_into
from tests.support.gstreamer import SYSTEM_PYTHON, need_gstreamer

pytestmark = pytest.mark.e2e


def red_zone(tmp_path: Path, **kwargs: Any) -> Any:
    config = tree_config(tmp_path, communes=1, **kwargs)
    zones = tuple(replace(z, redundancy=True) if z.id == "c0" else z for z in config.zones)
    return replace(config, zones=zones)


async def ready(stdout: asyncio.StreamReader) -> None:
    """The GStreamer receiver says ``ready`` once its pipeline listens."""
    assert await asyncio.wait_for(stdout.readline(), 30) == b"ready\n"


def receive(sock: socket.socket, count: int) -> list[RtpPacket]:
    out = []
    while len(out) < count:
        out.append(RtpPacket.parse(sock.recv(2048)))
    return out


async def test_a_static_endpoint_gets_red_its_sdp_describes_until_the_zone_stops(
    relay_factory: Any, tmp_path: Path
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    relay = await relay_factory(red_zone(tmp_path, per_commune=0, rtp=(f"127.0.0.1:{port}",)))
    try:
        async with relay.http.get(f"{relay.url}/api/v1/endpoints/rtp0/sdp", headers=AUTH) as r:
            sdp = await r.text()
        assert f"m=audio {port} RTP/AVP 112 111\r\n" in sdp
        assert "a=rtpmap:112 red/48000/2\r\na=fmtp:112 111/111\r\n" in sdp
        assert "a=rtpmap:111 opus/48000/2\r\n" in sdp
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        packets = await asyncio.to_thread(receive, sock, 20)
        assert {p.payload_type for p in packets} == {112}
        red = [RedPayload.parse(p.payload, payload_type=111) for p in packets]
        assert packets[0].marker and red[0].redundant == ()  # nothing before the first
        for before, after, packet in zip(red, red[1:], packets[1:], strict=False):
            (block,) = after.redundant
            assert (block.data, block.offset) == (before.primary, 960)
            assert not packet.marker
        await relay.api("PATCH", "/zones/c0", {"redundancy": False}, 200)
        async with relay.http.get(f"{relay.url}/api/v1/endpoints/rtp0/sdp", headers=AUTH) as r:
            assert f"m=audio {port} RTP/AVP 111\r\n" in await r.text()
        later = await asyncio.to_thread(receive, sock, 60)
        assert later[-1].payload_type == 111  # plain Opus from the next frame on
        seqs = [p.sequence for p in packets + later]
        assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))
    finally:
        sock.close()


GST_RED = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst, GLib
Gst.init(None)
port, out, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
pipe = Gst.parse_launch(
    f'udpsrc port={port} caps="application/x-rtp,media=audio,clock-rate=48000,'
    f'encoding-name=OPUS,payload=112" ! rtpreddec pt=112 ! rtpopusdepay ! opusdec '
    f'! audioconvert ! audio/x-raw,format=S16LE,channels=1,rate=48000 '
    f'! filesink location={out}'
)
pipe.set_state(Gst.State.PLAYING)
print("ready", flush=True)
loop = GLib.MainLoop()
GLib.timeout_add(int(seconds * 1000), loop.quit)
loop.run()
pipe.set_state(Gst.State.NULL)
"""


async def test_gstreamer_rtpreddec_plays_a_red_zone(relay_factory: Any, tmp_path: Path) -> None:
    need_gstreamer()
    port = free_port()
    relay = await relay_factory(red_zone(tmp_path, per_commune=0, rtp=(f"127.0.0.1:{port}",)))
    out = tmp_path / "out.raw"
    proc = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON, "-c", GST_RED, str(port), str(out), "3",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    err = await tone_into(relay, proc, ready(proc.stdout), 30)
    pcm = np.frombuffer(out.read_bytes(), dtype=np.int16)
    assert pcm.size >= 48000, err.decode()  # over a second of audio decoded from RED
    assert dominant_frequency(pcm[-24000:]) == pytest.approx(1000, rel=0.01)


async def test_a_speaker_plays_lost_packets_from_the_redundant_copy(
    relay_factory: Any, tmp_path: Path
) -> None:
    link = ImpairingLink(down=Impairment(loss=0.10), seed=3)
    config = red_zone(tmp_path, per_commune=1)
    port = link.bind()
    config = replace(config, relay=replace(config.relay, public_udp_port=port))
    relay = await relay_factory(config)
    link.start(("127.0.0.1", relay.node.udp_port))
    fleet = Fleet(relay.url, [("c0-e0", "tok-c0-e0")], nack=False)  # RED alone
    speaker = fleet.speakers["c0-e0"]
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0"]), 15, "the speaker on UDP")
        assert relay.node.endpoints["c0-e0"].session.red  # type: ignore[union-attr]
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        await wait_for(lambda: speaker.jitter.played >= 200, 20, "4 s of audio played")
        status = relay.node.endpoints["c0-e0"].status
        await wait_for(lambda: status.get("redundant", 0) >= 1, 5, "a status counting RED")
        # malformed RED from the relay's own address (a truncated block header), through
        # the lossy link: dropped whole and counted, the stream plays on
        session = relay.node.endpoints["c0-e0"].session
        assert session is not None and session.destination is not None
        assert relay.node.transport is not None
        for seq in range(5):
            bad = RtpPacket(112, seq, 960 * seq, session.rewriter.ssrc, b"\xef\x0f")
            relay.node.transport.sendto(bytes(bad), session.destination)
        await wait_for(lambda: speaker.red_malformed >= 1, 5, "malformed RED counted")
        played = speaker.jitter.played
        await wait_for(lambda: speaker.jitter.played >= played + 25, 5, "playing on")
    finally:
        await fleet.close()
        link.close()
    jb = speaker.jitter
    seen = (jb.stats(), link.counts, speaker.red_malformed)
    assert link.counts["down"].dropped >= 10, seen  # the link did lose packets
    assert jb.redundant >= 8 and jb.nacked == 0, seen
    # a loss right after another (1 % of packets) is left to FEC or concealment
    assert jb.concealed + jb.recovered <= max(4, jb.redundant // 4), seen
    assert 1 <= speaker.red_malformed <= 5 and speaker.bad_packets == 0, seen
    assert speaker.status_sent >= 1
