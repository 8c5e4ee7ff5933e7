"""What the house move costs on the hot and the idle paths.

``python -m bench.sink_cost`` prints one JSON line: microseconds per packet the fan-out
spends handing a rewritten RTP packet to an in-process listener's ``PacketSink`` (the Opus
payload kept: the Ogg mount and WHEP; the whole packet: a speaker on WebSocket audio), each
the median of several runs; and the CPU an idle relay node burns per second with nothing
due (the node arms a timer only for the core's next deadline, where it used to tick every
20 ms), against the same loop without a node."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from loa.codecs.rtp import RtpExtension, RtpPacket
from loa.config import Config, RelayConfig, WebConfig, ZoneSpec
from loa.relay.node import Node
from loa.relay.sink import PacketSink

PAYLOAD = bytes(80)  # a 32 kbit/s Opus frame


def packets(stamped: bool, n: int) -> list[bytes]:
    ext = RtpExtension(0xBEDE, bytes(12)) if stamped else None
    return [bytes(RtpPacket(111, i & 0xFFFF, i * 960, 7, PAYLOAD, extension=ext)) for i in range(n)]


def push_us(batch: list[bytes], unwrap: bool, runs: int) -> float:
    """The fan-out's side only: push, with the writer draining every 10 packets."""
    clock = time.monotonic
    samples = []
    for _ in range(runs):
        sink = PacketSink(clock, max_age_s=1.0, unwrap=unwrap)
        start = time.perf_counter()
        for i, packet in enumerate(batch):
            sink.push(packet)
            if i % 10 == 9:
                sink.drain()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) / len(batch) * 1e6, 3)


async def idle_cpu_ms_per_s(seconds: float, with_node: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            web=WebConfig(host="127.0.0.1", port=0),
            relay=RelayConfig(udp_host="127.0.0.1", udp_port=0),
            data_dir=Path(tmp),
            zones=(ZoneSpec("p", "P"),),
        )
        node = Node(config)
        if with_node:
            await node.start()
        try:
            start = time.process_time()
            await asyncio.sleep(seconds)
            return round((time.process_time() - start) / seconds * 1000, 3)
        finally:
            await node.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_cost", description=__doc__)
    parser.add_argument("--packets", type=int, default=20_000, help="packets per run")
    parser.add_argument("--runs", type=int, default=7, help="runs; the median is reported")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle window, seconds")
    args = parser.parse_args(argv)
    if args.packets < 10 or args.runs < 1 or args.idle_s <= 0:
        parser.error("need --packets >= 10, --runs >= 1 and --idle-s > 0")
    plain, stamped = packets(False, args.packets), packets(True, args.packets)
    result = {
        "bench": "sink_cost",
        "packets": args.packets,
        "runs": args.runs,
        "push_us_payload": push_us(plain, True, args.runs),
        "push_us_payload_stamped": push_us(stamped, True, args.runs),
        "push_us_whole_packet": push_us(plain, False, args.runs),
        "idle_cpu_ms_per_s_loop_only": asyncio.run(idle_cpu_ms_per_s(args.idle_s, False)),
        "idle_cpu_ms_per_s_with_node": asyncio.run(idle_cpu_ms_per_s(args.idle_s, True)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
