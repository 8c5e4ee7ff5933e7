"""The speaker control channel, ``GET /api/v1/speaker``: JSON control, binary audio fallback.

The protocol is the core's (``loa.relay.core.control.ServerChannel``): this handler moves
its texts over the WebSocket, looks the hello's token up, and tells the node. Outbound
traffic goes through ``SpeakerPeer``: a queue of control texts and a ``PacketSink`` of RTP
packets drained by one writer task, so the fan-out never awaits a slow speaker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import WSCloseCode, WSMsgType, web

from loa.clustering import ClusterMember
from loa.codecs import RED_PAYLOAD_TYPE
from loa.relay.core.channel import (
    Authenticate,
    Close,
    Ignored,
    Send,
    ServerAction,
    ServerChannel,
    StatusReported,
    TransportRequested,
)
from loa.relay.core.control import Hello, Message, Welcome
from loa.relay.core.session import Session
from loa.relay.metrics import Metrics
from loa.relay.node import Endpoint, Node
from loa.relay.sink import PacketSink
from loa.store import hash_token
from loa.web.keys import CLUSTER, NODE, SPEAKERS

log = logging.getLogger(__name__)

# Audio queued for a WebSocket speaker longer than this is stale: drop it, oldest first
# (Snapcast-style); 200 ms is 10 frames.
AUDIO_MAX_AGE_S = 0.2
CONTROL_QUEUE = 100


class SpeakerPeer:
    """One connected speaker's outbound side, as the node sees it (``relay.node.Peer``):
    bounded queues drained by one writer task, so the fan-out never awaits a slow peer."""

    def __init__(self, ws: web.WebSocketResponse, channel: ServerChannel, metrics: Metrics) -> None:
        self.ws = ws
        self.channel = channel
        self.metrics = metrics
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.audio = PacketSink(
            loop.time, max_age_s=AUDIO_MAX_AGE_S, on_push=self._wake.set, unwrap=False
        )
        self.control: deque[str] = deque(maxlen=CONTROL_QUEUE)
        self._close: tuple[int, str] | None = None
        self._dropped_counted = 0
        self.endpoint: str | None = None  # the endpoint id, once welcomed

    def send(self, message: Message) -> None:
        self.queue(self.channel.send(message))

    def send_audio(self, packet: bytes) -> None:
        self.audio.push(packet)

    def close(self, code: int, reason: str) -> None:
        self._close = (code, reason)
        self._wake.set()

    def queue(self, actions: list[ServerAction]) -> None:
        """Texts to send and a close to make, in order, from the channel."""
        for action in actions:
            match action:
                case Send(text=text):
                    self.control.append(text)
                case Close(code=code, reason=reason):
                    self._close = (code, reason)
        self._wake.set()

    async def writer(self) -> None:
        """Send what was queued, in order, until closed. A speaker whose connection died
        under us (aiohttp raises ConnectionResetError on a closing transport: a pole that
        gave this node up, a partition) ends it quietly: the control loop sees the close."""
        ws = self.ws
        try:
            while not ws.closed:
                await self._wake.wait()
                self._wake.clear()
                while self.control:
                    await ws.send_str(self.control.popleft())
                for packet in self.audio.drain():
                    await ws.send_bytes(packet)
                self._count_drops()
                if self._close is not None:
                    code, reason = self._close
                    await ws.close(code=code, message=reason.encode()[:120])
                    return
        except ConnectionResetError as exc:
            log.info("[ep=%s] the speaker's connection is gone: %s", self.endpoint, exc)

    def _count_drops(self) -> None:
        self.metrics.ws_audio_dropped += self.audio.dropped - self._dropped_counted
        self._dropped_counted = self.audio.dropped


def _udp_host(request: web.Request, node: Node) -> str:
    return node.config.relay.public_host or request.url.host or "127.0.0.1"


def welcome(request: web.Request, node: Node, ep: Endpoint, session: Session) -> Welcome:
    relay = node.config.relay
    member = request.config_dict.get(CLUSTER)
    return Welcome(
        session=session.id,
        key=session.key,
        endpoint=ep.id,
        udp_host=_udp_host(request, node),
        udp_port=relay.public_udp_port or node.udp_port,
        ssrc=session.rewriter.ssrc,
        keepalive_s=relay.keepalive_s,
        volume=ep.volume,
        muted=ep.muted,
        servers=member.servers(ep.id) if member is not None else (),
        playout_delay_ms=node.zones.audio(ep.spec.zone).playout_delay_ms,
        red_payload_type=RED_PAYLOAD_TYPE if session.red else None,
        clock_probes=True,
    )


async def _perform(ws: web.WebSocketResponse, actions: list[ServerAction]) -> None:
    """Before the writer runs (the handshake): send and close in order, directly. A
    connection already gone (the speaker gave up) ends it: the next receive says closed."""
    try:
        for action in actions:
            match action:
                case Send(text=text):
                    await ws.send_str(text)
                case Close(code=code, reason=reason):
                    await ws.close(code=code, message=reason.encode()[:120])
    except ConnectionResetError as exc:
        log.info("a speaker's connection is gone during its handshake: %s", exc)


async def _authenticate(
    ws: web.WebSocketResponse, channel: ServerChannel, node: Node
) -> tuple[Endpoint, Hello] | None:
    """Read until the hello is checked: the speaker's endpoint and hello, or None once
    refused."""
    loop = asyncio.get_running_loop()
    while channel.deadline is not None:
        try:
            msg = await ws.receive(timeout=max(0.0, channel.deadline - loop.time()))
        except TimeoutError:
            actions = channel.on_timeout(loop.time())
        else:
            if msg.type is WSMsgType.TEXT:
                actions = channel.on_text(msg.data, loop.time())
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return None
            else:
                actions = channel.on_binary(loop.time())
        for action in actions:
            if isinstance(action, Authenticate):
                ep = node.endpoint_by_token_hash(hash_token(action.hello.token))
                if ep is not None and ep.spec.kind == "managed":
                    return ep, action.hello
                actions = channel.refuse_token()
                break
        if channel.refused is not None:
            node.metrics.speaker_refused += 1
        await _perform(ws, actions)
    return None


async def speaker_handler(request: web.Request) -> web.WebSocketResponse:
    node = request.config_dict[NODE]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    channel = ServerChannel(loop.time())
    found = await _authenticate(ws, channel, node)
    if found is None:
        return ws
    ep, hello = found
    member = request.config_dict.get(CLUSTER)
    if member is not None and not member.admits(ep.id, hello.lost):
        node.metrics.speaker_redirected += 1
        await _perform(ws, channel.redirect(member.servers(ep.id), "another node serves it"))
        return ws
    if member is not None and not member.admission(loop.time()):  # a storm: come back soon
        node.metrics.speaker_redirected += 1
        await _perform(ws, channel.redirect(member.servers(ep.id), "busy"))
        return ws
    peer = SpeakerPeer(ws, channel, node.metrics)
    peer.endpoint = ep.id
    peers = request.config_dict[SPEAKERS]
    peers.add(peer)
    session = node.attach_speaker(ep, peer, loop.time(), red=hello.red)
    peer.queue(channel.accept(welcome(request, node, ep, session)))
    peer.send(node.playing_message(ep))
    writer = asyncio.create_task(peer.writer(), name=f"loa-ws-{ep.id}")
    try:
        await _control_loop(ws, channel, node, ep, session)
    finally:
        peers.discard(peer)
        node.detach_speaker(ep, peer, loop.time())
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def _control_loop(
    ws: web.WebSocketResponse, channel: ServerChannel, node: Node, ep: Endpoint, session: Session
) -> None:
    loop = asyncio.get_running_loop()
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue  # speakers send no binary; ignore rather than drop the connection
        for action in channel.on_text(msg.data, loop.time()):
            match action:
                case StatusReported(fields=fields):
                    node.report_status(ep, fields)
                case TransportRequested(mode=mode):
                    node.request_transport(ep, session, mode)
                case Ignored(what=what):  # newer speakers may send more: ignore, stay
                    log.debug("[ep=%s] ignored: %s", ep.id, what)


async def close_speakers(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for handlers to end: say goodbye (1001 going away)
    to every connected speaker, so their handlers end now and the speakers reconnect to
    whichever node comes back, instead of the server waiting out its shutdown timeout."""
    for peer in app[SPEAKERS].copy():
        peer.close(WSCloseCode.GOING_AWAY, "server shutting down")


def redirect_moved(api_app: web.Application, member: ClusterMember) -> None:
    """Cluster: the assignment changed; send away the speakers whose commune another live
    node serves now (the speaker reconnects there after a short random wait)."""
    for peer in api_app[SPEAKERS].copy():
        owner = member.owner(peer.endpoint) if peer.endpoint else None
        if owner is not None and owner != member.id:
            member.node.metrics.speaker_redirected += 1
            peer.queue(peer.channel.redirect(member.servers(peer.endpoint or ""), "moved"))


def setup(api_app: web.Application) -> None:
    """Add ``GET /speaker`` to the API sub-app; a second call does nothing."""
    if SPEAKERS in api_app:
        return
    peers: set[SpeakerPeer] = set()
    api_app[SPEAKERS] = peers
    api_app.router.add_get("/speaker", speaker_handler)
    api_app.on_shutdown.append(close_speakers)
