"""The bounded sink between the fan-out and one slow consumer: an in-process listener (the
Ogg mount, WHEP: it keeps the Opus payloads) or a speaker on WebSocket audio (it keeps
whole RTP packets).

Driven from two sides: ``push`` is the node's sink (called by the fan-out, never blocking,
never awaiting), ``take`` is called by the listener's own writer task when it can send. A
listener that falls behind loses the *oldest* audio, by age: a payload that has waited
longer than ``max_age_s`` is stale (a pole's jitter buffer would have played past it) and
goes, however many others wait. Bounding by age rather than count keeps the same latency
promise whatever the packet rate. No clock is read here except the injected ``clock``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from loa.codecs.rtp import RtpPacket


class PacketSink:
    """Payloads (or whole packets) waiting for one consumer, each with its arrival time."""

    __slots__ = (
        "_clock",
        "_queue",
        "bad",
        "dropped",
        "max_age_s",
        "on_push",
        "received",
        "unwrap",
    )

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_age_s: float,
        on_push: Callable[[], None] | None = None,
        unwrap: bool = True,
    ) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s!r}")
        self._clock = clock
        self.max_age_s = max_age_s
        self.on_push = on_push  # wakes the writer; must not block either
        self.unwrap = unwrap  # keep the Opus payload (True) or the whole RTP packet
        self._queue: deque[tuple[float, bytes]] = deque()
        self.received = 0  # payloads accepted
        self.dropped = 0  # payloads that grew stale before the writer took them
        self.bad = 0  # packets that were not RTP with a payload

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, packet: bytes) -> None:
        """One rewritten RTP packet from the fan-out."""
        payload = packet
        if self.unwrap:
            try:
                payload = RtpPacket.payload_of(packet)
            except ValueError:
                self.bad += 1
                return
            if not payload:
                self.bad += 1
                return
        now = self._clock()
        self._expire(now)
        self._queue.append((now, payload))
        self.received += 1
        if self.on_push is not None:
            self.on_push()

    def take(self) -> bytes | None:
        """The oldest payload still fresh, or None when nothing is waiting."""
        self._expire(self._clock())
        return self._queue.popleft()[1] if self._queue else None

    def drain(self) -> list[bytes]:
        """Every fresh payload, oldest first."""
        self._expire(self._clock())
        out = [payload for _, payload in self._queue]
        self._queue.clear()
        return out

    def _expire(self, now: float) -> None:
        queue, oldest = self._queue, now - self.max_age_s
        while queue and queue[0][0] < oldest:
            queue.popleft()
            self.dropped += 1
