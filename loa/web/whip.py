"""WHIP ingest (RFC 9725): a browser's microphone or OBS becomes a live broadcast.

``POST /api/v1/whip`` takes an SDP offer (audio, Opus) and answers 201 with the SDP answer
and ``Location: /api/v1/whip/{session}``; ``DELETE`` there ends the broadcast. aiortc
receives the track and decodes the Opus to av frames; ``loa.streamer.whip.WhipSource``
resamples them to 48 kHz mono s16 and cuts 20 ms frames for the broadcast, which encodes
them once like any other source. Targets and class come from the query string
(``?zones=a,b&endpoints=x&class=live&chime=0&name=...``); OBS sends only the bearer token,
so without targets a session goes to every root zone of the tree as class ``live``. What the
answer says to each kind of publisher (the DTLS role, rejected video sections, CORS) is
``webrtc.answer``'s and ``cors``'s; docs/DESIGN.md, "WHIP and WHEP clients as they are"."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiohttp import web
from aiortc.jitterbuffer import JitterBuffer

from loa.access import User
from loa.errors import BadRequest
from loa.relay.broadcast import Broadcast
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.streamer.base import Source
from loa.streamer.tone import ChimeSource
from loa.streamer.whip import IDLE_TIMEOUT_S, WhipSource
from loa.web.api.relay import broadcast_spec, may_stop, node_of
from loa.web.keys import PEERS, USER
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

MAX_WHIP_SESSIONS: Final = 8  # concurrent publishers per node
BROADCAST_HEADER: Final = "X-Loa-Broadcast"  # names the broadcast in the 201


# -- the WHIP resource ------------------------------------------------------------------
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _query_bool(query: Any, key: str) -> bool | None:
    value = query.get(key)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"{key} must be 1/0 or true/false, got {value!r}")


def _ids(query: Any, key: str) -> list[str]:
    return [v for part in query.getall(key, []) for v in part.split(",") if v]


def whip_spec(query: Any, node: Node, user: User) -> tuple[BroadcastSpec, bool, str | None]:
    """The broadcast a WHIP session starts, from its query string: (spec, chime, name).

    Without zones or endpoints (OBS sends only the token) the user's default applies: an
    operator's own zone, an admin's every root zone; class ``live``."""
    zones, endpoints = _ids(query, "zones"), _ids(query, "endpoints")
    if not zones and not endpoints:
        roots = [z for z in node.zones if node.zones.parent(z) is None]
        zones = [user.zone] if user.zone is not None else roots
    data: dict[str, Any] = {"targets": {"zones": zones, "endpoints": endpoints}}
    for key in ("class", "origin_zone"):
        if key in query:
            data[key] = query[key]
    for key in ("interrupt", "exclusive"):
        data[key] = _query_bool(query, key)
    if "expires_at" in query:
        try:
            data["expires_at"] = float(query["expires_at"])
        except ValueError:
            raise BadRequest("expires_at must be a Unix time in seconds") from None
    spec = broadcast_spec(data, node, user, resumable=False, live=True)
    chime = _query_bool(query, "chime")
    if chime is None:
        chime = spec.priority is Priority.EMERGENCY and node.config.relay.chime
    name = query.get("name")
    if name is not None and not 0 < len(name) <= 200:
        raise BadRequest("name must be 1-200 characters")
    return spec, chime, name


class WhipSession(PeerSession):
    """A publisher and its broadcast: either ending ends the other."""

    kind = "whip"
    deleted = "stopped by the publisher (WHIP DELETE)"

    def __init__(self, pc: Any, peers: Peers, node: Node) -> None:
        super().__init__(pc, peers)
        self.node = node
        self.broadcast: Broadcast | None = None

    async def serve(self) -> None:
        assert self.broadcast is not None
        bc = self.broadcast
        waits = {
            asyncio.ensure_future(self._ended.wait()),
            asyncio.ensure_future(bc.ended.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self.end(f"broadcast {bc.log.state}: {bc.log.reason}")

    async def teardown(self) -> None:
        bc = self.broadcast
        if bc is not None and bc.id in self.node.broadcasts:
            log.info("[whip=%s bc=%s] ending the broadcast: %s", self.id, bc.id, self.reason)
            await self.node.stop_broadcast(bc.id, reason=self.reason or "stopped")

    def check_access(self, request: web.Request) -> None:
        if self.broadcast is not None:
            missing = f"WHIP session {self.id} not found"
            may_stop(request[USER], self.node, self.broadcast.spec, missing)


def shallow_jitter_buffer(receiver: Any) -> None:
    """aiortc holds 4 audio packets (80 ms) before it decodes the first; every speaker
    already runs its own 40-80 ms adaptive jitter buffer, so ingest waits for one packet
    only (it needs the next packet to know a frame is complete). Reordering within the
    16-packet window is still repaired. aiortc has no public knob for this."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if isinstance(getattr(receiver, attr, None), JitterBuffer):
        setattr(receiver, attr, JitterBuffer(capacity=16, prefetch=1))
    else:
        log.warning("aiortc's receiver changed: ingest keeps its default 80 ms jitter buffer")


async def whip_post(request: web.Request) -> web.Response:
    """POST /whip: an SDP offer with audio (Opus) → 201, the answer, the session's URL."""
    node = node_of(request)
    peers = request.config_dict[PEERS]
    offer = await read_offer(request)
    keep = check_offer(offer, direction="send")
    spec, chime, name = whip_spec(request.query, node, request[USER])
    peers.reserve("whip", MAX_WHIP_SESSIONS)
    pc = new_peer_connection()
    session = WhipSession(pc, peers, node)
    try:
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        transceiver.setCodecPreferences(opus_only())
        shallow_jitter_buffer(transceiver.receiver)
        sdp = await answer(pc, offer, keep)
        prelude: Source | None = None
        if chime:
            prelude = ChimeSource()
        source = WhipSource(
            transceiver.receiver.track,
            name=f"whip-{session.id}",
            idle_timeout_s=IDLE_TIMEOUT_S,
            prelude=prelude,
        )
        session.broadcast = await node.start_broadcast(
            spec,
            source,
            what=name or "live from WHIP",
            source_kind="whip",
            created_by=request[USER].username,
        )
    except BaseException:
        await session.abandon()
        raise
    session.start()
    log.info("[whip=%s bc=%s] publishing to %s", session.id, spec.id, sorted(spec.target_zones))
    resp = created(request, session, sdp)
    resp.headers[BROADCAST_HEADER] = spec.id  # the server chose it: the page finds itself by it
    return resp


def setup(api: web.Application) -> None:
    """Add WHIP (POST /whip, DELETE|PATCH /whip/{session}) to the /api/v1 sub-app."""
    add_session_routes(api, "whip", whip_post)
