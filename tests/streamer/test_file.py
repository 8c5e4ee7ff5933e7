"""FileSource on real media made by ffmpeg: formats, resampling, pause/resume, damage, memory."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import subprocess
import tracemalloc
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
import pytest

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import dominant_frequency, rms_dbfs
from loa.errors import MediaError
from loa.streamer.base import Frame, Source
from loa.streamer.file import FileSource

e2e = pytest.mark.e2e

# ffmpeg's sine source is 1/8 of full scale: -18.06 dBFS peak, so -21.07 dBFS RMS.
SINE_RMS_DBFS = 20 * math.log10(1 / 8) - 3.0103
KNOWN_S = 2.0
KNOWN_FRAMES = math.ceil(KNOWN_S * SAMPLE_RATE / FRAME_SAMPLES)  # 100


@dataclass(frozen=True)
class Media:
    dir: Path

    def __truediv__(self, name: str) -> Path:
        return self.dir / name


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=60,
    )


def cut(src: Path, dst: Path, size: int) -> Path:
    dst.write_bytes(src.read_bytes()[:size])
    return dst


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed; the README's test command installs it")
    d = tmp_path_factory.mktemp("media")
    sine = ["-f", "lavfi", "-i", f"sine=f=1000:d={KNOWN_S}:r=48000"]
    ffmpeg(*sine, str(d / "sine.wav"))
    # A sweep (200 Hz rising by 900 Hz/s) has no period, so offsets can be found by matching.
    sweep = ["-f", "lavfi", "-i", "aevalsrc=0.25*sin(2*PI*(200*t+450*t*t)):s=48000:d=2"]
    ffmpeg(*sweep, "-b:a", "96k", str(d / "sweep.mp3"))
    ffmpeg(*sweep, "-c:a", "aac", "-b:a", "96k", str(d / "sweep.m4a"))
    ffmpeg(*sine, "-b:a", "64k", str(d / "sine.mp3"))
    ffmpeg(*sine, "-c:a", "libopus", "-b:a", "48k", str(d / "sine.ogg"))
    ffmpeg(*sine, str(d / "sine.flac"))
    ffmpeg(*sine, "-c:a", "aac", "-b:a", "64k", str(d / "sine.m4a"))
    ffmpeg(*sine, "-c:a", "aac", "-movflags", "+faststart", str(d / "faststart.m4a"))
    # 44.1 kHz stereo, a different tone on each side.
    ffmpeg(
        "-filter_complex",
        "sine=f=440:d=2:r=44100[l];sine=f=1000:d=2:r=44100[r];[l][r]amerge=inputs=2",
        str(d / "stereo44.wav"),
    )
    video = ["-f", "lavfi", "-i", "testsrc=s=64x48:r=5:d=2"]
    ffmpeg(*video, *sine, "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(d / "video.mp4"))
    ffmpeg(*video, "-c:v", "mpeg4", str(d / "video-only.mp4"))
    # Ten minutes at a low rate and bitrate: quick to make (about 1 s), 0.6 MB on disk.
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=600:r=8000", "-b:a", "8k", str(d / "long.mp3"))
    (d / "text.mp3").write_text("Đây không phải là âm thanh.\n" * 20, encoding="utf-8")
    (d / "empty.mp3").write_bytes(b"")
    for name in ("sine.mp3", "sine.flac", "faststart.m4a", "sine.m4a"):
        stem, ext = name.split(".")
        cut(d / name, d / f"half-{stem}.{ext}", (d / name).stat().st_size // 2)
    damaged = bytearray((d / "sine.m4a").read_bytes())  # moov at the end, intact
    damaged[6000:9000] = bytes(i * 37 % 256 for i in range(3000))  # garbage inside mdat
    (d / "damaged.m4a").write_bytes(damaged)
    with wave.open(str(d / "no-samples.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
    cut(d / "sine.mp3", d / "header-cut.mp3", 100)
    cut(d / "sine.wav", d / "header-cut.wav", 30)
    return Media(d)


async def read_all(src: Source) -> list[Frame]:
    frames = []
    while (f := await src.read()) is not None:
        frames.append(f)
    return frames


def joined(frames: list[Frame]) -> np.ndarray:
    return np.concatenate([f.pcm for f in frames])


async def decode(path: Path, **kwargs: Any) -> tuple[list[Frame], FileSource]:
    src = FileSource(path, **kwargs)
    try:
        return await read_all(src), src
    finally:
        await src.aclose()


def assert_well_formed(frames: list[Frame]) -> None:
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    assert [f.item_end for f in frames] == [False] * (len(frames) - 1) + [True]
    assert not any(f.silent_fill for f in frames)


@e2e
@pytest.mark.parametrize("name", ["sine.wav", "sine.flac", "sine.mp3", "sine.ogg", "sine.m4a"])
async def test_formats_decode_to_the_right_length_and_tone(media: Media, name: str) -> None:
    frames, src = await decode(media / name)
    assert isinstance(src, Source)
    assert (src.live, src.resumable) == (False, True)
    assert_well_formed(frames)
    # Against the known 2.0 s, not the container's figure: Ogg Opus declares 2.0065 s (its
    # 312-sample pre-skip included), while the decoder drops the pre-skip. mp3 comes out
    # exact because LAME's header records encoder delay and padding and libav trims both;
    # AAC in m4a has its 1024-sample priming trimmed by the edit list, but the padding of the
    # last AAC frame is decoded (2.0053 s), hence up to one frame more.
    assert abs(len(frames) - KNOWN_FRAMES) <= 1
    assert src.duration_s == pytest.approx(KNOWN_S, abs=0.01)
    assert src.position_s == pytest.approx(len(frames) * 0.02)
    pcm = joined(frames)
    middle = pcm[SAMPLE_RATE // 2 : 3 * SAMPLE_RATE // 2]
    assert dominant_frequency(middle) == pytest.approx(1000.0, rel=0.01)
    assert rms_dbfs(middle) == pytest.approx(SINE_RMS_DBFS, abs=0.5)
    assert src.warning is None


@e2e
async def test_video_file_plays_its_audio_track(media: Media) -> None:
    frames, _src = await decode(media / "video.mp4")
    assert abs(len(frames) - KNOWN_FRAMES) <= 1
    assert dominant_frequency(joined(frames)[:SAMPLE_RATE]) == pytest.approx(1000.0, rel=0.01)


@e2e
async def test_44k1_stereo_is_resampled_and_downmixed(media: Media) -> None:
    frames, _ = await decode(media / "stereo44.wav")
    assert abs(len(frames) - KNOWN_FRAMES) <= 1
    pcm = joined(frames)[: 2 * SAMPLE_RATE].astype(np.float64) / 32768
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size))) / (pcm.size / 4)
    freqs = np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)
    # Both channels' tones, at their true frequencies (not shifted by 48/44.1), in equal
    # measure, each at half its channel's amplitude (1/8 of full scale): an average.
    left = spectrum[np.argmin(np.abs(freqs - 440))]
    right = spectrum[np.argmin(np.abs(freqs - 1000))]
    assert left == pytest.approx(1 / 16, rel=0.05)
    assert right == pytest.approx(1 / 16, rel=0.05)
    others = spectrum.copy()
    for f in (440, 1000):
        others[np.abs(freqs - f) < 10] = 0
    assert others.max() < 0.01 * right


@e2e
@pytest.mark.parametrize("name", ["sine.mp3", "sine.m4a"])
async def test_pause_and_resume_continue_at_the_next_sample(media: Media, name: str) -> None:
    whole, _ = await decode(media / name)
    src = FileSource(media / name)
    try:
        first = [f for f in [await src.read() for _ in range(37)] if f]
        await asyncio.sleep(0.2)  # paused: nobody reads
        assert src.position_s == pytest.approx(37 * 0.02)
        rest = await read_all(src)
    finally:
        await src.aclose()
    assert_well_formed(first + rest)
    assert np.array_equal(joined(first + rest), joined(whole))


@e2e
async def test_a_cancelled_read_loses_no_audio(media: Media) -> None:
    whole, _ = await decode(media / "sine.flac")
    # read-ahead == chunk: every 25th read finds the buffer empty and waits for the decoder.
    src = FileSource(media / "sine.flac", read_ahead_s=0.5, chunk_s=0.5)
    cancelled = 0
    try:
        got = []
        while True:
            task = asyncio.ensure_future(src.read())
            await asyncio.sleep(0)
            task.cancel()  # a reader that gives up waiting
            try:
                f = await task
            except asyncio.CancelledError:
                cancelled += 1
                f = await src.read()
            if f is None:
                break
            got.append(f)
    finally:
        await src.aclose()
    assert cancelled >= 3
    assert np.array_equal(joined(got), joined(whole))
    assert [f.pts for f in got] == [f.pts for f in whole]


@e2e
async def test_start_offset_is_sample_exact(media: Media) -> None:
    whole, _ = await decode(media / "sine.wav")
    tail, src = await decode(media / "sine.wav", start_s=1.3)
    assert len(tail) == 35
    assert src.position_s == pytest.approx(2.0)
    assert np.array_equal(joined(tail)[:33600], joined(whole)[62400:])
    assert tail[0].pts == 0
    assert tail[-1].item_end


@e2e
@pytest.mark.parametrize("name", ["sweep.mp3", "sweep.m4a"])
async def test_start_offset_in_a_compressed_file(media: Media, name: str) -> None:
    whole, _ = await decode(media / name)
    tail, _ = await decode(media / name, start_s=1.0)
    assert abs(len(tail) - (len(whole) - 50)) <= 1
    # Where does the tail's first 100 ms sit in the whole? 1 s in, to within 1 ms.
    ref = joined(whole).astype(np.float64)
    seg = joined(tail)[:4800].astype(np.float64)
    assert np.sqrt(np.mean(seg**2)) > 0.1 * 0.25 * 32768  # no silent run-in after the seek
    lags = range(SAMPLE_RATE - 2400, SAMPLE_RATE + 2401)
    err = [float(np.mean((ref[lag : lag + seg.size] - seg) ** 2)) for lag in lags]
    assert abs(lags[int(np.argmin(err))] - SAMPLE_RATE) <= 48


@e2e
async def test_start_beyond_the_end(media: Media) -> None:
    with pytest.raises(MediaError, match=r"sine\.wav: start_s 5 is beyond the end \(2\.000 s\)"):
        await FileSource(media / "sine.wav", start_s=5.0).open()


@e2e
@pytest.mark.parametrize("name", ["half-sine.mp3", "half-sine.flac", "half-faststart.m4a"])
async def test_truncated_file_plays_what_is_there_and_warns(
    media: Media, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="loa.streamer.file")
    frames, src = await decode(media / name)
    assert_well_formed(frames)
    # Half the bytes: some, not all, of the 100 frames (how many depends on the codec).
    assert 25 <= len(frames) <= 75
    assert dominant_frequency(joined(frames)[:9600]) == pytest.approx(1000.0, rel=0.01)
    assert src.warning is not None
    ended = re.match(r"ended at (\d+\.\d\d) s of 2\.00 s", src.warning)
    assert ended, src.warning
    # The warning counts decoded samples (to 10 ms); the last frame was padded to 20 ms.
    assert len(frames) - 1.5 < float(ended[1]) / 0.02 <= len(frames) + 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(media / name) in m and "of 2.00 s" in m for m in warnings), warnings


@e2e
async def test_damaged_packets_are_skipped_with_one_warning(
    media: Media, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="loa.streamer.file")
    frames, src = await decode(media / "damaged.m4a")
    assert_well_formed(frames)
    assert 60 <= len(frames) < KNOWN_FRAMES  # the undecodable packets are left out
    assert src.warning is not None
    skipped = re.fullmatch(r"skipped (\d+) undecodable packets", src.warning)
    assert skipped, src.warning
    assert 1 <= int(skipped[1]) < 50
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One warning when the damage starts and one summary, not one per packet.
    assert len(warnings) == 2
    assert all(str(media / "damaged.m4a") in m for m in warnings)


@e2e
async def test_a_file_with_no_samples_raises_when_read(media: Media) -> None:
    src = FileSource(media / "no-samples.wav")
    await src.open()  # the header is fine ...
    with pytest.raises(MediaError, match=r"no-samples\.wav: no audio could be decoded"):
        await src.read()  # ... but there is nothing in it
    await src.aclose()


@e2e
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("text.mp3", "not a recognised audio/video format"),
        ("header-cut.mp3", "not a recognised audio/video format"),
        ("header-cut.wav", "header is corrupt or truncated"),
        # moov (the index) is at the end unless +faststart: half a file has no header.
        ("half-sine.m4a", "header is corrupt or truncated"),
        ("empty.mp3", "the file is empty"),
        ("video-only.mp4", r"no audio stream \(streams: video\)"),
        ("missing.mp3", "no such file"),
    ],
)
async def test_unusable_files_raise_on_open_naming_file_and_reason(
    media: Media, name: str, reason: str
) -> None:
    src = FileSource(media / name)
    with pytest.raises(MediaError, match=reason) as info:
        await src.open()
    assert str(media / name) in str(info.value)
    assert info.value.fields["path"] == str(media / name)
    await src.aclose()


@e2e
async def test_the_first_read_opens_implicitly_and_raises_the_same_error(media: Media) -> None:
    src = FileSource(media / "text.mp3")
    with pytest.raises(MediaError, match=r"text\.mp3: not a recognised"):
        await src.read()
    await src.aclose()


async def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="is a directory, not a file"):
        await FileSource(tmp_path).open()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
async def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.mp3"
    path.write_bytes(b"\0" * 1000)
    path.chmod(0)
    with pytest.raises(MediaError, match=r"secret\.mp3: permission denied"):
        await FileSource(path).open()


async def test_permission_error_from_libav_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same path as test_unreadable_file, for when the suite runs as root.
    path = tmp_path / "secret.mp3"

    def denied(file: str, *args: object, **kwargs: object) -> None:
        raise av.error.PermissionError(13, "Permission denied", file)

    monkeypatch.setattr(av, "open", denied)
    with pytest.raises(MediaError, match=r"secret\.mp3: permission denied"):
        await FileSource(path).open()


@e2e
async def test_close_mid_file_and_twice(media: Media) -> None:
    src = FileSource(media / "sine.mp3")
    assert await src.read() is not None
    await src.aclose()
    await src.aclose()
    assert await src.read() is None
    with pytest.raises(MediaError, match="source is closed"):
        await src.open()


@e2e
async def test_async_context_manager(media: Media) -> None:
    async with FileSource(media / "sine.flac", name="test") as src:
        assert src.name == "test"
        assert src.duration_s == pytest.approx(2.0)
        assert (await src.read()) is not None
    assert await src.read() is None


@e2e
async def test_a_long_file_streams_in_bounded_memory(media: Media) -> None:
    src = FileSource(media / "long.mp3", read_ahead_s=1.0, chunk_s=0.5)
    tracemalloc.start()
    try:
        await src.open()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        frames, checksum = 0, 0
        while (f := await src.read()) is not None:
            frames += 1
            checksum += int(f.pcm[::97].sum())
            assert src.buffered_frames <= src.read_ahead_frames
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        await src.aclose()
    assert frames == 30_000  # ten minutes
    assert checksum != 0
    assert 0 < src.peak_buffered <= 50
    # All ten minutes at 48 kHz would be 57.6 MB; what stays alive is the read-ahead.
    assert peak < 3_000_000, f"peak traced memory grew by {peak / 1e6:.1f} MB"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_s": -1.0}, "start_s must be a finite number >= 0"),
        ({"start_s": float("nan")}, "start_s must be a finite number >= 0"),
        ({"chunk_s": 0.001}, "chunk_s must be >= 0.02 s"),
        ({"read_ahead_s": 0.1, "chunk_s": 0.5}, r"read_ahead_s must be >= chunk_s \(0.5\)"),
    ],
)
def test_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FileSource("x.mp3", **kwargs)
