"""Media files as a source: anything libav decodes, as 20 ms frames of 48 kHz mono s16.

Decoding runs in an executor, about half a second of audio per call, into a read-ahead of
at most ``read_ahead_s``: a two-hour programme costs the same memory as a two-second one.
The next chunk is decoded while the caller still has frames in hand, so ``read()`` rarely
waits. Not reading is pausing: the decoder stays where it is, and the next ``read()``
continues at exactly the next sample.

A damaged file plays as far as it decodes and ends cleanly with one warning that names the
file (a truncated upload should still be heard up to the cut); a file whose header cannot be
read, or that holds no decodable audio at all, raises :class:`MediaError`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from concurrent.futures import Executor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import av
import av.error
import numpy as np

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Framer, Int16Array
from loa.errors import MediaError
from loa.streamer.base import Frame

log = logging.getLogger(__name__)

# Past this many consecutive undecodable packets the rest of the file is taken as garbage.
MAX_BAD_PACKETS = 50
SEEK_PREROLL_S = 0.2


def _open_error(path: Path, exc: BaseException) -> MediaError:
    """The reason a file cannot be opened, in words an operator can act on."""
    match exc:
        case FileNotFoundError():
            reason = "no such file"
        case IsADirectoryError():
            reason = "is a directory, not a file"
        case PermissionError():
            reason = "permission denied (not readable by the relay's user)"
        case av.error.InvalidDataError() if _is_empty(path):
            reason = "the file is empty"
        case av.error.InvalidDataError() | av.error.EOFError():
            reason = (
                "not a recognised audio/video format, or its header is corrupt or truncated"
                f" ({exc.strerror})"
            )
        case av.error.FFmpegError():
            reason = f"cannot be opened: {exc.strerror or exc}"
        case OSError():
            reason = f"cannot be read: {exc.strerror or exc}"
        case _:
            reason = f"cannot be opened: {exc}"
    return MediaError(f"{path}: {reason}", path=str(path), reason=reason)


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


class _Decoder:
    """The blocking half: demux, decode, resample, frame. Only ever called from one executor
    job at a time, never from the event loop."""

    def __init__(self, path: Path, start_s: float) -> None:
        self.path = path
        try:
            self._container: Any = av.open(str(path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            raise _open_error(path, exc) from exc
        try:
            self._setup(start_s)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, start_s: float) -> None:
        container = self._container
        stream = container.streams.best("audio")
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            reason = f"no audio stream (streams: {', '.join(kinds)})"
            raise MediaError(f"{self.path}: {reason}", path=str(self.path), reason=reason)
        if stream.codec_context is None or stream.codec_context.name is None:
            reason = "unsupported audio codec"
            raise MediaError(f"{self.path}: {reason}", path=str(self.path), reason=reason)
        self.stream = stream
        self.codec = str(stream.codec_context.name)
        self.duration_s = self._duration()
        if self.duration_s is not None and start_s >= self.duration_s:
            reason = f"start_s {start_s:g} is beyond the end ({self.duration_s:.3f} s)"
            raise MediaError(f"{self.path}: {reason}", path=str(self.path), reason=reason)
        self.start_s = start_s
        # Timestamps in the file count from its start time (mp3: the encoder delay, 23 ms).
        origin = container.start_time / av.time_base if container.start_time else 0.0
        self._skip_until_s = origin + start_s if start_s > 0 else 0.0
        if start_s > 0:
            # Land a little early: the first packets after a seek decode to silence or
            # garbage (mp3 bit reservoir, AAC overlap) and are dropped by _skip_to_start.
            target = origin + max(0.0, start_s - SEEK_PREROLL_S)
            container.seek(int(target * av.time_base), backward=True, any_frame=False)
        self._packets = container.demux(stream)
        self._resampler: Any = None
        self._resampler_key: tuple[str, str, int] | None = None
        self._framer = Framer()
        self._ready: deque[Int16Array] = deque()
        self.samples_out = 0  # at 48 kHz, after start_s
        self.bad_packets = 0
        self._bad_run = 0
        self.ended = False
        self.warning: str | None = None

    def _duration(self) -> float | None:
        if self._container.duration is not None and self._container.duration > 0:
            return float(self._container.duration / av.time_base)
        st = self.stream
        if st.duration is not None and st.time_base is not None and st.duration > 0:
            return float(st.duration * st.time_base)
        return None

    def pull(self, n: int) -> tuple[list[Int16Array], bool]:
        """Up to ``n`` frames; ``True`` once the last frame of the file is among them.

        One frame more than asked is decoded before returning, so that the end of the file
        is known while its last frame is still unsent (it must carry ``item_end``)."""
        while len(self._ready) <= n and not self.ended:
            self._step()
        out = [self._ready.popleft() for _ in range(min(n, len(self._ready)))]
        return out, self.ended and not self._ready

    def _step(self) -> None:
        try:
            packet = next(self._packets)
        except StopIteration:
            self._finish(None)
            return
        except (av.error.FFmpegError, OSError) as exc:
            self._finish(f"read error: {exc}")
            return
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            self._bad_packet(exc)
            return
        for frame in decoded:
            self._push(frame)
        if decoded:
            self._bad_run = 0

    def _bad_packet(self, exc: BaseException) -> None:
        self.bad_packets += 1
        self._bad_run += 1
        if self.bad_packets == 1:  # once per file, not once per packet
            log.warning("[file=%s] skipping undecodable audio: %s", self.path, exc)
        if self._bad_run >= MAX_BAD_PACKETS:
            self._finish(f"{self._bad_run} undecodable packets in a row")

    def _push(self, frame: Any) -> None:
        frame = self._skip_to_start(frame)
        if frame is None:
            return
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._resampler_key:
            # A mid-file format change (a concatenated mp3, say): drain the old resampler.
            self._flush_resampler()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._resampler_key = key
        frame.pts = None  # positions are counted in samples here, not taken from the file
        for out in self._resampler.resample(frame):
            self._emit(out)

    def _skip_to_start(self, frame: Any) -> Any:
        """Drop what a seek decoded before ``start_s`` (seeks land on an earlier packet)."""
        if self._skip_until_s <= 0:
            return frame
        t = frame.time
        if t is None:
            self._skip_until_s = 0.0
            return frame
        drop = round((self._skip_until_s - t) * frame.sample_rate)
        if drop <= 0:
            self._skip_until_s = 0.0
            return frame
        if drop >= frame.samples:
            return None
        self._skip_until_s = 0.0
        arr = frame.to_ndarray()
        cut = drop if frame.format.is_planar else drop * len(frame.layout.channels)
        rest = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(arr[:, cut:]), format=frame.format.name, layout=frame.layout
        )
        rest.sample_rate = frame.sample_rate
        return rest

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._emit(out)
            self._resampler = None
            self._resampler_key = None

    def _emit(self, out: Any) -> None:
        pcm: Int16Array = out.to_ndarray().reshape(-1)
        self.samples_out += pcm.size
        self._ready.extend(self._framer.push(pcm))

    def _finish(self, problem: str | None) -> None:
        self._flush_resampler()
        tail = self._framer.flush()
        if tail is not None:
            self._ready.append(tail)
        self.ended = True
        got_s = self.samples_out / SAMPLE_RATE
        if self.samples_out == 0:
            reason = "no audio could be decoded"
            if problem or self.bad_packets:
                reason += f" ({problem or f'{self.bad_packets} undecodable packets'})"
            raise MediaError(f"{self.path}: {reason}", path=str(self.path), reason=reason)
        if self.duration_s is not None:
            expected = self.duration_s - self.start_s
            if got_s < expected - max(0.5, 0.01 * expected):
                problem = problem or "truncated or damaged?"
                problem = f"ended at {got_s:.2f} s of {expected:.2f} s ({problem})"
        if problem is None and self.bad_packets:
            problem = f"skipped {self.bad_packets} undecodable packets"
        if problem:
            self.warning = problem
            log.warning("[file=%s] %s; played what could be decoded", self.path, problem)

    def close(self) -> None:
        self._container.close()


class FileSource:
    """A media file, decoded on demand by ``read()``; ``open()`` probes it (and is called by
    the first ``read()`` if not before)."""

    live = False
    resumable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        start_s: float = 0.0,
        read_ahead_s: float = 1.0,
        chunk_s: float = 0.5,
        executor: Executor | None = None,
    ) -> None:
        if not (math.isfinite(start_s) and start_s >= 0):
            raise ValueError(f"start_s must be a finite number >= 0, got {start_s!r}")
        if not (math.isfinite(chunk_s) and chunk_s >= FRAME_S):
            raise ValueError(f"chunk_s must be >= {FRAME_S} s, got {chunk_s!r}")
        if not (math.isfinite(read_ahead_s) and read_ahead_s >= chunk_s):
            raise ValueError(f"read_ahead_s must be >= chunk_s ({chunk_s}), got {read_ahead_s!r}")
        self.path = Path(path)
        self.name = name or self.path.name
        self.start_s = start_s
        self.chunk_frames = round(chunk_s / FRAME_S)
        self.read_ahead_frames = round(read_ahead_s / FRAME_S)
        self.peak_buffered = 0  # high-water mark of the read-ahead, in frames
        # As the container declares them, once open() has probed the file; the duration is
        # None if the container does not say.
        self.duration_s: float | None = None
        self.codec: str | None = None
        self._warning: str | None = None
        self._executor = executor
        self._decoder: _Decoder | None = None
        self._open_lock = asyncio.Lock()
        self._buffer: deque[Int16Array] = deque()
        self._pending: asyncio.Future[tuple[list[Int16Array], bool]] | None = None
        self._eof = False
        self._closed = False
        self._frames_out = 0

    # ------------------------------------------------------------------ properties
    @property
    def position_s(self) -> float:
        """Where in the file the next frame starts."""
        return self.start_s + self._frames_out * FRAME_S

    @property
    def buffered_frames(self) -> int:
        return len(self._buffer)

    @property
    def warning(self) -> str | None:
        """Set (and logged) when the file ended early or had undecodable parts."""
        return self._warning if self._decoder is None else self._decoder.warning

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> Self:
        """Open and probe the file; raises :class:`MediaError` naming the file and why."""
        async with self._open_lock:
            if self._closed:
                raise MediaError(f"{self.path}: source is closed", path=str(self.path))
            if self._decoder is None:
                loop = asyncio.get_running_loop()
                decoder = await loop.run_in_executor(
                    self._executor, _Decoder, self.path, self.start_s
                )
                self._decoder = decoder
                self.duration_s, self.codec = decoder.duration_s, decoder.codec
                log.info(
                    "[file=%s] opened: %s, %s",
                    self.name,
                    decoder.codec,
                    "unknown duration"
                    if decoder.duration_s is None
                    else f"{decoder.duration_s:.2f} s",
                )
                self._prefetch()
        return self

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop decoding and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._open_lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                # A decode job in a thread cannot be cancelled: let it finish before closing
                # the container under it.
                try:
                    await asyncio.shield(pending)
                except Exception:
                    pass
            self._buffer.clear()
            decoder, self._decoder = self._decoder, None
            if decoder is not None:
                self._warning = decoder.warning
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._executor, decoder.close)

    # ------------------------------------------------------------------ reading
    async def read(self) -> Frame | None:
        if self._decoder is None and not self._closed:
            await self.open()
        if self._closed:
            return None
        if not self._buffer and not self._eof:
            self._prefetch()
            await self._collect()
        if not self._buffer:
            return None
        pcm = self._buffer.popleft()
        last = self._eof and not self._buffer
        frame = Frame(pcm, self._frames_out * FRAME_SAMPLES, item_end=last)
        self._frames_out += 1
        self._prefetch()
        return frame

    def _prefetch(self) -> None:
        """Start decoding the next chunk if there is room for it in the read-ahead."""
        if self._pending is not None:
            if not self._pending.done():
                return
            # A finished prefetch: take its frames now (its errors surface on _collect).
            if self._pending.exception() is not None:
                return
            self._take(self._pending.result())
            self._pending = None
        if self._eof or self._decoder is None:
            return
        if len(self._buffer) + self.chunk_frames > self.read_ahead_frames:
            return
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self._executor, self._decoder.pull, self.chunk_frames)

    async def _collect(self) -> None:
        pending = self._pending
        if pending is None:
            return
        # Shielded: a reader cancelled mid-wait must not lose the chunk being decoded.
        result = await asyncio.shield(pending)
        if self._pending is pending:
            self._pending = None
            self._take(result)

    def _take(self, result: tuple[list[Int16Array], bool]) -> None:
        frames, eof = result
        self._buffer.extend(frames)
        self._eof = eof
        self.peak_buffered = max(self.peak_buffered, len(self._buffer))
