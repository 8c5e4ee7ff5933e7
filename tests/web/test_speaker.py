"""The speaker WebSocket's outbound side on a fake socket: control texts in order, audio that a
slow speaker cannot take in time dropped by age (and counted), and the close made last."""

from __future__ import annotations

import asyncio
import json

from loa.relay.core.channel import ServerChannel
from loa.relay.core.control import Volume
from loa.relay.metrics import Metrics
from loa.web.speaker import AUDIO_MAX_AGE_S, SpeakerPeer
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
