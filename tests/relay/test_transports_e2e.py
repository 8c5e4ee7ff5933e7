"""Transports on loopback: NAT rebinding, blocked UDP, junk on the UDP port, bad tokens,
a killed and restarted server, and ffmpeg playing a static RTP endpoint from its SDP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from loa.config import RelayConfig
from loa.config import with_changes as replace
from loa.relay.core.session import Transport
from loa.relay.core.wire import ControlDatagram, DatagramType
from tests.conftest import ADMIN, need_binary, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import AUTH, free_port, on_transport, tone, tone_into

pytestmark = [pytest.mark.e2e]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Any) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_packet(data, addr)


class NatProxy:
    """Forwards a speaker's UDP to the server from an 'outside' socket, like a NAT; rebind()
    replaces the outside socket, so the server sees the same speaker from a new port."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.speaker: tuple[str, int] | None = None
        self.inside: _Side | None = None
        self.outside: _Side | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        _, self.inside = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_speaker), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()
        assert self.inside.transport is not None
        return int(self.inside.transport.get_extra_info("sockname")[1])

    async def rebind(self) -> int:
        if self.outside is not None and self.outside.transport is not None:
            self.outside.transport.close()
        _, self.outside = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Side(self._from_server), local_addr=("127.0.0.1", 0)
        )
        assert self.outside.transport is not None
        return int(self.outside.transport.get_extra_info("sockname")[1])

    def _from_speaker(self, data: bytes, addr: tuple[str, int]) -> None:
        self.speaker = addr
        if self.outside is not None and self.outside.transport is not None:
            self.outside.transport.sendto(data, self.server)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.speaker is not None and self.inside is not None and self.inside.transport:
            self.inside.transport.sendto(data, self.speaker)

    def close(self) -> None:
        for side in (self.inside, self.outside):
            if side is not None and side.transport is not None:
                side.transport.close()


async def test_nat_rebinding_keeps_audio_flowing(relay_factory: Any, tmp_path: Path) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=1)
    udp_port = free_port()
    proxy = NatProxy(udp_port)
    proxy_port = await proxy.start()
    config = replace(
        config,
        relay=replace(config.relay, udp_port=udp_port, public_udp_port=proxy_port),
    )
    relay = await relay_factory(config)
    fleet = Fleet(relay.url, [("c0-e0", "tok-c0-e0")])
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0"]), 10, "speaker on UDP")
        await relay.api("POST", "/broadcasts", tone(1000, ["p"], "live"), 201)
        await asyncio.sleep(0.8)
        session = relay.node.endpoints["c0-e0"].session
        assert session is not None
        first_port = session.destination[1]
        new_port = await proxy.rebind()
        t_rebind = time.monotonic()
        # The next keepalive (1 s in this config) moves the destination to the new mapping.
        await wait_for(
            lambda: session.destination is not None and session.destination[1] == new_port,
            5,
            "the server to follow the new NAT mapping",
        )
        assert new_port != first_port
        t_moved = time.monotonic()
        await asyncio.sleep(0.8)
        assert fleet.heard["c0-e0"].frequency(t_moved) == pytest.approx(1000, rel=0.01)
        assert t_moved - t_rebind < 2.5
    finally:
        await fleet.close()
        proxy.close()


async def test_blocked_udp_falls_back_to_websocket_audio(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=2)
    black_hole = free_port()  # nothing listens there: hellos vanish, as behind a strict firewall
    config = replace(config, relay=replace(config.relay, public_udp_port=black_hole))
    relay = await relay_factory(config)
    ids = ["c0-e0", "c0-e1"]
    fleet = Fleet(relay.url, [(i, f"tok-{i}") for i in ids], ws_fallback_after_s=1.0)
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ids, Transport.WS), 10, "WS fallback")
        t0 = time.monotonic()
        t_id = (await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201))["id"]
        await asyncio.sleep(1.0)
        for i in ids:
            assert fleet.heard[i].frequency(t0, t_id) == pytest.approx(1000, rel=0.01)
            assert fleet.speakers[i].jitter.stats().lost <= 1
    finally:
        await fleet.close()


