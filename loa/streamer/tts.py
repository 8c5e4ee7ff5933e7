"""Text-to-speech as a source: espeak-ng in a subprocess, its WAV resampled to 48 kHz frames.

The text goes to espeak-ng on stdin, never on the command line, so a text that starts with
``-`` cannot become an option and any Unicode arrives intact (as UTF-8, ``-b 1``). Speech is
read from the pipe as it is synthesised: not reading is pausing (espeak-ng blocks on the full
pipe), and the next ``read()`` continues where it stopped."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import struct
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Self

import av
import numpy as np

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Framer, Int16Array
from loa.config import DEFAULT_VOICE
from loa.errors import MissingDependency, TtsError, Unprocessable
from loa.streamer.base import Frame

log = logging.getLogger(__name__)

ESPEAK_BINARY = "espeak-ng"
INSTALL_HINT = "apt-get install espeak-ng"
MAX_TEXT_CHARS = 20_000
RATE_WPM_RANGE = (80, 450)
PITCH_RANGE = (0, 99)
# About 0.37 s of espeak-ng's 22050 Hz speech per pipe read.
READ_BYTES = 16_384
# A language code, a voice file ("aav/vi"), optionally a variant ("vi+f3"); never an option.
_VOICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./+-]{0,63}")
_UNKNOWN_VOICE = "voice does not exist"


class NoVoice(Unprocessable):
    """A text in a language espeak-ng has no voice for (``language``: the tag as given)."""

    code = "no_voice"


@dataclass(frozen=True, slots=True)
class Voice:
    """One line of ``espeak-ng --voices``."""

    language: str
    name: str
    gender: str
    file: str
    priority: int
    others: tuple[str, ...] = ()  # the other language tags it answers to ("zh" for cmn)


_OTHER = re.compile(r"\(([^\s()]+) \d+\)")
_SPOKEN: dict[str | None, frozenset[str]] = {}  # binary → its languages, read once


async def spoken_languages(*, binary: str | None = None) -> frozenset[str]:
    """Every language tag (lower case) espeak-ng has a voice for: its voices' languages and
    the other languages they answer to. Read once per binary."""
    known = _SPOKEN.get(binary)
    if known is None:
        every = await voices(binary=binary)
        known = frozenset(t.lower() for v in every for t in (v.language, *v.others))
        _SPOKEN[binary] = known
    return known


def voice_for(language: str, regional: str, spoken: frozenset[str]) -> str:
    """The espeak-ng voice for a text in ``language`` (BCP 47): Vietnamese in ``regional``
    (the zone's voice: North, Central or South); another language in espeak-ng's voice for
    the whole tag, else for its primary subtag (``en-GB`` → ``en-gb``, ``zh-TW`` → ``zh``).
    ``NoVoice`` naming the language when espeak-ng has neither (``hmn``, ``km``)."""
    tag = language.strip().lower()
    primary = tag.split("-")[0]
    if primary == "vi":
        return regional
    for candidate in (tag, primary):
        if candidate in spoken and _VOICE_RE.fullmatch(candidate):
            return candidate
    raise NoVoice(
        f"no text-to-speech voice for language {language!r}: send it as recorded audio",
        language=language,
    )


def _executable(binary: str | None) -> str:
    name = binary or ESPEAK_BINARY
    path = shutil.which(name)
    if path is None:
        raise MissingDependency(
            f"espeak-ng is not installed (no {name!r} on PATH); install it: {INSTALL_HINT}",
            package="espeak-ng",
        )
    return path


def _check_voice(voice: str) -> None:
    if not isinstance(voice, str) or not _VOICE_RE.fullmatch(voice):
        raise TtsError(f"invalid espeak-ng voice name {voice!r}", voice=voice)


async def voices(language: str | None = None, *, binary: str | None = None) -> list[Voice]:
    """The voices espeak-ng offers (for ``language`` only, if given)."""
    if language is not None:
        _check_voice(language)
    exe = _executable(binary)
    arg = f"--voices={language}" if language else "--voices"
    proc = await asyncio.create_subprocess_exec(
        exe, arg, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise TtsError(
            f"{exe} {arg} failed (exit {proc.returncode}): {err.decode(errors='replace')}"
        )
    return [v for line in out.decode(errors="replace").splitlines()[1:] if (v := _voice(line))]


def _voice(line: str) -> Voice | None:
    # "Pty Language Age/Gender VoiceName File Other Languages"; names hold no spaces.
    fields = line.split()
    if len(fields) < 5 or not fields[0].isdigit():
        return None
    gender = fields[2].rpartition("/")[2]
    others = tuple(_OTHER.findall(" ".join(fields[5:])))
    return Voice(fields[1], fields[3], gender, fields[4], int(fields[0]), others)


@dataclass(frozen=True, slots=True)
class _WavFormat:
    rate: int
    channels: int


class TtsSource:
    """Speech from ``text``, driven by ``read()``; ``open()`` starts espeak-ng (the first
    ``read()`` calls it if needed) and raises if the voice is unknown or espeak-ng fails."""

    live = False
    resumable = True

    def __init__(
        self,
        text: str,
        *,
        voice: str = DEFAULT_VOICE,
        rate_wpm: int = 150,
        pitch: int = 50,
        name: str | None = None,
        binary: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        if not isinstance(text, str) or not text.strip():
            raise TtsError("nothing to say: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(f"text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}")
        _check_voice(voice)
        lo, hi = RATE_WPM_RANGE
        if isinstance(rate_wpm, bool) or not lo <= rate_wpm <= hi:
            raise ValueError(f"rate_wpm must be in [{lo}, {hi}] words per minute, got {rate_wpm!r}")
        lo, hi = PITCH_RANGE
        if isinstance(pitch, bool) or not lo <= pitch <= hi:
            raise ValueError(f"pitch must be in [{lo}, {hi}], got {pitch!r}")
        self.text = text
        self.voice = voice
        self.rate_wpm = int(rate_wpm)
        self.pitch = int(pitch)
        excerpt = " ".join(text.split())
        self.name = name or f"tts {voice}: {excerpt[:40]}{'…' if len(excerpt) > 40 else ''}"
        self.duration_s: float | None = None  # unknown until the speech has been read
        self._binary = binary
        self._executor = executor
        self._proc: asyncio.subprocess.Process | None = None
        self._open_lock = asyncio.Lock()
        self._format: _WavFormat | None = None
        self._resampler: Any = None
        self._framer = Framer()
        self._ready: deque[Int16Array] = deque()
        self._carry = b""  # an odd byte or a partial sample frame between pipe reads
        self._samples_in = 0
        self._eof = False
        self._closed = False
        self._frames_out = 0

    @property
    def position_s(self) -> float:
        return self._frames_out * FRAME_S

    @property
    def pid(self) -> int | None:
        """espeak-ng's process id once ``open()`` has started it."""
        return None if self._proc is None else self._proc.pid

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> Self:
        async with self._open_lock:
            if self._closed:
                raise TtsError(f"{self.name}: source is closed")
            if self._proc is None:
                await self._start()
        return self

    async def _start(self) -> None:
        exe = _executable(self._binary)
        # Rate, pitch and voice are validated; the text only ever travels through stdin.
        argv = ["-v", self.voice, "-s", str(self.rate_wpm), "-p", str(self.pitch)]
        argv += ["-b", "1", "--stdin", "--stdout"]
        try:
            proc = await asyncio.create_subprocess_exec(
                exe,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:  # removed between which() and exec
            raise MissingDependency(
                f"espeak-ng is not installed ({exe!r} vanished); install it: {INSTALL_HINT}",
                package="espeak-ng",
            ) from exc
        self._proc = proc
        assert proc.stdin is not None
        # NUL would end the text early in espeak-ng; lone surrogates cannot be encoded.
        data = (self.text.replace("\0", " ") + "\n").encode("utf-8", errors="replace")
        proc.stdin.write(data)
        # close() flushes the buffered text as the pipe drains, without waiting here, so a
        # long text can never deadlock against espeak-ng filling stdout.
        proc.stdin.close()
        try:
            self._format = await self._read_header()
        except BaseException:
            await self._reap()
            self._proc = None  # a later read() tries again and reports the same error
            raise
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        log.info("[tts=%s] espeak-ng pid %d, voice %s", self.name, proc.pid, self.voice)

    async def _read_header(self) -> _WavFormat:
        try:
            return await self._parse_header()
        except asyncio.IncompleteReadError:
            raise await self._failure() from None

    async def _parse_header(self) -> _WavFormat:
        assert self._proc is not None
        assert self._proc.stdout is not None
        out = self._proc.stdout
        riff = await out.readexactly(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise TtsError(f"espeak-ng wrote no WAV header (got {riff[:12]!r})")
        fmt: _WavFormat | None = None
        while True:
            chunk_id, size = struct.unpack("<4sI", await out.readexactly(8))
            if chunk_id == b"data":  # its size is a placeholder: the length is unknown
                break
            body = await out.readexactly(size + (size & 1))
            if chunk_id == b"fmt ":
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag != 1 or bits != 16 or channels not in (1, 2) or not 4000 <= rate <= 192000:
                    raise TtsError(
                        f"espeak-ng wrote unexpected audio: format {tag}, {bits} bit, "
                        f"{channels} channels, {rate} Hz"
                    )
                fmt = _WavFormat(rate, channels)
        if fmt is None:
            raise TtsError("espeak-ng wrote a WAV without a fmt chunk")
        return fmt

    async def _failure(self) -> TtsError:
        """espeak-ng ended without speech: say why, from its stderr and exit status."""
        assert self._proc is not None
        _, err = await self._proc.communicate()
        message = err.decode(errors="replace").strip()
        if _UNKNOWN_VOICE in message:
            return TtsError(
                f"unknown espeak-ng voice {self.voice!r} (espeak-ng --voices lists them)",
                voice=self.voice,
            )
        return TtsError(
            f"espeak-ng failed (exit {self._proc.returncode}): {message or 'no message'}",
            voice=self.voice,
        )

    async def aclose(self) -> None:
        """Stop espeak-ng (killing it if it is still speaking). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._open_lock:
            self._ready.clear()
            await self._reap()

    async def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        # Drain both pipes to EOF so their transports close with the process.
        await proc.communicate()

    # ------------------------------------------------------------------ reading
    async def read(self) -> Frame | None:
        if self._proc is None and not self._closed:
            await self.open()
        # One frame is held back until the next arrives, so the last one can carry item_end.
        while len(self._ready) < 2 and not self._eof and not self._closed:
            await self._fill()
        if self._closed or not self._ready:
            return None
        pcm = self._ready.popleft()
        frame = Frame(pcm, self._frames_out * FRAME_SAMPLES, item_end=self._eof and not self._ready)
        self._frames_out += 1
        return frame

    async def _fill(self) -> None:
        proc, fmt = self._proc, self._format
        assert proc is not None
        assert proc.stdout is not None
        assert fmt is not None
        data = await proc.stdout.read(READ_BYTES)
        loop = asyncio.get_running_loop()
        if data:
            data = self._carry + data
            usable = len(data) - len(data) % (2 * fmt.channels)
            data, self._carry = data[:usable], data[usable:]
            self._samples_in += usable // (2 * fmt.channels)
            pcm = await loop.run_in_executor(self._executor, self._resample, data)
        else:
            await self._finish()
            pcm = await loop.run_in_executor(self._executor, self._resample, None)
        self._ready.extend(self._framer.push(pcm))
        if not data:
            tail = self._framer.flush()
            if tail is not None:
                self._ready.append(tail)
            self._eof = True

    async def _finish(self) -> None:
        assert self._proc is not None
        assert self._format is not None
        _, err = await self._proc.communicate()
        if self._proc.returncode != 0 and not self._closed:
            message = err.decode(errors="replace").strip() or "no message"
            raise TtsError(
                f"espeak-ng failed (exit {self._proc.returncode}): {message}", voice=self.voice
            )
        if self._samples_in == 0:
            raise TtsError(f"espeak-ng produced no speech for {self.text[:60]!r}", voice=self.voice)
        self.duration_s = self._samples_in / self._format.rate
        log.info("[tts=%s] %.2f s of speech", self.name, self.duration_s)

    def _resample(self, data: bytes | None) -> Int16Array:
        """Pipe bytes (or None: flush) to 48 kHz mono; runs in the executor."""
        assert self._format is not None
        frame = None
        if data:
            fmt = self._format
            samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
            layout = "mono" if fmt.channels == 1 else "stereo"
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
            frame.sample_rate = fmt.rate
        outs = self._resampler.resample(frame)
        if not outs:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([o.to_ndarray().reshape(-1) for o in outs])
