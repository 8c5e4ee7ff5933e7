"""WHIP and WHEP clients as they are (issue 14 item 7), against a real server on loopback:
GStreamer's webrtcbin (an RSA DTLS certificate) publishing Opus that real speakers hear,
publishers that claim each DTLS role, OBS-shaped offers with video, and WHEP players
that offer video too."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency, rms_dbfs
from loa.codecs.sdp import Sdp
from loa.web import webrtc
from tests.conftest import ADMIN, Relay, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.relay.relayfix import tone as tone_body
from tests.support.gstreamer import GstPublisher
from tests.support.webrtc import WhepClient, WhipClient, with_setup, with_video, without_rejected
from tests.web import test_whip as whip_tests
from tests.web.test_whip import PcmTrack, peers_of, sine

loopback = whip_tests.loopback
webrtc_relay = whip_tests.webrtc_relay

pytestmark = pytest.mark.e2e


def setup_of(sdp: str) -> list[str | None]:
    return [a for m in Sdp.parse(sdp).media for a in m.attributes("setup")]


def ports(sdp: str) -> list[tuple[str, int]]:
    return [(m.kind, m.port) for m in Sdp.parse(sdp).media]


async def speakers(relay: Relay, config: Any) -> Fleet:
    fleet = Fleet(relay.url, [(e.id, e.token or "") for e in config.endpoints])
    await fleet.start()
    ids = [e.id for e in config.endpoints]
    await wait_for(lambda: on_transport(relay.node, ids), 15, "speakers on UDP")
    return fleet


# -- GStreamer's webrtcbin ---------------------------------------------------------------
async def loa_speaker(relay: Relay, token: str, wav: Path) -> asyncio.subprocess.Process:
    """``loa speaker`` as a pole runs it, writing what it plays to ``wav``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "speaker", "--server", relay.url, "--token", token,
        "--wav", str(wav), "--status-interval", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
