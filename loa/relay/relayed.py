"""A broadcast encoded on another node of the cluster, as this node plays it: the packets
arrive in audio bundles over the bus (``feed``) and go to this node's listeners through the
same ``deliver`` as a local broadcast's (same rewriters, same continuity across switches).
Nothing is encoded here; the encoding node says when it ends (``finish``) or an operator's
stop reaches every node (``Node.stop_broadcast``).

Driven by the cluster membership (``loa.clustering``): it builds one with
``Node.start_broadcast(..., factory=RelayedBroadcast)`` when the lifecycle channel says a
broadcast started elsewhere."""

from __future__ import annotations

import asyncio
from typing import Any

from loa.codecs import OPUS_PAYLOAD_TYPE
from loa.relay.broadcast import _PLAIN, _STAMPED, Broadcast, State
from loa.streamer.base import Frame


class RelayedSource:
    """The source a relayed broadcast has: none here (its frames were encoded elsewhere)."""

    name = "relayed"
    live = True
    resumable = False

    async def read(self) -> Frame | None:  # never called: RelayedBroadcast reads no source
        return None

    async def aclose(self) -> None:
        return None


class RelayedBroadcast(Broadcast):
    """Fed packets by the bus; ends on ``finish`` or when stopped or expired like any other."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relayed = True
        self._finished: asyncio.Event = asyncio.Event()
        self._finish_reason = "finished"
        self._finish_state = State.FINISHED

    def feed(self, payload: bytes, frame_index: int, item_end: bool, sent_us: int = 0) -> None:
        """One Opus packet from the encoding node; dropped while this node pauses it (a
        higher broadcast holds all its listeners here) or once it is ending. With
        ``stamp_frames`` it is stamped with ``sent_us``, when its bundle left that node."""
        if self.state.ended or self._stopping is not None or not self._running.is_set():
            return
        self.frames += 1
        head = _PLAIN
        if self.stamp_frames and sent_us:
            head = _STAMPED.pack(0x90, OPUS_PAYLOAD_TYPE, 0, 0, 0, 0xBEDE, 3, 0x17, sent_us, 0, 0)
        self.deliver(self, head + payload, frame_index, item_end)

    def finish(self, reason: str, *, failed: bool = False) -> None:
        """The encoding node's broadcast ended by itself (its source finished or failed)."""
        self._finish_reason = reason
        self._finish_state = State.FAILED if failed else State.FINISHED
        self._finished.set()

    async def _loop(self, loop: asyncio.AbstractEventLoop) -> None:
        await self._finished.wait()
        self._end(self._finish_state, self._finish_reason)
