"""Icecast source ingest: a studio encoder pushing to ``/{mount}`` becomes a live broadcast.

Protocol. ``PUT /{mount}`` (Icecast ≥ 2.4, what ffmpeg's ``icecast://`` sends) and the legacy
``SOURCE /{mount}`` method (aiohttp's llhttp parser accepts it), Basic auth ``user:password``
from the mount's ``MountSpec``. Source clients send no Content-Length and no chunked encoding:
the body is everything until the connection closes, which HTTP parsers take for an empty
body. After authenticating, the handler therefore takes the raw bytes of the connection over
(``RequestHandler.set_parser``, the hook aiohttp's own WebSocket uses) and only then answers
``100 Continue`` (a PUT that asked for it) or ``200 OK`` (everything else, as Icecast does).
A body with Content-Length or chunked framing is read through aiohttp as usual.

Verified end to end (tests/streamer/test_icecast.py): ffmpeg 5.1 ``-f ogg`` (Opus) and
``-f mp3 -content_type audio/mpeg`` to ``icecast://``, ffmpeg's ``-legacy_icecast 1``
(SOURCE without waiting), and a raw ``SOURCE … HTTP/1.0`` client that waits for ``200 OK``
before streaming as libshout does. Not verified here (no such program installed): BUTT,
Mixxx (both libshout) and Liquidsoap (ocaml-cry). They speak the same two requests and wait
for the server's answer before streaming. A client that sends audio in the same packet as a
request head *without* waiting for any answer is refused 400 by aiohttp's parser before
this module sees it; no known source client does so.

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
import base64
import binascii
import concurrent.futures
import hmac
import logging
import math
import queue
import re
import secrets
import threading
import time
from typing import Any, Protocol

import av
import numpy as np
from aiohttp import StreamReader, web

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.config import MountSpec
from loa.errors import SourceError, SourceTimeout
from loa.relay.broadcast import Broadcast
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.streamer.base import Frame
from loa.streamer.url import MAX_BAD_PACKETS, FrameCutter
from loa.web.middlewares import error_json

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
_PROBED = ("", "application/octet-stream")
IDLE_TIMEOUT_S = 10.0  # Icecast's own source-timeout: a source silent this long is gone
_POLL_S = 0.1  # how often a blocked reader thread looks at the stop flag
_BODY_LIMIT = 1 << 16  # bytes aiohttp buffers for us before it stops reading the socket
_PROBE_OPTIONS = {"probesize": "65536", "analyzeduration": "500000"}  # start within ~0.5 s
_ICE_TEXT = re.compile(r"[\x00-\x1f\x7f]+")
_ICE_HEADERS = ("ice-name", "ice-description")


class ByteStream(Protocol):
    """Where the body comes from: aiohttp's ``StreamReader`` (b"" at the end)."""

    async def read(self, n: int = -1) -> bytes: ...


class _Stopped(Exception):
    """The source is closing: unwinds the reader thread from wherever it is."""


class _Body:
    """The file-like object av reads from the reader thread; each read hops to the loop."""

    def __init__(self, source: IcecastSource) -> None:
        self._source = source
        self._eof = False
        self.bytes = 0

    def read(self, size: int) -> bytes:
        if self._eof:
            return b""
        src = self._source
        future = asyncio.run_coroutine_threadsafe(src.body.read(size), src.loop)
        waited = 0.0
        while True:
            try:
                data = future.result(_POLL_S)
                break
            except concurrent.futures.TimeoutError:
                waited += _POLL_S
                if src.stop.is_set():
                    future.cancel()
                    raise _Stopped from None
                if waited >= src.idle_timeout_s:
                    future.cancel()
                    raise SourceTimeout(
                        f"no data from the source for {src.idle_timeout_s:g} s"
                    ) from None
        self._eof = not data
        self.bytes += len(data)
        return data


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
    ) -> None:
        if buffer_s < 4 * FRAME_S or not 0 < min_prebuffer_s < buffer_s / 2:
            raise SourceError("need 0 < min_prebuffer_s < buffer_s / 2 and buffer_s >= 0.08 s")
        if idle_timeout_s <= 0:
            raise SourceError("idle_timeout_s must be positive")
        self.body = body
        self.name = name
        self.format = format
        self.idle_timeout_s = idle_timeout_s
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
            self._error = exc.message
        except Exception as exc:  # av's verdict on the body: the broadcast fails with it
            self._error = f"cannot decode the stream: {type(exc).__name__}: {exc}"
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
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        cutter = FrameCutter()
        bad = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                bad += 1  # a damaged packet is skipped; a stream of them is not audio
                if bad >= MAX_BAD_PACKETS:
                    raise SourceError(f"{bad} undecodable packets in a row: {exc}") from exc
                continue
            bad = 0
            for frame in frames:
                for out in resampler.resample(frame):
                    for pcm in cutter.push(out.to_ndarray()):
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


# --- the HTTP side -----------------------------------------------------------------------


class _RawBody:
    """aiohttp's payload-parser hook: every byte after the request head, into a StreamReader."""

    def __init__(self, stream: StreamReader) -> None:
        self.stream = stream

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.stream.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.stream.feed_eof()


class Mounts:
    """The configured mounts and which of them are live; one per app (``MOUNTS``)."""

    def __init__(self, mounts: tuple[MountSpec, ...]) -> None:
        self.specs = {m.name: m for m in mounts}
        self.live: dict[str, str] = {}  # mount name → id of the broadcast it feeds


