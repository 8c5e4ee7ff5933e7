"""Synchronised playout's corrector and resampler (loa.speaker.playout), sans-IO."""

from __future__ import annotations

import numpy as np
import pytest

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.pcm import Int16Array
from loa.speaker.playout import (
    MAX_SLEW,
    CaptureTimes,
    Played,
    Playout,
    PlayoutCorrector,
    Resampler,
    Resync,
    Slew,
)

D = 0.3


def sine(k: int, hz: float = 440.0) -> Int16Array:
    t = (np.arange(FRAME_SAMPLES) + k * FRAME_SAMPLES) / SAMPLE_RATE
    out: Int16Array = np.rint(10000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return out


def in_step() -> Playout:
    """A playout already in step (its first frame placed), so errors are slewed."""
    playout = Playout()
    playout.frame(sine(0), 0.0)
    return playout


def simulate(
    playout: Playout,
    seconds: float,
    *,
    drift_ppm: float = 0.0,
    start_local: float = 0.5,
    feed_drift: bool = True,
    estimate_error_s: float = 0.0,
) -> list[float]:
    """A pole whose output (its DAC) runs on its own clock: server time = local × (1 + r).
    Frame k was captured at k × 20 ms and is due at capture + D. The frame's first sample is
    heard at the output position, which advances by what was written. Returns the true
    playout error of each frame written whole (seconds, > 0 late)."""
    r = drift_ppm * 1e-6
    local = start_local
    errors = []
    for k in range(round(seconds / 0.02)):
        due = k * 0.02 + D
        heard = local * (1 + r)
        told = None if playout.skipping else heard + estimate_error_s - due
        inserted = playout.inserted
        out = playout.frame(sine(k), told, r if feed_drift else 0.0)
        if told is not None and len(out) >= FRAME_SAMPLES - 1:  # played whole: not skipped
            # silence inserted first moves this frame's first sample on
            errors.append(heard - due + (playout.inserted - inserted) / SAMPLE_RATE * (1 + r))
        local += len(out) / SAMPLE_RATE
    return errors


def test_an_early_start_waits_in_silence_to_the_sample() -> None:
    playout = Playout()
    errors = simulate(playout, 5.0, start_local=0.04)  # first frame 260 ms early
    assert playout.corrector.resyncs == 1
    assert playout.inserted == round(0.26 * SAMPLE_RATE)
    assert abs(errors[0]) < 1 / SAMPLE_RATE * 2
    assert max(abs(e) for e in errors[1:]) < 0.0001


def test_a_late_start_skips_exactly_what_it_must() -> None:
    playout = Playout()
    errors = simulate(playout, 5.0, start_local=0.3 + 0.1234)  # 123.4 ms late
    assert playout.corrector.resyncs == 1
    assert playout.skipped == round(0.1234 * SAMPLE_RATE)
    assert max(abs(e) for e in errors[-100:]) < 0.0001


@pytest.mark.parametrize("drift_ppm", [-100.0, 100.0])
def test_drift_is_followed_by_resampling_within_the_bound(drift_ppm: float) -> None:
    playout = in_step()
    errors = simulate(playout, 60.0, drift_ppm=drift_ppm, start_local=D)
    assert playout.corrector.resyncs == 0
    assert max(abs(e) for e in errors) < 0.0005
    assert abs(playout.corrector.ratio - (1 - drift_ppm * 1e-6)) < 20e-6
    # without the estimator's drift, the error term alone holds it at drift × τ
    playout = in_step()
    errors = simulate(playout, 60.0, drift_ppm=drift_ppm, start_local=D, feed_drift=False)
    steady = np.mean(errors[-500:])
    assert steady == pytest.approx(drift_ppm * 1e-6 * 4.0, abs=0.0001)


def test_an_error_under_40_ms_is_slewed_no_faster_than_0_05_percent() -> None:
    playout = in_step()
    errors = simulate(playout, 100.0, start_local=D + 0.030)  # 30 ms late: no resync
    assert playout.corrector.resyncs == 0
    per_second = np.diff(errors[::50])  # whole samples per frame: look a second at a time
    assert np.all(np.abs(per_second) <= MAX_SLEW + 1 / SAMPLE_RATE)
    assert errors[round(10 / 0.02)] > 0.030 - 10 * MAX_SLEW - 0.0001  # ≤ 0.5 ms per second
    assert abs(errors[-1]) < 0.001


def test_an_estimate_that_is_off_is_followed_not_the_truth() -> None:
    """The corrector can only hear what the clock estimate tells it."""
    playout = Playout()
    errors = simulate(playout, 20.0, start_local=D, estimate_error_s=0.005)
    assert np.mean(errors[-50:]) == pytest.approx(-0.005, abs=0.0003)


def test_corrector_decisions_and_bad_input() -> None:
    c = PlayoutCorrector()
    assert c.decide(0.0405) == Resync(round(0.0405 * SAMPLE_RATE))
    assert c.decide(-0.05) == Resync(-2400)
    slew = c.decide(0.04)
    assert isinstance(slew, Slew) and slew.ratio == pytest.approx(1 - MAX_SLEW)
    slew = c.decide(-0.001, drift=100e-6)
    assert isinstance(slew, Slew) and slew.ratio == pytest.approx(1 - 100e-6 + 0.001 / 4.0)
    assert c.decide(0.0, drift=0.01) == Slew(1 - MAX_SLEW)
    assert c.resyncs == 2
    with pytest.raises(ValueError, match="finite"):
        c.decide(float("nan"))
    with pytest.raises(ValueError, match="max_slew"):
        PlayoutCorrector(max_slew=0.05)


def test_resampler_is_exact_at_unity_and_smooth_when_slewing() -> None:
    r = Resampler()
    frames = [sine(k) for k in range(50)]
    out = np.concatenate([r.process(f, 1.0) for f in frames])
    assert np.array_equal(out[1:], np.concatenate(frames)[:-1])  # one sample late, untouched
    r = Resampler()
    out = np.concatenate([r.process(sine(k), 1 + MAX_SLEW) for k in range(1000)])
    assert abs(len(out) - 1000 * FRAME_SAMPLES * (1 + MAX_SLEW)) <= 1
    # a 440 Hz sine at amplitude 10000 moves at most ~575 per sample: no click at the seams
    assert np.max(np.abs(np.diff(out.astype(np.int32)))) < 600
    with pytest.raises(ValueError, match="ratio"):
        r.process(sine(0), 1.1)


def test_capture_times_map_each_segment_through_its_own_report() -> None:
    times = CaptureTimes()
    s1, mask = 0xFFFF_0000, 0xFFFF_FFFF
    s2 = (s1 + 960 * 200) & mask  # the next segment: the timestamps wrap before it
    assert times.capture(s1) is None  # nothing known
    times.segment(s1)
    assert times.capture(s1) is None  # a segment, no report yet
    times.report(s1 + 480, 500.01)  # 10 ms after the first frame: 500.0 captured it
    assert times.capture(s1) == pytest.approx(500.0)
    assert times.capture(s1 + 960 * 50) == pytest.approx(501.0)
    # a switch: the next segment's report overtakes its first packet; the old tail still maps
    times.report(s2 + 960, 900.02)
    times.segment(s2)
    assert times.capture(s1 + 960 * 51) == pytest.approx(501.02)
    assert times.capture(s2) == pytest.approx(900.0)
    assert times.capture((s2 + 960 * 10) & mask) == pytest.approx(900.2)
    assert times.capture(s1 - 960) is None  # before every segment known
    times.reset()
    assert times.capture(s1) is None


def test_a_report_of_the_previous_stream_naming_a_time_past_the_next_ones_start_is_not_used() -> (
    None
):
    """A stream that held the floor without sending (its cluster node died) is reported
    with its clock extrapolated: the last such report names an RTP time past the start of
    the stream that follows, whose frames must map through their own report (the one that
    came last), not seconds into the past."""
    times = CaptureTimes()
    old, new = 1_000_000, 1_100_000
    times.segment(old)
    times.report(old + 16, 100.0)  # the old stream, playing
    times.report(new + 8_000, 102.2)  # held, silent: its clock extrapolated past `new`
    times.segment(new)  # the next stream starts 2.4 s later at a lower RTP time
    times.report(new + 16, 104.5)  # its own report, after its first packet
    assert times.capture(new) == pytest.approx(104.5 - 16 / 48_000)
    assert times.capture(old + 960) == pytest.approx(100.0 + (960 - 16) / 48_000)


def test_the_first_frame_placed_steps_into_line_at_once_however_small_the_error() -> None:
    playout = Playout()
    for k in range(5):  # no clock estimate or report yet: played as it comes
        assert len(playout.frame(sine(k), None)) == FRAME_SAMPLES
    out = playout.frame(sine(5), -0.021)  # 21 ms early: under 40 ms, still a resync
    assert playout.corrector.resyncs == 1 and len(out) == FRAME_SAMPLES + round(0.021 * SAMPLE_RATE)
    out = playout.frame(sine(6), -0.021)  # in step now: the same error is slewed
    assert playout.corrector.resyncs == 1 and abs(len(out) - FRAME_SAMPLES) <= 1
    assert PlayoutCorrector().decide(0.00001, first=True) == Slew(1 - 0.00001 / 4.0)  # < 1 sample


def test_played_keeps_frames_heard_whole_by_capture_time_on_the_host_clock() -> None:
    played = Played(lambda local: local - 2.5)  # a pole 2.5 s ahead of the host
    played.add(100.00001, 12.5)
    played.add(100.02, None)  # a resync cut its start
    played.add(None, 13.0)  # no capture time known
    assert played.frames == {100.0: 10.0}
