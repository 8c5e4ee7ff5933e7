"""The radio relay's wrappers: ``Limited`` (a relay plays for its duration) and ``Fallback``
(while the upstream is down another source is heard), unit by unit and end to end against a
local stream that drops, with what goes out Opus-encoded and decoded as a speaker hears it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.opus import OpusDecoder, OpusEncoder
from loa.errors import BadRequest
from loa.streamer.base import Frame, Source
from loa.streamer.factory import build_source
from loa.streamer.relay import Fallback, Limited
from loa.streamer.tone import ToneSource
from loa.streamer.url import UrlSource
from tests.streamer.test_url import LOCAL, TONE_HZ, TONE_S, Upstream, make_app, relay_threads

FALLBACK_HZ = 1000


class Scripted:
    """A relay stand-in: frames from a script of 'audio' and 'fill', then the end."""

    name = "scripted"
    live = False
    resumable = False

    def __init__(self, script: str) -> None:
        self.script = list(script)
        self.pts = 0
        self.closed = 0

    async def read(self) -> Frame | None:
        if not self.script:
            return None
        kind = self.script.pop(0)
        pcm = np.full(FRAME_SAMPLES, 100 if kind == "a" else 0, dtype=np.int16)
        frame = Frame(pcm, self.pts, silent_fill=kind == "f")
        self.pts += FRAME_SAMPLES
        return frame

    async def aclose(self) -> None:
        self.closed += 1


class Counting:
    """A fallback stand-in that ends after ``n`` frames of value 7; counts how many were made."""

    made = 0

    def __init__(self, n: int) -> None:
        Counting.made += 1
        self.left = n
        self.closed = False
        self.name, self.live, self.resumable = "counting", False, True

    async def read(self) -> Frame | None:
        if self.left == 0:
            return None
        self.left -= 1
        return Frame(np.full(FRAME_SAMPLES, 7, dtype=np.int16), 0)

    async def aclose(self) -> None:
        self.closed = True


async def drain(src: Source) -> list[Frame]:
    out = []
    while (frame := await src.read()) is not None:
        out.append(frame)
    return out


async def test_limited_ends_after_its_duration_with_an_item_end() -> None:
    inner = Scripted("a" * 100)
    src = Limited(inner, 0.5)
    assert (src.name, src.live, src.resumable, src.frames) == ("scripted", False, False, 25)
    frames = await drain(src)
    assert len(frames) == 25 and [f.item_end for f in frames] == [False] * 24 + [True]
    assert inner.closed == 1  # released at the end, not when the broadcast ends
    assert await src.read() is None
    short = Limited(Scripted("aaa"), 10)  # a source that ends first ends the item too
    assert len(await drain(short)) == 3
    for bad in (0, -1, float("inf"), True, "5"):
        with pytest.raises(BadRequest, match=r"^duration_s must be a positive number of seconds"):
            Limited(Scripted("a"), bad)  # type: ignore[arg-type]


async def test_fallback_covers_an_outage_after_the_grace_and_loops() -> None:
    Counting.made = 0
    relay = Scripted("aa" + "f" * 12 + "aa" + "ff")
    src = Fallback(relay, lambda: Counting(4), after_s=3 * FRAME_S)
    frames = await drain(src)
    values = [int(f.pcm[0]) for f in frames]
    # 3 frames of the relay's own silence (a short underrun is not an outage), then the
    # fallback (7s), rebuilt when it ends, on the relay's timestamps; the relay when back
    assert values == [100, 100, 0, 0, 0] + [7] * 9 + [100, 100, 0, 0]
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    assert not any(f.silent_fill for f in frames[5:14])
    assert (src.fallback_frames, Counting.made, src.active) == (9, 3, False)
    await src.aclose()
    assert relay.closed == 1
    with pytest.raises(BadRequest, match=r"^fallback after_s must be in \[0, 60\] seconds"):
        Fallback(Scripted(""), lambda: Counting(1), after_s=-1)


async def test_a_fallback_that_ends_at_once_leaves_the_relays_silence() -> None:
    src = Fallback(Scripted("ffff"), lambda: Counting(0), after_s=0)
    frames = await drain(src)
    assert [f.silent_fill for f in frames] == [True] * 4 and src.fallback_frames == 0


async def test_factory_wraps_a_relay_in_its_fallback_and_duration(tmp_path: Path) -> None:
    desc = {
        "type": "url",
        "url": "http://dj:pw@radio.example/live",
        "duration_s": 60,
        "fallback": {"type": "tone", "freq_hz": FALLBACK_HZ},
    }
    src, what = build_source(desc, media_path=lambda m: tmp_path / m)
    assert isinstance(src, Limited) and isinstance(src.source, Fallback)
    assert isinstance(src.source.relay, UrlSource) and src.frames == 3000
    assert what == f"relay http://dj:***@radio.example/live (fallback: tone {FALLBACK_HZ} Hz)"
    await src.aclose()
    plain, _ = build_source({"type": "url", "url": "http://r.example/"}, media_path=Path)
    assert isinstance(plain, UrlSource)  # no duration: the relay runs until stopped
    await plain.aclose()
    cases = [
        (
            {"fallback": {"type": "url", "url": "http://b.example/"}},
            "source.fallback must be a source of type media, tone, silence, tts; got 'url'$",
        ),
        ({"fallback": "silence"}, "source.fallback must be a source of type .*; got 'silence'$"),
        ({"duration_s": 0.5}, r"source.duration_s must be a number in \[1, 86400\], got 0.5"),
    ]
    for extra, message in cases:
        with pytest.raises(BadRequest, match=f"^{message}"):
            build_source({"type": "url", "url": "http://r.example/", **extra}, media_path=Path)


# -- end to end: a stream that drops --------------------------------------------------------


@pytest.fixture(scope="module")
def tone_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("the ffmpeg binary is not installed; the README's test command installs it")
    out = tmp_path_factory.mktemp("fallback-media")
    (out / "hls").mkdir()
    subprocess.run(
        [
            *(ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"),
            *("-i", f"sine=frequency={TONE_HZ}:duration={TONE_S}"),
            *("-c:a", "libopus", "-b:a", "32k", "-page_duration", "100000"),
            str(out / "tone.opus"),
        ],
        check=True,
        timeout=30,
    )
    return out


@pytest.fixture
async def dropping(tone_media: Path) -> AsyncIterator[tuple[Upstream, str]]:
    up = Upstream(tone_media)
    server = TestServer(make_app(up), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield up, f"http://127.0.0.1:{server.port}/dropping.opus"
    finally:
        up.release.set()
        await server.close()


def peak_hz(pcm: np.ndarray) -> float:
    data = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(data.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / data.size)


def kind_of(pcm: np.ndarray) -> str:
    if float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) < 300:
        return "quiet"
    hz = peak_hz(pcm)
    return "radio" if abs(hz - TONE_HZ) < 60 else "fallback" if abs(hz - FALLBACK_HZ) < 60 else "?"


def runs(kinds: list[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for k in kinds:
        if out and out[-1][0] == k:
            out[-1] = (k, out[-1][1] + 1)
        else:
            out.append((k, 1))
    return out


@pytest.mark.e2e
async def test_relay_reconnects_while_the_fallback_is_heard_then_resumes(
    dropping: tuple[Upstream, str],
) -> None:
    up, url = dropping
    relay = UrlSource(url, reconnect_min_s=2.0, reconnect_max_s=2.0, buffer_s=0.4, targets=LOCAL)
    after_s = 0.2
    src = Limited(
        Fallback(relay, lambda: ToneSource(freq_hz=FALLBACK_HZ, level_dbfs=-6), after_s=after_s),
        duration_s=7.0,
    )
    encoder, decoder = OpusEncoder(signal="music"), OpusDecoder()
    heard: list[np.ndarray] = []  # what a speaker decodes, frame by frame
    frames: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    try:
        while (frame := await src.read()) is not None:  # paced like a broadcast
            frames.append(frame)
            heard.append(decoder.decode(encoder.encode(frame.pcm)))
            deadline += FRAME_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))
    finally:
        await src.aclose()

    assert len(frames) == 350 and frames[-1].item_end  # 7 s, then the item ends
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(350)]
    shape = runs([kind_of(pcm) for pcm in heard])
    long = [(k, n) for k, n in shape if n >= 5]
    radio_at = [i for i, (k, _) in enumerate(long) if k == "radio"]
    fallback_at = [i for i, (k, _) in enumerate(long) if k == "fallback"]
    assert radio_at and fallback_at, shape
    assert radio_at[0] < fallback_at[0] < radio_at[-1], shape  # radio, fallback, radio again
    assert long[fallback_at[0]][1] >= 25, shape  # the outage (~2 s) heard as the fallback
    # the relay's own silence before the fallback is exactly the grace (plus the codec's
    # ramp), never a long gap of dead air
    gap = shape[next(i for i, (k, _) in enumerate(shape) if k == "fallback") - 1]
    assert gap[0] == "quiet" and gap[1] <= round(after_s / FRAME_S) + 2, shape
    fallback_pcm = np.concatenate([h for h in heard if kind_of(h) == "fallback"])
    radio_pcm = np.concatenate([h for h in heard if kind_of(h) == "radio"])
    assert abs(peak_hz(fallback_pcm) - FALLBACK_HZ) < 5
    assert abs(peak_hz(radio_pcm) - TONE_HZ) < 5
    assert relay.reconnects >= 1 and up.requests["/dropping.opus"] >= 2
    assert src.source.fallback_frames >= 10  # type: ignore[attr-defined]
    assert relay_threads() == []  # closing joined the reader thread
