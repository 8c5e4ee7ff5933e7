"""Fixtures: a fresh store with a fake clock, once on a SQLite file and once on a new
PostgreSQL database (every test that takes ``store`` runs on both dialects)."""

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
def where(store_where: Path | str) -> Path | str:
    return store_where


@pytest.fixture
async def store(where: Path | str, clock: FakeClock) -> AsyncIterator[Store]:
    s = await Store.open(where, clock=clock)
    yield s
    await s.close()


async def province(store: Store) -> None:
    """p ⊃ c0 ⊃ v0, p ⊃ c1: a three-level tree."""
    await store.zones.add("p", "Tỉnh P")
    await store.zones.add("c0", "Xã 0", "p")
    await store.zones.add("c1", "Xã 1", "p")
    await store.zones.add("v0", "Thôn 0", "c0")
