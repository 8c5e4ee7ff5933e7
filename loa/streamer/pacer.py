"""Deadline maths for pacing non-live sources: when the next 20 ms frame may go out.

Sans-IO: the caller passes ``now`` (``loop.time()`` in production, a fake clock in tests).
Deadlines are absolute (``deadline += frame_s``), so sleep overshoot never accumulates into
drift. A sender that falls more than ``max_behind_s`` behind (a stalled loop, a suspended
VM) resyncs to ``now`` instead of bursting out the backlog as fast as it can: loudspeakers
would hear the burst as a skip, and their jitter buffers would overflow."""

from __future__ import annotations

from loa.codecs import FRAME_S


class Pacer:
    """Driven by a sender loop: ``start(now)``; then per frame ``delay(now)`` (sleep that long),
    send, ``advance(now)``.

    ``frames`` counts frames sent, ``late_frames`` those sent more than ``late_s`` (default
    half a frame) after their deadline, ``resyncs`` how often the schedule was abandoned
    because the sender was more than ``max_behind_s`` behind."""

    def __init__(
        self,
        frame_s: float = FRAME_S,
        max_behind_s: float = 0.2,
        *,
        late_s: float | None = None,
    ) -> None:
        if not frame_s > 0:
            raise ValueError(f"frame_s must be > 0, got {frame_s!r}")
        if not max_behind_s >= frame_s:
            raise ValueError(f"max_behind_s must be >= frame_s ({frame_s!r}), got {max_behind_s!r}")
        late = frame_s / 2 if late_s is None else late_s
        if not 0 <= late <= max_behind_s:
            raise ValueError(f"late_s must be in [0, max_behind_s], got {late_s!r}")
        self.frame_s = frame_s
        self.max_behind_s = max_behind_s
        self.late_s = late
        self.frames = 0
        self.late_frames = 0
        self.resyncs = 0
        self._deadline: float | None = None

    @property
    def started(self) -> bool:
        return self._deadline is not None

    @property
    def deadline(self) -> float:
        """The absolute time at which the next frame is due."""
        if self._deadline is None:
            raise RuntimeError("Pacer.start(now) must be called before the first frame")
        return self._deadline

    def start(self, now: float) -> None:
        """The first frame is due at ``now``. Calling it again (e.g. when a paused broadcast
        resumes) restarts the schedule without touching the counters."""
        self._deadline = now

    def delay(self, now: float) -> float:
        """Seconds to wait before the next frame may go out; 0.0 if it is already due."""
        return max(0.0, self.deadline - now)

    def behind(self, now: float) -> float:
        """Seconds past the next frame's deadline (negative while early)."""
        return now - self.deadline

    def advance(self, now: float) -> None:
        """Record that the frame due at ``deadline`` went out at ``now``."""
        behind = now - self.deadline
        self.frames += 1
        if behind > self.late_s:
            self.late_frames += 1
        if behind > self.max_behind_s:
            # Drop the backlog: the next frame is due one frame after this one, not at once.
            self.resyncs += 1
            self._deadline = now + self.frame_s
        else:
            self._deadline = self.deadline + self.frame_s
