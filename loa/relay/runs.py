"""Keyed runs: one background task per key (a bulletin, a repeating emergency) and the
broadcast that key has on air, cancelled together. The bulletin and repeat services each
keep one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from loa.relay.node import Node


class Runs:
    def __init__(self, node: Node, kind: str) -> None:
        self.node = node
        self.kind = kind  # names the tasks: loa-<kind>-<key>
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._playing: dict[str, str] = {}  # key → id of its broadcast on air

    def spawn(self, key: str, run: Coroutine[Any, Any, None]) -> None:
        """Run ``run`` as the task of ``key``; it forgets itself when it ends."""
        task = asyncio.create_task(run, name=f"loa-{self.kind}-{key}")
        self._tasks[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]

        task.add_done_callback(done)

    def __contains__(self, key: str) -> bool:
        """``key`` has a running task."""
        return key in self._tasks

    def on_air(self, key: str, broadcast_id: str) -> None:
        self._playing[key] = broadcast_id

    def off_air(self, key: str, broadcast_id: str) -> None:
        """``broadcast_id`` ended; forget it unless ``key`` has started another since."""
        if self._playing.get(key) == broadcast_id:
            del self._playing[key]

    def playing(self) -> dict[str, str]:
        """Key → id of its broadcast on air right now."""
        return dict(self._playing)

    async def cancel(self, key: str, reason: str, last: str | None = None) -> None:
        """Cancel the task of ``key`` and stop the broadcast it has on air: the one its task
        started here, else ``last`` (in a cluster, the key's latest play, which another
        node may have started: stopping its relayed copy here stops it there)."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        bc_id = self._playing.pop(key, None) or last
        if bc_id is not None and bc_id in self.node.broadcasts:
            await self.node.stop_broadcast(bc_id, reason=reason)

    async def close(self) -> None:
        """Cancel every task; what they had on air is left to the node's own shutdown."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
