"""PCM helpers on int16 numpy arrays: framing, gain, meters, generators, downmix.

All vectorised; nothing here loops over samples in Python."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE

Int16Array = npt.NDArray[np.int16]
FULL_SCALE = 32768.0
# Meters report this for digital silence instead of -inf, so JSON stays valid.
FLOOR_DBFS = -120.0


def to_float(pcm: Int16Array) -> npt.NDArray[np.float32]:
    return pcm.astype(np.float32) / np.float32(FULL_SCALE)


def to_int16(samples: npt.NDArray[np.floating]) -> Int16Array:
    """Float samples in [-1, 1) to int16, clipping (never wrapping) what is out of range."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def apply_gain_db(pcm: Int16Array, db: float) -> Int16Array:
    """Scale by ``db`` decibels with saturation."""
    if db == 0.0:
        return pcm.copy()
    return to_int16(to_float(pcm) * db_to_gain(db))


def peak_dbfs(pcm: Int16Array) -> float:
    if pcm.size == 0:
        return FLOOR_DBFS
    peak = float(np.max(np.abs(pcm.astype(np.int32)))) / FULL_SCALE
    return max(FLOOR_DBFS, 20.0 * float(np.log10(peak))) if peak > 0 else FLOOR_DBFS


def rms_dbfs(pcm: Int16Array) -> float:
    if pcm.size == 0:
        return FLOOR_DBFS
    x = to_float(pcm).astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    return max(FLOOR_DBFS, 20.0 * float(np.log10(rms))) if rms > 0 else FLOOR_DBFS


def silence(n: int = FRAME_SAMPLES) -> Int16Array:
    if n < 0:
        raise ValueError(f"sample count must be >= 0, got {n}")
    return np.zeros(n, dtype=np.int16)


def tone(
    freq_hz: float,
    n: int = FRAME_SAMPLES,
    *,
    start: int = 0,
    level_dbfs: float = -6.0,
    rate: int = SAMPLE_RATE,
) -> Int16Array:
    """A sine of ``freq_hz`` from absolute sample ``start``, so consecutive calls join up."""
    if not 0 < freq_hz < rate / 2:
        raise ValueError(f"tone frequency must be in (0, {rate / 2:g}) Hz, got {freq_hz:g}")
    if n < 0:
        raise ValueError(f"sample count must be >= 0, got {n}")
    t = (np.arange(n, dtype=np.float64) + start) / rate
    return to_int16(db_to_gain(level_dbfs) * np.sin(2.0 * np.pi * freq_hz * t))


def clicks(
    n: int,
    *,
    period: int,
    start: int = 0,
    width: int = 48,
    level_dbfs: float = -1.0,
) -> Int16Array:
    """A click train: ``width``-sample pulses every ``period`` samples from absolute ``start``.

    Used to measure latency: the receiver finds the pulses' onsets in its decoded audio."""
    if period <= width or width <= 0:
        raise ValueError(f"click period ({period}) must exceed width ({width}) > 0")
    if n < 0:
        raise ValueError(f"sample count must be >= 0, got {n}")
    pos = (np.arange(n, dtype=np.int64) + start) % period
    # A windowed 2 kHz burst survives Opus far better than a single-sample impulse.
    envelope = np.hanning(width)[np.minimum(pos, width - 1)]
    burst = np.sin(2.0 * np.pi * 2000.0 * pos.astype(np.float64) / SAMPLE_RATE) * envelope
    out = np.where(pos < width, burst * db_to_gain(level_dbfs), 0.0)
    return to_int16(out)


