"""WebRTC with aiortc, what WHIP (``whip.py``) and WHEP (``whep.py``) share: SDP offer
checks, the answer, the registry of peer connections (closed on shutdown), and the session
resource both expose (RFC 9725: POST → 201 with Location, DELETE ends it, PATCH is 405).

Candidates: aiortc gathers every host address before answering (no trickle ICE); no STUN
or TURN server is configured, so nothing leaves an intranet."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from loa.codecs.sdp import Sdp
from loa.errors import BadRequest, NotFound, TooManySessions, UnsupportedMediaType, UnsupportedOffer
from loa.web import cors
from loa.web.contract import OPERATION_ATTR, Operation
from loa.web.keys import PEERS
from loa.web.middlewares import error_json

log = logging.getLogger(__name__)

MAX_SDP_BYTES: Final = 64 * 1024
_GONE: Final = ("failed", "closed")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def check_offer(sdp: str, *, direction: str) -> int:
    """The index of the m= section a session uses: the first audio section that can
    ``direction`` ("send" for WHIP, "recv" for WHEP) with Opus; the answer rejects every
    other section. BadRequest for text that is not an SDP offer we can negotiate (RFC 8866
    lines, ICE credentials, a DTLS fingerprint); UnsupportedOffer when no audio section fits."""
    if not sdp.startswith("v=0"):
        raise BadRequest("malformed SDP: an offer starts with 'v=0'")
    try:
        Sdp.parse(sdp)
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
    opus = [m for m in usable if any(c.mimeType.lower() == "audio/opus" for c in m.rtp.codecs)]
    if not opus:
        codecs = sorted({c.mimeType for m in usable for c in m.rtp.codecs}) or ["none"]
        raise UnsupportedOffer(f"the offer's audio has no Opus codec (offered: {codecs})")
    chosen = opus[0]
    if chosen.ice is None or not chosen.ice.usernameFragment or not chosen.ice.password:
        raise BadRequest("malformed SDP: the audio section has no a=ice-ufrag/ice-pwd")
    if chosen.dtls is None or not chosen.dtls.fingerprints:
        raise BadRequest("malformed SDP: the audio section has no a=fingerprint (DTLS)")
    return desc.media.index(chosen)


def opus_only() -> list[RTCRtpCodecCapability]:
    caps = RTCRtpSender.getCapabilities("audio")
    return [c for c in caps.codecs if c.mimeType.lower() == "audio/opus"]


def new_peer_connection() -> RTCPeerConnection:
    # An empty server list: aiortc would otherwise ask Google's STUN server, which an
    # intranet deployment cannot reach and which only adds gathering time.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def answer(pc: RTCPeerConnection, offer: str, keep: int) -> str:
    """Apply ``offer`` and return the answer with every candidate gathered (no trickle).

    Only section ``keep`` (``check_offer``'s choice) is negotiated; every other section
    comes back rejected, port 0 (OBS offers video, browsers may offer a data channel: aiortc
    would accept them ``recvonly`` and the publisher would upload video for nothing). An
    ``actpass`` offer is answered ``passive`` (``answer_as_dtls_server``)."""
    full = Sdp.parse(offer)
    wanted = full.keeping([keep])
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=str(wanted), type="offer"))
    except (ValueError, AssertionError, LookupError) as exc:
        raise BadRequest(f"SDP offer rejected: {exc or type(exc).__name__}") from None
    answer_as_dtls_server(pc, str(wanted))
    await pc.setLocalDescription(await pc.createAnswer())
    mine = Sdp.parse(pc.localDescription.sdp)
    return str(full.answer_rejecting(mine, [keep]))


def answer_as_dtls_server(pc: RTCPeerConnection, offer: str) -> None:
    """Answer an ``actpass`` offer with ``a=setup:passive``: we are the DTLS server.

    aiortc answers ``active`` (it is the DTLS client), and its client hello offers only
    ECDHE-ECDSA cipher suites: a peer with an RSA certificate (GStreamer's webrtcbin) then
    fails the handshake with "no shared cipher". As the server, aiortc keeps its ECDSA
    certificate and picks a suite from the client's list, which works with RSA and ECDSA
    peers alike (RFC 8842 §5.3 lets the answerer take either role). An offer that says
    ``active`` already gets ``passive``; one that says ``passive`` still gets ``active``.
    aiortc has no public knob for the role: this sets its transports' own before
    ``createAnswer`` reads it, and says so in the log if aiortc changed."""
    roles = {m.dtls.role for m in SessionDescription.parse(offer).media if m.dtls is not None}
    if roles != {"auto"}:
        return
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if getattr(transport, "_role", None) == "auto" and hasattr(transport, "_set_role"):
            transport._set_role("server")
        elif getattr(transport, "_role", None) != "server":
            log.warning("aiortc's DTLS transport changed: an actpass offer is answered active")


# -- sessions -----------------------------------------------------------------------------
class PeerSession:
    """One peer connection; driven by its own task, which waits for ``end(reason)`` (DELETE,
    shutdown, the peer's connection failing or closing, or the subclass's own end) and then
    tears down and closes the connection. The registry owns the task."""

    kind = "peer"
    deleted = "deleted by its peer"  # the reason a DELETE of the session gives

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

    def check_access(self, request: web.Request) -> None:
        """Raise NotFound (or Forbidden, Unauthorized) unless the request's user (or token)
        may end this session; a kind of session that names nobody is ended by nobody."""
        raise NotFound(f"{self.kind.upper()} session {self.id} not found")


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


def created(request: web.Request, session: PeerSession, sdp: str, query: str = "") -> web.Response:
    """RFC 9725 §4.2: 201, the answer as application/sdp, the session URL in Location
    (with ``query``, e.g. the token a client that authenticates in the URL needs)."""
    return web.Response(
        status=201,
        text=sdp,
        content_type="application/sdp",
        headers={"Location": f"{request.path.rstrip('/')}/{session.id}{query}"},
    )


async def _patch_not_allowed(_request: web.Request) -> web.Response:
    """We gather every candidate before answering, so neither trickle ICE nor ICE restarts
    are offered: RFC 9725 §4.3 says answer PATCH with 405."""
    resp = error_json(
        405,
        "method_not_allowed",
        "trickle ICE and ICE restart are not supported: the answer carries every candidate",
    )
    resp.headers["Allow"] = "DELETE"
    return resp


def add_session_routes(api: web.Application, kind: str, post: Handler) -> None:
    """``POST /{kind}`` (``post`` negotiates and answers), ``DELETE /{kind}/{session}``
    (the session's owner, or whoever its ``check_access`` lets, ends it), ``PATCH`` (405),
    ``OPTIONS`` on both (CORS preflights, ``loa.web.cors``); the registry too, once per app."""
    ensure_peers(api)

    async def delete(request: web.Request) -> web.Response:
        session = request.config_dict[PEERS].get(kind, request.match_info["session"])
        session.check_access(request)
        await session.close(session.deleted)
        return web.Response(status=200)

    api.router.add_post(f"/{kind}", post)
    api.router.add_delete(f"/{kind}/{{session}}", delete)
    api.router.add_route("PATCH", f"/{kind}/{{session}}", _patch_not_allowed)
    name = kind.upper()
    for path, methods, what in (
        (f"/{kind}", ("POST",), f"the {name} endpoint"),
        (f"/{kind}/{{session}}", ("DELETE", "PATCH"), f"a {name} session"),
    ):
        options = cors.preflight(methods, accept_post=methods == ("POST",))
        # Declared on the handler, so the preflight's query string (the one of the request it
        # precedes) is not held to a declaration of its own.
        summary = f"CORS preflight (or plain OPTIONS) for {what}: Allow, allowed origins"
        setattr(
            options,
            OPERATION_ATTR,
            Operation(summary, "webrtc", ok=204, errors=(403,), public=True),
        )
        api.router.add_route("OPTIONS", path, options)
