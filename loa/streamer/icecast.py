"""The Icecast source: a studio encoder's push body decoded into frames.

The HTTP endpoint that authenticates the encoder and takes the raw body of the connection
over is the web layer's (``loa.web.icecast``); it hands this source the body as a stream of
bytes and the demuxer its Content-Type names (``FORMATS``).

Decoding. A reader thread owned by the source decodes the body with PyAV (Ogg Opus/Vorbis,
MP3, ADTS AAC, FLAC, anything av probes), resamples to 48 kHz mono s16 and cuts 960-sample
frames into a bounded queue; it pulls body bytes from the event loop on demand, so a full
queue stops reading the socket and TCP slows the encoder down. A push arrives in bursts (an
Ogg muxer closes a page per second by default), so the source plays out through a small
jitter buffer at its own 20 ms clock: ``live`` (the broadcast never paces it), its depth
grows to the longest gap seen between arrivals, and an underrun is bridged with
``silent_fill`` frames rather than stalling every speaker's timeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections import deque
from typing import Any, Protocol

import av
import numpy as np

from loa.codecs import FRAME_S, FRAME_SAMPLES
from loa.errors import SourceError, SourceTimeout
from loa.streamer.base import Frame
from loa.streamer.decode import decode_frames

log = logging.getLogger(__name__)

# Content-Type → demuxer. Other audio/* types, application/octet-stream and no type at all
# are probed by av; any other type is refused (415).
FORMATS = {
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/vorbis": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/aac": "aac",
    "audio/aacp": "aac",
    "audio/x-aac": "aac",
    "audio/flac": "flac",
    "audio/webm": "matroska",
}
PROBED = ("", "application/octet-stream")
IDLE_TIMEOUT_S = 10.0  # Icecast's own source-timeout: a source silent this long is gone
MIN_BYTES_PER_S = 500.0  # below this (averaged over RATE_WINDOW_S) a source is only a trickle
RATE_WINDOW_S = 10.0
_POLL_S = 0.1  # how often a blocked reader thread looks at the stop flag
_PROBE_OPTIONS = {"probesize": "65536", "analyzeduration": "500000"}  # start within ~0.5 s


class ByteStream(Protocol):
    """Where the body comes from: aiohttp's ``StreamReader`` (b"" at the end)."""

    async def read(self, n: int = -1) -> bytes: ...


class _Stopped(Exception):
    """The source is closing: unwinds the reader thread from wherever it is."""


class _Body:
    """The file-like object av reads from the reader thread; each read hops to the loop.

    It is also the source's watchdog: no byte for ``idle_timeout_s``, or fewer than
    ``min_bytes_per_s`` on average over the last ``rate_window_s``, and the body fails for
    good (every later read fails at once, whatever av does with the first failure). Time is
    counted only while a read waits for the encoder: while a full jitter buffer holds the
    reader back, the encoder is not the one being slow."""

    def __init__(self, source: IcecastSource) -> None:
        self._source = source
        self._eof = False
        self._failed: str | None = None
        self._waited = 0.0  # seconds spent waiting for the body, all reads together
        self._arrivals: deque[tuple[float, int]] = deque()  # (_waited then, bytes)
        self._recent = 0  # bytes in _arrivals
        self.bytes = 0

    def read(self, size: int) -> bytes:
        if self._failed is not None:
            raise SourceTimeout(self._failed)
        if self._eof:
            return b""
        src = self._source
        future = asyncio.run_coroutine_threadsafe(src.body.read(size), src.loop)
        asked = time.monotonic()
        while True:
            try:
                data = future.result(_POLL_S)
                break
            except concurrent.futures.TimeoutError:
                if src.stop.is_set():
                    future.cancel()
                    raise _Stopped from None
                waited = time.monotonic() - asked
                why = self._verdict(self._waited + waited, waited)
                if why is not None:
                    future.cancel()
                    raise self._fail(why) from None
        self._waited += time.monotonic() - asked
        self._eof = not data
        self.bytes += len(data)
        if data:
            self._arrivals.append((self._waited, len(data)))
            self._recent += len(data)
        why = self._verdict(self._waited, 0.0)
        if why is not None:
            raise self._fail(why)
        return data

    def _verdict(self, now: float, waited: float) -> str | None:
        """Why the source is to be closed at ``now`` (waiting time), or None."""
        src = self._source
        if waited >= src.idle_timeout_s:
            return f"no data from the source for {src.idle_timeout_s:g} s"
        window = src.rate_window_s
        while self._arrivals and self._arrivals[0][0] <= now - window:
            self._recent -= self._arrivals.popleft()[1]
        if now >= window and self._recent < src.min_bytes_per_s * window:
            return (
                f"the source sent {self._recent} bytes in {window:g} s, below the minimum "
                f"of {src.min_bytes_per_s:g} bytes/s"
            )
        return None

    def _fail(self, why: str) -> SourceTimeout:
        self._failed = why
        self._source.fail(why)
        log.warning("[icecast %s] closing the source: %s", self._source.name, why)
        return SourceTimeout(why)


