"""The speaker's clock estimator (loa.speaker.clock), sans-IO with simulated clocks."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from loa.speaker.clock import ClockEstimator, Estimate, HostClock, Probe, SkewedClock

Delay = Callable[[random.Random], float]


def uniform(low_ms: float, high_ms: float) -> Delay:
    return lambda rng: rng.uniform(low_ms, high_ms) / 1000


def run(
    offset_s: float,
    drift_ppm: float,
    up: Delay,
    down: Delay,
    times: list[float],
    *,
    seed: int = 1,
    method: str = "floors",
) -> tuple[ClockEstimator, Callable[[float], float]]:
    """Probes sent at the local ``times``; the server's clock is ``local + offset +
    drift·local``, so the truth is known. Returns the estimator and the true mapping."""
    rng = random.Random(seed)
    drift = drift_ppm * 1e-6
    est = ClockEstimator(method=method)  # type: ignore[arg-type]

    def server(local: float) -> float:
        return local + offset_s + drift * local

    for t1 in times:
        t2 = server(t1) + up(rng)
        t3 = t2 + 0.0002  # the server's own turnaround
        t4 = (t3 + down(rng) - offset_s) / (1 + drift)
        est.add(Probe(t1, t2, t3, t4))
    return est, server


def burst_then_every(seconds: float, until: float) -> list[float]:
    times = [0.02 * i for i in range(32)]
    t = 0.7
    while t < until:
        times.append(t)
        t += seconds
    return times


def error_ms(est: ClockEstimator, server: Callable[[float], float], at: float) -> float:
    assert est.estimate is not None
    return (est.estimate.to_server(at) - server(at)) * 1000


@pytest.mark.parametrize("offset_s", [-7200.5, -3.25, 0.0, 4.75, 86400.125])
@pytest.mark.parametrize("drift_ppm", [-100.0, 0.0, 100.0])
def test_offsets_of_seconds_and_drift_are_found_behind_jittery_delays(
    offset_s: float, drift_ppm: float
) -> None:
    """The speaker's schedule: a burst, every 0.25 s for 60 s, then every 3 s; after 830 s
    the window (256) spans 770 s and the drift is known to a ppm or two."""
    times = burst_then_every(0.25, 60.0) + [60.0 + 3 * i for i in range(257)]
    est, server = run(offset_s, drift_ppm, uniform(0, 50), uniform(0, 50), times)
    at = times[-1] + 3.0  # just before the next probe
    assert abs(error_ms(est, server, at)) < 1.5  # σ ≈ 0.5 ms (drift ignored: 80 ms off)
    assert est.estimate is not None
    assert abs(est.estimate.drift * 1e6 - drift_ppm) < 2.0
    assert est.estimate.probes == 256  # the window
    assert est.inconsistent == 0


def test_the_floors_beat_the_quarter_median_on_random_delays() -> None:
    """Same probes, both estimators, many trials: the issue's quarter median wanders by
    σ ≈ 2.3 ms, the centre of the bounds by well under half of that."""
    floors, quarter = [], []
    for seed in range(40):
        times = [0.02 * i for i in range(64)]
        for method, errors in (("floors", floors), ("quarter", quarter)):
            est, server = run(
                1.5, 0.0, uniform(0, 50), uniform(0, 50), times, seed=seed, method=method
            )
            errors.append(error_ms(est, server, 1.5))
    rms_floors = math.sqrt(sum(e * e for e in floors) / len(floors))
    rms_quarter = math.sqrt(sum(e * e for e in quarter) / len(quarter))
    assert rms_floors < 1.0
    assert rms_floors < rms_quarter / 2
    assert 1.0 < rms_quarter < 4.0


def test_asymmetric_jitter_costs_nothing_but_a_fixed_asymmetry_is_half_its_size() -> None:
    times = burst_then_every(1.0, 90.0)
    # up jitters 0–5 ms, down 0–50 ms, both floors at 0: unbiased
    est, server = run(2.0, 50.0, uniform(0, 5), uniform(0, 50), times)
    assert abs(error_ms(est, server, 90.0)) < 1.0
    # the uplink is 20 ms slower at best: no probe can tell, the offset is 10 ms off
    est, server = run(2.0, 50.0, uniform(20, 25), uniform(0, 5), times)
    assert 8.5 < error_ms(est, server, 90.0) < 11.5


def test_probes_delayed_by_queues_do_not_move_the_estimate() -> None:
    rng = random.Random(7)

    def spiky(r: random.Random) -> float:  # one in five waits 100–900 ms in a queue
        return (r.uniform(100, 900) if rng.random() < 0.2 else r.uniform(0, 10)) / 1000

    times = burst_then_every(1.0, 100.0)
    est, server = run(-12.0, -80.0, spiky, spiky, times)
    assert abs(error_ms(est, server, 100.0)) < 1.0


def test_bad_probes_are_counted_not_used() -> None:
    est = ClockEstimator()
    assert est.add(Probe(10.0, 5.0, 5.001, 9.0)) is None  # answered before it was asked
    assert est.add(Probe(10.0, 5.0, 4.0, 10.1)) is None  # the server sent before receiving
    assert est.add(Probe(10.0, 5.0, 5.5, 10.1)) is None  # turnaround longer than the round trip
    assert est.add(Probe(float("nan"), 5.0, 5.0, 10.1)) is None
    assert est.rejected == 4 and len(est) == 0
    good = est.add(Probe(10.0, 5.01, 5.0101, 10.02))
    assert isinstance(good, Estimate) and len(est) == 1
    assert good.offset == pytest.approx(-5.0, abs=0.01)


def test_a_server_clock_step_falls_back_on_the_quarter_median_until_the_window_agrees() -> None:
    times = [0.1 * i for i in range(64)]
    est, _ = run(3.0, 0.0, uniform(0, 10), uniform(0, 10), times)
    rng = random.Random(3)
    stepped = 0
    for i in range(64):  # the server's clock now reads one second later
        t1 = 6.4 + 0.1 * i
        t2 = t1 + 4.0 + rng.uniform(0, 0.01)
        t4 = t2 - 4.0 + rng.uniform(0, 0.01)
        e = est.add(Probe(t1, t2, t2, t4))
        assert e is not None
        if i == 20:
            stepped = est.inconsistent
    assert stepped > 0  # the bounds crossed: old and new probes disagree
    assert e.offset == pytest.approx(4.0, abs=0.005)  # the window holds only the new clock
    assert e.quarter == pytest.approx(4.0, abs=0.005)


def test_to_local_inverts_to_server() -> None:
    e = Estimate(offset=3.5, drift=80e-6, at=100.0, delay=0.01, quarter=3.5, probes=10)
    for local in (0.0, 100.0, 12345.6):
        assert e.to_local(e.to_server(local)) == pytest.approx(local, abs=1e-9)


def test_skewed_clock_runs_off_the_host_and_maps_back() -> None:
    host = [1000.0]
    clock = SkewedClock(lambda: host[0], offset_s=-2.5, drift_ppm=100.0)
    assert clock.now() == pytest.approx(1000.0 * 1.0001 - 2.5)
    host[0] += 10.0
    assert clock.to_host(clock.now()) == pytest.approx(1010.0)
    assert clock.host_seconds(1.0001) == pytest.approx(1.0)
    assert HostClock(lambda: host[0]).now() == 1010.0
    with pytest.raises(ValueError, match="1000 ppm"):
        SkewedClock(lambda: 0.0, 0.0, 5000.0)
    with pytest.raises(ValueError, match="method"):
        ClockEstimator(method="mean")  # type: ignore[arg-type]
