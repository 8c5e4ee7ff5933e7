"""The broadcast log across cluster nodes (issue 12), on both dialects: the node that encodes
a broadcast writes its row; the others add what their speakers heard (``add_heard``), and a
later write by the encoding node keeps their endpoints."""

from __future__ import annotations

from loa.store import Store
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
