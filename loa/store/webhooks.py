"""Webhook subscriptions and their outbox: every event bound for a receiver is a row here
before any attempt to deliver it, so a restart loses nothing (delivery is at least once; the
row id is the delivery id a receiver deduplicates on).

A row is pending (``delivered_at`` and ``dead_at`` NULL), delivered, or dead (given up after
the last attempt, ``last_error`` kept). Removing a hook removes its rows."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from loa.errors import BadRequest, NotFound
from loa.store.audit import check_page
from loa.store.db import Conn, Database, Row

EVENTS = ("broadcast.logged", "endpoint.online", "endpoint.offline")
TEST_EVENT = "webhook.test"  # sent by POST /webhooks/{id}/test only, to that hook only
STATES = ("pending", "delivered", "dead")
MAX_URL = 2000
MIN_SECRET = 16


@dataclass(frozen=True, slots=True)
class Hook:
    id: int
    url: str
    secret: str  # needed in plain to sign; as_json leaves it out
    events: tuple[str, ...]
    enabled: bool
    created_at: float

    @classmethod
    def from_row(cls, r: Row) -> Hook:
        return cls(
            r["id"], r["url"], r["secret"], tuple(json.loads(r["events"])), bool(r["enabled"]),
            r["created_at"],
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: an event for one hook."""

    id: int
    hook: int
    event: str
    payload: Any
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None
    dead_at: float | None

    @classmethod
    def from_row(cls, r: Row) -> Delivery:
        return cls(
            r["id"], r["hook"], r["event"], json.loads(r["payload"]), r["attempts"],
            r["next_attempt_at"], r["last_error"], r["created_at"], r["delivered_at"],
            r["dead_at"],
        )  # fmt: skip

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        return "pending" if self.dead_at is None else "dead"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hook": self.hook,
            "event": self.event,
            "payload": self.payload,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "dead_at": self.dead_at,
        }


def check_url(url: object) -> str:
    """An absolute http(s) URL with a host and no credentials in it."""
    if not isinstance(url, str) or not url:
        raise BadRequest(f"url must be a non-empty string, got {url!r}", field="url")
    if len(url) > MAX_URL:
        raise BadRequest(f"url is longer than {MAX_URL} characters", field="url")
    if any(ch.isspace() for ch in url) or not url.isprintable():
        raise BadRequest(f"url {url!r} contains whitespace or control characters", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"url must be http:// or https://, got {url!r}", field="url")
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise BadRequest(f"url {url!r} has an invalid port", field="url") from None
    if not parts.hostname:
        raise BadRequest(f"url {url!r} has no host", field="url")
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            "url may not carry credentials (user:password@); receivers check the signature",
            field="url",
        )
    return url


def check_events(events: object) -> tuple[str, ...]:
    if not isinstance(events, list) or not events:
        raise BadRequest(f"events must be a non-empty list out of {EVENTS}", field="events")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise BadRequest(f"unknown events {unknown!r}; choose from {EVENTS}", field="events")
    return tuple(sorted(set(events), key=EVENTS.index))


def check_secret(secret: object) -> str:
    if secret is None:
        return secrets.token_hex(32)
    if not isinstance(secret, str) or len(secret) < MIN_SECRET or len(secret) > 256:
        raise BadRequest(f"secret must be a string of {MIN_SECRET}..256 characters", field="secret")
    return secret


def enqueue(conn: Conn, event: str, payload: Mapping[str, Any], now: float) -> int:
    """One outbox row per enabled hook subscribed to ``event``, with the caller's connection;
    returns how many."""
    hooks = [
        r[0]
        for r in conn.execute("SELECT id, events FROM webhooks WHERE enabled <> 0 ORDER BY id")
        if event in json.loads(r[1])
    ]
    body = json.dumps(dict(payload), ensure_ascii=False)
    if hooks:
        conn.executemany(
            "INSERT INTO webhook_outbox (hook, event, payload, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(hook, event, body, now, now) for hook in hooks],
        )
    return len(hooks)


def _get_hook(conn: Conn, hook_id: int) -> Hook:
    r = conn.execute("SELECT * FROM webhooks WHERE id = ?", (hook_id,)).fetchone()
    if r is None:
        raise NotFound(f"webhook {hook_id} not found", webhook=hook_id)
    return Hook.from_row(r)


def _add_test(conn: Conn, hook_id: int, payload: str, now: float) -> Delivery:
    _get_hook(conn, hook_id)
    r = conn.execute(
        "INSERT INTO webhook_outbox (hook, event, payload, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING *",
        (hook_id, TEST_EVENT, payload, now, now),
    ).fetchone()
    return Delivery.from_row(r)


def _deliveries(
    conn: Conn, hook_id: int, state: str | None, limit: int, offset: int
) -> list[Delivery]:
    _get_hook(conn, hook_id)
    where = {
        None: "",
        "pending": " AND delivered_at IS NULL AND dead_at IS NULL",
        "delivered": " AND delivered_at IS NOT NULL",
        "dead": " AND dead_at IS NOT NULL",
    }[state]
    sql = f"SELECT * FROM webhook_outbox WHERE hook = ?{where} ORDER BY id DESC LIMIT ? OFFSET ?"
    return [Delivery.from_row(r) for r in conn.execute(sql, (hook_id, limit, offset))]


