"""Reconnect delays: exponential with jitter, so that nodes (and speakers) coming back after
an outage do not all arrive in the same instant. The random source is injected."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter: U(0.5, 1) x min(max_s, min_s x 2^failures)."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s, self.max_s, self.rng = min_s, max_s, rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        delay = min(self.max_s, self.min_s * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return float(delay * self.rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0
