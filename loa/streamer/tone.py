"""Generated sources: a test tone, silence, and the attention chime played before emergencies."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs import pcm as pcm_ops
from loa.codecs.pcm import Int16Array
from loa.streamer.base import Frame


def _total_samples(duration_s: float | None) -> int | None:
    if duration_s is None:
        return None
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0 or None, got {duration_s!r}")
    return max(1, round(duration_s * SAMPLE_RATE))


def _check_level(level_dbfs: float) -> None:
    if not (math.isfinite(level_dbfs) and level_dbfs <= 0):
        raise ValueError(f"level_dbfs must be <= 0 dBFS, got {level_dbfs!r}")


class _GeneratedSource(ABC):
    """Frames rendered on demand from absolute sample positions; driven by ``read()``.

    Resumable for free: the position only moves when a frame is read. With a finite length
    the last frame is padded with silence and carries ``item_end``."""

    live = False
    resumable = True

    def __init__(self, name: str, total_samples: int | None) -> None:
        self.name = name
        self.total_samples = total_samples
        self._pos = 0
        self._closed = False

    @abstractmethod
    def _render(self, start: int, n: int) -> Int16Array:
        """Samples ``start`` … ``start + n`` of the signal."""

    @property
    def duration_s(self) -> float | None:
        return None if self.total_samples is None else self.total_samples / SAMPLE_RATE

    @property
    def position_s(self) -> float:
        return self._pos / SAMPLE_RATE

    async def read(self) -> Frame | None:
        start = self._pos
        if self._closed or (self.total_samples is not None and start >= self.total_samples):
            return None
        n = FRAME_SAMPLES
        if self.total_samples is not None:
            n = min(n, self.total_samples - start)
        samples = self._render(start, n)
        if n < FRAME_SAMPLES:
            samples = np.concatenate((samples, pcm_ops.silence(FRAME_SAMPLES - n)))
        self._pos = start + FRAME_SAMPLES
        last = self.total_samples is not None and self._pos >= self.total_samples
        return Frame(samples, start, item_end=last)

    async def aclose(self) -> None:
        self._closed = True


class ToneSource(_GeneratedSource):
    """A phase-continuous sine, endless or ``duration_s`` long."""

    def __init__(
        self,
        freq_hz: float = 1000.0,
        level_dbfs: float = -12.0,
        duration_s: float | None = None,
        name: str | None = None,
    ) -> None:
        if not 0 < freq_hz < SAMPLE_RATE / 2:
            raise ValueError(
                f"tone frequency must be in (0, {SAMPLE_RATE / 2:g}) Hz, got {freq_hz!r}"
            )
        _check_level(level_dbfs)
        super().__init__(name or f"tone {freq_hz:g} Hz", _total_samples(duration_s))
        self.freq_hz = freq_hz
        self.level_dbfs = level_dbfs

    def _render(self, start: int, n: int) -> Int16Array:
        return pcm_ops.tone(self.freq_hz, n, start=start, level_dbfs=self.level_dbfs)


class SilenceSource(_GeneratedSource):
    """Digital silence, endless or ``duration_s`` long (a pause between playlist items)."""

    def __init__(self, duration_s: float | None = None, name: str | None = None) -> None:
        super().__init__(name or "silence", _total_samples(duration_s))

    def _render(self, start: int, n: int) -> Int16Array:
        return pcm_ops.silence(n)


# C5, E5, G5: a rising major triad reads as "attention", not as an alarm.
CHIME_NOTES_HZ = (523.25, 659.25, 783.99)


def chime(
    notes_hz: tuple[float, ...] = CHIME_NOTES_HZ,
    *,
    note_s: float = 0.5,
    level_dbfs: float = -9.0,
) -> Int16Array:
    """Rising bell-like notes, one per ``note_s`` slot, peak-normalised to ``level_dbfs``.

    Each note: a 15 ms raised-cosine attack (no click), an exponential decay, a soft octave
    partial for a bell colour, and a 60 ms raised-cosine release that reaches zero before the
    next note starts."""
    if not notes_hz:
        raise ValueError("a chime needs at least one note")
    for f in notes_hz:
        # The octave partial must stay below Nyquist too.
        if not 0 < 2 * f < SAMPLE_RATE / 2:
            raise ValueError(f"chime note must be in (0, {SAMPLE_RATE / 4:g}) Hz, got {f!r}")
    if not (math.isfinite(note_s) and 0.1 <= note_s <= 5.0):
        raise ValueError(f"note_s must be in [0.1, 5] s, got {note_s!r}")
    _check_level(level_dbfs)
    n = round(note_s * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    attack, release = round(0.015 * SAMPLE_RATE), round(0.060 * SAMPLE_RATE)
    env = np.exp(-t / (note_s * 0.6))
    env[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[n - release :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, release + 1) / release)
    notes = [
        env * (np.sin(2 * np.pi * f * t) + 0.25 * np.sin(2 * np.pi * 2 * f * t)) for f in notes_hz
    ]
    out = np.concatenate(notes)
    out *= pcm_ops.db_to_gain(level_dbfs) / np.max(np.abs(out))
    return pcm_ops.to_int16(out)


class ChimeSource(_GeneratedSource):
    """The attention chime (about 1.5 s) that may precede an emergency bulletin."""

    def __init__(
        self,
        notes_hz: tuple[float, ...] = CHIME_NOTES_HZ,
        *,
        note_s: float = 0.5,
        level_dbfs: float = -9.0,
        name: str | None = None,
    ) -> None:
        self._pcm = chime(notes_hz, note_s=note_s, level_dbfs=level_dbfs)
        super().__init__(name or "chime", int(self._pcm.size))
        self.notes_hz = notes_hz
        self.note_s = note_s

    def _render(self, start: int, n: int) -> Int16Array:
        return self._pcm[start : start + n].copy()
