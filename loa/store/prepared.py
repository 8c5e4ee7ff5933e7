"""Prepared emergency messages: what the emergency dialog offers in one tap (typhoon, flood,
landslide, fire, evacuation …), each a text to speak or a recorded media item, for every zone
(``zone`` NULL) or for one zone. Admins edit them; migration ``V_PREPARED`` seeds five
national texts in Vietnamese, once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loa.errors import NotFound
from loa.store.db import Conn, Database, Row


@dataclass(frozen=True, slots=True)
class PreparedRow:
    id: str
    title: str
    zone: str | None
    text: str | None
    media: str | None
    position: int
    updated_by: str
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> PreparedRow:
        return cls(**dict(row))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _get(conn: Conn, prepared_id: str) -> PreparedRow:
    row = conn.execute("SELECT * FROM prepared_messages WHERE id = ?", (prepared_id,)).fetchone()
    if row is None:
        raise NotFound(f"prepared message {prepared_id} not found", prepared=prepared_id)
    return PreparedRow.from_row(row)


def _put(conn: Conn, row: PreparedRow) -> bool:
    created = conn.execute("SELECT 1 FROM prepared_messages WHERE id = ?", (row.id,)).fetchone()
    values = row.as_json()
    if created is None:
        names = list(values)
        conn.execute(
            f"INSERT INTO prepared_messages ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))})",
            [values[n] for n in names],
        )
        return True
    names = [n for n in values if n != "id"]
    conn.execute(
        f"UPDATE prepared_messages SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
        [*(values[n] for n in names), row.id],
    )
    return False


def _delete(conn: Conn, prepared_id: str) -> PreparedRow:
    row = _get(conn, prepared_id)
    conn.execute("DELETE FROM prepared_messages WHERE id = ?", (prepared_id,))
    return row


class Prepared:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self) -> list[PreparedRow]:
        """In the dialog's order: position, then title."""
        sql = "SELECT * FROM prepared_messages ORDER BY position, title, id"
        rows = await self._db.run(lambda c: c.execute(sql).fetchall())
        return [PreparedRow.from_row(r) for r in rows]

    async def get(self, prepared_id: str) -> PreparedRow:
        return await self._db.run(_get, prepared_id)

    async def put(self, row: PreparedRow) -> bool:
        """Create or replace; True when it was created."""
        return await self._db.write(_put, row)

    async def delete(self, prepared_id: str) -> PreparedRow:
        return await self._db.write(_delete, prepared_id)
