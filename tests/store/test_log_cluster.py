"""Rows that cluster nodes share (issue 12), on both dialects: the node that encodes a
broadcast writes its log row, the others add what their speakers heard (``add_heard``) and
a later write by the encoding node keeps their endpoints; on-air rows name their node."""

from __future__ import annotations

from loa.store import Store
from tests.store.conftest import FakeClock
from tests.store.test_history import entry


async def test_other_nodes_add_their_listeners(store: Store) -> None:
    assert not await store.log.add_heard("b1", {"e9": 1.0}, zones=["c1"])  # no row yet
    await store.log.put(entry(1, heard_s={"e1": 2.0}, state="playing"))
    assert await store.log.add_heard("b1", {"e9": 1.5, "e1": 0.5}, zones=["c1"])
    row = await store.log.get("b1")
    assert row is not None and dict(row.heard_s) == {"e1": 2.5, "e9": 1.5}
    assert row.endpoints_heard == 2
    # the encoding node's final write: its own endpoints win, the others' stay
    await store.log.put(entry(1, heard_s={"e1": 8.0, "e2": 0.0}, state="done", ended_at=1020.0))
    row = await store.log.get("b1")
    assert row is not None and dict(row.heard_s) == {"e1": 8.0, "e2": 0.0, "e9": 1.5}
    assert row.endpoints_heard == 2 and row.state == "done"
    # a commune operator of c1 (whose pole heard it) sees it
    assert [r.id for r in await store.log.query(zones=["c1"])] == ["b1"]


async def test_on_air_rows_name_their_node(store: Store, clock: FakeClock) -> None:
    """Each node marks only its own rows alive; a single node's rows have no node."""
    await store.onair.put("x1", {"k": 1}, 1000.0, "a")
    await store.onair.put("x2", {"k": 2}, 1001.0, "b")
    await store.onair.put("x3", {"k": 3}, 1002.0)
    clock.advance(10)
    await store.onair.alive("a")
    rows = {r.id: r for r in await store.onair.all()}
    assert {i: r.node for i, r in rows.items()} == {"x1": "a", "x2": "b", "x3": None}
    assert rows["x1"].alive_at == rows["x2"].alive_at + 10 == rows["x3"].alive_at + 10
    await store.onair.put("x2", {"k": 2}, 1001.0, "a")  # adopted by a: a's now
    rows = {r.id: r for r in await store.onair.all()}
    assert rows["x2"].node == "a" and rows["x2"].started_at == 1001.0
    clock.advance(5)
    await store.onair.alive()  # a single node: every row
    assert {r.alive_at for r in await store.onair.all()} == {clock()}
