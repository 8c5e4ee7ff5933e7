"""`python -m bench.bus`: the cost of carrying Opus packets between nodes over Redis pub/sub,
bundled (one message per 20 ms tick per receiving node, ``loa.cluster.bundle``) against one
message per packet, on a redis-server of its own on a free loopback port.

One sender publishes ``--broadcasts`` broadcasts to ``--nodes`` receiving nodes (every node
needs every broadcast); one receiver process subscribes to all their audio channels and
parses what arrives. For each mode:

- unpaced (as fast as the publisher goes, ``--ticks`` ticks): client CPU µs per packet in
  the publisher and in the receiver (``time.process_time``), messages/s and packets/s,
  redis-server CPU (from /proc, 10 ms resolution: per message only meaningful unpaced);
- paced (20 ms ticks for ``--paced-s`` seconds): the latency the Redis hop adds, p50/p99/max
  of receive time minus the sender's stamp (same host, same clock).

Prints a summary and, as the last line, JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bench import report
from loa.cluster.bundle import Bundle, Bundler, Packet
from loa.cluster.keys import Keys
from loa.localservers import RedisServer

KEYS = Keys("bench")
TICK_S = 0.02


@dataclass
class Received:
    messages: int
    packets: int
    cpu_s: float
    latency_ms: list[float]


def _receive(url: str, channels: list[str], expect: int, ready: Any, out: Any) -> None:
    out.put(asyncio.run(_receive_async(url, channels, expect, ready)))


async def _receive_async(url: str, channels: list[str], expect: int, ready: Any) -> Received:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(*channels)
    ready.set()
    got = Received(0, 0, 0.0, [])
    cpu0 = None
    idle_until = time.monotonic() + 30
    while got.messages < expect:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if msg is None:  # a subscribe confirmation, or nothing yet
            if time.monotonic() > idle_until:
                break  # the sender is done (or Redis dropped some): report what arrived
            continue
        idle_until = time.monotonic() + 10
        if cpu0 is None:
            cpu0 = time.process_time()
        bundle = Bundle.parse(msg["data"])
        got.latency_ms.append((time.time_ns() // 1000 - bundle.sent_us) / 1000)
        got.messages += 1
        got.packets += len(bundle.packets)
    got.cpu_s = time.process_time() - (cpu0 or time.process_time())
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    return got


async def _publish(url: str, mode: str, args: argparse.Namespace, ticks: int, paced: bool) -> float:
    """Returns the publisher's CPU seconds."""
    client = aioredis.Redis.from_url(url)
    nodes = [f"node{i}" for i in range(args.nodes)]
    keys = [f"bc-{i}" for i in range(args.broadcasts)]
    payload = bytes(range(256))[: args.payload]
    bundler = Bundler("sender")
    for key in keys:
        bundler.route(key, nodes)
    cpu0, deadline = time.process_time(), time.perf_counter()
    for tick in range(ticks):
        sent_us = time.time_ns() // 1000
        async with client.pipeline(transaction=False) as pipe:
            if mode == "bundled":
                for key in keys:
                    bundler.add(Packet(key, tick, 0, payload))
                for node, data in bundler.flush(sent_us, tick).items():
                    pipe.publish(KEYS.audio(node), data)
            else:  # one message per packet per receiving node
                for key in keys:
                    packet = (Packet(key, tick, 0, payload),)
                    for node in nodes:
                        pipe.publish(
                            KEYS.audio(node), bytes(Bundle("sender", sent_us, tick, packet))
                        )
            await pipe.execute()
        if paced:
            deadline += TICK_S
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
    cpu = time.process_time() - cpu0
    await client.aclose()
    return cpu


def _server_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mode(
    server: RedisServer, mode: str, args: argparse.Namespace, paced: bool
) -> dict[str, Any]:
    ticks = round(args.paced_s / TICK_S) if paced else args.ticks
    per_tick = args.nodes if mode == "bundled" else args.nodes * args.broadcasts
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    channels = [KEYS.audio(f"node{i}") for i in range(args.nodes)]
    proc = ctx.Process(target=_receive, args=(server.url, channels, ticks * per_tick, ready, out))
    proc.start()
    if not ready.wait(30):
        raise RuntimeError("the receiver did not subscribe within 30 s")
    assert server.proc is not None
    server0, wall0 = _server_cpu_s(server.proc.pid), time.perf_counter()
    pub_cpu = asyncio.run(_publish(server.url, mode, args, ticks, paced))
    got: Received = out.get(timeout=120)
    wall = time.perf_counter() - wall0
    server_cpu = _server_cpu_s(server.proc.pid) - server0
    proc.join(10)
    packets_sent = ticks * args.nodes * args.broadcasts
    lat = report.spread(got.latency_ms)
    return {
        "mode": mode,
        "paced": paced,
        "ticks": ticks,
        "messages": ticks * per_tick,
        "packets": packets_sent,
        "received_packets": got.packets,
        "publisher_us_per_packet": round(pub_cpu / packets_sent * 1e6, 2),
        "receiver_us_per_packet": round(got.cpu_s / max(got.packets, 1) * 1e6, 2),
        "redis_us_per_message": round(server_cpu / (ticks * per_tick) * 1e6, 2),
        "redis_cpu_pct": round(server_cpu / wall * 100, 1),
        "messages_per_s": round(ticks * per_tick / wall),
        "packets_per_s": round(packets_sent / wall),
        "latency_ms": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in lat.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="receiving nodes (default 3)")
    parser.add_argument("--broadcasts", type=int, default=20, help="broadcasts each node needs")
    parser.add_argument(
        "--payload", type=int, default=80, help="Opus bytes per packet (80: 32 kbit/s)"
    )
    parser.add_argument("--ticks", type=int, default=1000, help="ticks per unpaced run")
    parser.add_argument("--paced-s", type=float, default=10.0, help="seconds of 20 ms ticks")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args(argv)
    results = []
    with RedisServer() as server:
        server.start()
        for paced in (False, True):
            for mode in ("bundled", "per-packet"):
                results.append(run_mode(server, mode, args, paced))
                r = results[-1]
                lat = r["latency_ms"]
                print(
                    f"{mode:10} {'paced' if paced else 'unpaced':7} "
                    f"pub {r['publisher_us_per_packet']:6.2f} µs/pkt  "
                    f"recv {r['receiver_us_per_packet']:6.2f} µs/pkt  "
                    f"redis {r['redis_cpu_pct']:5.1f} % cpu  "
                    f"{r['messages_per_s']:7d} msg/s {r['packets_per_s']:7d} pkt/s"
                    + (f"  added latency p50 {lat['p50']} p99 {lat['p99']} ms" if paced else ""),
                    flush=True,
                )
    doc = {"bench": "bus", "config": vars(args), "results": results}
    line = json.dumps(doc)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
