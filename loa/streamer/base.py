"""The source protocol: what every audio source yields, and the frame it yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from loa.codecs import FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Frame:
    """20 ms of 48 kHz mono int16 PCM.

    ``pts`` is the media timestamp in samples since the source began (frame n has
    pts == n * 960 for a source that never skips). ``item_end`` marks the last frame of a
    playlist item or file: an item boundary follows, where a waiting priority broadcast may
    take the floor. ``silent_fill`` marks frames a source made up (e.g. a radio relay
    bridging an upstream outage)."""

    pcm: np.ndarray
    pts: int
    item_end: bool = False
    silent_fill: bool = False

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"frame must be int16[{FRAME_SAMPLES}], got {self.pcm.dtype}{list(self.pcm.shape)}"
            )


@runtime_checkable
class Source(Protocol):
    """An async producer of frames.

    ``read()`` returns the next frame, or None at the end. A source produces as fast as it
    is asked; the broadcast paces non-live sources by absolute deadlines. ``live`` sources
    (a microphone, a studio push) are never paced. ``resumable`` sources (file, playlist,
    TTS) keep their position while nobody reads them, so a paused broadcast resumes where
    it stopped simply by reading again. ``aclose()`` releases everything (threads,
    subprocesses, sockets) and is safe to call twice."""

    @property
    def name(self) -> str: ...

    @property
    def live(self) -> bool: ...

    @property
    def resumable(self) -> bool: ...

    async def read(self) -> Frame | None: ...

    async def aclose(self) -> None: ...
