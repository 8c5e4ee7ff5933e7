"""The speaker WebSocket's outbound side on a fake socket: control texts in order, audio that a
slow speaker cannot take in time dropped by age (and counted), and the close made last."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from loa.relay.core.channel import Send, ServerChannel
from loa.relay.core.control import Volume
from loa.relay.metrics import Metrics
from loa.web.speaker import AUDIO_MAX_AGE_S, SpeakerPeer, _perform
from tests.relay.core.test_control import WELCOME, hello


class FakeWs:
    def __init__(self) -> None:
        self.closed = False
        self.sent: list[str | bytes] = []
        self.close_args: tuple[int, bytes] | None = None

    async def send_str(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed, self.close_args = True, (code, message)


def opened() -> ServerChannel:
    channel = ServerChannel(now=0.0)
    channel.on_text(hello(), now=0.0)
    return channel


async def test_stale_audio_is_dropped_by_age_and_counted() -> None:
    ws, metrics = FakeWs(), Metrics()
    channel = opened()
    peer = SpeakerPeer(ws, channel, metrics)  # type: ignore[arg-type]
    peer.queue(channel.accept(WELCOME))
    for i in range(30):  # far more than 200 ms of audio at once is fine while it is fresh
        peer.send_audio(bytes([0x80, i]))
    await asyncio.sleep(AUDIO_MAX_AGE_S + 0.05)  # the speaker took nothing meanwhile
    peer.send_audio(b"\x80fresh")
    peer.send(Volume(20))
    peer.close(4409, "replaced by a newer connection")
    await asyncio.wait_for(peer.writer(), 2)
    welcome, volume, *audio = ws.sent
    assert json.loads(welcome)["type"] == "welcome"  # type: ignore[arg-type]
    assert json.loads(volume) == {"type": "volume", "volume": 20}  # type: ignore[arg-type]
    assert audio == [b"\x80fresh"]
    assert metrics.ws_audio_dropped == 30
    assert ws.close_args == (4409, b"replaced by a newer connection")


class GoneWs(FakeWs):
    """A connection that died under the server: aiohttp raises ConnectionResetError
    ("Cannot write to closing transport") on a write, and ``closed`` is not set yet."""

    async def send_str(self, text: str) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    send_bytes = send_str  # type: ignore[assignment]


async def test_a_connection_gone_under_the_writer_ends_it_quietly(caplog: Any) -> None:
    """Before: the writer died with the error and the handler's ``await writer`` re-raised
    it, a traceback in the node's log (the cluster's partition test found it)."""
    ws, metrics = GoneWs(), Metrics()
    channel = opened()
    peer = SpeakerPeer(ws, channel, metrics)  # type: ignore[arg-type]
    peer.endpoint = "c0-e0"
    peer.queue(channel.accept(WELCOME))
    peer.send_audio(b"\x80audio")
    with caplog.at_level(logging.INFO, logger="loa.web.speaker"):
        await asyncio.wait_for(peer.writer(), 2)  # returns, raises nothing
        await _perform(ws, [Send("{}")])  # type: ignore[arg-type]
    assert ws.sent == []
    assert "[ep=c0-e0] the speaker's connection is gone" in caplog.text
    assert "during its handshake" in caplog.text
