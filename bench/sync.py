"""`python -m bench.sync`: poles of one village on wrong clocks behind a jittery link, in step?

A real relay (the web app and its node, on loopback) and ``--speakers`` real speakers
(``loa.speaker.client.Speaker``, in the same event loop, playing to nowhere), each on its own
``SkewedClock``: an offset drawn from ±``--offset-s`` seconds and a drift from
±``--drift-ppm`` (the speaker code is the same; only its clock lies). Their UDP goes through
an impairing link (``bench.impair``) that delays every packet, each way, by a uniform random
0–``--delay-ms`` ms (reordering them): probes, sender reports and audio alike.

A live tone starts as soon as every pole is on UDP. Each pole reports, for every frame it
plays whole, when its first sample is heard (its own clock, mapped back to the host's by the
clock it was given: the truth) and the frame's capture time. After ``--converge-s`` seconds
from the connection, for ``--seconds`` seconds, the *skew* of a frame is the spread (latest -
earliest) of the instants the poles heard it; ``sync_skew_ms`` gives its p50, p95 and max.
``late_ms`` is how far from capture time + D the poles played (the host's wall clock).

``--method quarter`` estimates the server's clock with the issue's lowest-delay-quarter
median instead of the bounds' centre (``loa.speaker.clock``), to compare. Prints one JSON
line. Bounded by timeouts."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp.test_utils import TestServer

from bench.impair import ImpairingLink, Impairment
from bench.links import broadcast_tone
from bench.report import percentile
from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.speaker.client import AudioMeta, Speaker
from loa.speaker.clock import Method, SkewedClock
from loa.speaker.output import NullOutput
from loa.speaker.playout import Played
from loa.web.app import create_app
from loa.web.keys import NODE

ADMIN = "bench-sync-admin"
CONNECT_TIMEOUT_S = 30.0


class Pole:
    """One speaker on a skewed clock and what it heard: capture time → host time heard."""

    def __init__(self, url: str, index: int, clock: SkewedClock, method: Method) -> None:
        self.clock = clock
        self.played = Played(clock.to_host)
        self.heard = self.played.frames
        self.speaker = Speaker(
            url,
            f"tok-{index}",
            NullOutput(),
            clock=clock,
            clock_method=method,
            on_audio=self._on_audio,
            status_interval_s=1.0,
            backoff_min_s=0.2,
            backoff_max_s=1.0,
        )

    def clock_error_ms(self, wall_minus_host: float) -> float | None:
        """How far off the pole's estimate of the server's clock is now (the server's clock
        is the host's wall clock): what its playout can be no better than."""
        estimate = self.speaker.estimator.estimate
        if estimate is None:
            return None
        local = self.clock.now()
        truth = self.clock.to_host(local) + wall_minus_host
        return round((estimate.to_server(local) - truth) * 1000, 3)

    def _on_audio(self, _pcm: np.ndarray, meta: AudioMeta) -> None:
        self.played.add(meta.captured_at, meta.heard_at)


def config(data_dir: Path, link_port: int, speakers: int) -> Config:
    return Config(
        web=WebConfig(host="127.0.0.1", port=0),
        relay=RelayConfig(udp_host="127.0.0.1", udp_port=0, public_udp_port=link_port, chime=False),
        data_dir=data_dir,
        admin_token=ADMIN,
        zones=(ZoneSpec("p", "Tỉnh"), ZoneSpec("x", "Thôn", parent="p")),
        endpoints=tuple(
            EndpointSpec(f"pole-{i}", f"Loa {i}", "x", token=f"tok-{i}") for i in range(speakers)
        ),
    )


def skews(poles: Sequence[Pole], since: float) -> list[tuple[float, float]]:
    """(when, spread), in seconds, of the instants the poles heard each frame that all of
    them played whole, from frames heard at or after ``since`` (host time)."""
    common = set.intersection(*(set(p.heard) for p in poles))
    out = []
    for captured in sorted(common):
        instants = [p.heard[captured] for p in poles]
        if min(instants) >= since:
            out.append((min(instants), max(instants) - min(instants)))
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    way = Impairment(delay_ms=args.delay_ms / 2, jitter_ms=args.delay_ms / 2)
    link = ImpairingLink(down=way, up=Impairment(delay_ms=way.delay_ms, jitter_ms=way.jitter_ms))
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="loa-sync-") as tmp:
        cfg = config(Path(tmp), link.bind(), args.speakers)
        server = TestServer(create_app(cfg), host="127.0.0.1")
        await server.start_server()
        link.start(("127.0.0.1", server.app[NODE].udp_port))
        url = str(server.make_url(""))
        poles = [
            Pole(
                url,
                i,
                SkewedClock(
                    loop.time,
                    rng.uniform(-args.offset_s, args.offset_s),
                    rng.uniform(-args.drift_ppm, args.drift_ppm),
                ),
                args.method,
            )
            for i in range(args.speakers)
        ]
        tasks = [asyncio.create_task(p.speaker.run()) for p in poles]
        try:
            connected = await _connected(poles)
            await broadcast_tone(server, ADMIN)
            since = connected + args.converge_s
            await asyncio.sleep(max(0.0, since + args.seconds - loop.time()))
            wall_minus_host = time.time() - loop.time()
            errors = [p.clock_error_ms(wall_minus_host) for p in poles]
        finally:
            for p in poles:
                p.speaker.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)
            link.close()
            await server.close()
    d = cfg.relay.playout_delay_ms / 1000
    timed = skews(poles, since)
    spread = sorted(s * 1000 for _, s in timed)
    windows: dict[int, list[float]] = {}
    for at, s in timed:  # how it converges: the p95 of each 5 s from the connection
        windows.setdefault(int((at - connected) // 5) * 5, []).append(s * 1000)
    late = sorted(
        (h + wall_minus_host - (c + d)) * 1000
        for p in poles
        for c, h in p.heard.items()
        if h >= since
    )
    return {
        "speakers": args.speakers,
        "method": args.method,
        "delay_ms": args.delay_ms,
        "offset_s": args.offset_s,
        "drift_ppm": args.drift_ppm,
        "converge_s": args.converge_s,
        "seconds": args.seconds,
        "frames": len(spread),
        "sync_skew_ms": _spread(spread),
        "late_ms": _spread(late, signed=True),
        "skew_p95_by_5s": {f"{k}s": percentile(v, 95) for k, v in sorted(windows.items())},
        "clock_error_ms": errors,
        "resyncs": sum(p.speaker.playout.corrector.resyncs for p in poles),
        # the bench's own load: a playout loop 200 ms behind starts its timeline over
        "timeline_resets": sum(p.speaker.playout_resyncs for p in poles),
        "estimates_inconsistent": sum(p.speaker.estimator.inconsistent for p in poles),
    }


def _spread(values: list[float], *, signed: bool = False) -> dict[str, float | None]:
    """p50, p95 and max (signed: p5, p50, p95 and the extremes) in ms, rounded."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    out = {"p50": percentile(values, 50), "p95": percentile(values, 95)}
    if signed:
        return {
            "min": round(values[0], 3),
            "p5": percentile(values, 5),
            **out,
            "max": round(values[-1], 3),
        }
    return {**out, "max": round(values[-1], 3)}


async def _connected(poles: Sequence[Pole]) -> float:
    """When every pole was on UDP (loop time); TimeoutError after CONNECT_TIMEOUT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_TIMEOUT_S
    while not all(p.speaker.state.value == "udp" for p in poles):
        if loop.time() > deadline:
            raise TimeoutError(f"not every pole on UDP within {CONNECT_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)
    return loop.time()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speakers", type=int, default=6, help="poles in the village (default 6)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="seconds measured after convergence (default 20)")  # fmt: skip
    p.add_argument("--converge-s", type=float, default=10.0,
                   help="seconds from connection before measuring (default 10)")  # fmt: skip
    p.add_argument("--delay-ms", type=float, default=50.0,
                   help="each packet waits uniform 0..this, each way (default 50)")  # fmt: skip
    p.add_argument("--offset-s", type=float, default=10.0,
                   help="clock offsets drawn from ±this (default 10 s)")  # fmt: skip
    p.add_argument("--drift-ppm", type=float, default=100.0,
                   help="clock drifts drawn from ±this (default 100 ppm)")  # fmt: skip
    p.add_argument("--method", choices=("floors", "quarter"), default="floors",
                   help="the clock estimate (default floors: the bounds' centre)")  # fmt: skip
    p.add_argument("--seed", type=int, default=13, help="clocks and delays (default 13)")


def options(**given: Any) -> argparse.Namespace:
    """The defaults, with ``given`` instead (`python -m bench` runs it so)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    for name, value in given.items():
        if not hasattr(args, name):
            raise ValueError(f"the sync bench has no option {name!r}")
        setattr(args, name, value)
    check(parser, args)
    return args


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.speakers < 2 or args.seconds <= 0 or args.converge_s < 0:
        p.error("the sync bench needs at least 2 speakers, seconds > 0 and converge-s >= 0")
    if args.delay_ms < 0 or args.offset_s < 0 or not 0 <= args.drift_ppm <= 1000:
        p.error("delay-ms and offset-s must be >= 0, drift-ppm within 0..1000")


def run(args: argparse.Namespace) -> dict[str, Any]:
    budget = CONNECT_TIMEOUT_S + args.converge_s + args.seconds + 60
    return asyncio.run(asyncio.wait_for(measure(args), budget))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check(parser, args)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
