"""A broadcast's frame loop: ``preload`` reads the first frame before the node routes it,
``prime`` sends it without yielding, and ``run`` continues from the second at the pacer's
deadlines (or from the first, if it was paused at the start); a source that ends or breaks
on its first read ends the broadcast there."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from loa.codecs.opus import OpusEncoder
from loa.relay.broadcast import Broadcast, State
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.streamer.base import Frame
from loa.streamer.tone import ToneSource


class Delivered:
    """The node's ``deliver``: when each frame index arrived (perf_counter)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, float]] = []

    def __call__(self, bc: Broadcast, packet: bytes, frame_index: int, item_end: bool) -> None:
        self.frames.append((frame_index, time.perf_counter()))


class Script:
    """A source that answers ``read`` from a list: a Frame, None (the end) or an exception."""

    name = "script"
    resumable = True

    def __init__(self, *answers: object, live: bool = False) -> None:
        self.answers = list(answers)
        self.live = live
        self.reads = 0
        self.closed = False

    async def read(self) -> Frame | None:
        self.reads += 1
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def aclose(self) -> None:
        self.closed = True


def broadcast(source: object, deliver: Delivered) -> Broadcast:
    spec = BroadcastSpec(id="b", priority=Priority.EMERGENCY, target_zones=frozenset({"p"}))
    return Broadcast(
        spec,
        source,  # type: ignore[arg-type]
        OpusEncoder(),
        key=1,
        what="b",
        source_kind="tone",
        created_by="t",
        deliver=deliver,
    )


def frame(i: int) -> Frame:
    return Frame(np.zeros(960, np.int16), i * 960)


async def test_prime_sends_the_first_frame_without_yielding_and_run_goes_on_from_the_second() -> (
    None
):
    deliver = Delivered()
    bc = broadcast(ToneSource(1000, duration_s=0.1), deliver)  # 5 frames
    await bc.preload()
    assert deliver.frames == []  # read, not sent: the node routes it first
    ready = asyncio.Event()
    asyncio.get_running_loop().call_soon(ready.set)  # anything else the loop has ready
    t0 = time.perf_counter()
    bc.prime()
    assert [i for i, _ in deliver.frames] == [0]
    assert not ready.is_set()
    assert await asyncio.wait_for(bc.run(), 5) is State.FINISHED
    assert [i for i, _ in deliver.frames] == [0, 1, 2, 3, 4]  # none twice, none skipped
    second = deliver.frames[1][1] - t0
    assert second >= 0.019  # at its deadline, a frame after the first: not at once
    bc.prime()  # once only
    assert len(deliver.frames) == 5


async def test_a_broadcast_paused_at_its_start_sends_its_preloaded_frame_when_it_resumes() -> None:
    deliver = Delivered()
    source = Script(frame(0), frame(1))
    bc = broadcast(source, deliver)
    await bc.preload()
    bc.pause()
    bc.prime()  # paused: nothing
    task = asyncio.create_task(bc.run())
    await asyncio.sleep(0.05)
    assert deliver.frames == [] and source.reads == 1
    bc.resume()
    assert await asyncio.wait_for(task, 5) is State.FINISHED
    assert [i for i, _ in deliver.frames] == [0, 1] and source.reads == 3


@pytest.mark.parametrize(
    ("answers", "state", "reason"),
    [
        ((None,), State.FINISHED, "finished"),
        ((OSError("disk on fire"),), State.FAILED, "disk on fire"),
    ],
)
@pytest.mark.parametrize("primed", [True, False])
async def test_a_source_that_ends_or_breaks_on_its_first_read_ends_the_broadcast_there(
    answers: tuple[object, ...], state: State, reason: str, primed: bool
) -> None:
    deliver = Delivered()
    source = Script(*answers)
    bc = broadcast(source, deliver)
    await bc.preload()  # no exception reaches the caller (the API request)
    if primed:
        bc.prime()
        assert (bc.state, bc.log.reason) == (state, reason)
    assert await bc.run() is state
    assert (bc.state, bc.log.reason) == (state, reason)
    assert source.reads == 1 and source.closed and deliver.frames == []


async def test_a_live_broadcast_is_not_preloaded() -> None:
    deliver = Delivered()
    live = Script(frame(0), live=True)
    bc = broadcast(live, deliver)
    await bc.preload()
    bc.prime()
    assert live.reads == 0 and deliver.frames == []
