"""The audit trail: who did what to what, when and from where. Rows are only ever added."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest
from loa.store.db import Conn, Database

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    ts: float
    user: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
    ip: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "user": self.user,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "ip": self.ip,
        }


def insert(
    conn: Conn,
    ts: float,
    user: str | None,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Add a row with the caller's connection, so it commits with the change it records."""
    conn.execute(
        'INSERT INTO audit (ts, "user", action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)',
        (ts, user, action, target, json.dumps(dict(detail or {}), ensure_ascii=False), ip),
    )


def check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be 1..{MAX_PAGE}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BadRequest(f"offset must be an integer >= 0, got {offset!r}")


def _query(conn: Conn, sql: str, args: list[Any]) -> list[AuditRow]:
    return [
        AuditRow(
            id=r["id"],
            ts=r["ts"],
            user=r["user"],
            action=r["action"],
            target=r["target"],
            detail=json.loads(r["detail"]),
            ip=r["ip"],
        )
        for r in conn.execute(sql, args)
    ]


class Audit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        user: str | None,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
        ip: str | None = None,
    ) -> None:
        await self._db.run(insert, self._db.clock(), user, action, target, detail, ip)

    async def query(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRow]:
        """Newest first. ``action`` matches exactly or as a prefix ending in '.' ('user.')."""
        check_page(limit, offset)
        where: list[str] = []
        args: list[Any] = []
        if user is not None:
            where.append('"user" = ?')
            args.append(user)
        if action is not None and action.endswith("."):
            where.append("substr(action, 1, ?) = ?")
            args += [len(action), action]
        elif action is not None:
            where.append("action = ?")
            args.append(action)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?"
        return await self._db.run(_query, sql, [*args, limit, offset])
