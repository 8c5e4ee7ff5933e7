"""WHEP listening: the packet track on its own, and /api/v1/whep on a real server with aiortc
listeners (loopback only), fed by a tone broadcast or a WHIP publisher."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from loa.codecs import FRAME_SAMPLES
from loa.codecs.opus import SILENCE_PACKET, OpusDecoder, OpusEncoder
from loa.codecs.pcm import dominant_frequency, rms_dbfs, tone
from loa.config import with_changes as replace
from loa.web import whep
from loa.web.whep import OpusPacketTrack
from tests.conftest import ADMIN, AUTH, Relay, tree_config
from tests.relay.fleet import wait_for
from tests.relay.relayfix import tone as tone_body
from tests.support.webrtc import WhepClient
from tests.web import test_whip as whip_tests
from tests.web.test_whip import offer_sdp, peers_of, publish, sine

# The fixtures that put WHIP and WHEP on a real server, on loopback.
loopback = whip_tests.loopback
webrtc_relay = whip_tests.webrtc_relay


# -- the packet track ---------------------------------------------------------------------
def rtp(payload: bytes, *, csrc: int = 0, ext_words: int = 0) -> bytes:
    first = 0x80 | csrc | (0x10 if ext_words else 0)
    header = struct.pack("!BBHII", first, 111, 7, 960, 1234) + b"\0\0\0\1" * csrc
    if ext_words:
        header += struct.pack("!HH", 0xBEDE, ext_words) + b"\x17" + b"\0" * (4 * ext_words - 1)
    return header + payload


def test_the_silence_packet_decodes_to_silence_and_is_what_libopus_makes_of_it() -> None:
    pcm = OpusDecoder().decode(SILENCE_PACKET)
    assert pcm.shape == (FRAME_SAMPLES,) and not pcm.any()
    encoder = OpusEncoder(fec=False, signal="music")
    assert encoder.encode(np.zeros(FRAME_SAMPLES, np.int16)) == SILENCE_PACKET


async def test_track_passes_packets_through_on_a_continuous_clock() -> None:
    track = OpusPacketTrack(max_age_s=0.05)
    encoder = OpusEncoder()
    payloads = [encoder.encode(tone(1000, start=i * FRAME_SAMPLES)) for i in range(5)]
    track.sink.push(rtp(payloads[0]))
    track.sink.push(rtp(payloads[1], csrc=2))
    await asyncio.sleep(0.08)  # the two waited longer than the listener may lag
    track.sink.push(rtp(payloads[2], ext_words=3))  # relay.stamp_frames
    for p in payloads[3:]:
        track.sink.push(rtp(p))
    track.sink.push(b"\x80")  # junk from nowhere is dropped and counted
    got = [await track.recv() for _ in range(3)]
    assert [bytes(p) for p in got] == payloads[2:]  # the two stale ones dropped
    assert [p.pts for p in got] == [0, 960, 1920]
    assert all(p.time_base == whep.TIME_BASE for p in got)
    assert (track.sink.received, track.sink.dropped, track.sink.bad) == (5, 2, 1)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_track_fills_with_paced_silence_when_nothing_is_on_air() -> None:
    track = OpusPacketTrack()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    silent = [await track.recv() for _ in range(6)]
    elapsed = loop.time() - t0
    assert all(bytes(p) == SILENCE_PACKET for p in silent)
    assert 0.08 <= elapsed < 0.2  # one at once, then every 20 ms
    track.sink.push(rtp(b"live"))
    assert bytes(await track.recv()) == b"live"
    # A broadcast that pauses: silence only after IDLE_AFTER_S, so jitter is not filled.
    t1 = loop.time()
    filler = await track.recv()
    assert bytes(filler) == SILENCE_PACKET
    assert loop.time() - t1 >= whep.IDLE_AFTER_S - 0.005
    assert track.silence_sent == 7
    track.stop()


async def test_stopping_the_track_wakes_a_waiting_sender() -> None:
    track = OpusPacketTrack()
    await track.recv()  # the first silence packet; the next one waits 20 ms
    track.sink.push(rtp(b"x"))
    await track.recv()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)


# -- the WHEP resource --------------------------------------------------------------------
async def listen(relay: Relay, zone: str) -> tuple[WhepClient, MediaStreamTrack]:
    client = WhepClient(f"{relay.url}/api/v1/whep?zone={zone}", token=ADMIN)
    return client, await client.start()


async def record(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """Decoded audio from a received track, mixed to mono int16."""
    chunks = []
    samples = 0
    while samples < seconds * 48000:
        frame = await asyncio.wait_for(track.recv(), 5)
        assert isinstance(frame, av.AudioFrame)
        pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
        chunks.append(pcm.astype(np.int16))
        samples += frame.samples
    return np.concatenate(chunks)


@pytest.mark.e2e
@pytest.mark.parametrize("stamp", [False, True], ids=["plain", "stamped"])
async def test_whep_listener_hears_the_zone_broadcast(
    webrtc_relay: Any, tmp_path: Path, stamp: bool
) -> None:
    config = tree_config(tmp_path)
    if stamp:  # packets carry the bench's RFC 8285 extension; the track must skip it
        config = replace(config, relay=replace(config.relay, stamp_frames=True))
    relay = await webrtc_relay(config)
    t_id = (await relay.api("POST", "/broadcasts", tone_body(1000, ["c0"], "scheduled"), 201))["id"]
    client, track = await listen(relay, "c0")
    try:
        (session,) = peers_of(relay).sessions.values()
        assert isinstance(session, whep.WhepSession)
        await record(track, 0.5)  # let the browser-side clock settle
        heard = await record(track, 1.0)
        assert rms_dbfs(heard) > -20
        assert dominant_frequency(heard) == pytest.approx(1000, rel=0.01)
        assert session.track.sink.received > 40 and session.track.sink.dropped == 0
        bc = await relay.api("GET", f"/broadcasts/{t_id}")
        assert bc["virtual_listeners"] == 1 and bc["listeners"] == ["c0-e0", "c0-e1"]
    finally:
        await client.close()
    await wait_for(lambda: not peers_of(relay).sessions, 5, "the WHEP session to close")
    assert not [e for e in relay.node.endpoints.values() if e.listener]


@pytest.mark.e2e
async def test_whep_listener_gets_silence_until_a_broadcast_starts(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client, track = await listen(relay, "c1")
    try:
        quiet = await record(track, 0.6)
        assert rms_dbfs(quiet) < -90
        (session,) = peers_of(relay).sessions.values()
        assert isinstance(session, whep.WhepSession)
        assert session.track.silence_sent >= 25
        await relay.api("POST", "/broadcasts", tone_body(600, ["p"], "live"), 201)
        await record(track, 0.3)
        assert dominant_frequency(await record(track, 0.6)) == pytest.approx(600, rel=0.01)
    finally:
        await client.close()


@pytest.mark.e2e
@pytest.mark.slow
async def test_whip_publisher_to_whep_listener(webrtc_relay: Any, tmp_path: Path) -> None:
    """Browser to browser through the relay: one Opus encode in the relay, none per listener."""
    relay = await webrtc_relay(tree_config(tmp_path))
    publisher = await publish(relay, "?zones=c0", sine(1000))
    mic = publisher.broadcast or ""
    client, track = await listen(relay, "c0")
    try:
        await record(track, 0.5)
        heard = await record(track, 1.0)
        assert dominant_frequency(heard) == pytest.approx(1000, rel=0.01)
        bc = relay.node.broadcasts[mic]
        assert bc.frames > 50
    finally:
        await client.close()
        await publisher.close()


async def post(relay: Relay, body: str, query: str, content_type: str = "application/sdp") -> Any:
    headers = {**AUTH, "Content-Type": content_type}
    async with relay.http.post(f"{relay.url}/api/v1/whep{query}", data=body, headers=headers) as r:
        return r.status, await r.text()


@pytest.mark.e2e
async def test_whep_rejects_bad_requests(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    good = await offer_sdp(direction="recvonly")
    async with relay.http.post(
        f"{relay.url}/api/v1/whep?zone=c0", data=good, headers={"Content-Type": "application/sdp"}
    ) as r:
        assert r.status == 401
    status, text = await post(relay, good, "")
    assert status == 400 and 'missing query parameter \\"zone\\"' in text
    status, text = await post(relay, good, "?zone=nowhere")
    assert status == 404 and "zone nowhere not found" in text
    status, text = await post(relay, good, "?zone=c0", "application/json")
    assert status == 415 and "application/sdp" in text
    status, text = await post(relay, "v=0\r\n", "?zone=c0")
    assert status == 422 and "no media section" in text
    status, text = await post(relay, await offer_sdp(direction="sendonly"), "?zone=c0")
    assert status == 422 and "needs one of ('recvonly', 'sendrecv')" in text
    async with relay.http.delete(f"{relay.url}/api/v1/whep/feedfacefeedface", headers=AUTH) as r:
        assert r.status == 404 and "WHEP session feedfacefeedface not found" in await r.text()
    async with relay.http.patch(f"{relay.url}/api/v1/whep/feedfacefeedface", headers=AUTH) as r:
        assert r.status == 405 and r.headers["Allow"] == "DELETE"
    assert not peers_of(relay).sessions
    assert not [e for e in relay.node.endpoints.values() if e.listener]


@pytest.mark.e2e
async def test_listener_that_vanishes_is_detached(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client, track = await listen(relay, "c0")
    await record(track, 0.2)
    assert len([e for e in relay.node.endpoints.values() if e.listener]) == 1
    await client.close(delete=False)
    await wait_for(lambda: not peers_of(relay).sessions, 5, "the WHEP session to close")
    assert not [e for e in relay.node.endpoints.values() if e.listener]


@pytest.mark.e2e
async def test_shutdown_closes_listeners(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client, _ = await listen(relay, "c0")
    (session,) = peers_of(relay).sessions.values()
    await relay.server.close()
    assert session.pc.connectionState == "closed"
    assert not peers_of(relay).sessions
    await client.close(delete=False)
