"""Synchronised playout: each frame heard at its capture time + D, on the server's clock.

Sans-IO, numpy only. The speaker's playout task knows, for the frame it is about to write,
when its first sample will be heard (its output position, on the local clock, turned into
server time by ``loa.speaker.clock``) and when it should be (the frame's capture time from
the RTP timestamp and the sender reports, plus D). It hands the frame and the difference
(``error_s``, positive when late) to ``Playout.frame`` and writes what comes back:

- **Beyond ``RESYNC_S`` (40 ms) either way: a resync at this frame boundary.** Late: that
  much audio is skipped (this frame and the next ones, sample-exact); early: that much
  silence goes first. Counted in ``resyncs``. So is any error of a sample or more on the
  first frame placed after frames that could not be (no clock estimate or sender report
  yet) or after the output started over: that pole was not in step anyway.
- **Within it: resampling**, output samples per input sample
  ``ratio = 1 - drift - error_s / TIME_CONSTANT_S``, bounded to 1 ± ``MAX_SLEW`` (0.05 %,
  inaudible: a 0.9 cent pitch change). ``drift`` is the clock estimator's (the local clock
  runs that much slow against the server's); the error term pulls the rest in with a time
  constant of ``TIME_CONSTANT_S`` (at most 0.5 ms corrected per second). A ratio within
  1 ppm of 1 passes the samples through untouched.

``Resampler`` is linear interpolation with its phase carried across frames (one sample of
delay, constant); it is bit-exact at ratio 1.

``CaptureTimes`` turns a frame's RTP timestamp into its capture time on the server's clock
through the sender report of its *segment*: the relay's timestamps jump at every switch or
idle gap (each first packet carries the marker bit), and it sends an SR right after each
segment's first frame, so a frame maps through the latest SR whose RTP timestamp falls in
the frame's segment. Sorting by timestamp, not by arrival, keeps a report that overtook its
segment's first packet, and the tail of the previous segment still in the buffer maps
through the previous segment's report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from loa.codecs import SAMPLE_RATE
from loa.codecs.pcm import Int16Array
from loa.codecs.rtp import ts_diff

RESYNC_S: Final = 0.040
MAX_SLEW: Final = 0.0005  # ±0.05 %
TIME_CONSTANT_S: Final = 4.0
_UNITY: Final = 1e-6
KEPT: Final = 8  # segments and reports remembered (a segment lasts at least a frame)


@dataclass(frozen=True, slots=True)
class Resync:
    """Jump at this frame boundary: skip ``samples`` of audio (late), or insert ``-samples``
    of silence first (early)."""

    samples: int


@dataclass(frozen=True, slots=True)
class Slew:
    """Resample by ``ratio`` output samples per input sample (1 ± MAX_SLEW)."""

    ratio: float


class PlayoutCorrector:
    """The decision per frame: driven by ``Playout`` with the frame's playout error."""

    def __init__(
        self,
        *,
        resync_s: float = RESYNC_S,
        max_slew: float = MAX_SLEW,
        time_constant_s: float = TIME_CONSTANT_S,
    ) -> None:
        if resync_s <= 0 or not 0 < max_slew < 0.01 or time_constant_s <= 0:
            raise ValueError(
                "need resync_s > 0, 0 < max_slew < 0.01 and time_constant_s > 0, got "
                f"{resync_s}, {max_slew}, {time_constant_s}"
            )
        self.resync_s = resync_s
        self.max_slew = max_slew
        self.time_constant_s = time_constant_s
        self.resyncs = 0
        self.last_error_s: float | None = None
        self.ratio = 1.0

    def decide(self, error_s: float, drift: float = 0.0, *, first: bool = False) -> Resync | Slew:
        """``error_s``: when this frame would be heard minus when it should be (> 0: late).
        ``drift``: the local clock's rate error against the server's (server seconds per
        local second - 1). ``first``: the first frame placed since the output (re)started or
        played out of step: any error of a sample or more is a resync (nobody hears a pole
        step into line; slewing 20 ms in would take 40 s)."""
        if not math.isfinite(error_s) or not math.isfinite(drift):
            raise ValueError(f"error and drift must be finite, got {error_s}, {drift}")
        self.last_error_s = error_s
        if abs(error_s) > self.resync_s or (first and round(error_s * SAMPLE_RATE)):
            self.resyncs += 1
            self.ratio = 1.0
            return Resync(round(error_s * SAMPLE_RATE))
        slew = drift + error_s / self.time_constant_s
        self.ratio = 1.0 - max(-self.max_slew, min(self.max_slew, slew))
        return Slew(self.ratio)


class Resampler:
    """Linear interpolation by a ratio that may change every frame; driven by ``Playout``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (after silence or a skip)."""
        self._prev = 0.0  # the last input sample, at position -1 of the next frame
        self._phase = -1.0  # where the next output sample falls, relative to the next frame

    def process(self, pcm: Int16Array, ratio: float) -> Int16Array:
        """``pcm`` resampled so that it lasts ``ratio`` times as many samples (± one, the
        fraction carried to the next frame)."""
        n = len(pcm)
        if n == 0:
            return pcm
        if not 1 - 0.01 < ratio < 1 + 0.01:
            raise ValueError(f"ratio must be within 1 ± 1 %, got {ratio}")
        step = 1.0 / ratio
        if abs(ratio - 1.0) < _UNITY:
            step = 1.0
        y = np.empty(n + 1, dtype=np.float64)
        y[0] = self._prev
        y[1:] = pcm
        count = max(0, math.ceil((n - 1 - self._phase) / step - 1e-9))
        pos = self._phase + step * np.arange(count, dtype=np.float64)
        self._phase = self._phase + step * count - n
        self._prev = float(pcm[-1])
        if step == 1.0 and self._phase == -1.0:
            out: Int16Array = y[:count].astype(np.int16)  # ratio 1: the samples as they are
            return out
        idx = pos + 1.0
        base = np.minimum(idx.astype(np.int64), n - 1)
        frac = idx - base
        mixed = y[base] * (1.0 - frac) + y[base + 1] * frac
        out = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
        return out