class IcecastSource:
    """A studio push; its reader thread decodes, ``read()`` plays out at a 20 ms clock.

    ``live`` (never paced by the broadcast, never paused) and not ``resumable``. ``read()``
    waits for the first audio, then hands out a frame every 20 ms: decoded audio, or silence
    (``silent_fill``) while the jitter buffer refills. It returns None once the push has
    ended and everything decoded has played, and raises ``SourceError`` when the body is not
    audio av can decode. For operators: ``underruns``, ``silent_frames``, ``target_frames``
    (jitter buffer depth), ``bytes_in``."""

    live = True
    resumable = False

    def __init__(
        self,
        body: ByteStream,
        *,
        name: str,
        format: str | None = None,
        buffer_s: float = 3.0,
        min_prebuffer_s: float = 0.1,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        min_bytes_per_s: float = MIN_BYTES_PER_S,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        if buffer_s < 4 * FRAME_S or not 0 < min_prebuffer_s < buffer_s / 2:
            raise SourceError("need 0 < min_prebuffer_s < buffer_s / 2 and buffer_s >= 0.08 s")
        if idle_timeout_s <= 0:
            raise SourceError("idle_timeout_s must be positive")
        if rate_window_s <= 0 or min_bytes_per_s < 0:
            raise SourceError("need rate_window_s > 0 and min_bytes_per_s >= 0")
        self.body = body
        self.name = name
        self.format = format
        self.idle_timeout_s = idle_timeout_s
        self.min_bytes_per_s = min_bytes_per_s
        self.rate_window_s = rate_window_s
        self.loop = asyncio.get_running_loop()
        self.stop = threading.Event()
        self._capacity = max(4, round(buffer_s / FRAME_S))
        self._min_target = max(1, round(min_prebuffer_s / FRAME_S))
        self.target_frames = self._min_target
        self._frames: queue.Queue[tuple[float, np.ndarray]] = queue.Queue(self._capacity)
        self._wake = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._body_reader = _Body(self)
        self._done = False  # the reader thread has put its last frame
        self._error: str | None = None
        self._closed = False
        self._primed = False
        self._deadline = 0.0
        self._last_arrival: float | None = None
        self._pts = 0
        self.underruns = 0
        self.silent_frames = 0
        self.decoded_frames = 0
        self.codec: str | None = None

    @property
    def bytes_in(self) -> int:
        return self._body_reader.bytes

    def fail(self, why: str) -> None:
        """End the source with ``why`` (the first reason wins): the reader thread stops, and
        ``read()`` raises once what was decoded has played. Safe from any thread."""
        if self._error is None:
            self._error = why
        self.stop.set()

    def start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name=f"icecast {self.name}")
            self._thread.daemon = True
            self._thread.start()

    async def read(self) -> Frame | None:
        if self._closed:
            return None
        self.start()
        if self._pts == 0:
            await self._first_audio()
            self._deadline = self.loop.time()
        delay = self._deadline - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._deadline = max(self._deadline + FRAME_S, self.loop.time() - 5 * FRAME_S)
        pcm = self._take()
        pts, self._pts = self._pts, self._pts + FRAME_SAMPLES
        if pcm is not None:
            return Frame(pcm, pts)
        if self._done and self._frames.empty():
            self._closed = True
            if self._error is not None:
                raise SourceError(self._error)
            return None
        self.silent_frames += 1
        return Frame(np.zeros(FRAME_SAMPLES, dtype=np.int16), pts, silent_fill=True)

    async def _first_audio(self) -> None:
        while self._frames.qsize() < self.target_frames and not self._done:
            self._wake.clear()
            await self._wake.wait()

    def _take(self) -> np.ndarray | None:
        # Refill to the target after an underrun, so a bursty push does not stutter.
        if not self._primed:
            if self._frames.qsize() < self.target_frames and not self._done:
                return None
            self._primed = True
        try:
            arrival, pcm = self._frames.get_nowait()
        except queue.Empty:
            self._primed = False
            if not self._done:
                self.underruns += 1
            return None
        self._track_gap(arrival)
        return pcm

    def _track_gap(self, arrival: float) -> None:
        last, self._last_arrival = self._last_arrival, arrival
        if last is None:
            return
        # Cover the longest wait between arrivals seen so far, plus 3 frames of slack.
        need = min(self._capacity - 2, math.ceil((arrival - last) / FRAME_S) + 3)
        if need > self.target_frames:
            self.target_frames = need
            log.info("[icecast %s] jitter buffer %d ms", self.name, need * 20)

    async def aclose(self) -> None:
        """Stop and join the reader thread; safe to call twice."""
        self._closed = True
        self.stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
            if thread.is_alive():
                log.error("[icecast %s] reader thread still running after close", self.name)

    # --- the reader thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            container = av.open(self._body_reader, "r", format=self.format, options=_PROBE_OPTIONS)
            try:
                self._decode(container)
            finally:
                container.close()
        except _Stopped:
            pass
        except SourceError as exc:
            self._error = self._error or exc.message
        except Exception as exc:  # av's verdict on the body: the broadcast fails with it
            self._error = self._error or f"cannot decode the stream: {type(exc).__name__}: {exc}"
        if self._error is None and not self.decoded_frames and not self.stop.is_set():
            self._error = "the source sent no decodable audio"
        self._done = True
        self._notify()

    def _decode(self, container: Any) -> None:
        if not container.streams.audio:
            raise SourceError("the stream has no audio")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        self.codec = ctx.name
        log.info("[icecast %s] decoding %s %d Hz", self.name, ctx.name, ctx.sample_rate)
        for pcm in decode_frames(container, stream):
            self._put(pcm)

    def _put(self, pcm: np.ndarray) -> None:
        item = (time.monotonic(), pcm)
        while not self.stop.is_set():
            try:
                self._frames.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            self.decoded_frames += 1
            self._notify()
            return
        raise _Stopped

    def _notify(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is gone: nobody is waiting any more
            pass