MOUNTS = web.AppKey("icecast_mounts", Mounts)


def _unauthorized(message: str) -> web.Response:
    resp = error_json(401, "unauthorized", message)
    resp.headers["WWW-Authenticate"] = 'Basic realm="loa"'
    return resp


def _check_auth(request: web.Request, mount: MountSpec) -> web.Response | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return _unauthorized(f"mount /{mount.name} needs Basic auth")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return _unauthorized("malformed Basic credentials")
    ok_user = hmac.compare_digest(user.encode(), mount.user.encode())
    ok_password = hmac.compare_digest(password.encode(), mount.password.encode())
    if not (ok_user and ok_password):
        log.warning("[icecast /%s] bad credentials from %s", mount.name, request.remote)
        return _unauthorized(f"wrong user or password for mount /{mount.name}")
    return None


def _content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _is_audio(ctype: str) -> bool:
    return ctype in FORMATS or ctype in _PROBED or ctype.startswith("audio/")


def _ice_text(request: web.Request, header: str) -> str:
    return _ICE_TEXT.sub(" ", request.headers.get(header, "")).strip()[:120]


def describe(mount: MountSpec, request: web.Request) -> str:
    """``what`` in the broadcast log: the mount, then the encoder's ice-name/description."""
    extra = " — ".join(t for t in (_ice_text(request, h) for h in _ICE_HEADERS) if t)
    return f"{mount.name}: {extra}" if extra else mount.name


async def _no_expect(request: web.Request) -> None:
    """``100 Continue`` goes out only after auth succeeded and the body is ours to read."""


async def source_handler(request: web.Request) -> web.StreamResponse:
    from loa.web.app import NODE  # the app imports this module: no import at load time

    mounts = request.app[MOUNTS]
    name = request.match_info["mount"]
    mount = mounts.specs.get(name)
    if mount is None:
        return error_json(404, "not_found", f"no mount /{name}", mount=name)
    if (refused := _check_auth(request, mount)) is not None:
        return refused
    if (holder := mounts.live.get(name)) is not None:
        message = f"mount /{name} is already live ({holder})"
        return error_json(409, "conflict", message, mount=name, broadcast=holder)
    if not _is_audio(ctype := _content_type(request)):
        message = f"Content-Type {ctype!r} is not audio"
        return error_json(415, "unsupported_media_type", message)
    node = request.app[NODE]
    source = IcecastSource(_take_body(request), name=name, format=FORMATS.get(ctype))
    spec = BroadcastSpec(
        id=f"icecast-{name}-{secrets.token_hex(3)}",
        priority=Priority.parse(mount.priority),
        origin_zone=mount.origin_zone,
        target_zones=frozenset(mount.zones),
        target_endpoints=frozenset(),
        resumable=False,
        live=True,
    )
    mounts.live[name] = spec.id  # before any await: a second source now gets 409
    try:
        bc = await node.start_broadcast(
            spec, source, what=describe(mount, request), source_kind="icecast",
            created_by=f"icecast:{name}",
        )  # fmt: skip
        log.info("[icecast /%s] source connected from %s: %s", name, request.remote, bc.id)
        return await _stream(request, name, bc, source)
    finally:
        if mounts.live.get(name) == spec.id:
            del mounts.live[name]


def _take_body(request: web.Request) -> ByteStream:
    if request.body_exists:  # Content-Length or chunked: aiohttp frames it
        return request.content
    stream = StreamReader(request.protocol, _BODY_LIMIT, loop=asyncio.get_running_loop())
    request.protocol.set_parser(_RawBody(stream))  # type: ignore[arg-type]
    return stream


async def _stream(
    request: web.Request, name: str, bc: Broadcast, source: IcecastSource
) -> web.StreamResponse:
    """Tell the client to go on, wait for the broadcast to end, then hang up."""
    resp = web.StreamResponse(status=200, headers={"Content-Length": "0"})
    resp.force_close()
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    else:
        await resp.prepare(request)  # the 200 that libshout-style clients wait for
    await bc.ended.wait()
    log.info(
        "[icecast /%s] source gone, %s %s: %s (%d bytes in, %d underruns)",
        name, bc.id, bc.log.state, bc.log.reason, source.bytes_in, source.underruns,
    )  # fmt: skip
    if request.transport is not None and not request.transport.is_closing():
        request.transport.close()  # e.g. an operator's stop: the encoder learns it at once
    return resp


async def _on_shutdown(app: web.Application) -> None:
    from loa.web.app import NODE

    node = app[NODE]
    for bc_id in list(app[MOUNTS].live.values()):
        if bc_id in node.broadcasts:
            await node.stop_broadcast(bc_id, reason="shutdown")


def setup(app: web.Application) -> None:
    """Add ``PUT``/``SOURCE /{mount}`` for the config's mounts to the main app; a second
    call does nothing."""
    if MOUNTS in app:
        return
    from loa.web.app import CONFIG

    app[MOUNTS] = Mounts(app[CONFIG].mounts)
    for method in ("PUT", "SOURCE"):
        app.router.add_route(method, "/{mount}", source_handler, expect_handler=_no_expect)
    app.on_shutdown.append(_on_shutdown)
