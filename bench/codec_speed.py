"""Opus cost per 20 ms frame: encode (complexity 9 and 5), decode, FEC decode and PLC.

`python -m bench.codec_speed` prints one JSON line of microseconds per frame, each the
median over several runs of the same voice-like clip. One encode per broadcast, one decode
per speaker: these numbers say how many broadcasts a core can encode and how cheap a
speaker's board may be."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from loa.codecs import FRAME_SAMPLES, pcm
from loa.codecs.opus import OpusDecoder, OpusEncoder, libopus_version

BITRATE_BPS = 32_000


def voice_like(frames: int, seed: int = 1) -> list[pcm.Int16Array]:
    """Vowel-like audio in 20 ms frames."""
    signal = pcm.voice_like(frames * FRAME_SAMPLES, seed=seed)
    return [signal[i : i + FRAME_SAMPLES] for i in range(0, signal.size, FRAME_SAMPLES)]


def _median_us(run: Callable[[], float], runs: int, frames: int) -> float:
    return round(statistics.median(run() for _ in range(runs)) / frames * 1e6, 2)


def encode_run(frames: list[pcm.Int16Array], complexity: int) -> float:
    enc = OpusEncoder(bitrate_bps=BITRATE_BPS, complexity=complexity, packet_loss_pct=10)
    start = time.perf_counter()
    for frame in frames:
        enc.encode(frame)
    return time.perf_counter() - start


def decode_run(packets: list[bytes]) -> float:
    dec = OpusDecoder()
    start = time.perf_counter()
    for packet in packets:
        dec.decode(packet)
    return time.perf_counter() - start


def recovery_run(packets: list[bytes], fec: bool) -> float:
    """Each packet lost once in turn: time only the recovery, decode normally in between."""
    dec = OpusDecoder()
    spent = 0.0
    for i in range(len(packets) - 1):
        start = time.perf_counter()
        if fec:
            dec.decode_fec(packets[i + 1])
        else:
            dec.decode_plc()
        spent += time.perf_counter() - start
        dec.decode(packets[i + 1])
    return spent


def measure(frames: int, runs: int) -> dict[str, object]:
    audio = voice_like(frames)
    enc = OpusEncoder(bitrate_bps=BITRATE_BPS, complexity=9, packet_loss_pct=10)
    packets = [enc.encode(f) for f in audio]
    n_lost = frames - 1
    return {
        "bench": "codec_speed",
        "libopus": libopus_version(),
        "frames": frames,
        "runs": runs,
        "bitrate_bps": BITRATE_BPS,
        "mean_packet_bytes": round(sum(map(len, packets)) / frames, 1),
        "encode_us_c9": _median_us(lambda: encode_run(audio, 9), runs, frames),
        "encode_us_c5": _median_us(lambda: encode_run(audio, 5), runs, frames),
        "decode_us": _median_us(lambda: decode_run(packets), runs, frames),
        "decode_fec_us": _median_us(lambda: recovery_run(packets, True), runs, n_lost),
        "plc_us": _median_us(lambda: recovery_run(packets, False), runs, n_lost),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_speed", description=__doc__)
    parser.add_argument("--frames", type=int, default=500, help="20 ms frames per run")
    parser.add_argument("--runs", type=int, default=7, help="runs; the median is reported")
    args = parser.parse_args(argv)
    if args.frames < 2 or args.runs < 1:
        parser.error("need --frames >= 2 and --runs >= 1")
    print(json.dumps(measure(args.frames, args.runs)))


if __name__ == "__main__":
    main()
