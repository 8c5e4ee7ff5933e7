"""Presence intervals per node (cluster mode), on SQLite and PostgreSQL: a node's start,
stop and checkpoints touch its own intervals only; a speaker that moves to another node
keeps one continuous interval and the old node's late "offline" does not end it; the
leader closes a gone node's intervals at their last checkpoint; a single node ('') is
as before."""

from __future__ import annotations

from loa.store import Store
from loa.store.presence import Interval


async def test_each_node_starts_stops_and_checkpoints_its_own_intervals(store: Store) -> None:
    p = store.presence
    assert await p.record("a1", True, 100.0, "a")
    assert await p.record("b1", True, 100.0, "b")
    assert await p.checkpoint(150.0, "a") == 1  # b's interval not renewed by a
    assert await p.close_all(200.0, "a") == 1  # a stops: b's speaker is still served
    assert await p.online() == frozenset({"b1"})
    assert await p.close_orphans("b") == 1  # b restarted after a crash: at its seen_at
    assert await p.intervals(0, 1000) == [
        Interval("a1", 100.0, 200.0),
        Interval("b1", 100.0, 100.0),
    ]


async def test_a_speaker_moving_to_another_node_keeps_one_interval(store: Store) -> None:
    p = store.presence
    assert await p.record("e", True, 100.0, "a")
    assert not await p.record("e", True, 105.0, "b")  # reconnected on b first: no change
    assert not await p.record("e", False, 106.0, "a")  # a's late offline: not a's any more
    assert await p.online() == frozenset({"e"})
    assert await p.close_all(110.0, "a") == 0
    assert await p.record("e", False, 120.0, "b")
    assert await p.intervals(0, 1000) == [Interval("e", 100.0, 120.0)]


async def test_the_leader_closes_gone_nodes_intervals_at_their_last_checkpoint(
    store: Store,
) -> None:
    p = store.presence
    await p.record("a1", True, 100.0, "a")
    await p.record("b1", True, 100.0, "b")
    await p.record("c1", True, 100.0, "c")
    await p.record("s1", True, 100.0)  # a single node's, from before cluster mode
    await p.checkpoint(160.0, "b")
    await p.checkpoint(170.0, "c")
    assert await p.close_gone(["a", "c"]) == 1  # b is gone
    assert await p.online() == frozenset({"a1", "c1", "s1"})
    assert await p.close_gone([]) == 2  # every node gone; the single node's stays
    rows = {i.endpoint: i for i in await p.intervals(0, 1000)}
    assert (rows["b1"].offline_at, rows["c1"].offline_at, rows["a1"].offline_at) == (
        160.0, 170.0, 100.0,
    )  # fmt: skip
    assert rows["s1"].offline_at is None


async def test_a_single_node_is_unchanged(store: Store) -> None:
    p = store.presence
    assert await p.record("e", True, 100.0)
    assert not await p.record("e", True, 101.0)  # its own ghost replaced: no change
    assert await p.checkpoint(130.0) == 1
    assert await p.close_orphans() == 1
    assert await p.intervals(0, 1000) == [Interval("e", 100.0, 130.0)]
