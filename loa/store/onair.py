"""What is on air (table ``onair``): one row per broadcast from its start to its end, holding
its record (``loa.onair.Record`` as JSON), so the server brings it back after a crash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loa.store.db import Conn, Database


@dataclass(frozen=True, slots=True)
class OnAirRow:
    id: str
    record: dict[str, Any]
    started_at: float
    alive_at: float  # the last time the server was known alive with it on air
    node: str | None = None  # cluster: the node encoding it (None: a single node)


def _put(
    conn: Conn, bc_id: str, record: str, started_at: float, now: float, node: str | None
) -> None:
    conn.execute(
        "INSERT INTO onair (id, record, started_at, alive_at, node) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET record = excluded.record, alive_at = excluded.alive_at,"
        " node = excluded.node",
        (bc_id, record, started_at, now, node),
    )


class OnAir:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self, bc_id: str, record: Mapping[str, Any], started_at: float, node: str | None = None
    ) -> None:
        """Record (or re-record, keeping its first start) a broadcast on air; ``node``: the
        cluster node encoding it (None on a single node)."""
        text = json.dumps(dict(record), ensure_ascii=False, sort_keys=True)
        await self._db.write(_put, bc_id, text, started_at, self._db.clock(), node)

    async def remove(self, bc_id: str) -> bool:
        """It ended: forget it. False if it was not recorded."""
        return await self._db.write(
            lambda c: c.execute("DELETE FROM onair WHERE id = ?", (bc_id,)).rowcount > 0
        )

    async def alive(self, node: str | None = None) -> None:
        """The server is alive with all of these on air (called every few seconds); in a
        cluster, ``node``'s rows only."""
        now = self._db.clock()
        if node is None:
            await self._db.write(lambda c: c.execute("UPDATE onair SET alive_at = ?", (now,)))
        else:
            await self._db.write(
                lambda c: c.execute("UPDATE onair SET alive_at = ? WHERE node = ?", (now, node))
            )

    async def all(self) -> list[OnAirRow]:
        rows = await self._db.run(
            lambda c: c.execute(
                "SELECT id, record, started_at, alive_at, node FROM onair ORDER BY started_at, id"
            ).fetchall()
        )
        return [OnAirRow(r[0], json.loads(r[1]), r[2], r[3], r[4]) for r in rows]
