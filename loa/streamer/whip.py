"""A live source fed by a WebRTC audio track (a WHIP publisher's microphone or OBS).

aiortc receives the track and decodes the Opus to av frames; ``WhipSource`` resamples them
to 48 kHz mono s16 and cuts 20 ms frames for the broadcast, which encodes them once like any
other source. The WHIP resource that negotiates the track is the web layer's
(``loa.web.whip``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Final, Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Framer
from loa.errors import SourceError, SourceTimeout
from loa.streamer.base import Frame, Source
from loa.streamer.pacer import Pacer

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S: Final = 10.0  # no audio for this long: the publisher is gone
QUEUE_FRAMES: Final = 5  # 100 ms of decoded audio waiting for the broadcast, then the oldest drop


class AudioTrack(Protocol):
    """What WhipSource reads: aiortc's remote track (``recv`` raises MediaStreamError at end)."""

    async def recv(self) -> Any: ...


class WhipSource:
    """A live source fed by a WebRTC audio track; its pump task (started by the first
    ``read``, ended by ``aclose``) receives decoded frames as they come, resamples them to
    48 kHz mono s16 and cuts 20 ms frames into a bounded queue, dropping the oldest when the
    broadcast falls behind. A gap in the sender's timestamps (lost packets) advances
    ``pts`` so the speakers' clock stays honest. An optional ``prelude`` (the emergency
    chime) plays first, paced by its own deadlines; audio received meanwhile is dropped."""

    live = True
    resumable = False

    def __init__(
        self,
        track: AudioTrack,
        *,
        name: str = "whip",
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        queue_frames: int = QUEUE_FRAMES,
        prelude: Source | None = None,
    ) -> None:
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s!r}")
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be >= 1, got {queue_frames!r}")
        self.name = name
        self.track = track
        self.idle_timeout_s = idle_timeout_s
        self.prelude = prelude
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._framer = Framer()
        self._frames: deque[Frame] = deque()
        self._limit = queue_frames
        self._ready = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._end: BaseException | None = None  # why the pump stopped (None: still running)
        self._next_in: int | None = None  # expected pts of the next received frame (samples)
        self._pts = 0  # pts of the next frame we cut
        self._pacer: Pacer | None = None
        self._closed = False
        self.received = 0  # av frames received
        self.dropped = 0  # 20 ms frames dropped because the broadcast lagged
        self.gaps = 0  # timestamp gaps in the received audio

    async def read(self) -> Frame | None:
        if self._closed:
            return None
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump(), name=f"loa-whip-{self.name}")
        if self.prelude is not None:
            frame = await self._read_prelude()
            if frame is not None:
                return frame
        while not self._frames:
            if self._end is not None:
                if isinstance(self._end, MediaStreamError):
                    return None
                raise self._end
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    async def _read_prelude(self) -> Frame | None:
        assert self.prelude is not None
        loop = asyncio.get_running_loop()
        frame = await self.prelude.read()
        if frame is None:
            await self.prelude.aclose()
            self.prelude = None
            return None
        if self._pacer is None:
            self._pacer = Pacer()
            self._pacer.start(loop.time())
        await asyncio.sleep(self._pacer.delay(loop.time()))
        self._pacer.advance(loop.time())
        out = Frame(frame.pcm, self._pts)
        self._pts += FRAME_SAMPLES
        return out

    async def _pump(self) -> None:
        try:
            while True:
                try:  # asyncio.timeout: 3.11's wait_for can lose a racing cancellation
                    async with asyncio.timeout(self.idle_timeout_s):
                        frame = await self.track.recv()
                except TimeoutError:
                    raise SourceTimeout(
                        f"no audio from the publisher for {self.idle_timeout_s:g} s"
                    ) from None
                self.received += 1
                self._take(frame)
        except MediaStreamError as exc:
            self._end = exc
        except SourceError as exc:
            self._end = exc
        except (ValueError, av.FFmpegError) as exc:
            self._end = SourceError(f"cannot use the publisher's audio: {exc}")
        finally:
            if self._end is None:
                self._end = SourceError("the WHIP source was closed")
            self._ready.set()

    def _take(self, frame: av.AudioFrame) -> None:
        if frame.pts is not None and frame.time_base is not None:
            start = int(frame.pts * frame.time_base * SAMPLE_RATE)
            if self._next_in is not None and start - self._next_in >= FRAME_SAMPLES:
                # Lost packets upstream: keep the clock, drop the partial frame.
                self.gaps += 1
                self._pts += (start - self._next_in) // FRAME_SAMPLES * FRAME_SAMPLES
                self._framer.flush()
            self._next_in = start + int(frame.samples * SAMPLE_RATE / frame.sample_rate)
        for out in self._resampler.resample(frame):
            pcm = np.frombuffer(bytes(out.planes[0]), dtype=np.int16)[: out.samples]
            for chunk in self._framer.push(pcm):
                if self.prelude is not None:
                    continue  # said during the chime: stale by the time it could play
                if len(self._frames) >= self._limit:
                    self._frames.popleft()
                    self.dropped += 1
                self._frames.append(Frame(chunk, self._pts))
                self._pts += FRAME_SAMPLES
        self._ready.set()

    async def aclose(self) -> None:
        self._closed = True
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        if self.prelude is not None:
            await self.prelude.aclose()
            self.prelude = None
        if isinstance(self.track, MediaStreamTrack):
            self.track.stop()
