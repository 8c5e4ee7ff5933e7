"""Emergency repeats: one row per repeating emergency broadcast, kept so it survives restarts.

A row holds what each play is (``plan``: the broadcast's class, origin, targets, source
description, chime …, as the API accepted it), how often (``every_s``, start to start), until
when (``until_at``, Unix time; NULL: until cancelled), the plays so far (broadcast ids), the next
play's time and the state: ``active``, then ``cancelled`` or ``done`` (``reason`` says why).
A state change names the states it may come from, so two racing changes cannot both win."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any

from loa.errors import Conflict, NotFound
from loa.store.db import Conn, Database, Row, one_of

STATES = ("active", "cancelled", "done")
_JSON = ("plan", "plays")


@dataclass(frozen=True, slots=True)
class RepeatRow:
    id: str
    plan: dict[str, Any]
    every_s: float
    until_at: float | None
    state: str
    reason: str | None
    plays: tuple[str, ...]
    next_at: float | None
    issued_at: float
    created_by: str
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> RepeatRow:
        data = dict(row)
        data["plan"] = json.loads(data["plan"])
        data["plays"] = tuple(json.loads(data["plays"]))
        return cls(**data)

    def as_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["plays"] = list(self.plays)
        return out

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(self.plan["target_zones"])

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self.plan["target_endpoints"])


def _get(conn: Conn, repeat_id: str) -> RepeatRow:
    row = conn.execute("SELECT * FROM repeats WHERE id = ?", (repeat_id,)).fetchone()
    if row is None:
        raise NotFound(f"repeat {repeat_id} not found", repeat=repeat_id)
    return RepeatRow.from_row(row)


def _insert(conn: Conn, row: RepeatRow) -> RepeatRow:
    if conn.execute("SELECT 1 FROM repeats WHERE id = ?", (row.id,)).fetchone():
        raise Conflict(f"repeat {row.id} already exists", repeat=row.id)
    values = row.as_json()
    for key in _JSON:
        values[key] = json.dumps(values[key], ensure_ascii=False)
    names = list(values)
    conn.execute(
        f"INSERT INTO repeats ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [values[n] for n in names],
    )
    return row


def _finish(
    conn: Conn, repeat_id: str, state: str, reason: str, expect: Collection[str], now: float
) -> RepeatRow:
    row = _get(conn, repeat_id)
    if row.state not in expect:
        raise Conflict(
            f"repeat {repeat_id} is {row.state}; it cannot become {state}",
            repeat=repeat_id,
            state=row.state,
        )
    conn.execute(
        "UPDATE repeats SET state = ?, reason = ?, next_at = NULL, updated_at = ? WHERE id = ?",
        (state, reason, now, repeat_id),
    )
    return _get(conn, repeat_id)


def _played(
    conn: Conn, repeat_id: str, broadcast_id: str | None, next_at: float | None, now: float
) -> RepeatRow:
    row = _get(conn, repeat_id)
    if row.state != "active":
        raise Conflict(f"repeat {repeat_id} is {row.state}", repeat=repeat_id, state=row.state)
    plays = [*row.plays, broadcast_id] if broadcast_id is not None else list(row.plays)
    conn.execute(
        "UPDATE repeats SET plays = ?, next_at = ?, updated_at = ? WHERE id = ?",
        (json.dumps(plays), next_at, now, repeat_id),
    )
    return _get(conn, repeat_id)


class Repeats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, row: RepeatRow) -> RepeatRow:
        if row.state not in STATES:
            raise ValueError(f"unknown repeat state {row.state!r}")
        return await self._db.write(_insert, row)

    async def get(self, repeat_id: str) -> RepeatRow:
        return await self._db.run(_get, repeat_id)

    async def list(self, states: Collection[str] | None = None) -> list[RepeatRow]:
        """Newest first; ``states`` narrows to those states."""
        sql = "SELECT * FROM repeats"
        args: list[Any] = []
        if states is not None:
            condition, args = one_of("state", states)
            sql += f" WHERE {condition}"
        sql += " ORDER BY created_at DESC, id"
        rows = await self._db.run(lambda c: c.execute(sql, args).fetchall())
        return [RepeatRow.from_row(r) for r in rows]

    async def played(
        self, repeat_id: str, broadcast_id: str | None, next_at: float | None
    ) -> RepeatRow:
        """Record a play (``broadcast_id``, if one started) and when the next one is due;
        409 unless the repeat is still active."""
        return await self._db.write(_played, repeat_id, broadcast_id, next_at, self._db.clock())

    async def finish(
        self, repeat_id: str, state: str, reason: str, *, expect: Collection[str] = ("active",)
    ) -> RepeatRow:
        """End the repeat (``cancelled`` or ``done``) saying why; 409 if it already ended."""
        if state not in STATES[1:]:
            raise ValueError(f"a repeat ends as cancelled or done, not {state!r}")
        return await self._db.write(_finish, repeat_id, state, reason, expect, self._db.clock())