async def test_junk_and_replays_are_dropped_and_audio_is_unaffected(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=3)
    relay = await relay_factory(config)
    ids = ["c0-e0", "c0-e1"]
    fleet = Fleet(relay.url, [(i, f"tok-{i}") for i in ids])
    await fleet.start()
    loop = asyncio.get_running_loop()
    attacker, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        await wait_for(lambda: on_transport(relay.node, ids), 10, "speakers on UDP")
        t0 = time.monotonic()
        t_id = (await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201))["id"]
        # A third endpoint's own session, so that its datagrams can be replayed.
        async with relay.http.ws_connect(relay.url + "/api/v1/speaker") as ws:
            await ws.send_json({"type": "hello", "token": "tok-c0-e2", "version": 1})
            welcome = await ws.receive_json(timeout=5)
            session, key = bytes.fromhex(welcome["session"]), bytes.fromhex(welcome["key"])
            target = ("127.0.0.1", relay.node.udp_port)
            hello = bytes(ControlDatagram.signed(DatagramType.HELLO, session, 7, key))
            forged = bytes(ControlDatagram.signed(DatagramType.HELLO, session, 8, b"k" * 32))
            stranger = bytes(ControlDatagram.signed(DatagramType.HELLO, b"\x01" * 8, 1, key))
            rng = np.random.default_rng(7)
            attacker.sendto(hello, target)
            for i in range(1500):
                attacker.sendto(rng.bytes(int(rng.integers(0, 300))), target)
                attacker.sendto(b"\x80\x6f" + rng.bytes(40), target)  # RTP-shaped
                if i % 100 == 0:
                    attacker.sendto(hello, target)  # replay
                    attacker.sendto(forged, target)
                    attacker.sendto(stranger, target)
                if i % 20 == 0:  # stay under the socket buffer: count drops, not kernel losses
                    await asyncio.sleep(0.005)
            await asyncio.sleep(1.0)
        drops = relay.node.sessions.drops
        assert drops["replay"] >= 15
        assert drops["bad_mac"] >= 15
        assert drops["unknown_session"] >= 15
        assert drops["rtp_from_peer"] + drops["malformed"] >= 1500
        for i in ids:
            assert fleet.heard[i].frequency(t0, t_id) == pytest.approx(1000, rel=0.01)
            assert fleet.speakers[i].jitter.stats().lost == 0
        metrics = await (await relay.http.get(relay.url + "/metrics")).text()
        assert 'loa_datagrams_dropped_total{reason="replay"}' in metrics
    finally:
        attacker.close()
        await fleet.close()


@pytest.mark.parametrize(
    ("hello", "code", "close"),
    [
        ({"type": "hello", "token": "wrong", "version": 1}, "bad_token", 4401),
        ({"type": "hello", "version": 1}, "bad_token", 4401),
        ({"type": "hello", "token": "tok-c0-e0", "version": 9}, "unsupported_version", 4400),
        ({"type": "status"}, "bad_hello", 4400),
        ("not json", "bad_hello", 4400),
    ],
)
async def test_bad_hellos_are_refused(
    relay_factory: Any, tmp_path: Path, hello: Any, code: str, close: int
) -> None:
    relay = await relay_factory(tree_config(tmp_path, communes=1, per_commune=1))
    async with relay.http.ws_connect(relay.url + "/api/v1/speaker") as ws:
        if isinstance(hello, str):
            await ws.send_str(hello)
        else:
            await ws.send_json(hello)
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error"
        assert reply["code"] == code
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == close
    assert relay.node.metrics.speaker_refused == 1
    assert relay.node.endpoints["c0-e0"].session is None


