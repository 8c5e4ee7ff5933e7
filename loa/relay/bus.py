"""The cluster bus over Redis (redis-py asyncio): node presence, the leader lease with its
fencing token, the control channels and the per-node audio channels (one bundle per tick per
receiving node; never one message per packet; no Streams). A thin adapter: the decisions
live in ``loa.cluster`` (lease timing, fencing, key names and scripts, message and bundle
formats); docs/DESIGN.md, "Cluster protocol", lists the keys and channels.

Owned by whoever starts it (``start``/``close``): three tasks (presence, lease, listener),
each retrying with jittered exponential backoff while Redis is away. The listener
resubscribes after a reconnect and calls ``Handlers.resync``: pub/sub loses what was sent
while a node was away, so the node rereads the state it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from loa.cluster.backoff import Backoff
from loa.cluster.bundle import Bundle
from loa.cluster.fencing import Fence
from loa.cluster.keys import SCRIPTS, Keys
from loa.cluster.lease import Lease, LeaseTiming
from loa.cluster.messages import (
    Assignment,
    BroadcastStarted,
    BroadcastStopped,
    Envelope,
    Message,
)

CLOSE_TIMEOUT_S = 2.0  # what close() waits for Redis, per step
log = logging.getLogger(__name__)
FAILURES = (RedisError, OSError, TimeoutError)


class NotLeader(RuntimeError):
    """A leader-only action was attempted by a node that does not hold the lease now."""


@dataclass(frozen=True, slots=True)
class BusConfig:
    url: str
    node_id: str
    cluster: str = "loa"
    public_url: str = ""
    capacity: int | None = None
    presence_ttl_s: float = 6.0
    lease: LeaseTiming = field(default_factory=LeaseTiming)
    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    timeout_s: float = 1.0  # any one Redis call

    def __post_init__(self) -> None:
        if not self.node_id or any(c.isspace() for c in self.node_id):
            raise ValueError(f"node_id must be non-empty without spaces, got {self.node_id!r}")
        if not 0 < self.backoff_min_s <= self.backoff_max_s:
            raise ValueError("backoff must satisfy 0 < backoff_min_s <= backoff_max_s")


@dataclass
class Handlers:
    """What the node does with what arrives; each runs on the loop and must not block.
    None means not interested."""

    lifecycle: Callable[[Envelope], None] | None = None
    command: Callable[[Envelope], None] | None = None
    status: Callable[[Envelope], None] | None = None
    audio: Callable[[Bundle], None] | None = None
    resync: Callable[[str], None] | None = None  # "connected", "reconnected", "gap"
    leadership: Callable[[bool], None] | None = None


@dataclass
class BusStats:
    published: int = 0
    audio_messages: int = 0
    received: int = 0
    dropped_bad: int = 0
    dropped_stale: int = 0
    gaps: int = 0
    handler_errors: int = 0
    reconnects: int = 0


class Bus:
    def __init__(self, config: BusConfig, handlers: Handlers | None = None) -> None:
        self.config = config
        self.handlers = handlers or Handlers()
        self.keys = Keys(config.cluster)
        self.lease = Lease(config.lease)
        self.fence = Fence()
        self.stats = BusStats()
        self._redis: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._leader = False
        self._last_seq: int | None = None
        self._bad_logged: set[object] = set()
        self._clock: Callable[[], float] = lambda: 0.0
        self._poke = asyncio.Event()  # the listener (re)connected: the lease loop looks now

    # -- lifetime ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError(f"bus of node {self.config.node_id} is already started")
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        timeout = self.config.timeout_s
        self._redis = redis.Redis.from_url(
            self.config.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # we retry, with our backoff, where it is safe
            health_check_interval=max(1, round(self.config.presence_ttl_s / 3)),
            client_name=f"loa-{self.config.cluster}-{self.config.node_id}",  # CLIENT LIST
        )
        self._scripts = {name: self._redis.register_script(lua) for name, lua in SCRIPTS.items()}
        name = self.config.node_id
        for what, run in (("presence", self._presence), ("lease", self._leases)):
            self._tasks.append(asyncio.create_task(run(), name=f"loa-bus-{what}-{name}"))
        self._tasks.append(asyncio.create_task(self._listen(), name=f"loa-bus-listen-{name}"))

    async def close(self) -> None:
        """Stop the tasks, give up the lease and the presence key (best effort), disconnect."""
        tasks, self._tasks = self._tasks, []
        pending = set(tasks)
        # Cancel until they end: on Python 3.11 a cancel that lands as an asyncio.timeout()
        # expires is turned into the TimeoutError the loops ignore, so one cancel can be lost.
        for _ in range(10):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending:
            log.error("[node=%s] bus tasks would not stop: %s", self.config.node_id, pending)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("[node=%s] bus task failed", self.config.node_id,
                          exc_info=task.exception())  # fmt: skip
        if self._redis is None:
            return
        # Best effort, and bounded: a connection whose command was cancelled mid-reply (a task
        # cancelled above) may never answer, and shutdown must not wait on it.
        with contextlib.suppress(*FAILURES, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if self.lease.token is not None:
                    await self._script("release", [self.keys.leader], [self._holder()])
                await self._redis.delete(self.keys.node(self.config.node_id))
        self.lease.lost()
        self._set_leader(False)
        with contextlib.suppress(*FAILURES, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._redis.aclose()
        self._redis = None

    def _client(self) -> redis.Redis:
        if self._redis is None:
            raise RuntimeError("the bus is not started")
        return self._redis

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._client()
        return await self._scripts[name](keys=keys, args=args)

    # -- leadership --------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True only while this node holds the lease and may still act on it: check before
        each leader action, and send ``token`` with it."""
        return self.lease.is_leader(self._clock())

    @property
    def token(self) -> int | None:
        return self.lease.token if self.is_leader() else None

    def _holder(self) -> str:
        return f"{self.config.node_id} {self.lease.token}"

    def _set_leader(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("[node=%s] %s the leader lease (token %s)", self.config.node_id,
                     "holds" if leader else "no longer holds", self.lease.token)  # fmt: skip
            if self.handlers.leadership is not None:
                self.handlers.leadership(leader)

    async def _leases(self) -> None:
        while True:
            self._poke.clear()
            now = self._clock()
            if self.lease.should_renew(now) or self.lease.lapsed(now):
                await self._try_renew(now)
            elif self.lease.should_campaign(now):
                await self._campaign(now)
            elif not self.lease.is_leader(now):
                await self._observe()
            self._set_leader(self.lease.is_leader(self._clock()))
            now = self._clock()
            # at most one renewal period; at once after a (re)connection
            delay = min(max(0.0, self.lease.deadline(now) - now), self.config.lease.renew_every_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._poke.wait()

    async def _observe(self) -> None:
        """A follower pushes its highest seen token into the counter (so a leader elected
        after a Redis restart still outnumbers every token a node has seen) and learns the
        current holder's token (so a deposed leader's late command is refused early)."""
        try:
            holder = await self._script(
                "observe", [self.keys.leader, self.keys.fence], [self.fence.highest]
            )
        except FAILURES:
            return
        if holder:
            self.fence.observe(int(holder.split()[-1]))

    async def _try_renew(self, sent: float) -> None:
        acting = self.lease.is_leader(sent)
        # while acting, a renewal times out when acting ends; once lapsed, after one call
        deadline = self.lease.until if acting else sent + self.config.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                kept = await self._script(
                    "renew", [self.keys.leader], [self._holder(), self.config.lease.ttl_ms]
                )
        except FAILURES as exc:
            log.debug("[node=%s] lease renewal failed: %s", self.config.node_id, exc)
            if not acting:
                self.lease.lost()  # lapsed and unconfirmed: campaign like anyone else
            return  # the lease ends by itself at lease.until unless a renewal succeeds
        if kept:
            self.lease.renewed(sent)
        else:
            self.lease.lost()

    async def _campaign(self, sent: float) -> None:
        try:
            token, value = await self._script(
                "acquire",
                [self.keys.leader, self.keys.fence],
                [self.config.node_id, self.config.lease.ttl_ms, self.fence.highest],
            )
        except FAILURES as exc:
            log.debug("[node=%s] lease campaign failed: %s", self.config.node_id, exc)
            self.lease.held_by_other(sent)
            return
        holder_token = int(value.split()[-1])
        self.fence.observe(holder_token)
        if token:
            self.lease.won(int(token), sent)
        else:
            self.lease.held_by_other(sent)

    # -- presence ----------------------------------------------------------------------

    async def _presence(self) -> None:
        info = json.dumps(
            {"node": self.config.node_id, "public_url": self.config.public_url,
             "capacity": self.config.capacity}
        )  # fmt: skip
        ttl_ms = round(self.config.presence_ttl_s * 1000)
        backoff = Backoff(self.config.backoff_min_s, self.config.backoff_max_s)
        while True:
            try:
                await self._client().set(self.keys.node(self.config.node_id), info, px=ttl_ms)
            except FAILURES:
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            await asyncio.sleep(self.config.presence_ttl_s / 3)

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """The live nodes (their presence key has not expired), by id."""
        client = self._client()
        keys = [k async for k in client.scan_iter(match=self.keys.node("*"), count=1000)]
        values = await client.mget(keys) if keys else []
        out = {}
        for value in values:
            if value is not None:
                info = json.loads(value)
                out[info["node"]] = info
        return dict(sorted(out.items()))

    # -- publishing --------------------------------------------------------------------

    async def publish_lifecycle(self, message: Message) -> int:
        """Publish on the lifecycle channel; returns its sequence number. A start or stop
        of a broadcast this node encodes also updates its on-air snapshot, in the same
        script (``onair``)."""
        me = self.config.node_id
        body = Envelope(0, me, None, message).body()
        op, field_ = "", ""
        if isinstance(message, BroadcastStarted | BroadcastStopped) and message.node == me:
            op, field_ = ("set" if isinstance(message, BroadcastStarted) else "del"), message.id
        seq = await self._script(
            "sequenced", [self.keys.lifecycle_seq, self.keys.onair(me)],
            [self.keys.lifecycle, body, op, field_],
        )  # fmt: skip
        self.stats.published += 1
        return int(seq)

    async def rewrite_onair(self, started: list[BroadcastStarted]) -> None:
        """Replace this node's on-air snapshot with ``started`` (after a (re)connection: a
        restarted Redis lost it, a restarted node left stale entries)."""
        me = self.config.node_id
        key = self.keys.onair(me)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if started:
                pipe.hset(key, mapping={m.id: Envelope(0, me, None, m).body() for m in started})
            await pipe.execute()

    async def onair(self) -> dict[str, dict[str, BroadcastStarted]]:
        """Every node's on-air snapshot: node → broadcast id → its ``broadcast.started``.
        A bad entry is dropped and counted like a bad message."""
        client = self._client()
        keys = [k async for k in client.scan_iter(match=self.keys.onair("*"), count=1000)]
        if not keys:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes = await pipe.execute()
        out: dict[str, dict[str, BroadcastStarted]] = {}
        prefix = self.keys.onair("")
        for key, entries in zip(keys, hashes, strict=True):
            node = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
            for body in entries.values():
                try:
                    message = Envelope.parse(b"0 " + body).message
                except ValueError as exc:
                    self._bad(prefix + node, exc)
                    continue
                if isinstance(message, BroadcastStarted):
                    out.setdefault(node, {})[message.id] = message
        return out

    def _leader_token(self) -> int:
        token = self.token
        if token is None:
            raise NotLeader(f"node {self.config.node_id} does not hold the leader lease")
        return token

    async def publish_command(self, message: Message, *, fenced: bool = False) -> None:
        """Publish on the commands channel; ``fenced`` ones only while leader, with the token."""
        token = self._leader_token() if fenced else None
        data = bytes(Envelope(0, self.config.node_id, token, message))
        await self._client().publish(self.keys.commands, data)
        self.stats.published += 1

    async def publish_status(self, message: Message) -> None:
        data = bytes(Envelope(0, self.config.node_id, None, message))
        await self._client().publish(self.keys.status, data)
        self.stats.published += 1

    async def set_assignment(self, message: Assignment) -> bool:
        """Store and announce the leader's commune placement; False (nothing written) when
        the lease in Redis is no longer this node's."""
        data = bytes(Envelope(0, self.config.node_id, self._leader_token(), message))
        written = await self._script(
            "leader_set",
            [self.keys.leader, self.keys.assignment],
            [self._holder(), data, self.keys.commands],
        )
        if not written:
            self.lease.lost()
            self._set_leader(False)
        return bool(written)

    async def assignment(self) -> Envelope | None:
        data = await self._client().get(self.keys.assignment)
        if data is None:
            return None
        return Envelope.parse(data if isinstance(data, bytes) else data.encode())

    async def send_audio(self, bundles: Mapping[str, bytes]) -> None:
        """One tick's bundles (``Bundler.flush``), one PUBLISH each, in one round trip."""
        if not bundles:
            return
        async with self._client().pipeline(transaction=False) as pipe:
            for node, data in bundles.items():
                pipe.publish(self.keys.audio(node), data)
            await pipe.execute()
        self.stats.audio_messages += len(bundles)

    # -- listening ---------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = Backoff(self.config.backoff_min_s, self.config.backoff_max_s)
        channels = [self.keys.lifecycle, self.keys.commands, self.keys.status,
                    self.keys.audio(self.config.node_id)]  # fmt: skip
        first, down = True, False
        while True:
            pubsub = self._client().pubsub()
            try:
                await pubsub.subscribe(*channels)
                backoff.reset()
                self._connected("connected" if first else "reconnected")
                first = down = False
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._dispatch(msg["channel"].decode(), msg["data"])
            except FAILURES as exc:
                if not down:
                    log.warning("[node=%s] lost Redis (%s); reconnecting with backoff",
                                self.config.node_id, exc)  # fmt: skip
                down = True
                self.lease.disconnected()
                # Every pooled connection died with the server: drop them all, so neither the
                # next subscribe nor the next command picks a stale one after Redis returns.
                with contextlib.suppress(*FAILURES):
                    await self._client().connection_pool.disconnect()
            finally:
                with contextlib.suppress(*FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(backoff.next())

    def _connected(self, why: str) -> None:
        if why == "reconnected":
            self.stats.reconnects += 1
            log.info("[node=%s] reconnected to Redis and resubscribed", self.config.node_id)
        self.lease.connected(self._clock())
        self._poke.set()
        self._last_seq = None
        if self.handlers.resync is not None:
            self.handlers.resync(why)

    def _dispatch(self, channel: str, data: bytes) -> None:
        self.stats.received += 1
        try:
            if channel == self.keys.audio(self.config.node_id):
                bundle = Bundle.parse(data)
                if self.handlers.audio is not None:
                    self._call(channel, partial(self.handlers.audio, bundle))
                return
            envelope = Envelope.parse(data)
        except ValueError as exc:
            self._bad(channel, exc)
            return
        if channel == self.keys.lifecycle:
            self._sequence(envelope.seq)
            handler = self.handlers.lifecycle
        elif channel == self.keys.commands:
            if envelope.fence is not None and not self.fence.admit(envelope.fence):
                self.stats.dropped_stale += 1
                return
            handler = self.handlers.command
        else:
            handler = self.handlers.status
        if handler is not None:
            self._call(channel, partial(handler, envelope))

    def _call(self, channel: str, handler: Callable[[], None]) -> None:
        try:
            handler()
        except Exception:  # a handler's bug must not end the listener
            self.stats.handler_errors += 1
            if ("handler", channel) not in self._bad_logged:
                self._bad_logged.add(("handler", channel))
                log.exception("[node=%s] the handler of %s failed", self.config.node_id, channel)

    def _sequence(self, seq: int) -> None:
        last, self._last_seq = self._last_seq, seq
        if last is not None and seq != last + 1:
            self.stats.gaps += 1
            log.info("[node=%s] lifecycle sequence jumped %d -> %d: resync",
                     self.config.node_id, last, seq)  # fmt: skip
            if self.handlers.resync is not None:
                self.handlers.resync("gap")

    def _bad(self, channel: str, exc: ValueError) -> None:
        self.stats.dropped_bad += 1
        if channel not in self._bad_logged:  # a repeating error once per channel
            self._bad_logged.add(channel)
            log.warning("[node=%s] dropped a bad message on %s: %s", self.config.node_id,
                        channel, exc)  # fmt: skip
