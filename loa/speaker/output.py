"""Where the speaker's decoded audio goes: a WAV file, the sound card, or nowhere (bench).

Every output takes int16[960] frames at 48 kHz mono from the playout task, after
``apply_volume``. Volume 0–100 maps to gain on a square-law taper, ``(v / 100) ** 2``: close to
how loudness is heard (50 → −12 dB, 25 → −24 dB, 10 → −40 dB) with 0 exactly silent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import wave
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Int16Array
from loa.errors import MissingDependency

log = logging.getLogger(__name__)

SOUNDDEVICE_MISSING = (
    "sound card output needs the sounddevice package and PortAudio: "
    "`pip install loa[sound]` and `apt-get install libportaudio2`"
)


def volume_gain(volume: int) -> float:
    """The linear gain for a 0–100 volume (square-law taper, see the module docstring)."""
    if not 0 <= volume <= 100:
        raise ValueError(f"volume must be 0..100, got {volume}")
    return (volume / 100.0) ** 2


def apply_volume(pcm: Int16Array, volume: int, muted: bool) -> Int16Array:
    """``pcm`` scaled by the volume's gain; silence when muted. Never wraps."""
    if muted or volume == 0:
        return np.zeros_like(pcm)
    if volume == 100:
        return pcm
    scaled = np.rint(pcm.astype(np.float32) * np.float32(volume_gain(volume)))
    out: Int16Array = scaled.astype(np.int16)  # gain <= 1: always in range
    return out


class Output(Protocol):
    """Driven by the speaker's playout task: ``open`` once, ``write`` per frame, ``close``."""

    async def open(self) -> None: ...

    async def write(self, pcm: Int16Array) -> None: ...

    def discard(self) -> None:
        """Drop audio queued but not yet heard (the ``stop`` command)."""

    async def close(self) -> None: ...


class NullOutput:
    """Counts frames and keeps nothing: for the bench and for boards with no audio."""

    def __init__(self) -> None:
        self.frames = 0

    async def open(self) -> None:
        return None

    async def write(self, pcm: Int16Array) -> None:
        self.frames += 1

    def discard(self) -> None:
        return None

    async def close(self) -> None:
        return None


class WavOutput:
    """A 48 kHz mono s16 WAV file, written by the ``wave`` module in an executor.

    Frames are gathered into chunks of ``chunk_frames`` (0.5 s by default) and each chunk is
    written by one executor call, so a slow SD card never blocks the event loop and the
    thread hop is paid twice a second rather than fifty times. ``wave`` rewrites the header
    after every chunk, so a killed process leaves a valid file holding all but the last
    half second; ``close`` writes the rest."""

    def __init__(self, path: str | Path, *, chunk_frames: int = 25) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.path = Path(path)
        self.chunk_frames = chunk_frames
        self.frames = 0
        self._pending: list[bytes] = []
        self._wav: wave.Wave_write | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._wav = await loop.run_in_executor(None, self._open_sync)
        log.info("writing audio to %s", self.path)

    def _open_sync(self) -> wave.Wave_write:
        wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in close()
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        return wav

    async def write(self, pcm: Int16Array) -> None:
        if self._wav is None:
            raise RuntimeError(f"{self.path}: write before open or after close")
        self._pending.append(pcm.astype("<i2", copy=False).tobytes())
        self.frames += 1
        if len(self._pending) >= self.chunk_frames:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._wav is None:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        await asyncio.get_running_loop().run_in_executor(None, self._wav.writeframes, data)

    def discard(self) -> None:
        return None  # a file records what was played; nothing is queued ahead of the ear

    async def close(self) -> None:
        wav, pending = self._wav, b"".join(self._pending)
        self._wav = None
        self._pending.clear()
        if wav is None:
            return

        def finish() -> None:
            try:
                wav.writeframes(pending)
            finally:
                wav.close()

        # Shielded: a cancelled speaker still leaves a complete file behind.
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, finish))


def import_sounddevice() -> Any:
    """The sounddevice module, or MissingDependency naming what to install."""
    try:
        import sounddevice
    except ImportError as exc:
        raise MissingDependency(SOUNDDEVICE_MISSING, package="sounddevice") from exc
    except OSError as exc:  # sounddevice is there but libportaudio is not
        raise MissingDependency(SOUNDDEVICE_MISSING, package="libportaudio2") from exc
    return sounddevice


class SoundcardOutput:
    """The sound card through PortAudio, pulled by the card's own clock.

    The playout task appends frames to a small queue; PortAudio's callback thread takes one
    block per period and plays silence when the queue is empty. The two clocks drift apart
    slowly: beyond ``max_queue_frames`` the oldest frame is dropped (``overflows``), an empty
    queue counts an ``underflows``. ``write`` never blocks."""

    def __init__(self, device: str | int | None = None, *, max_queue_frames: int = 5) -> None:
        self.device = device
        self.max_queue_frames = max_queue_frames
        self.frames = self.overflows = self.underflows = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._partial = b""

    async def open(self) -> None:
        sd = import_sounddevice()
        self._stream = sd.RawOutputStream(
            samplerate=SAMPLE_RATE,
            channels=1,
            dtype="int16",
            device=self.device,
            blocksize=FRAME_SAMPLES,
            latency="low",
            callback=self._callback,
        )
        self._stream.start()
        log.info(
            "playing to sound device %s", self.device if self.device is not None else "default"
        )

    async def write(self, pcm: Int16Array) -> None:
        data = pcm.astype(np.int16, copy=False).tobytes()
        with self._lock:
            self._queue.append(data)
            self.frames += 1
            while len(self._queue) > self.max_queue_frames:
                self._queue.popleft()
                self.overflows += 1

    def discard(self) -> None:
        with self._lock:
            self._queue.clear()
            self._partial = b""

    def _callback(self, outdata: Any, frames: int, _time: Any, _status: Any) -> None:
        """PortAudio's thread: fill ``outdata`` (``frames`` samples) from the queue."""
        need = frames * 2
        with self._lock:
            data = self._partial
            while len(data) < need and self._queue:
                data += self._queue.popleft()
            if len(data) < need:
                self.underflows += 1
            self._partial = data[need:]
        chunk = data[:need]
        outdata[: len(chunk)] = chunk
        outdata[len(chunk) : need] = bytes(need - len(chunk))

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
