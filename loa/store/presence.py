"""Endpoint presence: the intervals during which each speaker was connected, for availability
reports.

An interval opens when the node reports a speaker online and closes when it reports it gone;
``offline_at`` stays NULL while it is open. A second "online" for an endpoint that is already
online (a speaker replacing its own ghost connection) changes nothing, so an interval is one
continuous stretch of service. ``seen_at`` is renewed by ``checkpoint`` (every minute by the
webhooks service): an interval a crash left open is closed at its ``seen_at`` on the next
start, so downtime of the relay never counts as availability, give or take one minute.

Each interval names the node serving it (``node``; '' on a single node). A node's start,
stop and checkpoints touch its own intervals only; a speaker that comes online on another
node while its interval is open here moves the interval there (one continuous stretch of
service, no second "online"), and this node's late "offline" no longer closes it. The
cluster's leader closes the intervals of nodes that are gone at their last checkpoint
(``close_gone``)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest
from loa.store.db import Conn, Database, one_of


@dataclass(frozen=True, slots=True)
class Interval:
    endpoint: str
    online_at: float
    offline_at: float | None  # None: still online

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "online_at": self.online_at,
            "offline_at": self.offline_at,
        }


def record(conn: Conn, endpoint: str, online: bool, at: float, node: str = "") -> bool:
    """Open or close the endpoint's interval on ``node`` with the caller's connection (so it
    commits with what else the caller writes); True if the endpoint's state changed."""
    if online:
        moved = conn.execute(
            "UPDATE presence SET node = ?, seen_at = greatest(?, seen_at)"
            " WHERE endpoint = ? AND offline_at IS NULL AND node <> ?",
            (node, at, endpoint, node),
        )
        if moved.rowcount > 0:  # online on another node until now: served throughout
            return False
        cur = conn.execute(
            "INSERT INTO presence (endpoint, online_at, seen_at, node) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (endpoint) WHERE offline_at IS NULL DO NOTHING",
            (endpoint, at, at, node),
        )
    else:
        # a clock step backwards must not make an interval end before it began
        cur = conn.execute(
            "UPDATE presence SET offline_at = greatest(?, online_at),"
            " seen_at = greatest(?, online_at)"
            " WHERE endpoint = ? AND offline_at IS NULL AND node = ?",
            (at, at, endpoint, node),
        )
    return cur.rowcount > 0


def _intervals(
    conn: Conn, since: float, until: float, endpoints: Collection[str] | None
) -> list[Interval]:
    sql = (
        "SELECT endpoint, online_at, offline_at FROM presence"
        " WHERE online_at < ? AND (offline_at IS NULL OR offline_at > ?)"
    )
    args: list[Any] = [until, since]
    if endpoints is not None:
        condition, values = one_of("endpoint", endpoints)
        sql += f" AND {condition}"
        args += values
    sql += " ORDER BY endpoint, online_at"
    return [Interval(r[0], r[1], r[2]) for r in conn.execute(sql, args)]


class Presence:
    """Presence repository; written by the webhooks service's writer task, read by reports."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, endpoint: str, online: bool, at: float, node: str = "") -> bool:
        """One transition (see ``record``); True if it changed the endpoint's state."""
        return await self._db.write(record, endpoint, online, at, node)

    async def intervals(
        self, since: float, until: float, endpoints: Collection[str] | None = None
    ) -> list[Interval]:
        """Every interval overlapping ``[since, until)``, unclipped, by endpoint then time."""
        if since >= until:
            raise BadRequest(f"since ({since}) must be before until ({until})")
        if isinstance(endpoints, str):
            raise BadRequest("endpoints must be a set of endpoint ids, not one string")
        return await self._db.run(_intervals, since, until, endpoints)

    async def online(self) -> frozenset[str]:
        """The endpoints with an open interval."""
        rows = await self._db.run(
            lambda c: c.execute("SELECT endpoint FROM presence WHERE offline_at IS NULL").fetchall()
        )
        return frozenset(r[0] for r in rows)

    async def checkpoint(self, now: float, node: str = "") -> int:
        """Renew ``seen_at`` of ``node``'s open intervals: it is alive at ``now``."""
        return await self._db.write(_update, "seen_at = greatest(?, online_at)", (now,), node)

    async def close_orphans(self, node: str = "") -> int:
        """At start: close the intervals ``node``'s previous run left open, at its last
        checkpoint."""
        return await self._db.write(_update, "offline_at = seen_at", (), node)

    async def close_all(self, now: float, node: str = "") -> int:
        """At ``node``'s shutdown: nobody is served there once it stops."""
        return await self._db.write(
            _update,
            "offline_at = greatest(?, online_at), seen_at = greatest(?, online_at)",
            (now, now),
            node,
        )

    async def close_gone(self, live: Iterable[str]) -> int:
        """The cluster's leader: close the intervals of nodes not in ``live`` (gone) at
        their last checkpoint; a single node's ('') are left to it."""
        return await self._db.write(_close_gone, tuple(live))


def _update(conn: Conn, assignments: str, args: tuple[float, ...], node: str) -> int:
    """Apply ``assignments`` to ``node``'s open intervals; how many there were. A
    transaction (``Database.write``): on PostgreSQL nodes sharing the table would otherwise
    deadlock on these multi-row updates without the retry ``write`` gives."""
    sql = f"UPDATE presence SET {assignments} WHERE offline_at IS NULL AND node = ?"
    return conn.execute(sql, (*args, node)).rowcount


def _close_gone(conn: Conn, live: tuple[str, ...]) -> int:
    sql = "UPDATE presence SET offline_at = seen_at WHERE offline_at IS NULL AND node <> ''"
    args: list[Any] = []
    if live:
        condition, args = one_of("node", live)
        sql += f" AND NOT ({condition})"
    return conn.execute(sql, args).rowcount
