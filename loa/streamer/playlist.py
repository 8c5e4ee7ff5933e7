"""Playlist: several sources played one after another, each end an item boundary."""

from __future__ import annotations

from collections.abc import Sequence

from loa.codecs.pcm import Int16Array, silence
from loa.streamer.base import Frame, Source


class Playlist:
    """Reads its items in order and renumbers their frames onto one timeline.

    ``live`` is the current item's (a chime before a microphone is paced, the microphone is
    not); ``resumable`` only if every item is. Each item's last frame
    carries ``item_end``; an item that ends without marking it gets one silent frame that
    does, so the router still sees the boundary."""

    def __init__(self, items: Sequence[Source], *, name: str | None = None) -> None:
        if not items:
            raise ValueError("a playlist needs at least one item")
        self.items = list(items)
        self.name = name or " + ".join(s.name for s in self.items)
        self.resumable = all(s.resumable for s in self.items)
        self.index = 0
        self._pts = 0
        self._marked_end = True  # nothing to mark before the first frame

    @property
    def live(self) -> bool:
        return self.index < len(self.items) and self.items[self.index].live

    async def read(self) -> Frame | None:
        while self.index < len(self.items):
            frame = await self.items[self.index].read()
            if frame is not None:
                return self._emit(frame.pcm, item_end=frame.item_end, fill=frame.silent_fill)
            await self.items[self.index].aclose()
            self.index += 1
            if not self._marked_end:
                return self._emit(silence(), item_end=True, fill=True)
        return None

    def _emit(self, pcm: Int16Array, *, item_end: bool, fill: bool) -> Frame:
        frame = Frame(pcm, self._pts, item_end=item_end, silent_fill=fill)
        self._pts += pcm.size
        self._marked_end = item_end
        return frame

    async def aclose(self) -> None:
        for item in self.items[self.index :]:
            await item.aclose()
        self.index = len(self.items)
