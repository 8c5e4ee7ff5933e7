"""The synchronised playout bench (bench.sync): its skew arithmetic and one short real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sync

ROOT = Path(__file__).resolve().parent.parent


class Heard:
    def __init__(self, heard: dict[float, float]) -> None:
        self.heard = heard


def test_skew_is_the_spread_of_frames_every_pole_heard_since_the_start() -> None:
    poles = [
        Heard({1.0: 10.000, 1.02: 10.020, 1.04: 10.040, 1.06: 10.060}),
        Heard({1.0: 10.003, 1.02: 10.021, 1.04: 10.038}),  # missed 1.06
        Heard({1.0: 9.999, 1.02: 10.026, 1.04: 10.041, 1.06: 10.07}),
    ]
    got = sync.skews(poles, since=10.01)  # type: ignore[arg-type]
    # 1.0 was heard before 10.01 by one pole; each frame when it was first heard
    assert [w for w, _ in got] == pytest.approx([10.02, 10.038])
    assert [s for _, s in got] == pytest.approx([0.006, 0.003])


def test_options_are_the_defaults_with_what_is_given_and_checked() -> None:
    args = sync.options(speakers=3, seconds=2.0)
    assert (args.speakers, args.seconds, args.delay_ms, args.drift_ppm) == (3, 2.0, 50.0, 100.0)
    with pytest.raises(ValueError, match="no option 'colour'"):
        sync.options(colour="red")
    with pytest.raises(SystemExit):
        sync.options(speakers=1)


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_short_run_of_three_poles_on_wrong_clocks() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sync", "--speakers", "3", "--converge-s", "4",
         "--seconds", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] > 100  # 3 s of 20 ms frames, all three heard
    skew = result["sync_skew_ms"]
    # seconds apart on their own clocks; in step within what 4 s of probes can give
    assert 0 <= skew["p50"] <= skew["p95"] <= skew["max"] < 15
    assert abs(result["late_ms"]["p50"]) < 10
