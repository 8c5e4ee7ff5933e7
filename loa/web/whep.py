"""WHEP listening: ``POST /api/v1/whep?zone=Z`` with an SDP offer → 201, the answer and
the session's URL; ``DELETE`` there ends it. A user who sees the zone may listen, and so may
anyone with the zone's listen token (the one its Ogg mount takes, ``loa.web.listen``), as
``Authorization: Bearer`` or ``?token=``: a player on a commune office PC needs no account.

A WHEP listener is a virtual endpoint (``Node.attach_listener``): it hears exactly what a
pole in its zone hears. The broadcast's Opus packets are already encoded once; their
payload goes to the browser unchanged — ``OpusPacketTrack.recv()`` returns ``av.Packet``s,
which aiortc's sender *packs* (``OpusEncoder.pack``) instead of encoding. When nothing is
on air the track sends the Opus silence packet every 20 ms, so the browser's track stays
alive and its jitter buffer does not starve into a stall."""

from __future__ import annotations

import asyncio
import fractions
import logging
from typing import Any, Final
from urllib.parse import quote

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from loa.access import can_see_zone
from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.opus import SILENCE_PACKET
from loa.errors import BadRequest, NotFound, Unauthorized
from loa.relay.node import Endpoint, Node
from loa.relay.sink import PacketSink
from loa.web.api.relay import node_of
from loa.web.keys import PEERS, USER
from loa.web.listen import may_listen, token_of
from loa.web.webrtc import (
    Peers,
    PeerSession,
    add_session_routes,
    answer,
    check_offer,
    created,
    new_peer_connection,
    opus_only,
    read_offer,
)

log = logging.getLogger(__name__)

MAX_WHEP_LISTENERS: Final = 200  # each costs the relay an SRTP stream (see the WHEP bench)
MAX_AGE_S: Final = 0.1  # audio a slow listener may lag (5 frames) before the oldest goes
# Nothing from the broadcast for this long: fill with silence so the browser keeps playing.
IDLE_AFTER_S: Final = 3 * FRAME_S
TIME_BASE: Final = fractions.Fraction(1, SAMPLE_RATE)


class OpusPacketTrack(MediaStreamTrack):
    """An audio track of already-encoded Opus packets; aiortc's sender pulls ``recv()``.

    ``sink.push`` (the node's listener sink, never blocking) keeps the RTP packets' payloads
    for at most ``max_age_s``. ``recv`` returns the next one as an ``av.Packet`` on a
    continuous 48 kHz timeline; after ``IDLE_AFTER_S`` without broadcast packets it returns
    silence packets on 20 ms absolute deadlines."""

    kind = "audio"

    def __init__(self, *, max_age_s: float = MAX_AGE_S) -> None:
        super().__init__()
        self._clock_loop = asyncio.get_running_loop()
        self.sink = PacketSink(self._clock_loop.time, max_age_s=max_age_s, on_push=self._wake)
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0
        self._last_sent: float | None = None
        self._silence_due: float | None = None
        self.silence_sent = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = self._clock_loop
        if not len(self.sink):
            await self._wait(loop)
            if self.readyState != "live":
                raise MediaStreamError
        now = loop.time()
        payload = self.sink.take()
        if payload is not None:
            self._silence_due = None
        else:
            payload = SILENCE_PACKET
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
        timer = loop.call_at(deadline, self._wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stop(self) -> None:
        super().stop()
        self._wake()


class WhepSession(PeerSession):
    """A browser (or any WHEP player) listening to one zone."""

    kind = "whep"
    deleted = "deleted by the listener"

    def __init__(self, pc: RTCPeerConnection, peers: Peers, node: Node, zone: str) -> None:
        super().__init__(pc, peers)
        self.node = node
        self.zone = zone
        self.track = OpusPacketTrack()
        self.endpoint: Endpoint | None = None

    def attach(self) -> None:
        self.endpoint = self.node.attach_listener(self.zone, self.track.sink.push)
        log.info("[whep=%s] listening to zone %s as %s", self.id, self.zone, self.endpoint.id)

    async def teardown(self) -> None:
        if self.endpoint is not None:
            self.node.detach_listener(self.endpoint)
            self.endpoint = None
        self.track.stop()

    def check_access(self, request: web.Request) -> None:
        user = request.get(USER)
        if user is None:  # the zone's listen token (or the admin token), as for the POST
            allowed(request, self.node, self.zone)
        elif not can_see_zone(user, self.node.zones, self.zone):
            raise NotFound(f"WHEP session {self.id} not found")


def allowed(request: web.Request, node: Node, zone: str) -> None:
    """A request without a user (``auth.by_listen_token``) must carry the zone's listen
    token or the admin token, as the zone's Ogg mount does; checked before the zone is
    looked up, so a refusal does not say which zones exist."""
    if not may_listen(token_of(request), zone, node.config.admin_token):
        raise Unauthorized(
            f"listening to zone {zone} by WHEP needs an API token, or the zone's listen token "
            "(Authorization: Bearer or ?token=)"
        )


async def whep_post(request: web.Request) -> web.Response:
    """POST /whep?zone=Z with an SDP offer (audio, recvonly) → 201 and the answer. Who may:
    a user who sees the zone, or anyone with the zone's listen token."""
    node = node_of(request)
    peers = request.config_dict[PEERS]
    zone = request.query.get("zone", "")
    if not zone:
        raise BadRequest("say which zone to listen to: /whep?zone=<zone id>")
    user = request.get(USER)
    if user is None:
        allowed(request, node, zone)
    if zone not in node.zones or (user is not None and not can_see_zone(user, node.zones, zone)):
        raise NotFound(f"zone {zone} not found", zone=zone)  # unknown or out of scope alike
    offer = await read_offer(request)
    keep = check_offer(offer, direction="recv")
    peers.reserve("whep", MAX_WHEP_LISTENERS)
    pc = new_peer_connection()
    session = WhepSession(pc, peers, node, zone)
    try:
        transceiver = pc.addTransceiver(session.track, direction="sendonly")
        transceiver.setCodecPreferences(opus_only())
        sdp = await answer(pc, offer, keep)
        session.attach()
    except BaseException:
        await session.abandon()
        raise
    session.start()
    # A player that authenticated in the URL ends its session by the URL too.
    in_url = request.query.get("token")
    by_url = user is None and in_url is not None and token_of(request) == in_url
    query = f"?token={quote(in_url, safe='')}" if by_url and in_url else ""
    return created(request, session, sdp, query)


def setup(api: web.Application) -> None:
    """Add WHEP (POST /whep, DELETE|PATCH /whep/{session}) and the peer registry."""
    add_session_routes(api, "whep", whep_post)
