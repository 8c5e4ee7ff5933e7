"""The speaker control channel, /api/v1/speaker: JSON control, binary audio fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from loa.relay.core.session import Transport
from loa.relay.node import Endpoint, Node

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
PROTOCOL_VERSION = 1
# Audio queued for a WebSocket speaker beyond this is stale: drop the oldest (Snapcast-style).
AUDIO_QUEUE_FRAMES = 10
STATUS_FIELDS = {
    "received",
    "lost",
    "recovered",
    "late",
    "jitter_ms",
    "buffer_ms",
    "volume",
    "muted",
    "playing",
    "concealed",
    "underruns",
}


class SpeakerPeer:
    """One connected speaker's outbound side: bounded queues drained by one writer task, so
    the fan-out loop never awaits a slow peer."""

    def __init__(self, ws: web.WebSocketResponse, node: Node) -> None:
        self.ws = ws
        self.node = node
        self.audio: deque[bytes] = deque(maxlen=AUDIO_QUEUE_FRAMES)
        self.control: deque[str] = deque(maxlen=100)
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None

    def send_json(self, message: dict[str, Any]) -> None:
        self.control.append(json.dumps(message))
        self._wake.set()

    def send_audio(self, packet: bytes) -> None:
        if len(self.audio) == self.audio.maxlen:
            self.node.metrics.ws_audio_dropped += 1
        self.audio.append(packet)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        self._close = (code, reason)
        self._wake.set()

    async def writer(self) -> None:
        ws = self.ws
        while not ws.closed:
            await self._wake.wait()
            self._wake.clear()
            while self.control:
                await ws.send_str(self.control.popleft())
            while self.audio:
                await ws.send_bytes(self.audio.popleft())
            if self._close is not None:
                await ws.close(code=self._close[0], message=self._close[1].encode())
                return


async def _refuse(
    ws: web.WebSocketResponse, node: Node, code: str, message: str, close: int
) -> None:
    node.metrics.speaker_refused += 1
    await ws.send_json({"type": "error", "code": code, "message": message})
    await ws.close(code=close, message=message.encode()[:120])


async def _read_hello(ws: web.WebSocketResponse, node: Node) -> Endpoint | None:
    try:
        msg = await ws.receive(timeout=HELLO_TIMEOUT_S)
    except TimeoutError:
        await _refuse(ws, node, "bad_hello", "no hello within 10 s", 4400)
        return None
    if msg.type is not WSMsgType.TEXT:
        await _refuse(ws, node, "bad_hello", "the first message must be a JSON hello", 4400)
        return None
    try:
        hello = json.loads(msg.data)
    except ValueError:
        await _refuse(ws, node, "bad_hello", "hello is not valid JSON", 4400)
        return None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        await _refuse(ws, node, "bad_hello", 'expected {"type": "hello", ...}', 4400)
        return None
    if hello.get("version", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        await _refuse(ws, node, "unsupported_version", "protocol version 1 only", 4400)
        return None
    token = hello.get("token")
    ep = node.endpoint_by_token(token) if isinstance(token, str) and token else None
    if ep is None or ep.spec.kind != "managed":
        await _refuse(ws, node, "bad_token", "unknown device token", 4401)
        return None
    return ep


def _udp_host(request: web.Request, node: Node) -> str:
    if node.config.relay.public_host:
        return node.config.relay.public_host
    host = request.url.host or "127.0.0.1"
    return host


async def speaker_handler(request: web.Request) -> web.WebSocketResponse:
    from loa.web.app import NODE

    node = request.config_dict[NODE]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    ep = await _read_hello(ws, node)
    if ep is None:
        return ws
    loop = asyncio.get_running_loop()
    peer = SpeakerPeer(ws, node)
    session = node.attach_speaker(ep, peer, loop.time())
    peer.send_json(
        {
            "type": "welcome",
            "session": session.id.hex(),
            "key": session.key.hex(),
            "endpoint": ep.id,
            "udp_host": _udp_host(request, node),
            "udp_port": node.config.relay.public_udp_port or node.udp_port,
            "ssrc": session.rewriter.ssrc,
            "payload_type": 111,
            "clock_rate": 48000,
            "keepalive_s": node.config.relay.keepalive_s,
            "volume": ep.volume,
            "muted": ep.muted,
        }
    )
    holder = node.router.holder(ep.id)
    peer.send_json(node.playing_message(ep, node.broadcasts.get(holder) if holder else None))
    writer = asyncio.create_task(peer.writer(), name=f"loa-ws-{ep.id}")
    try:
        await _control_loop(ws, node, ep, session)
    finally:
        node.detach_speaker(ep, peer, loop.time())
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def _control_loop(ws: web.WebSocketResponse, node: Node, ep: Endpoint, session: Any) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue  # speakers send no binary; ignore rather than drop the connection
        try:
            data = json.loads(msg.data)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        match data.get("type"):
            case "status":
                ep.status = {k: v for k, v in data.items() if k in STATUS_FIELDS}
                ep.last_seen = time.time()
            case "transport" if data.get("mode") in ("ws", "udp") and not session.closed:
                node.sessions.set_transport(session.id, data["mode"])
                log.info("[ep=%s] audio transport: %s", ep.id, data["mode"])
            case other:  # newer speakers may send more; ignore rather than disconnect
                log.debug("[ep=%s] ignored message type %r", ep.id, other)


__all__ = ["SpeakerPeer", "Transport", "speaker_handler"]
