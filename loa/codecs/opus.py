"""Opus encode and decode of 20 ms, 48 kHz mono frames over opuslib (ctypes on libopus).
(Packets themselves, TOC and frames, without libopus: ``loa.codecs.opus_packet``.)

The hot calls go straight to opuslib's ctypes bindings with numpy buffers: its Python
wrappers build a list of 960 ints per decoded frame, which costs more than the decode."""

from __future__ import annotations

import ctypes
import importlib
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Self

import numpy as np

from loa.codecs import CHANNELS, FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.opus_packet import MAX_PACKET_BYTES, MAX_PACKET_SAMPLES
from loa.codecs.pcm import Int16Array
from loa.errors import MissingDependency

if TYPE_CHECKING:
    from loa.config import OpusConfig

LIBOPUS_MISSING: Final = "libopus not found: install it with `apt-get install libopus0`"
OPUSLIB_MISSING: Final = "opuslib not found: install it with `pip install opuslib`"

# Decoded and concealed durations are multiples of 2.5 ms.
_QUANTUM_SAMPLES: Final = SAMPLE_RATE * 25 // 10_000
# 20 ms of digital silence, the shortest mono packet: TOC 0xF8 (CELT fullband, 20 ms, one
# frame) and a range-coder payload that decodes to exact zeros; what libopus itself makes of
# a silent frame without FEC. Listeners get it while nothing is on air (players and browsers
# time out on a silent socket, and a gap makes them rebuffer when audio comes back).
SILENCE_PACKET: Final = b"\xf8\xff\xfe"

# opus_defines.h
APPLICATION_VOIP: Final = 2048
APPLICATION_AUDIO: Final = 2049
OPUS_AUTO: Final = -1000
SIGNALS: Final = {"voice": 3001, "music": 3002, "auto": OPUS_AUTO}


@dataclass(frozen=True, slots=True)
class _LibOpus:
    encoder: ModuleType
    decoder: ModuleType
    ctl: ModuleType
    error: type[Exception]
    strerror: Any
    version: str
    int16_p: Any

    def message(self, code: int) -> str:
        text: bytes = self.strerror(code)
        return text.decode("ascii", "replace")

    def fail(self, where: str, exc: Exception) -> ValueError:
        """opuslib's OpusError (whose str is a bytes repr) as a ValueError with opus's text."""
        code = getattr(exc, "code", -3)
        return ValueError(f"{where}: {self.message(int(code))}")


_lib: _LibOpus | None = None


def load_libopus() -> _LibOpus:
    """Import opuslib once; MissingDependency naming the package if it or libopus is absent."""
    global _lib
    if _lib is None:
        try:
            mods = [
                importlib.import_module(f"opuslib.{name}")
                for name in ("api", "api.encoder", "api.decoder", "api.ctl", "api.info")
            ]
            exceptions = importlib.import_module("opuslib.exceptions")
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.split(".")[0] == "opuslib":
                raise MissingDependency(OPUSLIB_MISSING, package="opuslib") from exc
            raise MissingDependency(LIBOPUS_MISSING, package="libopus0") from exc
        # opuslib raises a bare Exception when find_library fails, OSError when dlopen
        # fails and AttributeError when the library lacks a symbol.
        except Exception as exc:
            raise MissingDependency(LIBOPUS_MISSING, package="libopus0") from exc
        api, encoder, decoder, ctl, info = mods
        _lib = _LibOpus(
            encoder=encoder,
            decoder=decoder,
            ctl=ctl,
            error=exceptions.OpusError,
            strerror=info.strerror,
            version=info.get_version_string().decode("ascii", "replace"),
            int16_p=api.c_int16_pointer,
        )
    return _lib


def libopus_version() -> str:
    """The loaded library's own version string, e.g. 'libopus 1.3.1'."""
    return load_libopus().version


def _check_frame(pcm: object) -> Int16Array:
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"opus encode needs a numpy int16 array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise ValueError(f"opus encode needs int16 PCM, got dtype {pcm.dtype}")
    if pcm.shape != (FRAME_SAMPLES,):
        raise ValueError(f"opus encode needs shape ({FRAME_SAMPLES},), got {pcm.shape}")
    frame: Int16Array = pcm if pcm.flags.c_contiguous else np.ascontiguousarray(pcm)
    return frame


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"opus {name} must be {low}..{high}, got {value!r}")


