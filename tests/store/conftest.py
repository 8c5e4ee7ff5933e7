"""Fixtures: a fresh store on a temporary file with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loa.store import Store


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "data" / "loa.db", clock=clock)
    yield s
    await s.close()


async def province(store: Store) -> None:
    """p ⊃ c0 ⊃ v0, p ⊃ c1: a three-level tree."""
    await store.zones.add("p", "Tỉnh P")
    await store.zones.add("c0", "Xã 0", "p")
    await store.zones.add("c1", "Xã 1", "p")
    await store.zones.add("v0", "Thôn 0", "c0")
