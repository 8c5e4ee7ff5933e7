"""A minimal server side of the speaker protocol (version 1), for the client's tests only.

An aiohttp app with the WebSocket control endpoint and a UDP socket, both on 127.0.0.1 port
0. It checks the token, answers hellos with a welcome, acks verified UDP hellos/keepalives
(unless told to ignore them), records statuses and transport switches, and sends an Opus
tone as RTP over whichever transport the speaker asked for."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from loa.codecs.opus import OpusEncoder
from loa.codecs.opus_packet import join
from loa.codecs.pcm import tone
from loa.relay.core.reception import ntp_timestamp
from loa.relay.core.wire import ControlDatagram, DatagramType, looks_like_control
from tests.support.rtp import opus_packet


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.server._on_datagram(data, addr)


class FakeServer:
    def __init__(self, token: str = "good-token", *, keepalive_s: float = 10.0, volume: int = 80):
        self.token = token
        self.keepalive_s = keepalive_s
        self.volume = volume
        self.ignore_udp = False
        # clock probes: say so in the welcome and answer them (t2 = t3 = the wall clock);
        # acks to probes go out in reverse order in groups of ``reverse_acks``, each twice
        self.clock_probes = False
        self.reverse_acks = 1
        self._held: list[bytes] = []
        self.connections = 0
        self.connect_times: list[float] = []
        self.refused = 0
        self.counters: list[int] = []  # every verified hello/keepalive counter, in order
        self.kinds: list[DatagramType] = []
        self.transport_modes: list[str] = []
        self.statuses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.mode = "udp"
        self.speaker_addr: tuple[Any, ...] | None = None
        self.ws: web.WebSocketResponse | None = None
        self._session = b""
        self._key = b""
        self.ssrc = 0x1234ABCD
        self._seq = 100
        self._ts = 5000
        self._sample = 0
        self._encoder = OpusEncoder(bitrate_bps=32_000, fec=True)
        self._runner: web.AppRunner | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.port = 0
        self.udp_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen (on ``port``, e.g. the one of before a ``close()``; 0 picks one)."""
        app = web.Application()
        app.router.add_get("/api/v1/speaker", self._handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=("127.0.0.1", 0)
        )
        self.udp_port = self._udp.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- control channel -----------------------------------------------------------------

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = json.loads((await ws.receive(timeout=5)).data)
        if hello.get("type") != "hello" or hello.get("token") != self.token:
            self.refused += 1
            await ws.send_json({"type": "error", "code": "bad_token", "message": "unknown token"})
            await ws.close(code=4401)
            return ws
        self.connections += 1
        self.connect_times.append(asyncio.get_running_loop().time())
        self._session, self._key = os.urandom(8), os.urandom(32)
        self.mode = "udp"
        self.speaker_addr = None
        self.ws = ws
        await ws.send_json(
            {
                "type": "welcome",
                "session": self._session.hex(),
                "key": self._key.hex(),
                "endpoint": "ep-1",
                "udp_host": "127.0.0.1",
                "udp_port": self.udp_port,
                "ssrc": self.ssrc,
                "payload_type": 111,
                "clock_rate": 48000,
                "keepalive_s": self.keepalive_s,
                "volume": self.volume,
                "muted": False,
                **({"clock_probes": True} if self.clock_probes else {}),
            }
        )
        await ws.send_json({"type": "playing", "broadcast": None, "class": None, "volume": None})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "status":
                self.statuses.put_nowait(data)
            elif data.get("type") == "transport":
                self.mode = data["mode"]
                self.transport_modes.append(data["mode"])
        if self.ws is ws:
            self.ws = None
        return ws

    async def send_json(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def drop(self) -> None:
        """Close the speaker's control channel, as a restarting server would."""
        assert self.ws is not None
        await self.ws.close(code=1012)

    # --- UDP -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not looks_like_control(data):
            return
        dgram = ControlDatagram.parse(data)
        if dgram.session != self._session or not dgram.verify(self._key):
            return
        if self.counters and dgram.counter <= self.counters[-1]:
            return  # replay
        self.counters.append(dgram.counter)
        self.kinds.append(dgram.type)
        if self.ignore_udp:
            return
        self.speaker_addr = addr
        times: tuple[int, ...] = ()
        if self.clock_probes and dgram.times:
            now = ntp_timestamp(time.time())
            times = (dgram.times[0], now, now)
        ack = ControlDatagram.signed(
            DatagramType.ACK, self._session, dgram.counter, self._key, times
        )
        assert self._udp is not None
        if not times:
            self._udp.sendto(bytes(ack), addr)
            return
        self._held.append(bytes(ack))
        if len(self._held) >= self.reverse_acks:
            for held in reversed(self._held):
                self._udp.sendto(held, addr)
                self._udp.sendto(held, addr)  # a replay: the speaker must take it once
            self._held.clear()

    # --- audio ---------------------------------------------------------------------------

    def next_packet(self, pcm: np.ndarray, *, marker: bool = False) -> bytes:
        """One RTP packet of ``pcm``: 20 ms, or 40/60 ms of 20 ms frames joined as the relay
        joins them for a zone with longer packets."""
        frames = [self._encoder.encode(pcm[i : i + 960]) for i in range(0, pcm.size, 960)]
        packet = opus_packet(join(frames), self._seq, self._ts, self.ssrc, marker)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + pcm.size) & 0xFFFFFFFF
        return packet

    async def deliver(self, packet: bytes) -> None:
        if self.mode == "ws":
            assert self.ws is not None
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(packet)
        else:
            assert self._udp is not None
            assert self.speaker_addr is not None
            self._udp.sendto(packet, self.speaker_addr)

    async def send_tone(
        self,
        freq_hz: float,
        frames: int,
        *,
        level_dbfs: float = -6.0,
        paced: bool = True,
        per_packet: int = 1,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        """``frames`` 20 ms frames of a sine, ``per_packet`` to a packet, the first packet with
        the marker bit, paced in real time; the packets numbered in ``skip`` are lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for i in range(frames // per_packet):
            n = 960 * per_packet
            pcm = tone(freq_hz, n, start=self._sample, level_dbfs=level_dbfs)
            self._sample += n
            packet = self.next_packet(pcm, marker=i == 0)
            if i not in skip:
                await self.deliver(packet)
            if paced:
                deadline += 0.02 * per_packet
                await asyncio.sleep(max(0.0, deadline - loop.time()))
