"""What RFC 2198 redundancy costs in CPU: the relay's RED packet per frame, and a speaker's
receive step per packet, plain Opus against RED.

`python -m bench.red_cost` prints one JSON line of microseconds, each the median over
several runs of the same 32 kbit/s voice-like clip encoded once: ``relay_red_packet_us``
(``repair.red_packet``: once per frame per broadcast that a RED zone hears; the fan-out per
endpoint is the same 12-byte header either way), ``speaker_plain_us`` and
``speaker_red_us`` (``redundancy.receive`` into a jitter buffer, 1 packet in 10 lost so the
redundant copies fill), and ``red_bytes`` / ``plain_bytes`` (mean payload per packet)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from bench.codec_speed import BITRATE_BPS, voice_like
from loa.codecs import OPUS_PAYLOAD_TYPE, RED_PAYLOAD_TYPE
from loa.codecs.opus import OpusEncoder
from loa.codecs.rtp import RtpPacket
from loa.relay.core.repair import red_packet
from loa.relay.core.rewriter import Rewriter
from loa.speaker.jitter import JitterBuffer
from loa.speaker.redundancy import receive


def _median_us(run: Callable[[], float], runs: int, count: int) -> float:
    return round(statistics.median(run() for _ in range(runs)) / count * 1e6, 3)


def relay_run(sources: list[bytes]) -> float:
    start = time.perf_counter()
    previous = None
    for packet in sources:
        red_packet(packet, previous)
        previous = packet
    return time.perf_counter() - start


def speaker_run(packets: list[RtpPacket]) -> float:
    jb = JitterBuffer()
    jb.asking = False
    start = time.perf_counter()
    for i, packet in enumerate(packets):
        if i % 10 != 5:  # every tenth packet lost: the next one's copy fills it
            receive(jb, packet, i * 0.02, opus_type=OPUS_PAYLOAD_TYPE, red_type=RED_PAYLOAD_TYPE)
        jb.pop(i * 0.02)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.red_cost", description=__doc__)
    parser.add_argument("--frames", type=int, default=3000, help="20 ms frames (3000: 60 s)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    enc = OpusEncoder(bitrate_bps=BITRATE_BPS, packet_loss_pct=10)
    sources = [Rewriter.source_packet(enc.encode(f)) for f in voice_like(args.frames)]
    reds = [red_packet(p, sources[i - 1] if i else None) for i, p in enumerate(sources)]

    def rtp(packets: list[bytes]) -> list[RtpPacket]:
        return [
            RtpPacket(p[1], i & 0xFFFF, 960 * i, 7, p[12:], marker=not i)
            for i, p in enumerate(packets)
        ]

    plain_rtp, red_rtp = rtp(sources), rtp(reds)
    n = len(sources)
    print(
        json.dumps(
            {
                "frames": n,
                "relay_red_packet_us": _median_us(lambda: relay_run(sources), args.runs, n),
                "speaker_plain_us": _median_us(lambda: speaker_run(plain_rtp), args.runs, n),
                "speaker_red_us": _median_us(lambda: speaker_run(red_rtp), args.runs, n),
                "plain_bytes": round(sum(len(p) - 12 for p in sources) / n, 1),
                "red_bytes": round(sum(len(p) - 12 for p in reds) / n, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
