"""WHIP ingest (RFC 9725): a browser's microphone or OBS becomes a live broadcast.

``POST /api/v1/whip`` takes an SDP offer (audio, Opus) and answers 201 with the SDP answer
and ``Location: /api/v1/whip/{session}``; ``DELETE`` there ends the broadcast. aiortc
receives the track and decodes the Opus to av frames; ``WhipSource`` resamples them to
48 kHz mono s16 and cuts 20 ms frames for the broadcast, which encodes them once like any
other source. Targets and class come from the query string
(``?zones=a,b&endpoints=x&class=live&chime=0&name=...``); OBS sends only the bearer token,
so without targets a session goes to every root zone of the tree as class ``live``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Final, Protocol

import av
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Framer
from loa.errors import BadRequest, SourceError, SourceTimeout
from loa.relay.broadcast import Broadcast
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.relay.webrtc import (
    PEERS,
    Peers,
    PeerSession,
    WebRtcClient,
    answer,
    check_offer,
    created,
    ensure_peers,
    new_peer_connection,
    opus_only,
    patch_not_allowed,
    read_offer,
)
from loa.streamer.base import Frame, Source
from loa.streamer.pacer import Pacer
from loa.web.api.relay import may_stop, node_of
from loa.web.auth import USER, User

log = logging.getLogger(__name__)

MAX_WHIP_SESSIONS: Final = 8  # concurrent publishers per node
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


# -- the WHIP resource ------------------------------------------------------------------
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _query_bool(query: Any, key: str) -> bool | None:
    value = query.get(key)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"{key} must be 1/0 or true/false, got {value!r}")


def _ids(query: Any, key: str) -> list[str]:
    return [v for part in query.getall(key, []) for v in part.split(",") if v]


def whip_spec(query: Any, node: Node, user: User) -> tuple[BroadcastSpec, bool, str | None]:
    """The broadcast a WHIP session starts, from its query string: (spec, chime, name).

    Without zones or endpoints (OBS sends only the token) the user's default applies: an
    operator's own zone, an admin's every root zone; class ``live``."""
    from loa.web.api.relay import _spec

    zones, endpoints = _ids(query, "zones"), _ids(query, "endpoints")
    if not zones and not endpoints:
        roots = [z for z in node.zones if node.zones.parent(z) is None]
        zones = [user.zone] if user.zone is not None else roots
    data: dict[str, Any] = {"targets": {"zones": zones, "endpoints": endpoints}}
    for key in ("class", "origin_zone", "id"):
        if key in query:
            data[key] = query[key]
    for key in ("interrupt", "exclusive"):
        data[key] = _query_bool(query, key)
    if "expires_at" in query:
        try:
            data["expires_at"] = float(query["expires_at"])
        except ValueError:
            raise BadRequest("expires_at must be a Unix time in seconds") from None
    spec = _spec(data, node, user, resumable=False, live=True)
    chime = _query_bool(query, "chime")
    if chime is None:
        chime = spec.priority is Priority.EMERGENCY and node.config.relay.chime
    name = query.get("name")
    if name is not None and not 0 < len(name) <= 200:
        raise BadRequest("name must be 1-200 characters")
    return spec, chime, name


class WhipSession(PeerSession):
    """A publisher and its broadcast: either ending ends the other."""

    kind = "whip"

    def __init__(self, pc: Any, peers: Peers, node: Node) -> None:
        super().__init__(pc, peers)
        self.node = node
        self.broadcast: Broadcast | None = None

    async def serve(self) -> None:
        assert self.broadcast is not None
        bc = self.broadcast
        waits = {
            asyncio.ensure_future(self._ended.wait()),
            asyncio.ensure_future(bc.ended.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self.end(f"broadcast {bc.log.state}: {bc.log.reason}")

    async def teardown(self) -> None:
        bc = self.broadcast
        if bc is not None and bc.id in self.node.broadcasts:
            log.info("[whip=%s bc=%s] ending the broadcast: %s", self.id, bc.id, self.reason)
            await self.node.stop_broadcast(bc.id, reason=self.reason or "stopped")


def shallow_jitter_buffer(receiver: Any) -> None:
    """aiortc holds 4 audio packets (80 ms) before it decodes the first; every speaker
    already runs its own 40-80 ms adaptive jitter buffer, so ingest waits for one packet
    only (it needs the next packet to know a frame is complete). Reordering within the
    16-packet window is still repaired. aiortc has no public knob for this."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if isinstance(getattr(receiver, attr, None), JitterBuffer):
        setattr(receiver, attr, JitterBuffer(capacity=16, prefetch=1))
    else:
        log.warning("aiortc's receiver changed: ingest keeps its default 80 ms jitter buffer")


async def whip_post(request: web.Request) -> web.Response:
    """POST /whip: an SDP offer with audio (Opus) → 201, the answer, the session's URL."""
    node = node_of(request)
    peers = request.config_dict[PEERS]
    offer = await read_offer(request)
    check_offer(offer, direction="send")
    spec, chime, name = whip_spec(request.query, node, request[USER])
    peers.reserve("whip", MAX_WHIP_SESSIONS)
    pc = new_peer_connection()
    session = WhipSession(pc, peers, node)
    try:
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        transceiver.setCodecPreferences(opus_only())
        shallow_jitter_buffer(transceiver.receiver)
        sdp = await answer(pc, offer)
        prelude: Source | None = None
        if chime:
            from loa.streamer.tone import ChimeSource

            prelude = ChimeSource()
        source = WhipSource(
            transceiver.receiver.track,
            name=f"whip-{session.id}",
            idle_timeout_s=IDLE_TIMEOUT_S,
            prelude=prelude,
        )
        session.broadcast = await node.start_broadcast(
            spec,
            source,
            what=name or "live from WHIP",
            source_kind="whip",
            created_by=request[USER].username,
        )
    except BaseException:
        await session.abandon()
        raise
    session.start()
    log.info("[whip=%s bc=%s] publishing to %s", session.id, spec.id, sorted(spec.target_zones))
    return created(request, session, sdp)


async def whip_delete(request: web.Request) -> web.Response:
    peers = request.config_dict[PEERS]
    session = peers.get("whip", request.match_info["session"])
    if isinstance(session, WhipSession) and session.broadcast is not None:
        may_stop(
            request[USER],
            session.node,
            session.broadcast.spec,
            f"WHIP session {session.id} not found",
        )
    await session.close("stopped by the publisher (WHIP DELETE)")
    return web.Response(status=200)


def setup(api: web.Application) -> None:
    """Add WHIP (POST /whip, DELETE|PATCH /whip/{session}) to the /api/v1 sub-app."""
    ensure_peers(api)
    api.router.add_post("/whip", whip_post)
    api.router.add_delete("/whip/{session}", whip_delete)
    api.router.add_route("PATCH", "/whip/{session}", patch_not_allowed)


class WhipClient(WebRtcClient):
    """Publishes one audio track (anything whose ``recv()`` returns av.AudioFrame) by WHIP."""

    async def start(self, track: MediaStreamTrack) -> None:
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(opus_only())
        await self.negotiate()
