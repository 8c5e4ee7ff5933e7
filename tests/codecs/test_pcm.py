"""PCM helpers: conversion, gain, meters, generators, downmix, framing, frequency estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE, pcm
from loa.codecs.pcm import FLOOR_DBFS, Framer

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
SIX_DB = 20 * math.log10(2)  # 6.0206 dB, an exact doubling


# Conversion


def test_float_int16_round_trip_is_exact_for_every_value() -> None:
    as_float = pcm.to_float(ALL_INT16)
    assert as_float.dtype == np.float32
    assert as_float.min() == -1.0
    assert as_float.max() == pytest.approx(32767 / 32768)
    assert np.array_equal(pcm.to_int16(as_float), ALL_INT16)


def test_to_int16_rounds_and_clips_never_wraps() -> None:
    got = pcm.to_int16(np.array([0.5 / 32768, 1.5 / 32768, -0.49 / 32768, 1.0, 7.0, -1.0, -9.0]))
    assert got.tolist() == [0, 2, 0, 32767, 32767, -32768, -32768]
    assert got.dtype == np.int16


@given(hnp.arrays(np.float64, st.integers(0, 64), elements=st.floats(-4.0, 4.0)))
def test_to_int16_is_clipped_rounding(x: np.ndarray) -> None:
    expected = np.clip(np.rint(x * 32768), -32768, 32767)
    assert np.array_equal(pcm.to_int16(x).astype(np.float64), expected)


def test_db_to_gain() -> None:
    assert pcm.db_to_gain(0.0) == 1.0
    assert pcm.db_to_gain(SIX_DB) == pytest.approx(2.0, rel=1e-12)
    assert pcm.db_to_gain(-20.0) == pytest.approx(0.1, rel=1e-12)
    assert pcm.db_to_gain(-math.inf) == 0.0


# Gain


def test_gain_of_plus_and_minus_6_02_db_doubles_and_halves_exactly() -> None:
    small = np.arange(-3000, 3001, dtype=np.int16)
    assert np.array_equal(pcm.apply_gain_db(small, 6.02), small * 2)
    assert np.array_equal(pcm.apply_gain_db(small * 2, -6.02), small)
    known = np.array([1000, -1000, 100, 1, 0], dtype=np.int16)
    assert pcm.apply_gain_db(known, 6.02).tolist() == [2000, -2000, 200, 2, 0]
    assert pcm.apply_gain_db(known * 2, -6.02).tolist() == [1000, -1000, 100, 1, 0]


def test_gain_saturates_at_full_scale() -> None:
    loud = np.array([20000, -20000, 32767, -32768, 1000], dtype=np.int16)
    assert pcm.apply_gain_db(loud, 6.02).tolist() == [32767, -32768, 32767, -32768, 2000]
    assert pcm.apply_gain_db(loud, 40.0).tolist() == [32767, -32768, 32767, -32768, 32767]


def test_zero_gain_returns_an_independent_copy() -> None:
    x = pcm.tone(440.0)
    y = pcm.apply_gain_db(x, 0.0)
    assert np.array_equal(x, y)
    y[0] = 1234
    assert x[0] != 1234


def test_gain_of_minus_infinity_silences() -> None:
    assert not pcm.apply_gain_db(pcm.tone(440.0), -math.inf).any()


# Meters


def test_full_scale_sine_meters() -> None:
    sine = pcm.tone(1000.0, SAMPLE_RATE, level_dbfs=0.0)
    assert pcm.peak_dbfs(sine) == pytest.approx(0.0, abs=1e-3)
    assert pcm.rms_dbfs(sine) == pytest.approx(-3.0103, abs=0.01)


@pytest.mark.parametrize("level", [-6.0, -20.0, -40.0])
def test_meters_follow_the_tone_level(level: float) -> None:
    sine = pcm.tone(997.0, SAMPLE_RATE, level_dbfs=level)
    assert pcm.peak_dbfs(sine) == pytest.approx(level, abs=0.01)
    assert pcm.rms_dbfs(sine) == pytest.approx(level - 3.0103, abs=0.01)


def test_meters_of_extremes() -> None:
    assert pcm.peak_dbfs(np.array([-32768], dtype=np.int16)) == 0.0
    assert pcm.rms_dbfs(np.array([-32768, -32768], dtype=np.int16)) == 0.0
    one_lsb = np.array([0, 1, 0, -1], dtype=np.int16)
    assert pcm.peak_dbfs(one_lsb) == pytest.approx(20 * math.log10(1 / 32768))


@pytest.mark.parametrize("samples", [pcm.silence(), pcm.silence(0)])
def test_silence_meters_at_the_floor(samples: np.ndarray) -> None:
    assert pcm.peak_dbfs(samples) == FLOOR_DBFS
    assert pcm.rms_dbfs(samples) == FLOOR_DBFS


# Generators


def test_silence() -> None:
    frame = pcm.silence()
    assert (frame.shape, frame.dtype, frame.any()) == ((FRAME_SAMPLES,), np.int16, False)
    assert pcm.silence(7).shape == (7,)
    with pytest.raises(ValueError) as info:
        pcm.silence(-1)
    assert str(info.value) == "sample count must be >= 0, got -1"


def test_tone_is_phase_continuous_across_calls() -> None:
    n = 777
    joined = np.concatenate((pcm.tone(1234.5, n), pcm.tone(1234.5, n, start=n)))
    assert np.array_equal(joined, pcm.tone(1234.5, 2 * n))


def test_tone_far_from_the_origin_stays_clean() -> None:
    day = SAMPLE_RATE * 86_400
    late = pcm.tone(1000.0, 4800, start=day)
    assert np.array_equal(late, pcm.tone(1000.0, 4800))  # 1 kHz repeats every 48 samples


def test_tone_values() -> None:
    quarter = pcm.tone(12_000.0, 8, level_dbfs=0.0)  # a quarter cycle per sample
    assert quarter.tolist() == [0, 32767, 0, -32768, 0, 32767, 0, -32768]
    assert pcm.tone(1000.0, 0).shape == (0,)


@pytest.mark.parametrize(
    ("freq", "n", "message"),
    [
        (0.0, 10, "tone frequency must be in (0, 24000) Hz, got 0"),
        (24_000.0, 10, "tone frequency must be in (0, 24000) Hz, got 24000"),
        (-5.0, 10, "tone frequency must be in (0, 24000) Hz, got -5"),
        (440.0, -1, "sample count must be >= 0, got -1"),
    ],
)
def test_tone_errors(freq: float, n: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        pcm.tone(freq, n)
    assert str(info.value) == message


def _burst_starts(x: np.ndarray, gap: int) -> list[int]:
    nz = np.flatnonzero(x)
    return [int(i) for k, i in enumerate(nz) if k == 0 or i - nz[k - 1] > gap]


def test_clicks_onsets_are_where_the_period_says() -> None:
    period, width, start = 4800, 48, 1000
    x = pcm.clicks(SAMPLE_RATE, period=period, start=start, width=width)
    windows = [i for i in range(SAMPLE_RATE) if (i + start) % period == 0]
    assert windows[:2] == [3800, 8600]
    # The Hann window's first coefficient is 0, so each burst's first sound is one in.
    assert _burst_starts(x, period - width) == [w + 1 for w in windows]
    inside = np.zeros(x.size, dtype=bool)
    for w in windows:
        inside[w : w + width] = True
        assert pcm.peak_dbfs(x[w : w + width]) > -6.0
    assert not x[~inside].any()


def test_clicks_continue_across_calls() -> None:
    n = 3000
    joined = np.concatenate((pcm.clicks(n, period=960), pcm.clicks(n, period=960, start=n)))
    assert np.array_equal(joined, pcm.clicks(2 * n, period=960))


def test_clicks_level() -> None:
    x = pcm.clicks(SAMPLE_RATE, period=4800, level_dbfs=-10.0)
    # The burst's sine peaks fall just beside the Hann window's crest: ~1.1 dB below it.
    assert -11.5 < pcm.peak_dbfs(x) <= -10.0


@pytest.mark.parametrize(
    ("n", "period", "width", "message"),
    [
        (100, 48, 48, "click period (48) must exceed width (48) > 0"),
        (100, 10, 0, "click period (10) must exceed width (0) > 0"),
        (-1, 100, 10, "sample count must be >= 0, got -1"),
    ],
)
def test_clicks_errors(n: int, period: int, width: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        pcm.clicks(n, period=period, width=width)
    assert str(info.value) == message


# Downmix


def test_downmix_interleaved_int16() -> None:
    stereo = np.array([100, 300, -5, -6, 32767, 32767, -32768, 32767], dtype=np.int16)
    # Means 200, -5.5 (rounds half to even: -6), 32767, -0.5 (to -0).
    assert pcm.downmix(stereo, 2).tolist() == [200, -6, 32767, 0]


def test_downmix_2d_equals_interleaved() -> None:
    rng = np.random.default_rng(3)
    block = rng.integers(-32768, 32768, size=(500, 3)).astype(np.int16)
    assert np.array_equal(pcm.downmix(block, 3), pcm.downmix(block.reshape(-1), 3))
    expected = np.rint(block.astype(np.float64).mean(axis=1)).astype(np.int16)
    assert np.array_equal(pcm.downmix(block, 3), expected)


def test_downmix_float_input_clips() -> None:
    stereo = np.array([[0.5, 0.25], [-1.0, -1.0], [2.0, 2.0], [0.5, -0.5]], dtype=np.float32)
    assert pcm.downmix(stereo, 2).tolist() == [12288, -32768, 32767, 0]


def test_downmix_mono_is_identity_and_wide_ints_saturate() -> None:
    mono = pcm.tone(300.0)
    assert np.array_equal(pcm.downmix(mono, 1), mono)
    wide = np.array([[40_000, 40_000], [-40_000, -40_000], [70_000, -70_000]], dtype=np.int32)
    assert pcm.downmix(wide, 2).tolist() == [32767, -32768, 0]


@pytest.mark.parametrize(
    ("data", "channels", "message"),
    [
        (np.zeros(10, np.int16), 0, "channel count must be >= 1, got 0"),
        (np.zeros(9, np.int16), 2, "9 samples do not divide into 2 channels"),
        (np.zeros((4, 3), np.int16), 2, "expected shape [n, 2], got [4, 3]"),
        (np.zeros((2, 2, 2), np.int16), 2, "expected shape [n, 2], got [2, 2, 2]"),
    ],
)
def test_downmix_errors(data: np.ndarray, channels: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        pcm.downmix(data, channels)
    assert str(info.value) == message


# Framer


def test_framer_keeps_remainders_and_flushes_padded() -> None:
    signal = np.arange(1, 2501, dtype=np.int16)
    framer = Framer()
    assert framer.push(signal[:500]) == []
    assert framer.pending == 500
    frames = framer.push(signal[500:1500])
    assert len(frames) == 1
    assert np.array_equal(frames[0], signal[:960])
    assert framer.pending == 540
    frames = framer.push(signal[1500:])
    assert len(frames) == 1
    assert np.array_equal(frames[0], signal[960:1920])
    assert framer.pending == 580
    last = framer.flush()
    assert last is not None
    assert np.array_equal(last[:580], signal[1920:])
    assert not last[580:].any()
    assert (framer.pending, framer.flush()) == (0, None)


def test_framer_push_is_eager() -> None:
    framer = Framer(4)
    framer.push(np.arange(6, dtype=np.int16))  # result ignored: the samples must stay
    assert framer.pending == 2
    [frame] = framer.push(np.arange(6, 8, dtype=np.int16))
    assert frame.tolist() == [4, 5, 6, 7]


def test_framer_frames_are_copies() -> None:
    chunk = np.arange(8, dtype=np.int16)
    frames = Framer(4).push(chunk)
    chunk[:] = 0
    assert [f.tolist() for f in frames] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@given(st.lists(st.integers(0, 3000), max_size=12))
def test_framer_preserves_the_stream(sizes: list[int]) -> None:
    total = sum(sizes)
    signal = (np.arange(total) % 30011 - 15000).astype(np.int16)
    framer, out, offset = Framer(), [], 0
    for size in sizes:
        out += framer.push(signal[offset : offset + size])
        offset += size
        assert framer.pending == offset % FRAME_SAMPLES
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.int16 for f in out)
    tail = framer.flush()
    if tail is not None:
        out.append(tail)
    got = np.concatenate(out) if out else np.zeros(0, np.int16)
    assert got.size == -(-total // FRAME_SAMPLES) * FRAME_SAMPLES
    assert np.array_equal(got[:total], signal)
    assert not got[total:].any()


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (np.zeros(10, np.float32), "Framer.push needs 1-D int16 PCM, got float32 of shape (10,)"),
        (
            np.zeros((1, 10), np.int16),
            "Framer.push needs 1-D int16 PCM, got int16 of shape (1, 10)",
        ),
        ([1, 2, 3], "Framer.push needs 1-D int16 PCM, got list"),
    ],
)
def test_framer_rejects_bad_chunks(chunk: object, message: str) -> None:
    framer = Framer()
    framer.push(np.ones(5, np.int16))
    with pytest.raises(ValueError) as info:
        framer.push(chunk)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert framer.pending == 5


def test_framer_rejects_an_empty_frame_size() -> None:
    with pytest.raises(ValueError) as info:
        Framer(0)
    assert str(info.value) == "frame size must be >= 1 sample, got 0"


# Dominant frequency


@pytest.mark.parametrize("freq", [123.4, 440.0, 1000.0, 3333.3, 9876.5, 15000.0, 23000.0])
@pytest.mark.parametrize("n", [960, 4800])
def test_dominant_frequency_accuracy(freq: float, n: int) -> None:
    # Each case has at least ~2.5 periods in the window; with fewer the Hann main lobe
    # meets its mirror image at DC and the estimate drifts (60 Hz in 960 samples: +24 %).
    est = pcm.dominant_frequency(pcm.tone(freq, n, level_dbfs=-12.0))
    assert est == pytest.approx(freq, rel=0.005)


def test_dominant_frequency_picks_the_stronger_tone_over_noise() -> None:
    mix = pcm.tone(700.0, 4800, level_dbfs=-10.0).astype(np.int32)
    mix += pcm.tone(2500.0, 4800, level_dbfs=-20.0)
    mix += np.random.default_rng(0).integers(-300, 300, 4800)
    assert pcm.dominant_frequency(mix.astype(np.int16)) == pytest.approx(700.0, rel=0.002)


def test_dominant_frequency_at_other_rates() -> None:
    x = pcm.tone(1000.0, 1600, rate=16_000)
    assert pcm.dominant_frequency(x, rate=16_000) == pytest.approx(1000.0, rel=0.002)


def test_dominant_frequency_needs_samples() -> None:
    with pytest.raises(ValueError) as info:
        pcm.dominant_frequency(pcm.tone(1000.0, 15))
    assert str(info.value) == "need at least 16 samples for a spectrum, got 15"
