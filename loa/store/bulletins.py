"""The bulletin inbox: one row per bulletin from the source system (API or CAP) and its state.

States: ``inbox`` (a normal bulletin waiting for an operator), ``scheduled`` (an operator
chose when it plays), ``on_air`` (its broadcast is running, or an emergency is between
repeats), and the final ``done``, ``cancelled``, ``expired`` and ``failed`` (a play broke
off on air, e.g. a text espeak-ng could not speak). A state change names the
states it may come from, so two racing changes cannot both win (the loser gets 409)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any

from loa.errors import BulletinRefused, Conflict, NotFound
from loa.store.db import Conn, Database, Row, one_of

STATES = ("inbox", "scheduled", "on_air", "done", "cancelled", "expired", "failed")
FINAL = frozenset({"done", "cancelled", "expired", "failed"})
LIVE = frozenset({"inbox", "scheduled", "on_air"})
_JSON = ("zones", "variants", "broadcasts")


@dataclass(frozen=True, slots=True)
class BulletinRow:
    id: str
    level: str
    zones: tuple[str, ...]
    title: str
    variants: tuple[dict[str, str], ...]
    issued_at: float
    expires_at: float | None
    repeat_every_s: float | None
    state: str
    source: str
    cap_sender: str | None
    cap_identifier: str | None
    broadcasts: tuple[str, ...]
    created_by: str
    created_at: float
    updated_at: float
    scheduled_at: float | None = None  # when it plays (scheduled, or held to CAP effective)

    @classmethod
    def from_row(cls, row: Row) -> BulletinRow:
        data = dict(row)
        for key in _JSON:
            data[key] = tuple(json.loads(data[key]))
        return cls(**data)

    def as_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in _JSON:
            out[key] = list(out[key])
        return out

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _get(conn: Conn, bulletin_id: str) -> BulletinRow:
    row = conn.execute("SELECT * FROM bulletins WHERE id = ?", (bulletin_id,)).fetchone()
    if row is None:
        raise NotFound(f"bulletin {bulletin_id} not found", bulletin=bulletin_id)
    return BulletinRow.from_row(row)


def _by_cap(conn: Conn, sender: str | None, identifier: str) -> Row | None:
    # "cap_sender IS ?" is SQLite's; spelled out, it runs on PostgreSQL too
    args: tuple[str, ...]
    if sender is None:
        sql, args = "cap_sender IS NULL AND cap_identifier = ?", (identifier,)
    else:
        sql, args = "cap_sender = ? AND cap_identifier = ?", (sender, identifier)
    return conn.execute(f"SELECT * FROM bulletins WHERE {sql}", args).fetchone()


def _insert(conn: Conn, row: BulletinRow) -> BulletinRow:
    if conn.execute("SELECT 1 FROM bulletins WHERE id = ?", (row.id,)).fetchone():
        raise Conflict(f"bulletin {row.id} already exists", bulletin=row.id)
    if row.cap_identifier is not None:
        dup = _by_cap(conn, row.cap_sender, row.cap_identifier)
        if dup is not None:
            raise Conflict(
                f"CAP alert {row.cap_identifier} from {row.cap_sender} was already received "
                f"as bulletin {dup[0]}",
                bulletin=dup[0],
            )
    values = row.as_json()
    for key in _JSON:
        values[key] = json.dumps(values[key], ensure_ascii=False)
    names = list(values)
    conn.execute(
        f"INSERT INTO bulletins ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [values[n] for n in names],
    )
    return row


def _transition(
    conn: Conn,
    bulletin_id: str,
    state: str,
    expect: Collection[str],
    now: float,
    at: float | None,
) -> BulletinRow:
    row = _get(conn, bulletin_id)
    if row.state not in expect:
        raise BulletinRefused(
            f"bulletin {bulletin_id} is {row.state}; it cannot become {state} "
            f"(only from {', '.join(sorted(expect))})",
            bulletin=bulletin_id,
            state=row.state,
            reason=row.state,
        )
    conn.execute(
        "UPDATE bulletins SET state = ?, updated_at = ?, scheduled_at = ? WHERE id = ?",
        (state, now, at if state == "scheduled" else row.scheduled_at, bulletin_id),
    )
    return _get(conn, bulletin_id)


def _add_broadcast(conn: Conn, bulletin_id: str, broadcast_id: str, now: float) -> BulletinRow:
    row = _get(conn, bulletin_id)
    ids = json.dumps([*row.broadcasts, broadcast_id])
    conn.execute(
        "UPDATE bulletins SET broadcasts = ?, updated_at = ? WHERE id = ?",
        (ids, now, bulletin_id),
    )
    return _get(conn, bulletin_id)


class Bulletins:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, row: BulletinRow) -> BulletinRow:
        """Insert a new bulletin; 409 if its id, or its CAP (sender, identifier), exists."""
        if row.state not in STATES:
            raise ValueError(f"unknown bulletin state {row.state!r}")
        return await self._db.write(_insert, row)

    async def get(self, bulletin_id: str) -> BulletinRow:
        return await self._db.run(_get, bulletin_id)

    async def by_cap(self, sender: str, identifier: str) -> BulletinRow | None:
        row = await self._db.run(_by_cap, sender, identifier)
        return None if row is None else BulletinRow.from_row(row)

    async def list(self, states: Collection[str] | None = None) -> list[BulletinRow]:
        """Newest issued first; ``states`` narrows to those states."""
        sql = "SELECT * FROM bulletins"
        args: list[Any] = []
        if states is not None:
            condition, args = one_of("state", states)
            sql += f" WHERE {condition}"
        sql += " ORDER BY issued_at DESC, id"
        rows = await self._db.run(lambda c: c.execute(sql, args).fetchall())
        return [BulletinRow.from_row(r) for r in rows]

    async def transition(
        self, bulletin_id: str, state: str, *, expect: Collection[str], at: float | None = None
    ) -> BulletinRow:
        """Move to ``state`` if the bulletin is in one of ``expect``, else 409 naming its state.
        Into ``scheduled``: ``at`` is when it plays (kept across restarts)."""
        if state not in STATES:
            raise ValueError(f"unknown bulletin state {state!r}")
        return await self._db.write(_transition, bulletin_id, state, expect, self._db.clock(), at)

    async def add_broadcast(self, bulletin_id: str, broadcast_id: str) -> BulletinRow:
        """Record one broadcast (a play or a repeat) of the bulletin."""
        return await self._db.write(_add_broadcast, bulletin_id, broadcast_id, self._db.clock())
