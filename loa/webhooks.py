"""Webhooks: events the source system wants pushed (``broadcast.logged``, ``endpoint.online``,
``endpoint.offline``) go through the store's outbox and are POSTed, signed, to each
subscribed URL, with retries, then dead-lettered. This service also records the presence
intervals availability reports are made of: both hang off the node's presence hook, and a
presence change commits together with the events it causes.

On the wire: ``POST <url>``, ``Content-Type: application/json``, body
``{"id": <delivery id>, "event": "<name>", "created_at": <Unix s>, "data": {…}}`` and headers

- ``X-Loa-Event``: the event name; ``X-Loa-Delivery``: the delivery id (deduplicate on it:
  delivery is at least once, and not ordered across retries);
- ``X-Loa-Timestamp``: Unix seconds when this attempt was sent;
- ``X-Loa-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the hook's secret, of
  ``timestamp + "." + body``. Check it with ``verify_signature`` (or its five lines).

Any 2xx answer means delivered. Anything else (another status — redirects are not followed —,
a timeout, a refused connection) is retried after 1 s, 2 s, 4 s … (capped), up to
``max_attempts`` in all, then the row is dead (``dead_at`` set, ``last_error`` kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from loa import __version__
from loa.errors import LoaError
from loa.store import Store
from loa.store.db import Clock
from loa.store.presence import record as record_presence
from loa.store.webhooks import Delivery, Hook, enqueue

log = logging.getLogger(__name__)
BATCH = 500


class BadSignature(LoaError, ValueError):
    """A webhook request whose signature or timestamp does not check out."""

    code = "bad_signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Loa-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int | float,
    body: bytes,
    header: str | None,
    now: float,
    tolerance_s: float = 300.0,
) -> None:
    """For receivers: raise ``BadSignature`` (a ``ValueError``) unless ``header`` (the
    ``X-Loa-Signature`` value) signs the raw ``body`` with ``timestamp`` (``X-Loa-Timestamp``)
    and the timestamp is within ``tolerance_s`` of ``now`` (so a captured request cannot be
    replayed later). Check the raw bytes before parsing the JSON::

        verify_signature(SECRET, request.headers.get("X-Loa-Timestamp", ""), await
                         request.read(), request.headers.get("X-Loa-Signature"), time.time())
    """
    ts = str(timestamp)
    if not ts.isdigit():
        raise BadSignature(f"X-Loa-Timestamp must be Unix seconds, got {ts!r}")
    age = now - int(ts)
    if abs(age) > tolerance_s:
        raise BadSignature(
            f"X-Loa-Timestamp is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}; "
            f"the tolerance is {tolerance_s:.0f} s"
        )
    if not header or not header.startswith("sha256="):
        raise BadSignature("X-Loa-Signature must be 'sha256=<hex>'")
    if not hmac.compare_digest(header.encode(), sign(secret, ts, body).encode()):
        raise BadSignature("X-Loa-Signature does not match the body and timestamp")


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): base, 2 base, 4 base …"""
    return min(base_s * 2.0 ** (attempt - 1), max_s)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 600.0
    timeout_s: float = 10.0
    concurrency: int = 4  # attempts in flight, at most one per hook

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.backoff_s <= self.backoff_max_s:
            raise ValueError(
                f"need 0 < backoff_s <= backoff_max_s, got {self.backoff_s}, {self.backoff_max_s}"
            )
        if self.timeout_s <= 0 or self.concurrency < 1:
            raise ValueError(
                f"timeout_s must be > 0 and concurrency >= 1, got {self.timeout_s}, "
                f"{self.concurrency}"
            )


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    endpoint: str
    online: bool
    at: float


@dataclass(frozen=True, slots=True)
class Logged:
    entry: Mapping[str, Any]


Event = PresenceChanged | Logged


def _write(conn: sqlite3.Connection, events: list[Event], now: float, node: str) -> int:
    """Record a batch in one transaction (presence as served by ``node``); returns how many
    outbox rows it made."""
    queued = 0
    for event in events:
        match event:
            case PresenceChanged(endpoint, online, at):
                if record_presence(conn, endpoint, online, at, node):
                    zone = conn.execute(
                        "SELECT zone FROM endpoints WHERE id = ?", (endpoint,)
                    ).fetchone()
                    name = "endpoint.online" if online else "endpoint.offline"
                    payload = {
                        "endpoint": endpoint,
                        "zone": zone[0] if zone else None,
                        "online": online,
                        "at": at,
                    }
                    queued += enqueue(conn, name, payload, now)
            case Logged(entry):
                queued += enqueue(conn, "broadcast.logged", entry, now)
    return queued


