"""The media library's metadata: one row per checked upload (the audio stays a file on disk)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from loa.errors import BadRequest, Conflict, NotFound
from loa.store.db import Conn, Database


@dataclass(frozen=True, slots=True)
class MediaRow:
    id: str
    name: str
    file: str
    size: int
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    created_by: str
    created_at: float
    zone: str | None = None  # the owner zone; None: the top level (admins')

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_NUMBERS = {"size": int, "duration_s": float, "rms_dbfs": float, "peak_dbfs": float}


def _get(conn: Conn, media_id: str) -> MediaRow:
    row = conn.execute("SELECT * FROM media WHERE id = ?", (media_id,)).fetchone()
    if row is None:
        raise NotFound(f"media {media_id!r} not found", media=media_id)
    return MediaRow(**dict(row))


def _insert(conn: Conn, row: MediaRow) -> MediaRow:
    if conn.execute("SELECT 1 FROM media WHERE id = ?", (row.id,)).fetchone():
        raise Conflict(f"media {row.id!r} already exists", media=row.id)
    names = [f.name for f in fields(row)]
    conn.execute(
        f"INSERT INTO media ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [getattr(row, n) for n in names],
    )
    return row


def _remove(conn: Conn, media_id: str) -> MediaRow:
    row = _get(conn, media_id)
    conn.execute("DELETE FROM media WHERE id = ?", (media_id,))
    return row


class Media:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, info: Mapping[str, Any], created_by: str, zone: str | None = None
    ) -> MediaRow:
        """Record an upload from its metadata (``loa.media.store_upload``'s dict:
        id, name, file, size, duration_s, rms_dbfs, peak_dbfs), owned by ``zone``."""
        missing = sorted({"id", "name", "file", *_NUMBERS} - set(info))
        if missing:
            raise BadRequest(f"media metadata lacks {', '.join(missing)}")
        try:
            numbers = {k: cast(info[k]) for k, cast in _NUMBERS.items()}
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"media {info['id']}: bad number in metadata ({exc})") from None
        row = MediaRow(
            id=str(info["id"]),
            name=str(info["name"]),
            file=str(info["file"]),
            created_by=created_by,
            created_at=self._db.clock(),
            zone=zone,
            **numbers,
        )
        return await self._db.write(_insert, row)

    async def get(self, media_id: str) -> MediaRow:
        return await self._db.run(_get, media_id)

    async def list(self) -> list[MediaRow]:
        rows = await self._db.run(
            lambda c: c.execute("SELECT * FROM media ORDER BY created_at, id").fetchall()
        )
        return [MediaRow(**dict(r)) for r in rows]

    async def remove(self, media_id: str) -> MediaRow:
        """Forget the entry; returns it so the caller can delete its file."""
        return await self._db.write(_remove, media_id)
