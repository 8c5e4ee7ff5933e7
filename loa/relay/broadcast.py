"""A broadcast: one source, its one Opus encoder, its paced frame loop and its log entry."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loa.codecs import FRAME_S, FRAME_SAMPLES, OPUS_PAYLOAD_TYPE
from loa.codecs.opus import OpusEncoder
from loa.relay.core.priority import BroadcastSpec
from loa.streamer.base import Frame, Source
from loa.streamer.pacer import Pacer

log = logging.getLogger(__name__)

# The packet a broadcast shares with every endpoint: a placeholder RTP header (each endpoint's
# rewriter writes its own sequence, timestamp and SSRC over it) and the Opus payload.
_PLAIN = struct.pack("!BBHII", 0x80, OPUS_PAYLOAD_TYPE, 0, 0, 0)
# With stamp_frames: the X bit, then an RFC 8285 one-byte extension block of 3 words holding
# element id 1, length 8 (0x17): the frame-ready time in µs, then two bytes of padding.
_STAMPED = struct.Struct("!BBHIIHHBQBH")


class State(StrEnum):
    PENDING = "pending"  # accepted, holds no endpoint yet
    PLAYING = "playing"
    PAUSED = "paused"  # resumable source, every target taken by something that outranks it
    FINISHED = "finished"  # the source ended
    STOPPED = "stopped"  # someone stopped it
    EXPIRED = "expired"  # never got (or lost) the floor before expires_at
    FAILED = "failed"  # the source broke

    @property
    def ended(self) -> bool:
        return self in (State.FINISHED, State.STOPPED, State.EXPIRED, State.FAILED)


@dataclass
class LogEntry:
    """What the broadcast log keeps: who, what, class, targets, when, why it ended, who heard it."""

    id: str
    what: str
    source: str
    priority: str
    origin_zone: str | None
    target_zones: list[str]
    target_endpoints: list[str]
    created_by: str
    requested_at: float
    started_at: float | None = None
    ended_at: float | None = None
    state: str = State.PENDING.value
    reason: str | None = None
    heard_s: dict[str, float] = field(default_factory=dict)
    preemptions: int = 0
    interrupted_at: float | None = None  # a restart cut it off then (loa.onair) …
    resumed_at: float | None = None  # … and it came back then (None: it did not)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "source": self.source,
            "class": self.priority,
            "origin_zone": self.origin_zone,
            "targets": {"zones": self.target_zones, "endpoints": self.target_endpoints},
            "created_by": self.created_by,
            "requested_at": self.requested_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "state": self.state,
            "reason": self.reason,
            "endpoints_heard": sum(1 for s in self.heard_s.values() if s > 0),
            "heard_s": {k: round(v, 3) for k, v in sorted(self.heard_s.items())},
            "preemptions": self.preemptions,
            "interrupted_at": self.interrupted_at,
            "resumed_at": self.resumed_at,
        }


Deliver = Callable[["Broadcast", bytes, int, bool], None]


class Broadcast:
    """Driven by its own task (``run``): read a frame, wait for its deadline (unless live),
    encode it once, hand the shared packet to ``deliver``. The node pauses and resumes it on
    the router's word; a paused resumable source is simply not read."""

    def __init__(
        self,
        spec: BroadcastSpec,
        source: Source,
        encoder: OpusEncoder,
        *,
        key: int,
        what: str,
        source_kind: str,
        created_by: str,
        deliver: Deliver,
        emergency_volume: bool = False,
        stamp_frames: bool = False,
        description: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.description = description  # how to rebuild its source (Node.start_broadcast)
        self.id = spec.id
        self.key = key  # small int for the hot path (rewriters compare it per packet)
        self.source = source
        self.encoder = encoder
        self.deliver = deliver
        self.state = State.PENDING
        self.frames = 0
        self.emergency_volume = emergency_volume
        self.stamp_frames = stamp_frames
        self.error: str | None = None
        self.log = LogEntry(
            id=spec.id,
            what=what,
            source=source_kind,
            priority=spec.priority.name.lower(),
            origin_zone=spec.origin_zone,
            target_zones=sorted(spec.target_zones),
            target_endpoints=sorted(spec.target_endpoints),
            created_by=created_by,
            requested_at=time.time(),
        )
        self.ended = asyncio.Event()  # set once the node has logged its end
        self._running = asyncio.Event()
        self._running.set()
        self._stopping: str | None = None
        self.pacer = Pacer(frame_s=FRAME_S)
        self._preloaded = False  # ``preload`` read its first frame (or failed to)
        self._first: Frame | None = None  # that frame, until it is sent
        self._first_error: Exception | None = None  # or why it could not be read
        self._primed = False  # the preloaded frame was taken (sent, or ended the broadcast)

    def __repr__(self) -> str:
        return f"<Broadcast {self.id} {self.spec.priority.name} {self.state}>"

    # -- router's word -------------------------------------------------------------
    def mark_playing(self) -> None:
        if self.state in (State.PENDING, State.PAUSED):
            if self.log.started_at is None:
                self.log.started_at = time.time()
            self.state = State.PLAYING
            self._running.set()

    def pause(self) -> None:
        if self.source.resumable and not self.state.ended:
            self.state = State.PAUSED
            self._running.clear()

    def resume(self) -> None:
        self.mark_playing()

    @property
    def stop_reason(self) -> str | None:
        return self._stopping

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end at the next frame with ``reason`` (stopped, expired)."""
        self._stopping = reason
        self._running.set()

    # -- the frame loop --------------------------------------------------------------
    async def run(self) -> State:
        loop = asyncio.get_running_loop()
        try:
            if not self.state.ended:
                await self._loop(loop)
        except asyncio.CancelledError:
            self._end(State.STOPPED, self._stopping or "shutdown")
            raise
        except Exception as exc:  # the source broke: end this broadcast, not the relay
            self._failed(exc)
        finally:
            await self.source.aclose()
        return self.state

    async def preload(self) -> None:
        """Read its first frame now, before the node routes it (``Node.start_broadcast``):
        the first read may take a while (a file opened, a voice synthesised) and the old
        broadcast plays on meanwhile; ``prime`` then sends it at the switch. A failure or
        an end is kept for ``prime`` and ``run``, which end the broadcast as they would
        have. Not for a live source (its first frame comes when it comes)."""
        if self.source.live or self._preloaded:
            return
        self._preloaded = True
        try:
            self._first = await self.source.read()
        except Exception as exc:  # the source broke: end this broadcast, not the relay
            self._first_error = exc

    def prime(self) -> None:
        """Send the preloaded first frame now, without yielding: the node calls it right
        after the switch, so a preemption is heard when its request is handled, not after
        whatever else the loop has ready (another broadcast's frame falling due, the
        switched speakers' messages). ``run`` goes on from the second frame. Not while
        paused: then ``run`` sends it when the broadcast resumes."""
        if not self._preloaded or self._primed or self.state.ended or not self._running.is_set():
            return
        frame = self._take_first()
        if frame is None:
            return
        loop = asyncio.get_running_loop()
        self.pacer.start(loop.time())
        self._send(frame)
        self.pacer.advance(loop.time())

    def _take_first(self) -> Frame | None:
        """The preloaded first frame, taken once; None, the broadcast ended, if that read
        failed or found nothing."""
        self._primed = True
        frame, self._first = self._first, None
        if self._first_error is not None:
            self._failed(self._first_error)
            self._first_error = None
        elif frame is None:
            self._end(State.FINISHED, getattr(self.source, "end_reason", None) or "finished")
        return frame if not self.state.ended else None

    def _failed(self, exc: Exception) -> None:
        log.warning("[bc=%s] failed: %s", self.id, exc)
        self.error = str(exc)
        self._end(State.FAILED, str(exc))

    async def _loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # The first frame after a start or a resume goes out in this very step (unless
        # ``prime`` sent it already), the others at the pacer's deadlines.
        first = not self._primed
        if first:
            self.pacer.start(loop.time())
        while True:
            if not self._running.is_set():
                await self._running.wait()
                self.pacer.start(loop.time())
                first = True
            if self._stopping is not None:
                self._end(
                    State.EXPIRED if self._stopping == "expired" else State.STOPPED, self._stopping
                )
                return
            if self._preloaded and not self._primed:  # preloaded, not sent (it was paused)
                frame = self._take_first()
                if frame is None:
                    return
            else:
                frame = await self.source.read()
            if frame is None:  # a source may say why it ended (e.g. the publisher hung up)
                self._end(State.FINISHED, getattr(self.source, "end_reason", None) or "finished")
                return
            # Yield every frame even when due (or live): a source that answers without awaiting
            # must not starve the loop and with it every other broadcast. Except the first
            # after a start or a resume: it is due at once.
            if not first:
                await asyncio.sleep(0 if self.source.live else self.pacer.delay(loop.time()))
            first = False
            self._send(frame)
            if not self.source.live:
                self.pacer.advance(loop.time())

    def _send(self, frame: Frame) -> None:
        """Encode ``frame`` and hand it to the node (``deliver``)."""
        payload = self.encoder.encode(frame.pcm)
        if self.stamp_frames:
            packet = (
                _STAMPED.pack(
                    0x90,
                    OPUS_PAYLOAD_TYPE,
                    0,
                    0,
                    0,
                    0xBEDE,
                    3,
                    0x17,
                    time.time_ns() // 1000,
                    0,
                    0,
                )
                + payload
            )
        else:
            packet = _PLAIN + payload
        self.frames += 1
        self.deliver(self, packet, frame.pts // FRAME_SAMPLES, frame.item_end)

    def _end(self, state: State, reason: str) -> None:
        if self.state.ended:
            return
        self.state = state
        self.log.state = state.value
        self.log.reason = reason
        self.log.ended_at = time.time()
