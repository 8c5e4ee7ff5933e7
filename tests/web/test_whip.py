"""WHIP ingest: the /api/v1/whip resource on a real server with an aiortc publisher and real
speakers (loopback only). WhipSource on its own is tested in tests/streamer/test_whip.py."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from loa.codecs import SAMPLE_RATE
from loa.codecs.pcm import tone
from loa.config import Config
from loa.web import whip
from loa.web.keys import PEERS
from loa.web.webrtc import Peers
from tests.conftest import ADMIN, AUTH, Relay, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.relay.relayfix import tone as tone_body
from tests.support.webrtc import WhipClient

Render = Callable[[int, int], np.ndarray]


# -- helpers shared with tests/web/test_whep.py -------------------------------------------
@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; these tests stay on loopback."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def webrtc_relay(loopback: None, relay_factory: Any) -> Callable[[Config], Any]:
    """The real create_app (which serves WHIP and WHEP), its ICE on loopback."""
    return relay_factory  # type: ignore[no-any-return]


def peers_of(relay: Relay) -> Peers:
    api = next(a for a in relay.server.app._subapps if PEERS in a)
    return api[PEERS]


class PcmTrack(MediaStreamTrack):
    """A publisher's microphone: ``render(start, n)`` gives int16 samples, sent as 20 ms
    av.AudioFrames on absolute deadlines; ``sent`` records (first sample, loop time)."""

    kind = "audio"

    def __init__(self, render: Render, *, rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.render = render
        self.rate = rate
        self.samples = rate // 50
        self.start: float | None = None
        self.pos = 0
        self.sent: list[tuple[int, float]] = []

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        await asyncio.sleep(max(0.0, self.start + self.pos / self.rate - loop.time()))
        pcm = self.render(self.pos, self.samples)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.pos
        frame.time_base = fractions.Fraction(1, self.rate)
        self.sent.append((self.pos, time.monotonic()))
        self.pos += self.samples
        return frame


def sine(freq: float) -> Render:
    return lambda start, n: tone(freq, n, start=start, level_dbfs=-6.0)


async def publish(relay: Relay, query: str, render: Render) -> WhipClient:
    client = WhipClient(f"{relay.url}/api/v1/whip{query}", token=ADMIN)
    await client.start(PcmTrack(render))
    return client


async def offer_sdp(direction: str = "sendonly", kind: str = "audio") -> str:
    """A real aiortc offer (closed again at once) for the negative tests to mangle."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(kind, direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


# -- the WHIP resource --------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.slow
async def test_whip_tone_reaches_its_commune_only_and_delete_logs_it(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path)
    relay = await webrtc_relay(config)
    ids = [e.id for e in config.endpoints]
    fleet = Fleet(relay.url, [(e.id, e.token or "") for e in config.endpoints])
    await fleet.start()
    client: WhipClient | None = None
    try:
        await wait_for(lambda: on_transport(relay.node, ids), 15, "speakers on UDP")
        t0 = time.monotonic()
        client = await publish(relay, "?zones=c0&name=Loa%20x%C3%A3&chime=0", sine(1000))
        assert client.location is not None and "/api/v1/whip/" in client.location
        mic = client.broadcast or ""
        assert mic.startswith("bc-")
        bc = await relay.api("GET", f"/broadcasts/{mic}")
        assert (bc["source"], bc["class"], bc["what"]) == ("whip", "live", "Loa xã")
        await wait_for(
            lambda: all(fleet.heard[i].frequency(t0, mic) > 0 for i in ("c0-e0", "c0-e1")),
            10,
            "c0 speakers hearing the publisher",
        )
        await asyncio.sleep(0.5)
        for ep_id in ("c0-e0", "c0-e1"):
            assert fleet.heard[ep_id].frequency(t0, mic) == pytest.approx(1000, rel=0.01)
        for ep_id in ("c1-e0", "c1-e1"):
            assert fleet.heard[ep_id].since(t0, mic) == []

        await client.close()  # DELETE, then close the peer connection
        client = None
        await wait_for(lambda: "mic" not in relay.node.broadcasts, 5, "the broadcast to end")
        assert not peers_of(relay).sessions
        entry = next(e for e in (await relay.api("GET", "/log"))["entries"] if e["id"] == mic)
        assert entry["state"] == "stopped"
        assert entry["reason"] == "stopped by the publisher (WHIP DELETE)"
        assert entry["source"] == "whip"
        assert entry["targets"] == {"zones": ["c0"], "endpoints": []}
        assert set(entry["heard_s"]) == {"c0-e0", "c0-e1"}
        assert all(s > 0.3 for s in entry["heard_s"].values())
    finally:
        if client is not None:
            await client.close()
        await fleet.close()