async def test_ffmpeg_plays_a_static_rtp_endpoint_from_its_sdp(
    relay_factory: Any, tmp_path: Path
) -> None:
    ffmpeg = need_binary("ffmpeg")
    rtp_port = free_port()
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{rtp_port}",))
    relay = await relay_factory(config)
    async with relay.http.get(relay.url + "/api/v1/endpoints/rtp0/sdp", headers=AUTH) as resp:
        sdp = await resp.text()
    (tmp_path / "rtp0.sdp").write_text(sdp)
    out = tmp_path / "out.raw"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg,
        "-nostdin",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file,udp,rtp",
        "-i",
        str(tmp_path / "rtp0.sdp"),
        "-t",
        "1.5",
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        "48000",
        "-y",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # ffmpeg binds its port before the first packet
    await tone_into(relay, proc, asyncio.sleep(0.5), 20)
    pcm = np.frombuffer(out.read_bytes(), dtype=np.int16)
    assert pcm.size >= 48000  # at least a second of audio
    assert dominant_frequency(pcm[-24000:]) == pytest.approx(1000, rel=0.01)


def write_config(path: Path, http_port: int, udp_port: int, n: int) -> None:
    lines = [
        f'admin_token = "{ADMIN}"',
        f'data_dir = "{path.parent / "data"}"',
        f'[web]\nhost = "127.0.0.1"\nport = {http_port}',
        f'[relay]\nudp_host = "127.0.0.1"\nudp_port = {udp_port}\nkeepalive_s = 1.0\n'
        "session_timeout_s = 3.0",
        '[[zones]]\nid = "p"\nname = "P"',
    ]
    for i in range(n):
        lines.append(f'[[endpoints]]\nid = "e{i}"\nname = "E{i}"\nzone = "p"\ntoken = "tok-{i}"')
    path.write_text("\n".join(lines) + "\n")


async def start_server(config: Path, http_port: int) -> asyncio.subprocess.Process:
    logfile = config.with_suffix(".log")
    with logfile.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loa",
            "serve",
            "--config",
            str(config),
            stdout=log,
            stderr=log,
        )
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.returncode is None:
            try:
                async with http.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    output = logfile.read_text(errors="replace")[-2000:]
    raise AssertionError(f"server did not come up (exit {proc.returncode}):\n{output}")


@pytest.mark.slow
async def test_killed_and_restarted_server_gets_all_speakers_back(tmp_path: Path) -> None:
    http_port, udp_port, n = free_port(__import__("socket").SOCK_STREAM), free_port(), 20
    config = tmp_path / "loa.toml"
    write_config(config, http_port, udp_port, n)
    url = f"http://127.0.0.1:{http_port}"
    proc = await start_server(config, http_port)
    fleet = Fleet(url, [(f"e{i}", f"tok-{i}") for i in range(n)], backoff_max_s=2.0)
    await fleet.start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def online() -> int:
        try:
            async with http.get(url + "/api/v1/endpoints", headers=AUTH) as resp:
                eps = (await resp.json())["endpoints"]
            return sum(1 for e in eps if e["online"] and e["transport"] == "udp")
        except (aiohttp.ClientError, TimeoutError):
            return -1

    async def until_all_online(timeout: float) -> float:
        t0 = time.monotonic()
        while await online() != n:
            assert time.monotonic() - t0 < timeout, "not every speaker came back"
            await asyncio.sleep(0.1)
        return time.monotonic() - t0

    try:
        await until_all_online(15)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await asyncio.sleep(0.5)
        proc = await start_server(config, http_port)
        back_s = await until_all_online(15)
        assert back_s < 10
        # And they play: a tone reaches them after the restart.
        t0 = time.monotonic()
        async with http.post(
            url + "/api/v1/broadcasts", json=tone(1000, ["p"], "live"), headers=AUTH
        ) as resp:
            assert resp.status == 201
            t_id = (await resp.json())["id"]
        await wait_for(
            lambda: all(
                abs(fleet.heard[f"e{i}"].frequency(t0, t_id) - 1000) < 10 for i in range(n)
            ),
            10,
            "every speaker to hear the tone after the restart",
        )
    finally:
        await http.close()
        await fleet.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


__all__ = ["RelayConfig"]