class Playout:
    """One speaker's synchronised output: driven by its playout task, one call per frame
    decoded (``frame``) and ``reset`` when the output starts over after silence."""

    def __init__(self, corrector: PlayoutCorrector | None = None) -> None:
        self.corrector = corrector or PlayoutCorrector()
        self.resampler = Resampler()
        self._skip = 0  # samples still to skip after a late resync
        self._placed = False  # the last frame had an error to correct: in step
        self.skipped = 0  # samples skipped by resyncs, in all
        self.inserted = 0  # samples of silence inserted by resyncs, in all

    @property
    def skipping(self) -> bool:
        """A resync is still skipping audio: the next frame's error is not meaningful."""
        return self._skip > 0

    def reset(self) -> None:
        self._skip = 0
        self._placed = False
        self.resampler.reset()

    def frame(self, pcm: Int16Array, error_s: float | None, drift: float = 0.0) -> Int16Array:
        """What to write for ``pcm``. ``error_s`` None (not known: no clock or mapping yet,
        or a skip under way) plays it as it is."""
        if self._skip:
            take = min(self._skip, len(pcm))
            self._skip -= take
            self.skipped += take
            if self._skip:
                return pcm[:0]
            self.resampler.reset()
            return self.resampler.process(pcm[take:], 1.0)
        if error_s is None:
            self._placed = False
            return self.resampler.process(pcm, 1.0)
        first, self._placed = not self._placed, True
        match self.corrector.decide(error_s, drift, first=first):
            case Resync(samples=samples) if samples > 0:
                self._skip = samples
                return self.frame(pcm, None)
            case Resync(samples=samples):
                self.inserted -= samples
                self.resampler.reset()
                silence = np.zeros(-samples, dtype=np.int16)
                out: Int16Array = np.concatenate((silence, self.resampler.process(pcm, 1.0)))
                return out
            case Slew(ratio=ratio):
                return self.resampler.process(pcm, ratio)
        raise AssertionError("unreachable")


class CaptureTimes:
    """Driven by the speaker's receive path (``segment`` for each packet with the marker
    bit, ``report`` for each SR) and its playout (``capture`` per frame)."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # first RTP timestamps of the latest segments
        self._reports: list[tuple[int, float]] = []  # (RTP timestamp, Unix seconds)

    def reset(self) -> None:
        """A new session: another stream, other timestamps."""
        self._starts.clear()
        self._reports.clear()

    def segment(self, timestamp: int) -> None:
        """A packet with the marker bit: a segment starts at ``timestamp``."""
        if timestamp not in self._starts:
            self._starts.append(timestamp)
            del self._starts[:-KEPT]

    def report(self, rtp_timestamp: int, unix_s: float) -> None:
        """A sender report: ``rtp_timestamp`` was the stream's clock at ``unix_s``."""
        self._reports.append((rtp_timestamp, unix_s))
        del self._reports[:-KEPT]

    def capture(self, timestamp: int) -> float | None:
        """When the frame with ``timestamp`` was captured (server Unix time), or None
        while its segment has no report yet."""
        start = self._bound(timestamp, self._starts, ahead=False)
        if start is None:
            return None
        after = self._bound(timestamp, self._starts, ahead=True)
        # The segment's report that came last. Not the one with the latest RTP time: the
        # previous stream's reports extrapolate its clock while it holds the floor without
        # sending (a cluster node died under a relayed broadcast), and one sent then may
        # name a timestamp past the start of the stream that follows it.
        for rtp, unix_s in reversed(self._reports):
            if ts_diff(rtp, start) < 0 or (after is not None and ts_diff(rtp, after) >= 0):
                continue  # another segment's
            return unix_s + ts_diff(timestamp, rtp) / SAMPLE_RATE
        return None

    @staticmethod
    def _bound(timestamp: int, starts: list[int], *, ahead: bool) -> int | None:
        """The latest segment start at or before ``timestamp`` (``ahead``: the earliest
        after it), timestamps compared wrap-aware."""
        best: int | None = None
        for start in starts:
            after = ts_diff(timestamp, start) < 0
            if after != ahead:
                continue
            if best is None or (ts_diff(start, best) < 0 if ahead else ts_diff(start, best) > 0):
                best = start
        return best


class Played:
    """When a speaker heard each frame it played whole, on the host's clock, by capture time
    (rounded to 0.1 ms, the same key on every speaker of a broadcast): fed from the
    speaker's ``on_audio`` by the bench and the tests, which compare speakers with it."""

    def __init__(self, to_host: Callable[[float], float]) -> None:
        self.to_host = to_host  # the speaker's clock → the host's (SkewedClock.to_host)
        self.frames: dict[float, float] = {}

    def add(self, captured: float | None, heard: float | None) -> None:
        if captured is not None and heard is not None:
            self.frames[round(captured, 4)] = self.to_host(heard)