class OpusEncoder:
    """One per broadcast; its owner feeds it one 20 ms frame at a time."""

    def __init__(
        self,
        bitrate_bps: int = 32_000,
        complexity: int = 9,
        fec: bool = True,
        packet_loss_pct: int = 10,
        dtx: bool = False,
        signal: str = "voice",
    ) -> None:
        if signal not in SIGNALS:
            raise ValueError(f"opus signal must be one of {sorted(SIGNALS)}, got {signal!r}")
        _check_range("complexity", complexity, 0, 10)
        lib = self._lib = load_libopus()
        application = APPLICATION_VOIP if signal == "voice" else APPLICATION_AUDIO
        self._state = self._call(lib.encoder.create_state, SAMPLE_RATE, CHANNELS, application)
        weakref.finalize(self, lib.encoder.destroy, self._state)
        self._encode = lib.encoder.libopus_encode
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._set(lib.ctl.set_complexity, complexity)
        self._set(lib.ctl.set_signal, SIGNALS[signal])
        self.bitrate_bps = bitrate_bps
        self.fec = fec
        self.packet_loss_pct = packet_loss_pct
        self.dtx = dtx

    @classmethod
    def from_config(cls, config: OpusConfig) -> Self:
        return cls(
            bitrate_bps=config.bitrate_bps,
            complexity=config.complexity,
            fec=config.fec,
            packet_loss_pct=config.packet_loss_pct,
            dtx=config.dtx,
            signal=config.signal,
        )

    def encode(self, pcm: Int16Array) -> bytes:
        """One int16[960] frame to one Opus packet (1 or 2 bytes while DTX holds silence)."""
        frame = _check_frame(pcm)
        n = self._encode(
            self._state,
            frame.ctypes.data_as(self._lib.int16_p),
            FRAME_SAMPLES,
            self._out,
            MAX_PACKET_BYTES,
        )
        if n < 0:
            raise ValueError(f"opus encode failed: {self._lib.message(n)}")
        return ctypes.string_at(self._out, n)

    def reset(self) -> None:
        """Forget the signal history, as after a switch to unrelated audio."""
        self._call(self._lib.encoder.encoder_ctl, self._state, self._lib.ctl.reset_state)

    # Settings: each getter asks libopus, so it shows what the encoder really uses.
    @property
    def bitrate_bps(self) -> int:
        return self._get(self._lib.ctl.get_bitrate)

    @bitrate_bps.setter
    def bitrate_bps(self, value: int) -> None:
        _check_range("bitrate_bps", value, 6_000, 510_000)
        self._set(self._lib.ctl.set_bitrate, value)

    @property
    def packet_loss_pct(self) -> int:
        return self._get(self._lib.ctl.get_packet_loss_perc)

    @packet_loss_pct.setter
    def packet_loss_pct(self, value: int) -> None:
        _check_range("packet_loss_pct", value, 0, 100)
        self._set(self._lib.ctl.set_packet_loss_perc, value)

    @property
    def fec(self) -> bool:
        return bool(self._get(self._lib.ctl.get_inband_fec))

    @fec.setter
    def fec(self, value: bool) -> None:
        self._set(self._lib.ctl.set_inband_fec, int(bool(value)))

    @property
    def dtx(self) -> bool:
        return bool(self._get(self._lib.ctl.get_dtx))

    @dtx.setter
    def dtx(self, value: bool) -> None:
        self._set(self._lib.ctl.set_dtx, int(bool(value)))

    @property
    def complexity(self) -> int:
        return self._get(self._lib.ctl.get_complexity)

    @property
    def signal(self) -> str:
        code = self._get(self._lib.ctl.get_signal)
        return next(name for name, value in SIGNALS.items() if value == code)

    @property
    def application(self) -> int:
        return self._get(self._lib.ctl.get_application)

    @property
    def lookahead_samples(self) -> int:
        """Codec delay: decoded audio lags the input by this many samples."""
        return self._get(self._lib.ctl.get_lookahead)

    @property
    def final_range(self) -> int:
        """Range coder state after the last packet; equals the decoder's if it decoded it."""
        return self._get(self._lib.ctl.get_final_range)

    def _get(self, request: Any) -> int:
        return int(self._call(self._lib.encoder.encoder_ctl, self._state, request))

    def _set(self, request: Any, value: int) -> None:
        self._call(self._lib.encoder.encoder_ctl, self._state, request, value)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._lib.error as exc:
            raise self._lib.fail("libopus encoder", exc) from None


