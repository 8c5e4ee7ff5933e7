"""How long a piece of media may be (``web.max_media_duration_s``): the duration a container
declares is checked before anything is decoded, and the decoded samples are counted, so a
file that lies about its length (or declares none) is stopped as soon as decoding passes
the cap, not after hours of audio.

Decoding gets one second of slack over the cap (encoder delay and padding make a file a
few milliseconds longer than it says); the declared duration gets none.
"""

from __future__ import annotations

from typing import Any

from loa.errors import LoaError

DECODE_SLACK_S = 1.0
_AV_TIME_BASE = 1_000_000  # container.duration is in microseconds


class TooLong(LoaError):
    """Media longer than the configured cap; ``limit_s`` and ``duration_s`` (or
    ``decoded_s``) say by how much."""

    code = "too_long"


def human(seconds: float) -> str:
    """A duration for people: ``7200`` → ``2 h``, ``5400`` → ``1 h 30 min``, ``2.5`` → ``2.5 s``."""
    if seconds < 60:
        return f"{seconds:g} s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h} h" if h else "", f"{m} min" if m else "", f"{s} s" if s else ""]
    return " ".join(p for p in parts if p)


def declared_s(container: Any) -> float | None:
    """The duration an av input container declares (the container's, else its first audio
    stream's), or None when it declares none."""
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / _AV_TIME_BASE
    for stream in container.streams.audio[:1]:
        if stream.duration is not None and stream.duration > 0 and stream.time_base:
            return float(stream.duration * stream.time_base)
    return None


class DurationCap:
    """Driven by a decoder loop: ``check_declared`` once after opening the file, ``add``
    with every decoded chunk's sample count."""

    def __init__(self, name: str, limit_s: float, rate: int) -> None:
        self.name, self.limit_s, self.rate = name, float(limit_s), rate
        self._max_samples = int((self.limit_s + DECODE_SLACK_S) * rate)
        self.samples = 0
        self.declared: float | None = None

    def _limit(self) -> str:
        return f"the limit is {human(self.limit_s)} (web.max_media_duration_s)"

    def check_declared(self, container: Any) -> None:
        self.declared = duration = declared_s(container)
        if duration is not None and duration > self.limit_s:
            raise TooLong(
                f"{self.name} lasts {human(duration)}; {self._limit()}",
                limit_s=self.limit_s,
                duration_s=round(duration, 3),
            )

    def add(self, samples: int) -> None:
        self.samples += samples
        if self.samples > self._max_samples:
            decoded = self.samples / self.rate
            said = "no duration" if self.declared is None else human(self.declared)
            raise TooLong(
                f"{self.name} goes on past {human(decoded)} (it declares {said}); {self._limit()}",
                limit_s=self.limit_s,
                decoded_s=round(decoded, 3),
            )
