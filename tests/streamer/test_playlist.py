"""Playlist: items in order on one timeline, each end an item boundary."""

from __future__ import annotations

import numpy as np
import pytest

from loa.codecs import FRAME_SAMPLES
from loa.streamer.base import Frame
from loa.streamer.playlist import Playlist
from loa.streamer.tone import SilenceSource, ToneSource


class Unmarked:
    """A source that ends without marking its last frame (as a live feed may)."""

    name = "unmarked"
    live = False
    resumable = True

    def __init__(self, frames: int) -> None:
        self.left = frames
        self.closed = False

    async def read(self) -> Frame | None:
        if self.left == 0:
            return None
        self.left -= 1
        return Frame(np.ones(FRAME_SAMPLES, np.int16), 0)

    async def aclose(self) -> None:
        self.closed = True


async def drain(source: Playlist) -> list[Frame]:
    frames = []
    while (frame := await source.read()) is not None:
        frames.append(frame)
    return frames


async def test_items_play_in_order_on_one_timeline() -> None:
    playlist = Playlist([ToneSource(1000, duration_s=0.1), SilenceSource(duration_s=0.06)])
    frames = await drain(playlist)
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(8)]
    assert [i for i, f in enumerate(frames) if f.item_end] == [4, 7]
    assert np.abs(frames[0].pcm).max() > 1000 and not frames[-1].pcm.any()


async def test_an_unmarked_end_still_gives_a_boundary() -> None:
    first = Unmarked(3)
    playlist = Playlist([first, ToneSource(440, duration_s=0.04)])
    frames = await drain(playlist)
    assert len(frames) == 3 + 1 + 2
    assert frames[3].item_end and frames[3].silent_fill and not frames[3].pcm.any()
    assert frames[-1].item_end
    assert first.closed


async def test_flags_and_close() -> None:
    items = [Unmarked(5), Unmarked(5)]
    playlist = Playlist(items, name="p")
    assert (playlist.name, playlist.live, playlist.resumable) == ("p", False, True)
    await playlist.read()
    await playlist.aclose()
    assert all(i.closed for i in items)
    assert await playlist.read() is None


def test_empty_playlist_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        Playlist([])