class Webhooks:
    """Owned by a cleanup context: ``start()``, then the node's sync hooks (``presence``,
    ``logged``) and ``wake()`` from the API, then ``close()``. The hooks only put an event on
    a queue: nothing here can block or fail the relay."""

    def __init__(
        self,
        store: Store,
        policy: DeliveryPolicy | None = None,
        *,
        clock: Clock = time.time,
        checkpoint_s: float = 60.0,
        retention_s: float = 30 * 86400.0,
        max_queue: int = 100_000,
        node_id: str = "",
    ) -> None:
        self.store = store
        self.node_id = node_id  # cluster: presence intervals are this node's ('' alone)
        self.policy = policy or DeliveryPolicy()
        self.clock = clock
        self.checkpoint_s = checkpoint_s
        self.retention_s = retention_s
        self.max_queue = max_queue
        self.dropped = 0  # events refused because the queue was full
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._busy: set[int] = set()  # hooks with an attempt in flight
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- the node's side (sync, never blocks) ------------------------------------------------
    def presence(self, endpoint_id: str, online: bool, at: float) -> None:
        """``Node.on_presence``: a speaker connected or went away."""
        self._put(PresenceChanged(endpoint_id, online, at))

    def logged(self, entry: Mapping[str, Any]) -> None:
        """A broadcast log entry was written (``LogEntry.as_json()``)."""
        self._put(Logged(entry))

    def wake(self) -> None:
        """Something was added to the outbox directly (a test delivery): look now."""
        self._wake.set()

    def _put(self, event: Event) -> None:
        if self._inbox.qsize() >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1:
                log.error("webhook event queue full (%d): dropping events", self.max_queue)
            return
        self._inbox.put_nowait(event)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        closed = await self.store.presence.close_orphans(self.node_id)
        if closed:
            log.info("closed %d presence intervals left open by the previous run", closed)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.policy.concurrency),
            headers={"User-Agent": f"loa/{__version__}"},
        )
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="loa-webhooks-writer"),
            asyncio.create_task(self._dispatch_forever(), name="loa-webhooks-dispatch"),
        ]
        self._wake.set()  # rows a previous run left pending

    async def close(self) -> None:
        """Write what is queued, stop delivering (an attempt in flight is retried by the next
        run), close the open presence intervals."""
        if self._tasks and not self._tasks[0].done():
            await self._inbox.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.store.presence.close_all(self.clock(), self.node_id)

    # -- writer: events → presence rows and outbox rows -------------------------------------
    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.checkpoint_s
        while True:
            try:  # asyncio.timeout, not wait_for: 3.11's can lose a racing cancellation
                async with asyncio.timeout(max(0.0, next_checkpoint - loop.time())):
                    first = await self._inbox.get()
            except TimeoutError:
                await self._checkpoint()
                next_checkpoint = loop.time() + self.checkpoint_s
                continue
            batch = [first]
            while len(batch) < BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                if await self.store.db.write(_write, batch, self.clock(), self.node_id):
                    self._wake.set()
            except Exception:  # a broken store must not stop the writer; say so per batch
                log.exception("could not record %d webhook/presence events", len(batch))
            finally:
                for _ in batch:
                    self._inbox.task_done()

    async def _checkpoint(self) -> None:
        try:
            await self.store.presence.checkpoint(self.clock(), self.node_id)
        except Exception:
            log.exception("could not checkpoint presence")

    # -- dispatcher: outbox rows → HTTP attempts --------------------------------------------
    async def _dispatch_forever(self) -> None:
        async with asyncio.TaskGroup() as attempts:
            next_prune = 0.0
            while True:
                self._wake.clear()
                try:
                    if self.clock() >= next_prune:
                        await self.store.webhooks.prune(self.clock() - self.retention_s)
                        next_prune = self.clock() + 3600.0
                    await self._start_due(attempts)
                    next_due = await self.store.webhooks.next_due()
                except Exception:  # the store failing; say so, and try again later
                    log.exception("webhook dispatch failed; retrying in 10 s")
                    next_due = self.clock() + 10.0
                await self._sleep(next_due)

    async def _start_due(self, attempts: asyncio.TaskGroup) -> None:
        for delivery, hook in await self.store.webhooks.due(self.clock(), BATCH):
            if len(self._busy) >= self.policy.concurrency:
                return
            if hook.id not in self._busy:
                self._busy.add(hook.id)
                attempts.create_task(self._attempt(delivery, hook))

    async def _sleep(self, next_due: float | None) -> None:
        """Until woken (an event queued, an attempt ended) or the next row falls due. A row
        already due that could not start waits for an attempt to end."""
        timeout = 3600.0 if next_due is None else next_due - self.clock()
        if timeout <= 0:
            timeout = 3600.0 if self._busy else 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, 3600.0)):
                await self._wake.wait()

    async def _attempt(self, delivery: Delivery, hook: Hook) -> None:
        try:
            error = await self._post(delivery, hook)
            now = self.clock()
            attempt = delivery.attempts + 1
            if error is None:
                await self.store.webhooks.delivered(delivery.id, now)
                return
            retry_at = None
            if attempt < self.policy.max_attempts:
                p = self.policy
                retry_at = now + backoff_delay(attempt, p.backoff_s, p.backoff_max_s)
            else:
                log.warning(
                    "[hook=%d delivery=%d] dead after %d attempts: %s",
                    hook.id,
                    delivery.id,
                    attempt,
                    error,
                )
            await self.store.webhooks.failed(delivery.id, error, now, retry_at)
        except Exception:  # e.g. the store is closing; the row stays pending
            log.exception(
                "[hook=%d delivery=%d] could not record the attempt", hook.id, delivery.id
            )
        finally:
            self._busy.discard(hook.id)
            self._wake.set()

    async def _post(self, delivery: Delivery, hook: Hook) -> str | None:
        """One attempt; None if delivered, else why not."""
        assert self._session is not None
        body = json.dumps(
            {
                "id": delivery.id,
                "event": delivery.event,
                "created_at": delivery.created_at,
                "data": delivery.payload,
            },
            ensure_ascii=False,
        ).encode()
        ts = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "X-Loa-Event": delivery.event,
            "X-Loa-Delivery": str(delivery.id),
            "X-Loa-Timestamp": ts,
            "X-Loa-Signature": sign(hook.secret, ts, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        try:
            async with self._session.post(
                hook.url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as resp:
                if 200 <= resp.status < 300:
                    return None
                text = (await resp.content.read(200)).decode("utf-8", "replace").strip()
                return f"HTTP {resp.status}" + (f": {text}" if text else "")
        except TimeoutError:
            return f"no answer within {self.policy.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
