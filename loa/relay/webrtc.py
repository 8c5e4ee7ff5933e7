"""WebRTC with aiortc: the peer-connection registry shared by WHIP and WHEP, SDP offer
checks, and WHEP listening (RFC 9725's sibling: offer → answer, Location, DELETE).

A WHEP listener is a virtual endpoint (``Node.attach_listener``): it hears exactly what a
pole in its zone hears. The broadcast's Opus packets are already encoded once; their
payload goes to the browser unchanged — ``OpusPacketTrack.recv()`` returns ``av.Packet``s,
which aiortc's sender *packs* (``OpusEncoder.pack``) instead of encoding. When nothing is
on air the track sends a precomputed Opus silence packet every 20 ms, so the browser's
track stays alive and its jitter buffer does not starve into a stall.

Candidates: aiortc gathers every host address before answering (no trickle ICE); no STUN
or TURN server is configured, so nothing leaves an intranet."""

from __future__ import annotations

import asyncio
import fractions
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import av
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from yarl import URL

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.opus import OpusEncoder
from loa.codecs.pcm import silence
from loa.errors import BadRequest, LoaError, NotFound
from loa.relay.node import Endpoint, Node
from loa.web.api.relay import node_of
from loa.web.auth import USER, can_see_zone
from loa.web.middlewares import error_json

log = logging.getLogger(__name__)

MAX_SDP_BYTES: Final = 64 * 1024
MAX_WHEP_LISTENERS: Final = 200  # each costs the relay an SRTP stream (see the WHEP bench)
LISTENER_QUEUE: Final = 5  # packets (100 ms) a slow listener may lag before the oldest drop
# Nothing from the broadcast for this long: fill with silence so the browser keeps playing.
IDLE_AFTER_S: Final = 3 * FRAME_S
TIME_BASE: Final = fractions.Fraction(1, SAMPLE_RATE)
_GONE: Final = ("failed", "closed")


class UnsupportedMediaType(LoaError, ValueError):
    code = "unsupported_media_type"
    status = 415


class UnsupportedOffer(LoaError, ValueError):
    """A well-formed SDP offer that asks for nothing we can do (no audio, no Opus)."""

    code = "unsupported_offer"
    status = 422


class TooManySessions(LoaError):
    code = "too_many_sessions"
    status = 503


