"""Pacer: absolute deadlines on a fake clock — on time, slightly late, far behind."""

from __future__ import annotations

import itertools

import pytest

from loa.streamer.pacer import Pacer

FRAME = 0.02


def run(pacer: Pacer, now: float, frames: int, *, send_cost: float = 0.0) -> list[float]:
    """A sender loop on a fake clock: sleep exactly ``delay``, spend ``send_cost``; returns
    the send times."""
    sent = []
    for _ in range(frames):
        now += pacer.delay(now)
        sent.append(now)
        now += send_cost
        pacer.advance(now)
    return sent


def test_on_time_frames_go_out_at_exact_multiples_without_drift() -> None:
    p = Pacer()
    p.start(100.0)
    sent = run(p, 100.0, 500, send_cost=0.003)
    # Absolute deadlines: a 3 ms send cost each frame never accumulates into drift.
    assert sent[0] == pytest.approx(100.0)
    assert sent[-1] == pytest.approx(100.0 + 499 * FRAME)
    assert [round(b - a, 9) for a, b in itertools.pairwise(sent)] == [FRAME] * 499
    assert (p.frames, p.late_frames, p.resyncs) == (500, 0, 0)


def test_delay_counts_down_to_the_deadline_and_never_goes_negative() -> None:
    p = Pacer()
    p.start(10.0)
    assert p.delay(10.0) == 0.0
    p.advance(10.0)
    assert p.delay(10.0) == pytest.approx(0.02)
    assert p.delay(10.015) == pytest.approx(0.005)
    assert p.delay(10.5) == 0.0
    assert p.behind(10.5) == pytest.approx(0.48)


def test_slightly_late_sender_catches_up_without_resync() -> None:
    p = Pacer()
    p.start(0.0)
    now = 0.0
    for _ in range(10):  # on time
        now += p.delay(now)
        p.advance(now)
    now += 0.155  # a 155 ms stall: under max_behind_s; frames due at 0.20 … 0.32 are late
    sent = run(p, now, 20)
    # The backlog goes out back to back (delay 0) until the schedule is met again ...
    assert sent[0] == pytest.approx(0.155 + 9 * FRAME)
    back_to_back = [t for t in sent if t == pytest.approx(sent[0])]
    assert len(back_to_back) == 7
    # ... and from then on frames are back on the original grid.
    assert sent[-1] == pytest.approx(29 * FRAME)
    assert p.resyncs == 0
    assert p.late_frames == 7  # each backlog frame was 15 … 135 ms late
    assert p.frames == 30


def test_far_behind_sender_resyncs_once_without_a_burst() -> None:
    p = Pacer()
    p.start(0.0)
    now = 0.0
    for _ in range(5):
        now += p.delay(now)
        p.advance(now)
    now += 3.0  # a 3 s stall: 150 frames behind
    sent = run(p, now, 10)
    assert p.resyncs == 1
    # After the late frame, the next ones are spaced one frame apart: no catch-up burst.
    assert sent[0] == pytest.approx(3.0 + 4 * FRAME)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps == pytest.approx([FRAME] * 9)
    assert p.late_frames == 1
    assert p.frames == 15


def test_late_threshold_is_configurable() -> None:
    p = Pacer(late_s=0.0)
    p.start(0.0)
    p.advance(0.001)
    assert p.late_frames == 1
    p.advance(p.deadline)
    assert p.late_frames == 1


def test_restart_after_pause_keeps_counters() -> None:
    p = Pacer()
    p.start(0.0)
    p.advance(0.0)
    p.start(50.0)  # a paused broadcast resumes: no resync, no late frames
    assert p.delay(50.0) == 0.0
    p.advance(50.0)
    assert (p.frames, p.late_frames, p.resyncs) == (2, 0, 0)
    assert p.deadline == pytest.approx(50.02)


def test_use_before_start_is_an_error() -> None:
    p = Pacer()
    assert not p.started
    with pytest.raises(RuntimeError, match=r"start\(now\) must be called"):
        p.delay(0.0)
    with pytest.raises(RuntimeError, match=r"start\(now\) must be called"):
        p.advance(0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_s": 0.0}, "frame_s must be > 0"),
        ({"frame_s": float("nan")}, "frame_s must be > 0"),
        ({"max_behind_s": 0.01}, r"max_behind_s must be >= frame_s"),
        ({"late_s": -0.1}, r"late_s must be in \[0, max_behind_s\]"),
        ({"late_s": 1.0}, r"late_s must be in \[0, max_behind_s\]"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pacer(**kwargs)