class OpusDecoder:
    """One per received stream; its owner feeds packets in order and asks for a frame
    from FEC or concealment where one is missing."""

    def __init__(self) -> None:
        lib = self._lib = load_libopus()
        try:
            self._state = lib.decoder.create_state(SAMPLE_RATE, CHANNELS)
        except lib.error as exc:
            raise lib.fail("libopus decoder", exc) from None
        weakref.finalize(self, lib.decoder.destroy, self._state)
        self._decode = lib.decoder.libopus_decode
        self._nb_samples = lib.decoder.libopus_get_nb_samples
        self._buf: Int16Array = np.zeros(MAX_PACKET_SAMPLES, dtype=np.int16)
        self._buf_p = self._buf.ctypes.data_as(lib.int16_p)

    def decode(self, packet: bytes) -> Int16Array:
        """A received packet to PCM: int16[960] for loa's 20 ms packets."""
        if not packet:
            raise ValueError("empty opus packet: use decode_plc() for a lost one")
        return self._run(bytes(packet), MAX_PACKET_SAMPLES, 0)

    def decode_fec(self, next_packet: bytes, frame_samples: int = FRAME_SAMPLES) -> Int16Array:
        """The lost packet before ``next_packet``, rebuilt from the in-band FEC that
        ``next_packet`` carries (concealment where it carries none). Decode
        ``next_packet`` itself afterwards as usual."""
        if not next_packet:
            raise ValueError("empty opus packet: decode_fec() needs the packet after the loss")
        return self._run(bytes(next_packet), _check_duration(frame_samples), 1)

    def decode_plc(self, frame_samples: int = FRAME_SAMPLES) -> Int16Array:
        """Packet loss concealment: a plausible continuation for a lost packet."""
        return self._run(None, _check_duration(frame_samples), 0)

    def samples_per_packet(self, packet: bytes) -> int:
        """Samples (per channel, 48 kHz) the packet decodes to, from libopus's header parse."""
        if not packet:
            raise ValueError("empty opus packet")
        data = bytes(packet)
        n = int(self._nb_samples(self._state, data, len(data)))
        if n < 0:
            raise ValueError(f"opus packet header: {self._lib.message(n)}")
        if n == 0:
            raise ValueError("opus packet declares 0 frames")
        return n

    def reset(self) -> None:
        try:
            self._lib.decoder.decoder_ctl(self._state, self._lib.ctl.reset_state)
        except self._lib.error as exc:
            raise self._lib.fail("libopus decoder", exc) from None

    @property
    def final_range(self) -> int:
        try:
            value = self._lib.decoder.decoder_ctl(self._state, self._lib.ctl.get_final_range)
        except self._lib.error as exc:
            raise self._lib.fail("libopus decoder", exc) from None
        return int(value)

    def _run(self, data: bytes | None, frame_size: int, fec: int) -> Int16Array:
        length = 0 if data is None else len(data)
        n = self._decode(self._state, data, length, self._buf_p, frame_size, fec)
        if n < 0:
            raise ValueError(f"opus cannot decode packet: {self._lib.message(n)}")
        out: Int16Array = self._buf[:n].copy()
        return out


def _check_duration(frame_samples: int) -> int:
    if not 0 < frame_samples <= MAX_PACKET_SAMPLES or frame_samples % _QUANTUM_SAMPLES:
        raise ValueError(
            f"frame_samples must be a multiple of {_QUANTUM_SAMPLES} in "
            f"{_QUANTUM_SAMPLES}..{MAX_PACKET_SAMPLES}, got {frame_samples}"
        )
    return frame_samples