async def test_gstreamer_webrtcbin_publishes_and_the_commune_hears_it(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    """webrtcbin offers actpass with an RSA certificate: answered passive (we are the DTLS
    server), it connects; answered active, it failed with "no shared cipher". One pole of
    the commune is ``loa speaker`` itself (a process writing a WAV), the others the fleet."""
    config = tree_config(tmp_path)
    relay = await webrtc_relay(config)
    wav = tmp_path / "c0-e0.wav"
    pole = await loa_speaker(relay, "tok-c0-e0", wav)
    others = [e for e in config.endpoints if e.id != "c0-e0"]
    fleet = Fleet(relay.url, [(e.id, e.token or "") for e in others])
    await fleet.start()
    gst = GstPublisher(f"{relay.url}/api/v1/whip?zones=c0&chime=0", token=ADMIN, freq=440)
    try:
        ids = [e.id for e in config.endpoints]
        await wait_for(lambda: on_transport(relay.node, ids), 15, "speakers on UDP")
        t0 = time.monotonic()
        await gst.start()
        answered = await gst.wait("answered")
        assert answered["status"] == 201 and "/api/v1/whip/" in answered["location"]
        gst_id = answered["broadcast"]
        assert set(setup_of(answered["offer"])) == {"actpass"}
        assert setup_of(answered["answer"]) == ["passive"]
        await gst.wait("state", connection="connected")
        bc = await relay.api("GET", f"/broadcasts/{gst_id}")
        assert (bc["source"], bc["class"]) == ("whip", "live")
        await wait_for(
            lambda: fleet.heard["c0-e1"].frequency(t0, gst_id) > 0, 15, "c0 hearing GStreamer"
        )
        assert fleet.heard["c0-e1"].frequency(t0, gst_id) == pytest.approx(440, rel=0.02)
        for ep_id in ("c1-e0", "c1-e1"):
            assert fleet.heard[ep_id].since(t0, gst_id) == []
        await asyncio.sleep(1.0)  # the pole's WAV ends with a second of it
        await stop(pole)
        with wave.open(str(wav)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert dominant_frequency(pcm[-24000:]) == pytest.approx(440, rel=0.01)
        assert await gst.close() == 0
        assert gst.event("deleted", status=200) is not None, gst.transcript()
        await wait_for(lambda: gst_id not in relay.node.broadcasts, 5, "the broadcast to end")
        entry = await relay.api("GET", f"/broadcasts/{gst_id}")
        assert entry["reason"] == "stopped by the publisher (WHIP DELETE)"
        assert entry["heard_s"]["c0-e0"] > 1.0
        assert "no shared cipher" not in gst.transcript()
    finally:
        await gst.close()
        await fleet.close()
        await stop(pole)


@pytest.mark.slow
async def test_an_obs_shaped_gstreamer_publisher_sends_no_video(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    """webrtcbin with audio and VP8 video: the answer rejects the video (port 0); webrtcbin
    accepts that answer, sends audio only, and the speakers hear it."""
    config = tree_config(tmp_path, communes=1)
    relay = await webrtc_relay(config)
    fleet = await speakers(relay, config)
    gst = GstPublisher(
        f"{relay.url}/api/v1/whip?zones=c0&chime=0", token=ADMIN, freq=660, video=True
    )
    try:
        t0 = time.monotonic()
        await gst.start()
        answered = await gst.wait("answered")
        assert [kind for kind, _ in ports(answered["offer"])] == ["audio", "video"]
        obs = answered["broadcast"]
        assert ports(answered["answer"])[1] == ("video", 0)
        assert ports(answered["answer"])[0][1] > 0
        await gst.wait("applied")
        await gst.wait("state", connection="connected")
        (session,) = peers_of(relay).sessions.values()
        assert [t.kind for t in session.pc.getTransceivers()] == ["audio"]
        await wait_for(
            lambda: fleet.heard["c0-e0"].frequency(t0, obs) > 0, 15, "c0 hearing the audio"
        )
        assert fleet.heard["c0-e0"].frequency(t0, obs) == pytest.approx(660, rel=0.02)
        await asyncio.sleep(1.0)  # a second more for video that should not be there
        await gst.close()
        sent = (await gst.wait("sent"))["packets"]
        assert sent.get("audio", 0) > 50 and sent.get("video", 0) == 0, sent
    finally:
        await gst.close()
        await fleet.close()


# -- DTLS roles with aiortc publishers ----------------------------------------------------
@pytest.mark.parametrize(
    ("offered", "answered"),
    [("actpass", "passive"), ("active", "passive"), ("passive", "active")],
)
async def test_each_dtls_role_a_publisher_claims_connects(
    webrtc_relay: Any, tmp_path: Path, offered: str, answered: str
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    client = WhipClient(
        f"{relay.url}/api/v1/whip?zones=c1", token=ADMIN, edit_offer=with_setup(offered)
    )
    try:
        await client.start(PcmTrack(sine(500)))
        assert setup_of(client.offer) == [offered]
        assert setup_of(client.answer) == [answered]
        await wait_for(
            lambda: (
                (b := relay.node.broadcasts.get(client.broadcast or "")) is not None
                and b.frames > 10
            ),
            10,
            "audio over DTLS-SRTP",
        )
    finally:
        await client.close()


def test_an_aiortc_without_the_role_knob_is_said_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Receiver:
        transport = object()  # an RTCDtlsTransport without _role/_set_role

    class Transceiver:
        receiver = Receiver()

    class Pc:
        def getTransceivers(self) -> list[Any]:
            return [Transceiver()]

    offer = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:actpass\r\n"
    offer += "a=fingerprint:sha-256 AA:BB\r\na=rtpmap:111 opus/48000/2\r\n"
    webrtc.answer_as_dtls_server(Pc(), offer)  # type: ignore[arg-type]
    assert "an actpass offer is answered active" in caplog.text


# -- offers with video ---------------------------------------------------------------------
@pytest.mark.parametrize("video_first", [False, True])
async def test_an_obs_shaped_offer_gets_its_video_rejected(
    webrtc_relay: Any, tmp_path: Path, video_first: bool
) -> None:
    """OBS offers audio and H.264 video, bundled: the answer rejects the video (port 0, the
    same mid, outside the BUNDLE group) and the audio plays."""
    relay = await webrtc_relay(tree_config(tmp_path))
    client = WhipClient(
        f"{relay.url}/api/v1/whip?zones=c1",
        token=ADMIN,
        edit_offer=lambda sdp: with_video(sdp, first=video_first),
        edit_answer=without_rejected,
    )
    try:
        await client.start(PcmTrack(sine(500)))
        answer = Sdp.parse(client.answer)
        kinds = [m.kind for m in answer.media]
        assert kinds == (["video", "audio"] if video_first else ["audio", "video"])
        video = answer.media[kinds.index("video")]
        audio = answer.media[kinds.index("audio")]
        assert video.port == 0 and video.mid == "obs-video"
        assert video.attributes("candidate") == [] and video.attributes("inactive") == [None]
        assert audio.port > 0 and audio.attributes("recvonly") == [None]
        bundle = [ln for ln in answer.session if ln.startswith("a=group:BUNDLE")]
        assert bundle == [f"a=group:BUNDLE {audio.mid}"]
        await wait_for(
            lambda: (
                (b := relay.node.broadcasts.get(client.broadcast or "")) is not None
                and b.frames > 10
            ),
            10,
            "the audio beside the rejected video",
        )
        (session,) = peers_of(relay).sessions.values()
        assert [t.kind for t in session.pc.getTransceivers()] == ["audio"]
    finally:
        await client.close()


async def test_a_whep_player_that_offers_video_gets_audio_only(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    await relay.api("POST", "/broadcasts", tone_body(700, ["c0"], "live"), 201)

    def recvonly_video(sdp: str) -> str:
        return with_video(sdp).replace("a=sendonly", "a=recvonly")

    client = WhepClient(
        f"{relay.url}/api/v1/whep?zone=c0",
        token=ADMIN,
        edit_offer=recvonly_video,
        edit_answer=without_rejected,
    )
    try:
        track = await client.start()
        assert ports(client.answer)[1] == ("video", 0)
        loud = 0
        async with asyncio.timeout(10):
            while loud < 10:
                frame = await track.recv()
                loud += rms_dbfs(frame.to_ndarray().flatten()) > -30
    finally:
        await client.close()
