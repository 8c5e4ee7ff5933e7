"""WebRTC benches on loopback: WHIP mouth-to-speaker latency and relay CPU per WHEP listener.

``latency``: an aiortc publisher sends a click train by WHIP (frames handed over when
"captured", i.e. at the end of each 20 ms like a real microphone); a real ``loa speaker``
in the same process plays it through its jitter buffer; each click's onset in the played
audio (the time the speaker hands that frame to its sound card, plus the onset's offset in
the frame) minus the time it was spoken is one latency sample. Same host, same clock.

``whep``: a tone broadcast and N aiortc WHEP listeners in a child process (their decoding is
not the relay's cost); the relay's CPU seconds (``time.process_time``) over a window, for
each N, give the cost per listener.

    python -m bench.whip_latency latency --clicks 20
    python -m bench.whip_latency whep --listeners 0 5 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
from aiohttp.test_utils import TestServer
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from loa.codecs import SAMPLE_RATE
from loa.codecs.pcm import clicks
from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.speaker.client import AudioMeta, Speaker
from loa.speaker.output import NullOutput
from loa.streamer.tone import ToneSource
from loa.web.app import create_app
from loa.web.keys import NODE
from tests.support.webrtc import WhepClient, WhipClient

TOKEN = "bench-admin-token"
PERIOD = SAMPLE_RATE // 2  # a click every 0.5 s
THRESHOLD = 3000  # int16: a click's onset in the played audio


@contextlib.contextmanager
def loopback_webrtc() -> Iterator[None]:
    """aioice host candidates on 127.0.0.1 only (aioice leaves loopback out)."""
    get_host_addresses = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = get_host_addresses


def bench_config(data_dir: Path) -> Config:
    return Config(
        web=WebConfig(host="127.0.0.1", port=0),
        relay=RelayConfig(udp_host="127.0.0.1", udp_port=0),
        data_dir=data_dir,
        admin_token=TOKEN,
        zones=(ZoneSpec("p", "Tỉnh"), ZoneSpec("c0", "Xã", parent="p")),
        endpoints=(EndpointSpec("e0", "Loa", "c0", token="tok-e0"),),
    )


class ClickTrack(MediaStreamTrack):
    """A microphone hearing a click every 0.5 s: each 20 ms frame is handed over when it
    has been captured (its end), and ``spoken[k]`` is when click k's first sample was."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.t0: float | None = None
        self.pos = 0
        self.n = SAMPLE_RATE // 50

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.t0 is None:
            self.t0 = time.monotonic()
        await asyncio.sleep(
            max(0.0, self.t0 + (self.pos + self.n) / SAMPLE_RATE - time.monotonic())
        )
        pcm = clicks(self.n, period=PERIOD, start=self.pos, width=96)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.pos
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.pos += self.n
        return frame

    def spoken(self, k: int) -> float:
        assert self.t0 is not None
        return self.t0 + k * PERIOD / SAMPLE_RATE


def onsets(played: list[tuple[float, np.ndarray]]) -> list[float]:
    """Times at which clicks start in the played audio (one per click, 0.25 s apart at least)."""
    found: list[float] = []
    for t, pcm in played:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > THRESHOLD)
        if loud.size:
            at = t + loud[0] / SAMPLE_RATE
            if not found or at - found[-1] > 0.25:
                found.append(at)
    return found


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, loopback_webrtc():
        server = TestServer(create_app(bench_config(Path(tmp))), host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        played: list[tuple[float, np.ndarray]] = []

        def on_audio(pcm: np.ndarray, meta: AudioMeta) -> None:
            if meta.broadcast is not None:
                played.append((time.monotonic(), pcm.copy()))

        speaker = Speaker(url, "tok-e0", NullOutput(), on_audio=on_audio)
        speaker_task = asyncio.create_task(speaker.run())
        track = ClickTrack()
        client = WhipClient(f"{url}/api/v1/whip?zones=c0", token=TOKEN)
        try:
            await asyncio.sleep(1.0)  # the speaker is on UDP
            await client.start(track)
            await asyncio.sleep((args.clicks + 2) * PERIOD / SAMPLE_RATE)
        finally:
            await client.close()
            speaker.stop()
            await asyncio.wait_for(speaker_task, 5)
            await server.close()
        heard = onsets(played)
        assert track.t0 is not None
        # Match each heard onset to the latest click spoken before it.
        samples = []
        for at in heard:
            k = int((at - track.t0) * SAMPLE_RATE // PERIOD)
            samples.append((at - track.spoken(k)) * 1000)
        ms = np.array(samples[1:])  # the first click may fall before the speaker's buffer filled
        return {
            "clicks_heard": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1),
            "min_ms": round(float(ms.min()), 1),
        }


async def listeners(url: str, zone: str, count: int, seconds: float) -> None:
    """The child: ``count`` WHEP listeners that decode everything they receive."""
    with loopback_webrtc():
        clients = [WhepClient(f"{url}/api/v1/whep?zone={zone}", token=TOKEN) for _ in range(count)]
        tracks = [await c.start() for c in clients]

        async def drain(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        drains = [asyncio.create_task(drain(t)) for t in tracks]
        print("ready", flush=True)
        await asyncio.sleep(seconds)
        for c in clients:
            await c.close()
        for d in drains:
            d.cancel()
        await asyncio.gather(*drains, return_exceptions=True)


async def whep_cpu(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory() as tmp, loopback_webrtc():
        server = TestServer(create_app(bench_config(Path(tmp))), host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        node = server.app[NODE]
        spec = BroadcastSpec("tone", Priority.LIVE, target_zones=frozenset({"c0"}))
        await node.start_broadcast(
            spec, ToneSource(1000), what="tone", source_kind="tone", created_by="bench"
        )
        try:
            for n in args.listeners:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.whip_latency",
                    "child",
                    url,
                    "c0",
                    str(n),
                    str(args.seconds + 4),
                    stdout=subprocess.PIPE,
                )
                assert child.stdout is not None
                await asyncio.wait_for(child.stdout.readline(), 60)
                await asyncio.sleep(2.0)  # connected, DTLS done, steady state
                cpu0, wall0 = time.process_time(), time.monotonic()
                await asyncio.sleep(args.seconds)
                cpu = time.process_time() - cpu0
                wall = time.monotonic() - wall0
                await child.wait()
                results.append({"listeners": n, "relay_cpu_pct": round(100 * cpu / wall, 2)})
        finally:
            await server.close()
    base = results[0]["relay_cpu_pct"] if results and results[0]["listeners"] == 0 else None
    for r in results:
        if base is not None and r["listeners"]:
            r["per_listener_cpu_pct"] = round((r["relay_cpu_pct"] - base) / r["listeners"], 3)
    return {"whep": results}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.whip_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency", help="WHIP mouth-to-speaker latency")
    lat.add_argument("--clicks", type=int, default=20)
    cpu = sub.add_parser("whep", help="relay CPU per WHEP listener")
    cpu.add_argument("--listeners", type=int, nargs="+", default=[0, 5, 20])
    cpu.add_argument("--seconds", type=float, default=10.0)
    child = sub.add_parser("child", help=argparse.SUPPRESS)
    child.add_argument("url")
    child.add_argument("zone")
    child.add_argument("count", type=int)
    child.add_argument("seconds", type=float)
    args = p.parse_args(argv)
    if args.cmd == "child":
        asyncio.run(listeners(args.url, args.zone, args.count, args.seconds))
        return
    if args.cmd == "latency" and args.clicks < 3:
        p.error("--clicks must be at least 3")
    run = latency if args.cmd == "latency" else whep_cpu
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
