"""How much faster than real time the non-live sources produce audio.

`python -m bench.source_speed` prints one JSON object: FileSource decoding 60 s of mp3 and
of m4a/AAC (44.1 kHz stereo at 128 kbit/s, as a media library holds them, so resampling
and downmix are included), and TtsSource speaking a ~30-word Vietnamese bulletin. Speed is
seconds of audio per second of wall time (× real time), the median of several unpaced runs;
``cpu_x`` divides by CPU time instead (decode threads and the espeak-ng child included). A
broadcast needs 1×; what is above that is how many such sources one core could feed at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loa.codecs import FRAME_S
from loa.streamer.base import Source
from loa.streamer.file import FileSource
from loa.streamer.tts import TtsSource

FILE_S = 60
BULLETIN = (
    "Thông báo khẩn: bão số ba đang tiến gần bờ biển. Bà con ngư dân cần đưa tàu thuyền "
    "vào nơi tránh trú an toàn ngay và không ra khơi."
)


def make_media(directory: Path) -> dict[str, Path]:
    """60 s of a music-like mix (two tones and pink noise), 44.1 kHz stereo, 128 kbit/s."""
    src = (
        f"sine=f=220:d={FILE_S}:r=44100[a];sine=f=330:d={FILE_S}:r=44100[b];"
        f"anoisesrc=c=pink:a=0.05:d={FILE_S}:r=44100[n];"
        "[a][b]amerge=inputs=2[ab];[n]pan=stereo|c0=c0|c1=c0[nn];[ab][nn]amix=inputs=2"
    )
    out = {"mp3": directory / "bench.mp3", "m4a": directory / "bench.m4a"}
    for kind, path in out.items():
        codec = "libmp3lame" if kind == "mp3" else "aac"
        argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", src]
        argv += ["-c:a", codec, "-b:a", "128k", "-ac", "2", str(path)]
        subprocess.run(
            argv,
            check=True,
            timeout=120,
        )
    return out


def cpu_seconds() -> float:
    """This process's CPU time plus that of its reaped children (espeak-ng)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def drain(make: Callable[[], Source]) -> dict[str, float]:
    """Reads a source to its end as fast as it goes; audio seconds, wall and CPU seconds."""
    src = make()
    frames = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    first_frame_s = None
    try:
        while await src.read() is not None:
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - wall
            frames += 1
    finally:
        await src.aclose()
    return {
        "audio_s": frames * FRAME_S,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": cpu_seconds() - cpu,
        "first_frame_ms": 1000 * (first_frame_s or 0.0),
    }


async def measure(make: Callable[[], Source], runs: int) -> dict[str, Any]:
    results = [await drain(make) for _ in range(runs)]
    audio_s = results[0]["audio_s"]
    wall = statistics.median(r["wall_s"] for r in results)
    cpu = statistics.median(r["cpu_s"] for r in results)
    return {
        "audio_s": round(audio_s, 2),
        "x_realtime": round(audio_s / wall, 1),
        "cpu_x": round(audio_s / cpu, 1) if cpu > 0 else None,
        "first_frame_ms": round(statistics.median(r["first_frame_ms"] for r in results), 1),
        "runs": runs,
    }


async def main_async(runs: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        media = make_media(Path(tmp))
        for kind, path in media.items():
            report[f"file_{kind}"] = await measure(lambda p=path: FileSource(p), runs)  # type: ignore[misc]
    report["tts_vi"] = await measure(lambda: TtsSource(BULLETIN, voice="vi"), runs)
    report["tts_vi"]["words"] = len(BULLETIN.split())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args()
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required: apt-get install {tool}")
    print(json.dumps(asyncio.run(main_async(args.runs))))


if __name__ == "__main__":
    main()
