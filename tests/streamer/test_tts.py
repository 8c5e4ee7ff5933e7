"""TtsSource and voices() against the real espeak-ng, plus its failure modes."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import rms_dbfs
from loa.errors import MissingDependency, TtsError
from loa.streamer import tts
from loa.streamer.base import Frame, Source
from loa.streamer.tts import TtsSource, voices

NOTICE = "Thông báo: cuộc họp thôn sẽ diễn ra lúc tám giờ sáng mai tại nhà văn hoá."
VOICES = ["vi", "vi-vn-x-central", "vi-vn-x-south"]

# The README's test command installs espeak-ng: its absence is a failure, not a skip.
needs_espeak = pytest.mark.usefixtures("espeak_installed")


@pytest.fixture(scope="session")
def espeak_installed() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; the README's test command installs it")


def e2e(test: Callable[..., Any]) -> Callable[..., Any]:
    """Runs the real espeak-ng."""
    marked: Callable[..., Any] = pytest.mark.e2e(needs_espeak(test))
    return marked


async def speak(text: str, **kwargs: object) -> tuple[list[Frame], TtsSource]:
    src = TtsSource(text, **kwargs)  # type: ignore[arg-type]
    frames = []
    try:
        while (f := await src.read()) is not None:
            frames.append(f)
    finally:
        await src.aclose()
    return frames, src


def joined(frames: list[Frame]) -> np.ndarray:
    return np.concatenate([f.pcm for f in frames])


@e2e
@pytest.mark.parametrize("voice", VOICES)
async def test_vietnamese_notice_becomes_speech_in_each_voice(voice: str) -> None:
    frames, src = await speak(NOTICE, voice=voice)
    assert isinstance(src, Source)
    assert (src.live, src.resumable) == (False, True)
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    assert [f.item_end for f in frames] == [False] * (len(frames) - 1) + [True]
    seconds = len(frames) * 0.02
    assert 2.0 <= seconds <= 15.0
    # espeak-ng's own sample count at 22050 Hz, converted: the 48 kHz output has the same
    # length (a missing or wrong resampling would be 2.2 times off).
    assert src.duration_s is not None
    assert math.ceil(src.duration_s * 50) == pytest.approx(len(frames), abs=1)
    pcm = joined(frames)
    assert rms_dbfs(pcm) > -30.0  # digital silence is -120; espeak-ng speaks at about -18
    voiced = sum(rms_dbfs(f.pcm) > -40.0 for f in frames)
    assert voiced > 0.5 * len(frames)  # speech throughout, not one click
    # 22050 Hz speech holds nothing above 11 kHz: the resampler added no images.
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)
    assert spectrum[freqs > 11_500].sum() < 0.01 * spectrum.sum()


@e2e
async def test_voices_differ_and_rate_changes_length() -> None:
    north, _ = await speak(NOTICE, voice="vi")
    south, _ = await speak(NOTICE, voice="vi-vn-x-south")
    n = min(len(north), len(south))
    assert not np.array_equal(joined(north[:n]), joined(south[:n]))
    fast, _ = await speak(NOTICE, voice="vi", rate_wpm=300)
    slow, _ = await speak(NOTICE, voice="vi", rate_wpm=100)
    assert len(fast) < 0.7 * len(north) < 0.7 * len(slow)


@e2e
async def test_text_reaches_espeak_only_as_text() -> None:
    # Option-like text and emoji, were they on the command line, would change the voice or
    # fail; on stdin they are read out.
    frames, _ = await speak("-v en --help 🙂 Xin chào bà con\0 ở thôn Đông", voice="vi")
    assert len(frames) * 0.02 > 1.0
    assert rms_dbfs(joined(frames)) > -30.0


@e2e
async def test_pause_and_resume_continue_at_the_next_sample() -> None:
    whole, _ = await speak(NOTICE)
    src = TtsSource(NOTICE)
    try:
        first = [f for f in [await src.read() for _ in range(60)] if f]
        await asyncio.sleep(0.3)  # paused: espeak-ng waits on the full pipe
        assert src.position_s == pytest.approx(1.2)
        rest = []
        while (f := await src.read()) is not None:
            rest.append(f)
    finally:
        await src.aclose()
    assert np.array_equal(joined(first + rest), joined(whole))


@e2e
async def test_aclose_kills_espeak_mid_speech() -> None:
    src = TtsSource(" ".join([NOTICE] * 20))
    assert await src.read() is not None
    pid = src.pid
    assert pid is not None
    os.kill(pid, 0)  # still speaking (blocked on the pipe)
    await src.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    await src.aclose()
    assert await src.read() is None


@e2e
async def test_unknown_voice_is_named() -> None:
    src = TtsSource(NOTICE, voice="xx-nowhere")
    with pytest.raises(TtsError, match=r"unknown espeak-ng voice 'xx-nowhere'") as info:
        await src.open()
    assert info.value.fields["voice"] == "xx-nowhere"
    with pytest.raises(TtsError, match=r"unknown espeak-ng voice 'xx-nowhere'"):
        await src.read()  # the same answer again, not a half-open source
    await src.aclose()


@e2e
async def test_the_three_regional_voices_sound_different() -> None:
    """The same text: the same voice twice gives the same samples (espeak-ng is
    deterministic), each pair of North, Central and South gives different ones."""
    spoken = {v: joined((await speak(NOTICE, voice=v))[0]) for v in VOICES}
    again = joined((await speak(NOTICE, voice="vi-vn-x-south"))[0])
    assert np.array_equal(again, spoken["vi-vn-x-south"])
    for a, b in [
        ("vi", "vi-vn-x-central"),
        ("vi", "vi-vn-x-south"),
        ("vi-vn-x-central", "vi-vn-x-south"),
    ]:
        n = min(spoken[a].size, spoken[b].size)
        assert not np.array_equal(spoken[a][:n], spoken[b][:n]), (a, b)


@e2e
async def test_the_voice_for_a_language() -> None:
    spoken = await tts.spoken_languages()
    assert {"vi", "vi-vn-x-central", "vi-vn-x-south", "en", "en-gb", "zh"} <= spoken
    assert "hmn" not in spoken and "km" not in spoken
    assert await tts.spoken_languages() is spoken  # read once
    # Vietnamese in the zone's voice, whatever its tag; others in espeak-ng's
    for language in ("vi", "vi-VN", "VI"):
        assert tts.voice_for(language, "vi-vn-x-south", spoken) == "vi-vn-x-south"
    assert tts.voice_for("en-GB", "vi", spoken) == "en-gb"
    assert tts.voice_for("zh-TW", "vi", spoken) == "zh"  # the primary subtag's
    for language in ("hmn", "km", "hnj-Latn"):
        with pytest.raises(tts.NoVoice) as info:
            tts.voice_for(language, "vi", spoken)
        assert (info.value.code, info.value.fields) == ("no_voice", {"language": language})
        assert f"no text-to-speech voice for language {language!r}" in info.value.message


@e2e
async def test_voices_lists_the_three_vietnamese_voices() -> None:
    every = await voices()
    assert len(every) > 50
    vi = await voices("vi")
    assert [v.language for v in vi] == VOICES
    assert {v.file for v in vi} == {"aav/vi", "aav/vi-VN-x-central", "aav/vi-VN-x-south"}
    cmn = next(v for v in every if v.language == "cmn")
    assert cmn.others == ("zh-cmn", "zh")  # "(zh-cmn 5)(zh 5)": the tags it answers to
    assert all(v in every for v in vi)


async def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "ESPEAK_BINARY", "espeak-ng-not-installed")
    src = TtsSource(NOTICE)
    with pytest.raises(MissingDependency, match=r"apt-get install espeak-ng") as info:
        await src.read()
    assert "espeak-ng-not-installed" in str(info.value)
    await src.aclose()
    with pytest.raises(MissingDependency, match=r"apt-get install espeak-ng"):
        await voices()


async def test_missing_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependency, match=r"no 'espeak-ng' on PATH.*apt-get install"):
        await TtsSource(NOTICE).open()


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text(text: str) -> None:
    with pytest.raises(TtsError, match="nothing to say: the text is empty"):
        TtsSource(text)


def test_too_long_text() -> None:
    with pytest.raises(TtsError, match=r"text is 20001 characters long; the limit is 20000"):
        TtsSource("a" * 20_001)


@pytest.mark.parametrize("voice", ["-x", "--stdout", "", "vi vn", "a" * 65, "vi;rm"])
async def test_voice_names_that_could_be_options_are_refused(voice: str) -> None:
    with pytest.raises(TtsError, match="invalid espeak-ng voice name"):
        TtsSource(NOTICE, voice=voice)
    with pytest.raises(TtsError, match="invalid espeak-ng voice name"):
        await voices(voice)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_wpm": 79}, r"rate_wpm must be in \[80, 450\]"),
        ({"rate_wpm": 451}, r"rate_wpm must be in \[80, 450\]"),
        ({"pitch": -1}, r"pitch must be in \[0, 99\]"),
        ({"pitch": 100}, r"pitch must be in \[0, 99\]"),
        ({"pitch": True}, r"pitch must be in \[0, 99\]"),
    ],
)
def test_bad_parameters(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TtsSource(NOTICE, **kwargs)  # type: ignore[arg-type]


def test_default_name_is_an_excerpt() -> None:
    assert TtsSource(NOTICE).name == "tts vi: Thông báo: cuộc họp thôn sẽ diễn ra lúc …"
    assert TtsSource("Xin chào", name="chào").name == "chào"
