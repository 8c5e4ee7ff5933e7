"""WHIP and WHEP clients for tests and benches: publish a track, or listen to a zone, the way
a browser or OBS does (offer, 201 with the answer and Location, DELETE at the end)."""

from __future__ import annotations

import aiohttp
from aiortc import MediaStreamTrack, RTCSessionDescription
from yarl import URL

from loa.web.webrtc import new_peer_connection, opus_only


class WebRtcClient:
    """The client side of WHIP or WHEP for one peer connection: ``start()`` POSTs the
    offer and applies the answer, ``close()`` DELETEs the session and closes the
    connection. Used by tests, benches and relay-to-relay pulls."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.pc = new_peer_connection()
        self.location: str | None = None

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def negotiate(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.url,
                data=self.pc.localDescription.sdp,
                headers=self._headers(**{"Content-Type": "application/sdp"}),
            ) as resp,
        ):
            body = await resp.text()
            if resp.status != 201:
                raise ConnectionError(f"{self.url} answered {resp.status}: {body}")
            self.location = str(URL(self.url).join(URL(resp.headers["Location"])))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

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
