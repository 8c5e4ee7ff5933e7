"""WhipSource on fake tracks: resampling to 20 ms frames, the clock across lost packets,
lag, silence and a prelude. The WHIP resource that feeds it is tested in tests/web/test_whip.py."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from loa.codecs import FRAME_SAMPLES
from loa.codecs.pcm import dominant_frequency
from loa.errors import SourceError, SourceTimeout
from loa.streamer.base import Source
from loa.streamer.tone import ToneSource
from loa.streamer.whip import WhipSource


# -- WhipSource on fake tracks ------------------------------------------------------------
class FakeTrack:
    """Hands out prepared av frames; then ends (MediaStreamError) or hangs."""

    def __init__(self, frames: list[av.AudioFrame], *, then: str = "end") -> None:
        self.frames = list(frames)
        self.then = then
        self.more = asyncio.Event()

    def add(self, frames: list[av.AudioFrame]) -> None:
        self.frames.extend(frames)
        self.more.set()

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if self.frames:
            return self.frames.pop(0)
        if self.then == "end":
            raise MediaStreamError
        if self.then == "garbage":
            raise ValueError("decoder exploded")
        await self.more.wait()  # "wait": for frames the test adds later
        self.more.clear()
        return self.frames.pop(0)


def stereo_frames(
    freq: float, rate: int, ms: int, count: int, *, skip: int = -1, first: int = 0
) -> list[Any]:
    """Frames ``first`` … ``first + count - 1`` of a stereo s16 sine, ``ms`` each at ``rate``;
    frame ``skip`` is left out."""
    n = rate * ms // 1000
    out = []
    for i in range(first, first + count):
        t = (np.arange(n) + i * n) / rate
        x = (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(x, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        frame.pts = i * n
        frame.time_base = fractions.Fraction(1, rate)
        if i != skip:
            out.append(frame)
    return out


async def drain(source: Source) -> list[Any]:
    frames = []
    while (frame := await source.read()) is not None:
        frames.append(frame)
    return frames


async def test_source_resamples_to_48k_mono_20ms_frames() -> None:
    source = WhipSource(FakeTrack(stereo_frames(440, 44100, 10, 100)), queue_frames=1000)
    frames = await drain(source)
    await source.aclose()
    assert source.live and not source.resumable
    # 1 s at 44.1 kHz is 1 s at 48 kHz: 50 frames, less what the resampler still holds.
    assert 48 <= len(frames) <= 50
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    pcm = np.concatenate([f.pcm for f in frames[5:]])
    assert dominant_frequency(pcm) == pytest.approx(440, rel=0.01)


async def test_source_keeps_the_clock_across_lost_packets() -> None:
    source = WhipSource(FakeTrack(stereo_frames(440, 48000, 20, 10, skip=4)), queue_frames=100)
    frames = await drain(source)
    await source.aclose()
    assert source.gaps == 1
    assert [f.pts // FRAME_SAMPLES for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9]


async def test_source_drops_the_oldest_when_the_broadcast_lags() -> None:
    source = WhipSource(FakeTrack(stereo_frames(440, 48000, 20, 20)), queue_frames=3)
    first = await source.read()  # starts the pump; then let it run ahead of us
    await asyncio.sleep(0.05)
    rest = await drain(source)
    await source.aclose()
    assert first is not None and first.pts == 0
    assert source.dropped == 20 - 1 - 3
    assert [f.pts // FRAME_SAMPLES for f in rest] == [17, 18, 19]


async def test_source_times_out_when_the_publisher_goes_quiet() -> None:
    track = FakeTrack(stereo_frames(440, 48000, 20, 2), then="wait")
    source = WhipSource(track, idle_timeout_s=0.2)
    assert await source.read() is not None
    assert await source.read() is not None
    with pytest.raises(SourceTimeout, match=r"no audio from the publisher for 0.2 s"):
        await source.read()
    await source.aclose()


async def test_source_reports_a_broken_track() -> None:
    source = WhipSource(FakeTrack([], then="garbage"))
    with pytest.raises(SourceError, match="cannot use the publisher's audio: decoder exploded"):
        await source.read()
    await source.aclose()
    assert await source.read() is None  # closed


async def test_source_plays_a_paced_prelude_first() -> None:
    prelude = ToneSource(700, duration_s=0.1)
    track = FakeTrack(stereo_frames(440, 48000, 20, 3), then="wait")
    source = WhipSource(track, prelude=prelude)
    t0 = time.monotonic()
    frames = [await source.read() for _ in range(5)]
    paced = time.monotonic() - t0
    track.add(stereo_frames(440, 48000, 20, 3, first=3))
    after = await source.read()
    await source.aclose()
    assert paced >= 0.07  # five frames on 20 ms deadlines, not a burst
    assert all(f is not None for f in frames) and after is not None
    assert dominant_frequency(np.concatenate([f.pcm for f in frames if f])) == pytest.approx(
        700, rel=0.01
    )
    # The live audio continues the timeline; what was said during the chime is dropped.
    assert after.pts == 5 * FRAME_SAMPLES
    assert source.dropped == 0  # discarded, not counted as the broadcast lagging


def test_source_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s must be > 0"):
        WhipSource(FakeTrack([]), idle_timeout_s=0)
    with pytest.raises(ValueError, match="queue_frames must be >= 1"):
        WhipSource(FakeTrack([]), queue_frames=0)
