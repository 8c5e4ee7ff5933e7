"""Generated sources: tone, silence and the attention chime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import dominant_frequency, peak_dbfs, rms_dbfs, tone
from loa.streamer.base import Frame, Source
from loa.streamer.tone import ChimeSource, SilenceSource, ToneSource, chime


async def read_all(src: Source, limit: int = 100_000) -> list[Frame]:
    frames = []
    while (f := await src.read()) is not None:
        frames.append(f)
        assert len(frames) <= limit, "source did not end"
    return frames


def joined(frames: list[Frame]) -> np.ndarray:
    return np.concatenate([f.pcm for f in frames])


async def test_tone_is_phase_continuous_across_frames() -> None:
    src = ToneSource(440.0, level_dbfs=-6.0)
    assert isinstance(src, Source)
    assert (src.live, src.resumable) == (False, True)
    frames = [await src.read() for _ in range(50)]
    got = joined([f for f in frames if f is not None])
    # One uninterrupted sine: any phase jump at a frame boundary would differ from this.
    assert np.array_equal(got, tone(440.0, 50 * FRAME_SAMPLES, level_dbfs=-6.0))
    assert [f.pts for f in frames if f] == [i * FRAME_SAMPLES for i in range(50)]
    assert not any(f.item_end for f in frames if f)
    assert dominant_frequency(got) == pytest.approx(440.0, rel=0.01)
    assert rms_dbfs(got) == pytest.approx(-6.0 - 3.01, abs=0.1)  # a sine's RMS is peak - 3 dB


async def test_tone_with_duration_pads_and_marks_the_last_frame() -> None:
    src = ToneSource(1000.0, level_dbfs=-12.0, duration_s=0.05)  # 2.5 frames
    frames = await read_all(src)
    assert len(frames) == 3
    assert [f.item_end for f in frames] == [False, False, True]
    assert np.count_nonzero(frames[2].pcm[480:]) == 0  # padded with silence
    assert np.count_nonzero(frames[2].pcm[:480]) > 400
    assert peak_dbfs(joined(frames)) == pytest.approx(-12.0, abs=0.05)
    assert src.duration_s == pytest.approx(0.05)
    assert await src.read() is None


async def test_tone_pauses_and_resumes_where_it_stopped() -> None:
    src = ToneSource(700.0, duration_s=0.2)
    first = [await src.read() for _ in range(4)]
    assert src.position_s == pytest.approx(0.08)
    rest = await read_all(src)
    got = joined([f for f in first if f] + rest)
    assert np.array_equal(got, tone(700.0, 10 * FRAME_SAMPLES, level_dbfs=-12.0))


async def test_aclose_ends_the_source_and_is_idempotent() -> None:
    src = ToneSource()
    assert await src.read() is not None
    await src.aclose()
    await src.aclose()
    assert await src.read() is None


async def test_silence_source() -> None:
    frames = await read_all(SilenceSource(duration_s=1.0))
    assert len(frames) == 50
    assert frames[-1].item_end
    assert not frames[-2].item_end
    assert not np.any(joined(frames))
    endless = SilenceSource()
    assert endless.duration_s is None
    for _ in range(200):
        f = await endless.read()
        assert f is not None
        assert not f.item_end


async def test_chime_rises_through_three_notes_with_gentle_fades() -> None:
    src = ChimeSource()
    frames = await read_all(src)
    assert len(frames) == 75  # 1.5 s
    assert frames[-1].item_end
    assert not any(f.item_end for f in frames[:-1])
    pcm = joined(frames)
    note = SAMPLE_RATE // 2
    freqs = [dominant_frequency(pcm[i * note : (i + 1) * note]) for i in range(3)]
    assert freqs == pytest.approx([523.25, 659.25, 783.99], rel=0.01)
    assert peak_dbfs(pcm) == pytest.approx(-9.0, abs=0.05)
    # No clicks: every note starts and ends at (near) zero, and no 1 ms step is abrupt.
    for i in range(3):
        seg = pcm[i * note : (i + 1) * note].astype(np.int32)
        assert abs(seg[0]) < 50
        assert abs(seg[-1]) < 50
        assert peak_dbfs(seg[:48].astype(np.int16)) < -30  # first ms of the attack
        assert peak_dbfs(seg[-48:].astype(np.int16)) < -40  # last ms of the release
    assert np.max(np.abs(np.diff(pcm.astype(np.int32)))) < 0.2 * 32768


def test_chime_parameters_are_validated() -> None:
    assert chime((440.0,), note_s=0.25).size == SAMPLE_RATE // 4
    with pytest.raises(ValueError, match="at least one note"):
        chime(())
    with pytest.raises(ValueError, match="chime note must be in"):
        chime((20_000.0,))
    with pytest.raises(ValueError, match=r"note_s must be in \[0.1, 5\] s"):
        ChimeSource(note_s=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freq_hz": 0.0}, r"tone frequency must be in \(0, 24000\) Hz"),
        ({"freq_hz": 24_000.0}, r"tone frequency must be in \(0, 24000\) Hz"),
        ({"level_dbfs": 3.0}, "level_dbfs must be <= 0 dBFS"),
        ({"duration_s": 0.0}, "duration_s must be a finite number > 0"),
        ({"duration_s": float("inf")}, "duration_s must be a finite number > 0"),
    ],
)
def test_tone_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ToneSource(**kwargs)


def test_names() -> None:
    assert ToneSource(1000).name == "tone 1000 Hz"
    assert ToneSource(name="test").name == "test"
    assert SilenceSource().name == "silence"
    assert ChimeSource().name == "chime"