def downmix(pcm: npt.NDArray[np.integer] | npt.NDArray[np.floating], channels: int) -> Int16Array:
    """Interleaved (or [n, channels]) int16/float PCM to mono int16, averaging channels."""
    if channels < 1:
        raise ValueError(f"channel count must be >= 1, got {channels}")
    arr = np.asarray(pcm)
    if arr.ndim == 1:
        if arr.size % channels:
            raise ValueError(f"{arr.size} samples do not divide into {channels} channels")
        arr = arr.reshape(-1, channels)
    elif arr.ndim != 2 or arr.shape[1] != channels:
        raise ValueError(f"expected shape [n, {channels}], got {list(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating):
        return to_int16(arr.astype(np.float64).mean(axis=1))
    # Clip so that wider integer input saturates instead of wrapping around.
    mean = np.rint(arr.astype(np.float64).mean(axis=1))
    mono: Int16Array = np.clip(mean, -32768, 32767).astype(np.int16)
    return mono


class Framer:
    """Cuts a stream of arbitrary-length PCM chunks into exact 960-sample frames.

    Keeps the remainder between calls; ``flush()`` pads the last partial frame with silence."""

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        if frame_samples < 1:
            raise ValueError(f"frame size must be >= 1 sample, got {frame_samples}")
        self.frame_samples = frame_samples
        self._rest: Int16Array = np.zeros(0, dtype=np.int16)

    @property
    def pending(self) -> int:
        return int(self._rest.size)

    def push(self, pcm: Int16Array) -> list[Int16Array]:
        """The whole frames completed by ``pcm``; the rest waits for the next push.

        Eager on purpose: as a generator, a push whose result was never iterated dropped
        its samples, and a partly iterated one left ``pending`` stale."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            what = (
                f"{pcm.dtype} of shape {pcm.shape}"
                if isinstance(pcm, np.ndarray)
                else type(pcm).__name__
            )
            raise ValueError(f"Framer.push needs 1-D int16 PCM, got {what}")
        data = np.concatenate((self._rest, pcm)) if self._rest.size else pcm
        whole = data.size - data.size % self.frame_samples
        frames = [
            data[i : i + self.frame_samples].copy() for i in range(0, whole, self.frame_samples)
        ]
        self._rest = data[whole:].copy()
        return frames

    def flush(self) -> Int16Array | None:
        if not self._rest.size:
            return None
        out = np.zeros(self.frame_samples, dtype=np.int16)
        out[: self._rest.size] = self._rest
        self._rest = np.zeros(0, dtype=np.int16)
        return out


def dominant_frequency(pcm: Int16Array, rate: int = SAMPLE_RATE) -> float:
    """The strongest frequency in ``pcm`` by FFT with parabolic peak interpolation (Hz)."""
    if pcm.size < 16:
        raise ValueError(f"need at least 16 samples for a spectrum, got {pcm.size}")
    x = to_float(pcm).astype(np.float64) * np.hanning(pcm.size)
    mag = np.abs(np.fft.rfft(x))
    mag[0] = 0.0
    k = int(np.argmax(mag))
    if 0 < k < mag.size - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        k_f = k + (0.5 * (a - c) / denom if denom else 0.0)
    else:
        k_f = float(k)
    return float(k_f * rate / pcm.size)


def voice_like(n: int, *, seed: int = 1, rate: int = SAMPLE_RATE) -> Int16Array:
    """Vowel-like test speech: a gliding ~140 Hz pitch, moving formants, syllables, breath.

    Opus treats it as speech (SILK, FEC), unlike a tone; used by codec tests and benches."""
    t = np.arange(n) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    h = np.arange(1, 40)[:, None]
    f = h * f0
    f1 = 600 + 250 * np.sin(2 * np.pi * 2.3 * t)
    f2 = 1500 + 600 * np.sin(2 * np.pi * 1.7 * t + 1)
    weight = (
        np.exp(-(((f - f1) / 250) ** 2))
        + 0.5 * np.exp(-(((f - f2) / 350) ** 2))
        + 0.2 * np.exp(-(((f - 2700) / 500) ** 2))
        + 0.01
    )
    x = (weight * np.sin(h * phase) / np.sqrt(h)).sum(axis=0)
    x *= 0.5 + 0.5 * np.abs(np.sin(4 * np.pi * t))
    x += 0.02 * np.random.default_rng(seed).standard_normal(n)
    return to_int16(x / np.max(np.abs(x)) * 0.4)
