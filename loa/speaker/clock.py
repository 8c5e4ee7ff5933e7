"""The speaker's view of the server's clock: NTP-style probes in, offset and drift out.

Sans-IO. ``ClockEstimator`` is fed probes, each four timestamps (RFC 5905 §8): ``t1`` the
speaker sent it and ``t4`` the answer came, on the speaker's own clock; ``t2`` the server
received it and ``t3`` answered, on the server's (its wall clock, the one its RTCP sender
reports speak). Each probe gives an offset ``θ = ((t2 - t1) + (t3 - t4)) / 2`` (server minus
local) and a round-trip delay ``δ = (t4 - t1) - (t3 - t2)``. From the last ``WINDOW`` (256)
probes, not the issue's 64: the bounds get tighter with every probe and the drift with
every minute the window spans (64 probes left errors up to ±11 ms two minutes after a
connection in ``bench.sync``; 256, within ±2.5 ms):

- **drift and offset together.** Every probe proves two bounds, whatever the delays are, as
  long as none is negative: ``t3 - t4 <= θ(t4)`` and ``θ(t1) <= t2 - t1``, with
  ``θ(t) = θ0 + r·t``. The probes leave a region of (slope ``r``, offset ``θ0``) pairs; the
  estimate is its centre (each slope within ±``MAX_DRIFT`` weighted by the width of its
  offset interval): the linear-programming view of clock skew (Moon, Skelly and Towsley,
  1999), which no number of probes delayed by queues can fool (a late probe only loosens
  its own bound). The slope is used as the drift once the probes span ``DRIFT_SPAN_S``.
- **The issue's estimate**, the median of the lowest-delay quarter of the last 64 probes
  (detrended to the newest), is kept as ``quarter``, and is the answer when the bounds
  cross (a server whose clock stepped: counted in ``inconsistent``) or with
  ``method="quarter"`` (the bench compares the two). With random delays of 0–50 ms each
  way the quarter's median wanders by σ ≈ 2.3 ms over 64 probes at one instant, the
  centre of the bounds by σ ≈ 0.5 ms (docs/BENCHMARKS.md, "Synchronised playout"). Both
  assume the fastest paths each way are equally fast (NTP's assumption): a fixed
  asymmetry is an error no probe can see.

``HostClock`` and ``SkewedClock`` are the clocks a speaker can run on: the host's monotonic
clock, or one that runs off it by an offset and a drift (a pole whose crystal is wrong, for
the bench and the tests: the speaker code is the same)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np

WINDOW: Final = 256  # probes kept for the bounds (the quarter median takes the last 64)
QUARTER_OF: Final = 64
DRIFT_SPAN_S: Final = 10.0  # the probes must span this long before a drift is estimated
MAX_DRIFT: Final = 200e-6  # crystals are sold within ±100 ppm: beyond ±200 one is broken
_GRID: Final = 201  # slopes tried across the feasible range, twice (coarse, then fine)

Method = Literal["floors", "quarter"]


class Clock(Protocol):
    """A speaker's local clock: ``now`` in seconds (monotonic, any origin), how long a local
    duration lasts on the host's clock (what ``asyncio.sleep`` counts) and which host time a
    local time is (where a simulated pole really played)."""

    def now(self) -> float: ...

    def host_seconds(self, local_s: float) -> float: ...

    def to_host(self, local: float) -> float: ...


class HostClock:
    """The host's own clock (``host``, e.g. the event loop's ``time``)."""

    def __init__(self, host: Callable[[], float]) -> None:
        self._host = host

    def now(self) -> float:
        return self._host()

    def host_seconds(self, local_s: float) -> float:
        return local_s

    def to_host(self, local: float) -> float:
        return local


class SkewedClock:
    """A clock ``offset_s`` off the host's and running ``drift_ppm`` fast (negative: slow):
    ``local = host × (1 + drift) + offset``. ``to_host`` maps a local time back (the bench
    and the tests measure where a skewed pole really played)."""

    def __init__(self, host: Callable[[], float], offset_s: float, drift_ppm: float) -> None:
        if not -1000 <= drift_ppm <= 1000:
            raise ValueError(f"drift must be within ±1000 ppm, got {drift_ppm}")
        self._host = host
        self.offset_s = offset_s
        self.rate = 1.0 + drift_ppm * 1e-6

    def now(self) -> float:
        return self._host() * self.rate + self.offset_s

    def host_seconds(self, local_s: float) -> float:
        return local_s / self.rate

    def to_host(self, local: float) -> float:
        return (local - self.offset_s) / self.rate


@dataclass(frozen=True, slots=True)
class Probe:
    """One exchange: ``t1``/``t4`` local, ``t2``/``t3`` server (seconds)."""

    t1: float
    t2: float
    t3: float
    t4: float

    @property
    def offset(self) -> float:
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2

    @property
    def delay(self) -> float:
        return (self.t4 - self.t1) - (self.t3 - self.t2)


@dataclass(frozen=True, slots=True)
class Estimate:
    """Server time = ``local + offset + drift × (local - at)``."""

    offset: float  # seconds, server minus local, at local time ``at``
    drift: float  # dθ/dt (1e-6 = 1 ppm: the server's clock gains a µs per local second)
    at: float
    delay: float  # the lowest round trip in the window (seconds)
    quarter: float  # the quarter-median estimate at ``at`` (what the issue asked for)
    probes: int

    def to_server(self, local: float) -> float:
        return local + self.offset + self.drift * (local - self.at)

    def to_local(self, server: float) -> float:
        return self.at + (server - self.offset - self.at) / (1.0 + self.drift)


class ClockEstimator:
    """Driven by the speaker's probe loop: ``add`` per answered probe; ``estimate`` is the
    current view (None before the first probe). Bad probes are counted, never raised."""

    def __init__(self, *, window: int = WINDOW, method: Method = "floors") -> None:
        if window < 4:
            raise ValueError(f"window must hold at least 4 probes, got {window}")
        if method not in ("floors", "quarter"):
            raise ValueError(f"method must be 'floors' or 'quarter', got {method!r}")
        self.method: Method = method
        self._probes: deque[Probe] = deque(maxlen=window)
        self.rejected = 0  # probes whose times cannot be (answer before question, ...)
        self.inconsistent = 0  # estimates whose bounds crossed: the quarter's median used
        self.estimate: Estimate | None = None
        self._drift = 0.0

    def reset(self) -> None:
        """Forget the probes (a new server: its clock is another one)."""
        self._probes.clear()
        self.estimate = None
        self._drift = 0.0

    def __len__(self) -> int:
        return len(self._probes)

    def add(self, probe: Probe) -> Estimate | None:
        """One answered probe; returns the new estimate (None if the probe was rejected
        and there is none yet)."""
        values = (probe.t1, probe.t2, probe.t3, probe.t4)
        if not all(map(math.isfinite, values)) or probe.t4 < probe.t1 or probe.t3 < probe.t2:
            self.rejected += 1
            return self.estimate
        if probe.delay < 0:  # the server took longer than the whole round trip
            self.rejected += 1
            return self.estimate
        self._probes.append(probe)
        self.estimate = self._estimate()
        return self.estimate

    def _estimate(self) -> Estimate:
        p = self._probes
        t1 = np.fromiter((x.t1 for x in p), float, len(p))
        t4 = np.fromiter((x.t4 for x in p), float, len(p))
        up = np.fromiter((x.t2 - x.t1 for x in p), float, len(p))  # θ + u
        down = np.fromiter((x.t3 - x.t4 for x in p), float, len(p))  # θ - d
        delay = np.fromiter((x.delay for x in p), float, len(p))
        at = float(t4.max())
        mid = (t1 + t4) / 2 - at
        centre = _centroid(t1 - at, up, t4 - at, down)
        if centre is None:
            self.inconsistent += 1
        elif float(t4.max() - t1.min()) >= DRIFT_SPAN_S:
            self._drift = centre[0]
        r = self._drift
        offsets = ((up + down) / 2 - r * mid)[-QUARTER_OF:]
        recent = delay[-QUARTER_OF:]
        quarter = max(1, len(recent) // 4)
        lowest = np.argpartition(recent, quarter - 1)[:quarter]
        median = float(np.median(offsets[lowest]))
        offset = median
        if self.method == "floors" and centre is not None:
            offset = centre[1]
        return Estimate(offset, r, at, float(delay.min()), median, len(p))


def _centroid(
    t_up: np.ndarray, up: np.ndarray, t_down: np.ndarray, down: np.ndarray
) -> tuple[float, float] | None:
    """The centre of the (slope, offset) region every probe allows: slopes within
    ±MAX_DRIFT for which ``max(down - r·t_down) <= min(up - r·t_up)``, each weighted by the
    width of its offset interval. None when no slope fits every probe."""
    lo, hi = -MAX_DRIFT, MAX_DRIFT
    for _ in range(2):  # the whole range, then the part of it that fits, finer
        r = np.linspace(lo, hi, _GRID)
        high = np.min(up[None, :] - r[:, None] * t_up[None, :], axis=1)
        low = np.max(down[None, :] - r[:, None] * t_down[None, :], axis=1)
        width = high - low
        feasible = np.flatnonzero(width >= 0)
        if feasible.size == 0:
            return None
        step = (hi - lo) / (_GRID - 1)
        lo = max(-MAX_DRIFT, float(r[feasible[0]]) - step)
        hi = min(MAX_DRIFT, float(r[feasible[-1]]) + step)
    w = np.clip(width, 0.0, None)
    total = float(w.sum())
    if total <= 0:
        i = int(feasible[0])
        return float(r[i]), float((high[i] + low[i]) / 2)
    return float((r * w).sum() / total), float(((high + low) / 2 * w).sum() / total)