@pytest.mark.e2e
async def test_publisher_that_vanishes_ends_the_broadcast(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client = await publish(relay, "?zones=c1", sine(500))
    gone = client.broadcast or ""
    await wait_for(
        lambda: (b := relay.node.broadcasts.get(gone)) is not None and b.frames > 10,
        10,
        "audio from the publisher",
    )
    await client.close(delete=False)  # the browser tab closes: RTCP BYE, no DELETE
    await wait_for(lambda: "gone" not in relay.node.broadcasts, 10, "the broadcast to end")
    await wait_for(lambda: not peers_of(relay).sessions, 5, "the session to close")
    entry = await relay.api("GET", f"/broadcasts/{gone}")
    assert (entry["state"], entry["reason"]) == ("finished", "finished")
    assert any(e["id"] == gone for e in (await relay.api("GET", "/log"))["entries"])


@pytest.mark.e2e
async def test_publisher_whose_audio_stops_is_timed_out(
    webrtc_relay: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whip, "IDLE_TIMEOUT_S", 1.0)
    relay = await webrtc_relay(tree_config(tmp_path))
    client = await publish(relay, "?zones=c1", sine(500))
    cut = client.broadcast or ""
    try:
        await wait_for(
            lambda: (b := relay.node.broadcasts.get(cut)) is not None and b.frames > 10,
            10,
            "audio from the publisher",
        )
        # The network path dies without a goodbye: no BYE, no DTLS close, no more RTP.
        client.pc.getTransceivers()[0].sender.replaceTrack(None)
        await wait_for(lambda: "cut" not in relay.node.broadcasts, 5, "the broadcast to end")
        await wait_for(lambda: not peers_of(relay).sessions, 5, "the session to close")
        entry = await relay.api("GET", f"/broadcasts/{cut}")
        assert entry["state"] == "failed"
        assert entry["reason"] == "no audio from the publisher for 1 s"
    finally:
        await client.close(delete=False)


@pytest.mark.e2e
async def test_default_targets_are_the_root_zones_live(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client = await publish(relay, "", sine(500))
    try:
        (bc,) = relay.node.broadcasts.values()
        assert bc.spec.target_zones == {"p"} and not bc.spec.target_endpoints
        assert bc.spec.priority.name == "LIVE"
        assert bc.log.what == "live from WHIP"
    finally:
        await client.close()


async def post(relay: Relay, body: str, *, query: str = "", headers: Any = None) -> Any:
    hdrs = {**AUTH, "Content-Type": "application/sdp"} if headers is None else headers
    async with relay.http.post(f"{relay.url}/api/v1/whip{query}", data=body, headers=hdrs) as r:
        text = await r.text()
        return r.status, r.headers, text


@pytest.mark.e2e
async def test_whip_rejects_bad_requests(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    good = await offer_sdp()

    status, _, text = await post(relay, good, headers={"Content-Type": "application/sdp"})
    assert status == 401 and "missing Authorization" in text
    wrong = {"Authorization": "Bearer nope", "Content-Type": "application/sdp"}
    status, _, text = await post(relay, good, headers=wrong)
    assert status == 401 and "invalid or revoked API token" in text

    status, _, text = await post(relay, good, headers={**AUTH, "Content-Type": "text/plain"})
    assert status == 415 and "application/sdp, got text/plain" in text

    status, _, text = await post(relay, "hello, this is not SDP")
    assert status == 400 and "malformed SDP: an offer starts with 'v=0'" in text
    status, _, text = await post(relay, "v=0\r\nm=audio x RTP/AVP 0\r\n")
    assert status == 400 and "malformed SDP" in text
    no_ice = "".join(line + "\r\n" for line in good.splitlines() if not line.startswith("a=ice-"))
    status, _, text = await post(relay, no_ice)
    assert status == 400 and "no a=ice-ufrag/ice-pwd" in text

    status, _, text = await post(relay, await offer_sdp(kind="video"))
    assert status == 422 and "no audio section, only video" in text
    status, _, text = await post(relay, await offer_sdp(direction="recvonly"))
    assert status == 422 and "needs one of ('sendonly', 'sendrecv')" in text
    pcmu_only = "".join(
        line + "\r\n"
        for line in good.splitlines()
        if "opus" not in line.lower() and not line.startswith("a=fmtp:96")
    )
    status, _, text = await post(relay, pcmu_only)
    assert status == 422 and "no Opus codec" in text

    status, _, text = await post(relay, good, query="?zones=nowhere")
    assert status == 404 and "zone nowhere not found" in text
    status, _, text = await post(relay, good, query="?zones=c0&class=loud")
    assert status == 400 and "one of background, scheduled, priority, live, emergency" in text
    status, _, text = await post(relay, good, query="?zones=c0&chime=maybe")
    assert status == 400 and 'query parameter \\"chime\\" must be bool' in text

    # Refused by the router after negotiating: the peer connection is closed again.
    em = (await relay.api("POST", "/broadcasts", tone_body(700, ["c0"], "emergency"), 201))["id"]
    status, _, text = await post(relay, good, query="?zones=c0&exclusive=1")
    assert status == 409 and em in text
    await relay.api("DELETE", f"/broadcasts/{em}")

    async with relay.http.delete(f"{relay.url}/api/v1/whip/0123456789abcdef", headers=AUTH) as r:
        assert r.status == 404 and "WHIP session 0123456789abcdef not found" in await r.text()
    async with relay.http.patch(f"{relay.url}/api/v1/whip/0123456789abcdef", headers=AUTH) as r:
        assert r.status == 405 and r.headers["Allow"] == "DELETE"
        assert "trickle ICE" in await r.text()
    assert not relay.node.broadcasts and not peers_of(relay).sessions


@pytest.mark.e2e
async def test_whip_limits_concurrent_sessions(
    webrtc_relay: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whip, "MAX_WHIP_SESSIONS", 1)
    relay = await webrtc_relay(tree_config(tmp_path))
    client = await publish(relay, "?zones=c0", sine(500))
    try:
        status, _, text = await post(relay, await offer_sdp(), query="?zones=c1")
        assert status == 503 and "too many WHIP sessions (limit 1)" in text
        assert len(relay.node.broadcasts) == 1
    finally:
        await client.close()


@pytest.mark.e2e
async def test_shutdown_closes_publishers_and_logs_their_broadcasts(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client = await publish(relay, "?zones=c0", sine(500))
    late = client.broadcast or ""
    session = next(iter(peers_of(relay).sessions.values()))
    node = relay.node
    await relay.server.close()
    assert session.pc.connectionState == "closed"
    assert not peers_of(relay).sessions
    (entry,) = [e for e in node.history if e.id == late]
    assert entry.state == "stopped" and entry.reason == "server shutting down"
    await client.close(delete=False)


async def test_ingest_jitter_buffer_waits_for_one_packet_not_four(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        whip.shallow_jitter_buffer(receiver)
        assert receiver._RTCRtpReceiver__jitter_buffer._prefetch == 1  # type: ignore[attr-defined]
    finally:
        await pc.close()
    whip.shallow_jitter_buffer(object())
    assert "ingest keeps its default 80 ms jitter buffer" in caplog.text