def _due(conn: Conn, now: float, limit: int) -> list[tuple[Delivery, Hook]]:
    rows = conn.execute(
        "SELECT o.*, w.url, w.secret, w.events AS hook_events, w.enabled,"
        " w.created_at AS hook_created_at FROM webhook_outbox o JOIN webhooks w ON w.id = o.hook"
        " WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND w.enabled <> 0"
        " AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [
        (
            Delivery.from_row(r),
            Hook(
                r["hook"], r["url"], r["secret"], tuple(json.loads(r["hook_events"])), True,
                r["hook_created_at"],
            ),
        )
        for r in rows
    ]  # fmt: skip


class Webhooks:
    """Webhook and outbox repository (the delivery itself is ``loa.webhooks``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, url: object, events: object, secret: object = None, *, enabled: bool = True
    ) -> Hook:
        """Validate and keep a subscription; a missing secret is made (64 hex digits)."""
        url, events, secret = check_url(url), check_events(events), check_secret(secret)
        now = self._db.clock()

        def insert(conn: Conn) -> Hook:
            row = conn.execute(
                "INSERT INTO webhooks (url, secret, events, enabled, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING *",
                (url, secret, json.dumps(list(events)), int(enabled), now),
            ).fetchone()
            return Hook.from_row(row)

        return await self._db.write(insert)

    async def get(self, hook_id: int) -> Hook:
        return await self._db.run(_get_hook, hook_id)

    async def remove(self, hook_id: int) -> Hook:
        """Remove the hook and its outbox rows (pending ones are not delivered)."""

        def delete(conn: Conn) -> Hook:
            hook = _get_hook(conn, hook_id)
            conn.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))
            return hook

        return await self._db.write(delete)

    async def enqueue(self, event: str, payload: Mapping[str, Any]) -> int:
        if event not in EVENTS:
            raise BadRequest(f"unknown event {event!r}; choose from {EVENTS}")
        return await self._db.write(enqueue, event, payload, self._db.clock())

    async def enqueue_test(self, hook_id: int, payload: Mapping[str, Any]) -> Delivery:
        body = json.dumps(dict(payload), ensure_ascii=False)
        return await self._db.write(_add_test, hook_id, body, self._db.clock())

    async def deliveries(
        self, hook_id: int, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """The hook's outbox rows, newest first (``state``: pending, delivered or dead)."""
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {STATES}, got {state!r}")
        check_page(limit, offset)
        return await self._db.run(_deliveries, hook_id, state, limit, offset)

    async def delivery(self, delivery_id: int) -> Delivery:
        r = await self._db.run(
            lambda c: c.execute(
                "SELECT * FROM webhook_outbox WHERE id = ?", (delivery_id,)
            ).fetchone()
        )
        if r is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return Delivery.from_row(r)

    async def due(self, now: float, limit: int = 500) -> list[tuple[Delivery, Hook]]:
        """Pending rows of enabled hooks whose time has come, oldest due first."""
        return await self._db.run(_due, now, limit)

    async def next_due(self) -> float | None:
        """When the earliest pending row (of an enabled hook) is due, if any."""
        value = await self._db.run(
            lambda c: c.execute(
                "SELECT min(o.next_attempt_at) FROM webhook_outbox o JOIN webhooks w"
                " ON w.id = o.hook WHERE o.delivered_at IS NULL AND o.dead_at IS NULL"
                " AND w.enabled <> 0"
            ).fetchone()[0]
        )
        return None if value is None else float(value)

    async def delivered(self, delivery_id: int, now: float) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, delivered_at = ?,"
                " last_error = NULL WHERE id = ?",
                (now, delivery_id),
            )
        )

    async def failed(
        self, delivery_id: int, error: str, now: float, retry_at: float | None
    ) -> None:
        """Count the attempt; retry at ``retry_at``, or dead-letter it when that is None."""
        # decided here, not with "? IS NULL" in SQL: PostgreSQL cannot type a NULL parameter
        if retry_at is None:
            sql, args = "dead_at = ?", (now,)
        else:
            sql, args = "next_attempt_at = ?, dead_at = NULL", (retry_at,)
        await self._db.run(
            lambda c: c.execute(
                f"UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?, {sql}"
                " WHERE id = ?",
                (error[:500], *args, delivery_id),
            )
        )

    async def prune(self, before: float) -> int:
        """Forget delivered and dead rows that ended before ``before`` (retention)."""
        return await self._db.run(
            lambda c: (
                c.execute(
                    "DELETE FROM webhook_outbox WHERE coalesce(delivered_at, dead_at) < ?",
                    (before,),
                ).rowcount
            )
        )

    async def list(self) -> list[Hook]:  # last: the name shadows the builtin in the class
        rows = await self._db.run(
            lambda c: c.execute("SELECT * FROM webhooks ORDER BY id").fetchall()
        )
        return [Hook.from_row(r) for r in rows]
