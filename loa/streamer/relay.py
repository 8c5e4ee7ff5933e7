"""What a radio relay ("tiếp sóng") needs around ``UrlSource``: a time limit and a fallback.

A radio stream never ends, so a relay in a programme plays for ``duration_s`` (``Limited``) and
then ends its item, which is an item boundary like any other. While the upstream is down the
relay yields made-up silence (``silent_fill``); ``Fallback`` plays another source instead (a
file from the library, a tone) so the villages do not hear dead air, and gives the floor back
to the radio as soon as real audio returns. Both keep the relay's timeline: one frame out per
frame read from the relay, so the radio keeps its place however long the fallback plays."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from loa.codecs import FRAME_S
from loa.errors import BadRequest
from loa.streamer.base import Frame, Source

log = logging.getLogger(__name__)

DEFAULT_FALLBACK_AFTER_S = 1.0


class Limited:
    """Ends ``source`` after ``duration_s`` (whole frames, at least one); the last frame carries
    ``item_end``. Read by the broadcast or the playlist it is an item of."""

    def __init__(self, source: Source, duration_s: float) -> None:
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, int | float)
            or not math.isfinite(duration_s)
            or duration_s <= 0
        ):
            raise BadRequest(f"duration_s must be a positive number of seconds, got {duration_s!r}")
        self.source = source
        self.frames = max(1, round(duration_s / FRAME_S))
        self._left = self.frames

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def left_s(self) -> float:
        """What is left to play, in seconds."""
        return self._left * FRAME_S

    @property
    def live(self) -> bool:
        return self.source.live

    @property
    def resumable(self) -> bool:
        return self.source.resumable

    async def read(self) -> Frame | None:
        if self._left <= 0:
            return None
        frame = await self.source.read()
        if frame is None:
            self._left = 0
            return None
        self._left -= 1
        if self._left == 0:
            await self.source.aclose()  # a relay's reader thread and socket go at once
            return Frame(frame.pcm, frame.pts, item_end=True, silent_fill=frame.silent_fill)
        return frame

    async def aclose(self) -> None:
        self._left = 0
        await self.source.aclose()


class Fallback:
    """Reads the relay every frame; once its frames have been made-up silence for
    ``after_s`` (a short underrun is not an outage), yields the fallback's audio instead, on the
    relay's timestamps. ``make_fallback`` builds the fallback source again whenever it ends, so a
    short file loops through a long outage. ``fallback_frames`` counts what it covered."""

    def __init__(
        self,
        relay: Source,
        make_fallback: Callable[[], Source],
        *,
        after_s: float = DEFAULT_FALLBACK_AFTER_S,
    ) -> None:
        if not 0 <= after_s <= 60:
            raise BadRequest(f"fallback after_s must be in [0, 60] seconds, got {after_s!r}")
        self.relay = relay
        self._make = make_fallback
        self._after = round(after_s / FRAME_S)
        self._fallback: Source | None = None
        self._silent_run = 0
        self._closed = False
        self.active = False
        self.fallback_frames = 0

    @property
    def name(self) -> str:
        return self.relay.name

    @property
    def live(self) -> bool:
        return self.relay.live

    @property
    def resumable(self) -> bool:
        return self.relay.resumable

    async def read(self) -> Frame | None:
        frame = await self.relay.read()
        if frame is None or self._closed:
            return None
        if not frame.silent_fill:
            self._silent_run = 0
            if self.active:
                self.active = False
                log.info("[relay %s] upstream back: fallback off", self.relay.name)
            return frame
        self._silent_run += 1
        if self._silent_run <= self._after:
            return frame
        if not self.active:
            self.active = True
            log.info("[relay %s] upstream down: playing the fallback", self.relay.name)
        pcm = await self._fallback_pcm()
        if pcm is None:
            return frame
        self.fallback_frames += 1
        return Frame(pcm, frame.pts, item_end=frame.item_end)

    async def _fallback_pcm(self) -> np.ndarray | None:
        for _ in range(2):  # the current fallback, then a fresh one if it has ended
            if self._fallback is None:
                self._fallback = self._make()
            got = await self._fallback.read()
            if got is not None:
                return got.pcm
            await self._fallback.aclose()
            self._fallback = None
        return None  # a fallback that ends at once: keep the relay's silence

    async def aclose(self) -> None:
        self._closed = True
        fallback, self._fallback = self._fallback, None
        try:
            if fallback is not None:
                await fallback.aclose()
        finally:
            await self.relay.aclose()