# -- SDP ----------------------------------------------------------------------------------
async def read_offer(request: web.Request) -> str:
    """The request's SDP offer as text: 415 unless application/sdp, 400 if not SDP at all."""
    if request.content_type != "application/sdp":
        raise UnsupportedMediaType(
            f"send the SDP offer as application/sdp, got {request.content_type or 'nothing'}"
        )
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise BadRequest(f"SDP offer is larger than {MAX_SDP_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("SDP offer is not UTF-8 text") from None
    return text


def check_offer(sdp: str, *, direction: str) -> None:
    """Raise BadRequest for text that is not an SDP offer we can negotiate (RFC 8866 lines,
    ICE credentials, a DTLS fingerprint) and UnsupportedOffer when it has no audio section
    that can ``direction`` ("send" for WHIP, "recv" for WHEP) with Opus."""
    if not sdp.startswith("v=0"):
        raise BadRequest("malformed SDP: an offer starts with 'v=0'")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser asserts and raises bare errors on bad lines
        raise BadRequest(f"malformed SDP: {type(exc).__name__} {exc}".rstrip()) from None
    if not desc.media:
        raise UnsupportedOffer("SDP offer has no media section (m=audio)")
    audio = [m for m in desc.media if m.kind == "audio"]
    if not audio:
        kinds = ", ".join(sorted({m.kind for m in desc.media}))
        raise UnsupportedOffer(f"SDP offer has no audio section, only {kinds}")
    wanted = ("sendonly", "sendrecv") if direction == "send" else ("recvonly", "sendrecv")
    usable = [m for m in audio if m.direction in wanted or m.direction is None]
    if not usable:
        raise UnsupportedOffer(
            f"the offer's audio is {audio[0].direction}; this endpoint needs one of {wanted}"
        )
    if not any(c.mimeType.lower() == "audio/opus" for m in usable for c in m.rtp.codecs):
        codecs = sorted({c.mimeType for m in usable for c in m.rtp.codecs}) or ["none"]
        raise UnsupportedOffer(f"the offer's audio has no Opus codec (offered: {codecs})")
    for m in usable:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise BadRequest("malformed SDP: the audio section has no a=ice-ufrag/ice-pwd")
        if m.dtls is None or not m.dtls.fingerprints:
            raise BadRequest("malformed SDP: the audio section has no a=fingerprint (DTLS)")


def opus_only() -> list[RTCRtpCodecCapability]:
    caps = RTCRtpSender.getCapabilities("audio")
    return [c for c in caps.codecs if c.mimeType.lower() == "audio/opus"]


def new_peer_connection() -> RTCPeerConnection:
    # An empty server list: aiortc would otherwise ask Google's STUN server, which an
    # intranet deployment cannot reach and which only adds gathering time.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def answer(pc: RTCPeerConnection, offer: str) -> str:
    """Apply ``offer`` and return the answer with every candidate gathered (no trickle)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    except (ValueError, AssertionError, LookupError) as exc:
        raise BadRequest(f"SDP offer rejected: {exc or type(exc).__name__}") from None
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


# -- sessions -----------------------------------------------------------------------------
class PeerSession:
    """One peer connection; driven by its own task, which waits for ``end(reason)`` (DELETE,
    shutdown, the peer's connection failing or closing, or the subclass's own end) and then
    tears down and closes the connection. The registry owns the task."""

    kind = "peer"

    def __init__(self, pc: RTCPeerConnection, peers: Peers) -> None:
        self.id = secrets.token_hex(8)
        self.pc = pc
        self.peers = peers
        self.reason: str | None = None
        self._ended = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        pc.on("connectionstatechange", self._on_state)
        peers.sessions[self.id] = self  # counted against the limit while it negotiates

    async def abandon(self) -> None:
        """Undo a session whose negotiation failed (or was cancelled) before ``start()``."""
        self.peers.sessions.pop(self.id, None)
        await self.teardown()
        await self.pc.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"loa-{self.kind}-{self.id}")

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._ended.set()

    async def close(self, reason: str) -> None:
        self.end(reason)
        if self.task is not None:
            await asyncio.shield(self.task)
        else:  # still negotiating: its POST handler is cancelled with the server
            await self.abandon()

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.info("[%s=%s] peer connection %s", self.kind, self.id, state)
        if state in _GONE:
            self.end(f"peer connection {state}")

    async def _run(self) -> None:
        try:
            await self.serve()
        finally:
            self.peers.sessions.pop(self.id, None)
            try:
                await self.teardown()
            finally:
                await self.pc.close()
            log.info("[%s=%s] closed: %s", self.kind, self.id, self.reason)

    async def serve(self) -> None:
        """Return when the session is over; the default waits for ``end()``."""
        await self._ended.wait()

    async def teardown(self) -> None:
        """Release what the session holds, before its peer connection closes."""


class Peers:
    """Every peer connection of the app, by session id; closed on shutdown."""

    def __init__(self) -> None:
        self.sessions: dict[str, PeerSession] = {}

    def count(self, kind: str) -> int:
        return sum(1 for s in self.sessions.values() if s.kind == kind)

    def reserve(self, kind: str, limit: int) -> None:
        if self.count(kind) >= limit:
            raise TooManySessions(f"too many {kind.upper()} sessions (limit {limit}); retry later")

    def get(self, kind: str, session_id: str) -> PeerSession:
        session = self.sessions.get(session_id)
        if session is None or session.kind != kind:
            raise NotFound(f"{kind.upper()} session {session_id} not found")
        return session

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.close("server shutting down")


PEERS = web.AppKey("webrtc_peers", Peers)


def ensure_peers(api: web.Application) -> None:
    """Install the registry (and its cleanup context) once per app."""
    if PEERS in api:
        return
    api[PEERS] = Peers()

    async def peers_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[PEERS].close()

    api.cleanup_ctx.append(peers_ctx)
    # Close peers before the node shuts down (the parent's cleanup runs before a sub-app's):
    # a publisher then ends its broadcast as "server shutting down" rather than mid-frame.
    api.on_shutdown.append(lambda app: app[PEERS].close())


def created(request: web.Request, session: PeerSession, sdp: str) -> web.Response:
    """RFC 9725 §4.2: 201, the answer as application/sdp, the session URL in Location."""
    return web.Response(
        status=201,
        text=sdp,
        content_type="application/sdp",
        headers={"Location": f"{request.path.rstrip('/')}/{session.id}"},
    )


async def patch_not_allowed(_request: web.Request) -> web.Response:
    """We gather every candidate before answering, so neither trickle ICE nor ICE restarts
    are offered: RFC 9725 §4.3 says answer PATCH with 405."""
    resp = error_json(
        405,
        "method_not_allowed",
        "trickle ICE and ICE restart are not supported: the answer carries every candidate",
    )
    resp.headers["Allow"] = "DELETE"
    return resp


# -- WHEP ---------------------------------------------------------------------------------
_SILENCE: bytes | None = None


def silence_packet() -> bytes:
    """One 20 ms Opus packet of digital silence, encoded once per process."""
    global _SILENCE
    if _SILENCE is None:
        # CELT codes digital silence in 3 bytes (f8 ff fe) that decode to exact zeros.
        _SILENCE = OpusEncoder(fec=False, signal="music").encode(silence())
    return _SILENCE


def rtp_payload(packet: bytes) -> bytes:
    """The payload of an RTP packet from the node's rewriter (CSRCs and an RFC 8285
    extension skipped). ValueError if the packet is too short for what its header says."""
    if len(packet) < 12:
        raise ValueError(f"RTP packet of {len(packet)} bytes is shorter than its header")
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < offset + 4:
            raise ValueError("RTP extension header is truncated")
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    if len(packet) < offset:
        raise ValueError("RTP packet is shorter than its header and extension")
    return packet[offset:]


class OpusPacketTrack(MediaStreamTrack):
    """An audio track of already-encoded Opus packets; aiortc's sender pulls ``recv()``.

    ``push`` (the node's listener sink, never blocking) appends the RTP packet's payload to
    a bounded queue whose oldest packet drops when a listener lags. ``recv`` returns the
    next packet as an ``av.Packet`` on a continuous 48 kHz timeline; after ``IDLE_AFTER_S``
    without broadcast packets it returns silence packets on 20 ms absolute deadlines."""

    kind = "audio"

    def __init__(self, queue_packets: int = LISTENER_QUEUE) -> None:
        super().__init__()
        self._queue: deque[bytes] = deque()
        self._limit = queue_packets
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0
        self._last_sent: float | None = None
        self._silence_due: float | None = None
        self.received = 0
        self.dropped = 0
        self.silence_sent = 0

    def push(self, packet: bytes) -> None:
        try:
            payload = rtp_payload(packet)
        except ValueError:
            self.dropped += 1
            return
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(payload)
        self.received += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if not self._queue:
            await self._wait(loop)
            if self.readyState != "live":
                raise MediaStreamError
        now = loop.time()
        if self._queue:
            payload = self._queue.popleft()
            self._silence_due = None
        else:
            payload = silence_packet()
            self.silence_sent += 1
            due = self._silence_due if self._silence_due is not None else now
            self._silence_due = max(due, now - FRAME_S) + FRAME_S
        self._last_sent = now
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return packet

    async def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until a packet arrives or silence is due (or the track stops)."""
        if self._silence_due is not None:
            deadline = self._silence_due
        elif self._last_sent is not None:
            deadline = self._last_sent + IDLE_AFTER_S
        else:
            deadline = loop.time()  # nothing yet: start the browser's clock with silence
        if deadline <= loop.time():
            return
        self._waiter = waiter = loop.create_future()
        timer = loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def stop(self) -> None:
        super().stop()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WhepSession(PeerSession):
    """A browser (or any WHEP player) listening to one zone."""

    kind = "whep"

    def __init__(self, pc: RTCPeerConnection, peers: Peers, node: Node, zone: str) -> None:
        super().__init__(pc, peers)
        self.node = node
        self.zone = zone
        self.track = OpusPacketTrack()
        self.endpoint: Endpoint | None = None

    def attach(self) -> None:
        self.endpoint = self.node.attach_listener(self.zone, self.track.push)
        log.info("[whep=%s] listening to zone %s as %s", self.id, self.zone, self.endpoint.id)

    async def teardown(self) -> None:
        if self.endpoint is not None:
            self.node.detach_listener(self.endpoint)
            self.endpoint = None
        self.track.stop()


async def whep_post(request: web.Request) -> web.Response:
    """POST /whep?zone=Z with an SDP offer (audio, recvonly) → 201 and the answer."""
    node = node_of(request)
    peers = request.config_dict[PEERS]
    zone = request.query.get("zone", "")
    if not zone:
        raise BadRequest("say which zone to listen to: /whep?zone=<zone id>")
    if not can_see_zone(request[USER], node.zones, zone):  # unknown or out of scope alike
        raise NotFound(f"zone {zone} not found", zone=zone)
    offer = await read_offer(request)
    check_offer(offer, direction="recv")
    peers.reserve("whep", MAX_WHEP_LISTENERS)
    pc = new_peer_connection()
    session = WhepSession(pc, peers, node, zone)
    try:
        transceiver = pc.addTransceiver(session.track, direction="sendonly")
        transceiver.setCodecPreferences(opus_only())
        sdp = await answer(pc, offer)
        session.attach()
    except BaseException:
        await session.abandon()
        raise
    session.start()
    return created(request, session, sdp)


async def whep_delete(request: web.Request) -> web.Response:
    peers = request.config_dict[PEERS]
    session = peers.get("whep", request.match_info["session"])
    if isinstance(session, WhepSession) and not can_see_zone(
        request[USER], session.node.zones, session.zone
    ):
        raise NotFound(f"WHEP session {session.id} not found")
    await session.close("deleted by the listener")
    return web.Response(status=200)


def setup(api: web.Application) -> None:
    """Add WHEP (POST /whep, DELETE|PATCH /whep/{session}) and the peer registry."""
    ensure_peers(api)
    api.router.add_post("/whep", whep_post)
    api.router.add_delete("/whep/{session}", whep_delete)
    api.router.add_route("PATCH", "/whep/{session}", patch_not_allowed)


# -- clients ------------------------------------------------------------------------------
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
