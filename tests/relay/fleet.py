"""A fleet of real `loa speaker` clients in the test's event loop, recording what they hear."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from loa.codecs.pcm import dominant_frequency, rms_dbfs
from loa.speaker.client import AudioMeta, Speaker
from loa.speaker.output import NullOutput

FRAMES_KEPT = 250  # 5 s per speaker


@dataclass
class Heard:
    """What one speaker played: (wall time, broadcast id, volume, pcm) per 20 ms frame."""

    frames: deque[tuple[float, str | None, int, np.ndarray]] = field(
        default_factory=lambda: deque(maxlen=FRAMES_KEPT)
    )

    def add(self, pcm: np.ndarray, meta: AudioMeta) -> None:
        self.frames.append((time.monotonic(), meta.broadcast, meta.volume, pcm.copy()))

    def since(self, t0: float, broadcast: str | None = None) -> list[np.ndarray]:
        return [
            pcm
            for t, bc, _, pcm in self.frames
            if t >= t0 and (broadcast is None or bc == broadcast)
        ]

    def frequency(self, t0: float, broadcast: str | None = None, *, frames: int = 15) -> float:
        """Dominant frequency of the last ``frames`` loud frames heard after ``t0``."""
        loud = [p for p in self.since(t0, broadcast) if rms_dbfs(p) > -50][-frames:]
        if len(loud) < frames:
            return 0.0
        return dominant_frequency(np.concatenate(loud))

    def volumes(self, t0: float, broadcast: str) -> set[int]:
        return {v for t, bc, v, _ in self.frames if t >= t0 and bc == broadcast}


class Fleet:
    """Owns the speakers' tasks; ``close()`` stops and awaits them all."""

    def __init__(
        self, url: str, tokens: Iterable[tuple[str, str]], **speaker_kwargs: object
    ) -> None:
        self.heard: dict[str, Heard] = {}
        self.speakers: dict[str, Speaker] = {}
        kwargs = {"status_interval_s": 1.0, "backoff_min_s": 0.2, "backoff_max_s": 1.0}
        kwargs.update(speaker_kwargs)
        for endpoint_id, token in tokens:
            heard = Heard()
            self.heard[endpoint_id] = heard
            self.speakers[endpoint_id] = Speaker(
                url,
                token,
                NullOutput(),
                on_audio=heard.add,
                **kwargs,  # type: ignore[arg-type]
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(s.run()) for s in self.speakers.values()]

    async def close(self) -> None:
        for s in self.speakers.values():
            s.stop()
        _, pending = await asyncio.wait(self._tasks, timeout=5)
        for task in pending:
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=5)
            if stuck:  # fail loudly rather than hang the suite, saying where they are stuck
                where = "; ".join(
                    " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in t.get_stack(limit=8))
                    for t in stuck
                )
                raise AssertionError(
                    f"{len(stuck)} speaker task(s) ignored stop() and cancel(): {where}"
                )
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(predicate: object, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
