"""WHIP and WHEP clients for tests and benches: publish a track, or listen to a zone, the way
a browser or OBS does (offer, 201 with the answer and Location, DELETE at the end)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiortc import MediaStreamTrack, RTCSessionDescription
from yarl import URL

from loa.codecs.sdp import Sdp
from loa.web.webrtc import new_peer_connection, opus_only

Edit = Callable[[str], str]


class WebRtcClient:
    """The client side of WHIP or WHEP for one peer connection: ``start()`` POSTs the
    offer and applies the answer, ``close()`` DELETEs the session and closes the
    connection. Used by tests, benches and relay-to-relay pulls.

    ``edit_offer`` changes the offer's text before it is sent (to look like another client);
    ``edit_answer`` the answer's before aiortc applies it. ``offer`` and ``answer`` keep
    what went over the wire."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        edit_offer: Edit | None = None,
        edit_answer: Edit | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.pc = new_peer_connection()
        self.location: str | None = None
        self.broadcast: str | None = None  # a WHIP answer names the broadcast (X-Loa-Broadcast)
        self.edit_offer = edit_offer or (lambda sdp: sdp)
        self.edit_answer = edit_answer or (lambda sdp: sdp)
        self.offer = self.answer = ""

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def negotiate(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offer = self.edit_offer(self.pc.localDescription.sdp)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.url,
                data=self.offer,
                headers=self._headers(**{"Content-Type": "application/sdp"}),
            ) as resp,
        ):
            body = await resp.text()
            if resp.status != 201:
                raise ConnectionError(f"{self.url} answered {resp.status}: {body}")
            self.location = str(URL(self.url).join(URL(resp.headers["Location"])))
            self.broadcast = resp.headers.get("X-Loa-Broadcast")
        self.answer = body
        answer = self.edit_answer(body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self, *, delete: bool = True) -> None:
        try:
            if delete and self.location is not None:
                async with (
                    aiohttp.ClientSession() as http,
                    http.delete(self.location, headers=self._headers()) as resp,
                ):
                    if resp.status not in (200, 204):
                        raise ConnectionError(
                            f"DELETE {self.location} answered {resp.status}: {await resp.text()}"
                        )
        finally:
            self.location = None
            await self.pc.close()


class WhepClient(WebRtcClient):
    """Listens to a WHEP endpoint; ``track`` yields the decoded audio (av.AudioFrame)."""

    async def start(self) -> MediaStreamTrack:
        transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        transceiver.setCodecPreferences(opus_only())
        await self.negotiate()
        track: MediaStreamTrack = transceiver.receiver.track
        return track


class WhipClient(WebRtcClient):
    """Publishes one audio track (anything whose ``recv()`` returns av.AudioFrame) by WHIP."""

    async def start(self, track: MediaStreamTrack) -> None:
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(opus_only())
        await self.negotiate()


def with_setup(role: str) -> Edit:
    """An offer edit: the DTLS role the offerer claims (``a=setup:actpass`` → ``role``)."""
    return lambda sdp: sdp.replace("a=setup:actpass", f"a=setup:{role}")


def with_video(sdp: str, *, first: bool = False) -> str:
    """The offer as OBS sends it: a bundled H.264 video section beside the audio (after it,
    or before it when ``first``), with the audio's ICE credentials and fingerprint."""
    offer = Sdp.parse(sdp)
    (audio,) = offer.media
    video = [
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=mid:obs-video",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:96 H264/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc:4242 cname:obs",
        *audio.transport(),
    ]
    session = [
        f"{line} obs-video" if line.startswith("a=group:BUNDLE") else line for line in offer.session
    ]
    parts = [video, list(audio.lines)] if first else [list(audio.lines), video]
    return "".join(f"{line}\r\n" for line in [*session, *parts[0], *parts[1]])


def without_rejected(sdp: str) -> str:
    """An answer with its rejected (port 0) sections taken out, for aiortc to apply: the
    test's client offered them only on the wire."""
    answer = Sdp.parse(sdp)
    return str(Sdp(answer.session, tuple(m for m in answer.media if m.port != 0)))
