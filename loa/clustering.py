"""A node's membership of a cluster (``[cluster]``; docs/DESIGN.md, "Cluster protocol"): the
Redis bus in the app's lifetime, the commune assignment and which speakers this node admits.

Driven by the app's cleanup context (``start``/``close``). One task refreshes, every
``REFRESH_S`` and at once when the bus (re)connects or leadership changes: it reads the live
nodes (their presence keys), rereads the stored assignment after a (re)connection, and, on
the leader only, places the communes (``loa.cluster.assign``: poles counted from the node's
inventory, capacities from presence) and publishes a new assignment when it changed. Every
node follows the newest assignment it has seen, by (fencing token, version), so a deposed
leader's late one is ignored.

Admission: a speaker is served here when its commune is assigned here, when its commune has
no live node yet (no assignment, or its node's presence expired), or when its hello says it
just lost its commune's node (the node is down but its presence key has not expired: letting
it in avoids a redirect loop; the leader moves the commune once the key expires). Otherwise
it is redirected to the servers of its commune: its node first, then the others in an order
that depends on the commune (rendezvous hashing), so a failed node's speakers spread over
the survivors instead of all landing on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from loa.cluster.assign import assign
from loa.cluster.backoff import Backoff
from loa.cluster.bundle import ITEM_END, START, Bundle, Bundler, Packet
from loa.cluster.messages import (
    Assignment,
    BroadcastStarted,
    BroadcastStopped,
    Envelope,
    Message,
    NodeStatus,
    SpeakerCommand,
)
from loa.config import ClusterConfig
from loa.errors import LoaError
from loa.inventory import spec_of, sync_inventory
from loa.relay.broadcast import Broadcast, Deliver, LogEntry
from loa.relay.bus import FAILURES, Bus, BusConfig, Handlers
from loa.relay.metrics import family
from loa.relay.node import Node
from loa.relay.relayed import RelayedBroadcast, RelayedSource
from loa.store import Store
from loa.store.onair import OnAirRow
from loa.streamer.pacer import Pacer

log = logging.getLogger(__name__)
REFRESH_S = 0.5  # how often live nodes are read and (on the leader) communes placed
INVENTORY_S = 2.0  # how often a node compares its zones and endpoints with the store's
STATUS_S = 1.0  # each node publishes the views of the poles it serves this often
PRESENCE_TTL_S = 3.0  # a node's presence key lives this long, refreshed every third of it
TICK_S = 0.02  # audio bundles go out once per tick, one per receiving node
HEARD_RETRIES = 10  # a relayed broadcast's listeners wait this many seconds for its log row
RESYNC_S = 5.0  # the on-air snapshots are compared this often (and at once after a gap)
STOPPED_KEPT = 1024  # ids of broadcasts seen stopped, so a stale snapshot cannot revive them


class _RewriteOnAir:
    """In the publisher's queue: rewrite this node's on-air snapshot (after a connection)."""


@dataclass(frozen=True, slots=True)
class LeaderJob:
    """Work only the leader does: started when this node becomes leader, closed when it
    stops being leader."""

    name: str
    start: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    every_s: float | None = None  # ``tick`` called this often while leader
    tick: Callable[[], Awaitable[None]] | None = None


def _wall_offset() -> float:
    """This node's wall clock minus its loop's: what converts a router time to Unix time."""
    return time.time() - asyncio.get_running_loop().time()


def _rank(commune: str, node: str) -> bytes:
    return hashlib.blake2b(f"{commune}\0{node}".encode(), digest_size=8).digest()


class ClusterMember:
    """This node in the cluster: see the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        node: Node,
        store: Store | None = None,
        *,
        bus: BusConfig | None = None,
    ) -> None:
        self.config = config
        self.node = node
        self.store = store
        self.id = config.node_id
        self._inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self.bus = Bus(
            bus
            or BusConfig(
                config.redis_url, config.node_id, config.name, config.public_url.rstrip("/"),
                config.capacity, presence_ttl_s=PRESENCE_TTL_S,
            ),
            Handlers(command=self._on_command, resync=self._on_resync,
                     leadership=self._on_leadership, lifecycle=self._inbox.put_nowait,
                     audio=self._on_audio, status=self._on_status),
        )  # fmt: skip
        self.live: dict[str, dict[str, Any]] = {}  # node id → presence (public_url, capacity)
        self.placement: dict[str, str] = {}  # commune → node, the newest assignment seen
        self.version: tuple[int, int] = (0, 0)  # its (fencing token, version)
        # Called after the placement changed (the web layer redirects moved speakers).
        self.on_placement: Callable[[], None] | None = None
        self.assignments_published = 0
        self._bucket, self._bucket_at = float(config.admit_per_s), 0.0  # admission tokens
        self._reread = True
        # After (re)connecting to Redis, presence keys may not all be back (a restarted
        # Redis lost them): nobody is judged gone until one presence TTL has passed.
        self._judge_after = 0.0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Broadcasts: those encoded here (their audio goes out in bundles), those relayed
        # from another node (by id, with the encoding node), lifecycle messages in and out.
        self.bundler = Bundler(config.node_id)
        self.pacer = Pacer(TICK_S)  # the bundles' ticks, on absolute deadlines
        self.local: set[str] = set()
        self.relayed: dict[str, tuple[RelayedBroadcast, str]] = {}
        self._ended_by_bus: set[str] = set()
        self._outbox: asyncio.Queue[Message | _RewriteOnAir] = asyncio.Queue()
        # Resync (a lifecycle gap, a (re)connection, and every RESYNC_S): what this node
        # announced (its on-air snapshot), when each relayed copy began, ids seen stopped.
        self._announced: dict[str, BroadcastStarted] = {}
        self._relayed_since: dict[str, float] = {}
        self._stopped: OrderedDict[str, None] = OrderedDict()
        self._resync_at = self._gone_at = 0.0
        self.resyncs_started = self.resyncs_ended = 0
        self._heard: set[asyncio.Task[None]] = set()
        self.jobs: list[LeaderJob] = []
        # The leader brings back here what a node that is gone had on air (OnAirService.adopt).
        self.adopt: Callable[[list[OnAirRow]], Awaitable[object]] | None = None
        self._adopted: set[str] = set()
        self._rtp_aside: dict[str, tuple[str, int]] = {}  # rtp endpoints another node serves
        # Live status across nodes: the web layer gives the views of the poles online here
        # (``status_view``); other nodes' arrive on the status channel.
        self.status_view: Callable[[], dict[str, Any]] | None = None
        self._remote: dict[str, tuple[float, dict[str, Any]]] = {}  # node → (when, views)
        self.jobs_running: tuple[str, ...] = ()  # while leader: the jobs it started
        self._acting = False  # the leader's jobs were started (and not yet closed)
        self._leadership = asyncio.Event()
        self.audio_sent = self.packets_relayed = 0

    # -- lifetime ----------------------------------------------------------------------

    def hook(self) -> None:
        """Wrap the node's ``on_start``/``on_log`` (set by the app first): what starts and
        ends here is announced; relayed broadcasts are logged by their encoding node."""
        self.node.on_start = partial(self._started, self.node.on_start)
        self.node.on_log = partial(self._logged, self.node.on_log)

    async def start(self) -> None:
        await self.bus.start()
        for name, run in (
            ("refresh", self._run),
            ("publish", self._publish),
            ("lifecycle", self._apply_lifecycle),
            ("audio", self._ticks),
            ("leader-jobs", self._leader_jobs),
            ("inventory", self._follow_inventory),
            ("status", self._publish_status),
        ):
            task = asyncio.create_task(run(), name=f"loa-cluster-{name}-{self.id}")
            self._tasks.append(task)

    async def close(self) -> None:
        """Before the node closes (cleanup contexts end in reverse): what is queued to announce
        goes out first, best effort; the node's own broadcasts then end unannounced, and the
        other nodes end their relayed copies when this node's presence key is gone."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._outbox.join()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._heard, return_exceptions=True)
        for job in self.jobs:  # idempotent: whatever ran stops before the node closes
            await job.close()
        self.jobs_running = ()
        await self.bus.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except FAILURES as exc:  # Redis away: the bus reconnects; keep what we know
                log.debug("[node=%s] cluster refresh failed: %s", self.id, exc)
                # and judge nobody gone until a presence TTL after it answers again (a
                # restarted Redis answers before every node has written its key back)
                ttl = self.bus.config.presence_ttl_s
                self._judge_after = asyncio.get_running_loop().time() + ttl + REFRESH_S
            except Exception:
                log.exception("[node=%s] cluster refresh failed", self.id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):
                    await self._wake.wait()

    async def refresh(self) -> None:
        """One round: live nodes, the stored assignment if needed, the leader's placement."""
        self.live = await self.bus.nodes()
        settled = asyncio.get_running_loop().time() >= self._judge_after
        if self._reread:
            envelope = await self.bus.assignment()
            self._reread = False
            if envelope is not None:
                self._follow(envelope)
        if self.bus.is_leader() and self.id in self.live and settled:
            await self._place()
        self._gate_rtp()
        for bc_id in self.local:  # audio to the nodes with listeners (see DESIGN)
            bc = self.node.broadcasts.get(bc_id)
            if bc is not None:
                self.bundler.route(bc_id, self.receivers(bc))
        ending = []
        for bc_id, (bc, origin) in list(self.relayed.items()):
            if origin not in self.live and settled:  # its encoder is gone: nothing will come
                log.warning("[bc=%s] node %s that encodes it is gone: ending it here", bc_id,
                            origin)  # fmt: skip
                self._ended_by_bus.add(bc_id)
                bc.finish(f"node {origin} lost", failed=True)
                ending.append(bc)
        if ending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*(bc.ended.wait() for bc in ending))
        now = asyncio.get_running_loop().time()
        if now >= self._resync_at:
            # again once settled, if not yet: ends wait for it
            self._resync_at = now + RESYNC_S if settled else min(now + RESYNC_S, self._judge_after)
            await self._resync(settled)
        if self.bus.is_leader() and self.id in self.live and settled:
            await self._adopt_orphans()
            if now >= self._gone_at and self.store is not None:
                self._gone_at = now + RESYNC_S
                await self._close_gone_presence()

    async def _close_gone_presence(self) -> None:
        """The leader closes the presence intervals of nodes that are gone, at their last
        checkpoint (their speakers open new ones where they reconnect)."""
        assert self.store is not None
        try:
            closed = await self.store.presence.close_gone(self.live)
        except LoaError as exc:
            log.warning("[node=%s] could not close gone nodes' presence: %s", self.id, exc)
            return
        if closed:
            log.info("[node=%s] closed %d presence intervals of gone nodes", self.id, closed)

    async def _resync(self, settled: bool) -> None:
        """Compare the live nodes' on-air snapshots with what this node relays: a broadcast
        missed here (a lifecycle gap, a node started or reconnected after it began) starts
        as a relayed copy; a relayed copy whose stop was missed ends (only once settled: a
        restarted Redis holds no snapshot until each node rewrote its own). Both go through
        the lifecycle queue, in order with the messages."""
        asked = asyncio.get_running_loop().time()
        snapshot = await self.bus.onair()
        for origin, started in snapshot.items():
            if origin == self.id or origin not in self.live:
                continue
            for message in started.values():
                if message.id in self.node.broadcasts or message.id in self._stopped:
                    continue
                log.info("[bc=%s] on air on %s but not here (missed its start): relaying it",
                         message.id, origin)  # fmt: skip
                self.resyncs_started += 1
                self._inbox.put_nowait(Envelope(0, origin, None, message))
        if not settled:
            return
        for bc_id, (_, origin) in list(self.relayed.items()):
            if (
                origin in self.live
                and bc_id not in snapshot.get(origin, {})
                and self._relayed_since.get(bc_id, asked) < asked
            ):
                log.info("[bc=%s] no longer on air on %s (missed its stop): ending it here",
                         bc_id, origin)  # fmt: skip
                self.resyncs_ended += 1
                self._inbox.put_nowait(
                    Envelope(0, origin, None, BroadcastStopped(bc_id, "finished", origin))
                )

    async def _adopt_orphans(self) -> None:
        """The leader restarts here what a node that is gone had on air (its on-air rows;
        an emergency replays from its start, as after a restart: DESIGN "Restart
        semantics"). Rows without a node (from before cluster mode) are left alone."""
        if self.adopt is None or self.store is None:
            return
        rows = [
            r for r in await self.store.onair.all()
            if r.node is not None and r.node not in self.live and r.id not in self._adopted
            and r.id not in self.node.broadcasts
        ]  # fmt: skip
        if rows:
            self._adopted.update(r.id for r in rows)
            log.warning("[node=%s] adopting what gone nodes had on air: %s", self.id,
                        ", ".join(f"{r.id} (from {r.node})" for r in rows))  # fmt: skip
            await self.adopt(rows)

    # -- the leader's job --------------------------------------------------------------

    def communes(self) -> dict[str, int]:
        """Every commune (zone at ``commune_depth``; a shallower zone only when poles sit in
        it directly) → its poles."""
        zones = self.node.zones
        out = {z: 0 for z in zones if zones.level(z) == self.config.commune_depth}
        for ep in self.node.poles():
            commune = self.commune_of_zone(ep.spec.zone)
            out[commune] = out.get(commune, 0) + 1
        return out

    def commune_of_zone(self, zone: str) -> str:
        lineage = self.node.zones.lineage(zone)  # the zone first, the root last
        return lineage[max(0, len(lineage) - 1 - self.config.commune_depth)]

    async def _place(self) -> None:
        capacities = {
            n: int(info.get("capacity") or self.config.capacity) for n, info in self.live.items()
        }
        result = assign(self.communes(), capacities, self.placement)
        token = self.bus.token
        if token is None or (dict(result.placement) == self.placement and self.version[0] == token):
            return
        message = Assignment(self.version[1] + 1, dict(result.placement))
        if await self.bus.set_assignment(message):
            self.assignments_published += 1
            over = f", overloaded {', '.join(result.overloaded)}" if result.overloaded else ""
            log.info("[node=%s] assignment %d: %d communes on %d nodes, %d moved%s", self.id,
                     message.version, len(result.placement), len(capacities),
                     len(result.moves), over)  # fmt: skip
            self._apply(token, message)

    # -- following ---------------------------------------------------------------------

    def _on_command(self, envelope: Envelope) -> None:
        match envelope.message:
            case Assignment():
                self._follow(envelope)
            case SpeakerCommand(endpoint=ep_id, command=command, value=value):
                if envelope.sender != self.id:
                    self._obey(ep_id, command, value)

    def _obey(self, ep_id: str, command: str, value: int | bool | None) -> None:
        """A level set through another node's API: every node keeps it (the speaker may
        move), the one the speaker is connected to tells it."""
        ep = self.node.endpoints.get(ep_id)
        if ep is None or ep.listener:
            return
        if command == "mute" and isinstance(value, bool):
            self.node.set_levels(ep, muted=value)
        elif command == "volume" and isinstance(value, int):
            self.node.set_levels(ep, volume=value)

    async def command(self, ep_id: str, command: str, value: int | bool | None) -> None:
        """Tell the other nodes about a live level set here (best effort: Redis away, the
        speaker keeps its level until it reconnects)."""
        try:
            await self.bus.publish_command(SpeakerCommand(ep_id, command, value))
        except FAILURES as exc:
            log.warning("[ep=%s] could not tell the other nodes %s: %s", ep_id, command, exc)

    def _follow(self, envelope: Envelope) -> None:
        if isinstance(envelope.message, Assignment):
            self._apply(envelope.fence or 0, envelope.message)

    def _apply(self, fence: int, message: Assignment) -> None:
        if (fence, message.version) <= self.version:
            return
        changed = message.placement != self.placement
        self.version, self.placement = (fence, message.version), dict(message.placement)
        if changed:
            log.info("[node=%s] follows assignment %d: serves %s", self.id, message.version,
                     ", ".join(self.mine()) or "no commune")  # fmt: skip
            if self.on_placement is not None:
                self.on_placement()

    def _on_resync(self, why: str) -> None:
        if why in ("connected", "reconnected"):
            ttl = self.bus.config.presence_ttl_s
            self._judge_after = asyncio.get_running_loop().time() + ttl
            self._outbox.put_nowait(_RewriteOnAir())  # a restarted Redis lost it
        self._reread = True
        self._resync_at = 0.0  # compare the on-air snapshots at the next refresh
        self._wake.set()

    def _on_leadership(self, leader: bool) -> None:
        self._wake.set()
        self._leadership.set()

    async def _leader_jobs(self) -> None:
        """Start the leader's jobs when the lease is won, close them when it is lost (the
        bus reports the loss before another node can win it: see "Lease and fencing")."""
        while True:
            leader = self.bus.is_leader()
            if leader and not self._acting:
                names = []
                for job in self.jobs:
                    try:  # never past the lease: a start waiting on a store cut off hangs
                        async with asyncio.timeout_at(self.bus.lease.until):
                            await job.start()
                    except Exception as exc:
                        log.error("[node=%s] leader job %s would not start: %r", self.id,
                                  job.name, exc)  # fmt: skip
                        await job.close()
                        continue
                    names.append(job.name)
                self.jobs_running, self._acting = tuple(names), True
                log.info("[node=%s] leader (token %s): runs %s", self.id, self.bus.token,
                         ", ".join(names) or "no job")  # fmt: skip
            elif not leader and self._acting:
                for job in self.jobs:
                    await job.close()
                log.info("[node=%s] not leader: stopped %s", self.id,
                         ", ".join(j.name for j in self.jobs))  # fmt: skip
                self.jobs_running, self._acting = (), False
            ticking = [j for j in self.jobs if j.tick is not None and j.every_s is not None]
            wait = min((j.every_s for j in ticking if j.every_s), default=None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if leader and wait else None):
                    await self._leadership.wait()
            self._leadership.clear()
            if self.bus.is_leader() and self._acting:  # ticks only after the jobs started
                for job in ticking:
                    if job.tick is not None:
                        try:  # bounded by the lease, so that losing it is noticed at once
                            async with asyncio.timeout_at(self.bus.lease.until):
                                await job.tick()
                        except Exception as exc:  # the store away: the next tick tries again
                            log.warning("[node=%s] leader job %s: %r", self.id, job.name, exc)

    # -- admission ---------------------------------------------------------------------

    def mine(self) -> tuple[str, ...]:
        return tuple(sorted(c for c, n in self.placement.items() if n == self.id))

    def owner(self, endpoint_id: str) -> str | None:
        """The live node serving this endpoint's commune (None: none known, or it is gone)."""
        ep = self.node.endpoints.get(endpoint_id)
        if ep is None:
            return None
        owner = self.placement.get(self.commune_of_zone(ep.spec.zone))
        return owner if owner in self.live else None

    def admission(self, now: float) -> bool:
        """A token of the admission bucket (``admit_per_s``, a second's worth of burst):
        False when this node has welcomed as many speakers as it may just now."""
        rate = float(self.config.admit_per_s)
        self._bucket = min(rate, self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    def admits(self, endpoint_id: str, lost: str = "") -> bool:
        owner = self.owner(endpoint_id)
        if owner is None or owner == self.id:
            return True
        return lost.rstrip("/") == self._url(owner)

    def servers(self, endpoint_id: str) -> tuple[str, ...]:
        """Where this endpoint's speaker should connect, in order: its commune's node first
        (else this one), then the other live nodes by rendezvous rank for its commune."""
        ep = self.node.endpoints.get(endpoint_id)
        commune = self.commune_of_zone(ep.spec.zone) if ep is not None else endpoint_id
        first = self.owner(endpoint_id) or self.id
        rest = sorted((n for n in self.live if n != first), key=lambda n: _rank(commune, n))
        return tuple(url for n in (first, *rest) if (url := self._url(n)))

    def _url(self, node: str) -> str:
        if node == self.id:
            return self.config.public_url.rstrip("/")
        return str(self.live.get(node, {}).get("public_url") or "").rstrip("/")

    def _gate_rtp(self) -> None:
        """A static RTP receiver gets its packets from one node only (two would interleave
        two streams on it): the node serving its commune, or the leader while no live node
        does. Elsewhere its address is put aside, so the node neither sends to it nor counts
        it online."""
        leader = self.bus.is_leader()
        for ep in self.node.poles():
            if ep.spec.kind != "rtp":
                continue
            owner = self.owner(ep.id)
            serve = owner == self.id or (owner is None and leader)
            if serve and ep.address is None and ep.id in self._rtp_aside:
                ep.address = self._rtp_aside.pop(ep.id)
            elif not serve and ep.address is not None:
                self._rtp_aside[ep.id] = ep.address
                ep.address = None

    # -- live status across nodes ----------------------------------------------------------

    async def _publish_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_S)
            if self.status_view is None:
                continue
            try:
                views = self.status_view()
                await self.bus.publish_status(NodeStatus(self.id, time.time(), views, {}))
            except FAILURES:
                pass  # Redis away: the others show these poles offline after 3 periods

    def _on_status(self, envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, NodeStatus) and message.node != self.id:
            self._remote[message.node] = (asyncio.get_running_loop().time(), message.endpoints)

    def remote_endpoints(self) -> dict[str, dict[str, Any]]:
        """The views other live nodes published of the poles they serve (fresh ones only)."""
        fresh = asyncio.get_running_loop().time() - 3 * STATUS_S
        out: dict[str, dict[str, Any]] = {}
        for node, (at, views) in list(self._remote.items()):
            if node not in self.live or at < fresh:
                continue
            out.update(views)
        return out

    # -- the inventory -------------------------------------------------------------------

    async def _follow_inventory(self) -> None:
        """Zones and endpoints edited through another node's API reach this node: every
        ``INVENTORY_S`` the store's are compared with the node's, and applied on a
        difference only (``sync_inventory`` touches every endpoint it is given)."""
        if self.store is None:
            return
        while True:
            await asyncio.sleep(INVENTORY_S)
            try:
                every = await self.store.zones.list()
                endpoints = [(spec_of(e), e.token_hash) for e in await self.store.endpoints.list()]
            except LoaError as exc:
                log.debug("[node=%s] cannot read the inventory: %s", self.id, exc)
                continue
            zones = [(z.id, z.parent) for z in every]
            audio = {z.id: z.audio for z in every}
            tree = self.node.zones
            have_zones = {(z, tree.parent(z)) for z in tree}
            have_audio = {z: tree.own_audio(z) for z in tree}
            have = {e.id: (e.spec, e.token_hash) for e in self.node.poles()}
            if (
                set(zones) == have_zones
                and audio == have_audio
                and dict((s.id, (s, h)) for s, h in endpoints) == have
            ):
                continue
            log.info("[node=%s] the inventory changed in the store: following it", self.id)
            sync_inventory(self.node, zones, endpoints, audio)

    # -- broadcasts across nodes ----------------------------------------------------------

    def _started(self, previous: Callable[[Broadcast], None] | None, bc: Broadcast) -> None:
        if isinstance(bc, RelayedBroadcast):
            return  # its encoding node records it (on air, log row)
        if previous is not None:
            previous(bc)
        self.local.add(bc.id)
        bc.deliver = partial(self._tap, bc.deliver)
        self.bundler.route(bc.id, self.receivers(bc))
        started = BroadcastStarted.of(bc.spec, node=self.id, at=time.time(), what=bc.log.what,
                                      wall_offset=_wall_offset())  # fmt: skip
        self._announced[bc.id] = started
        self._outbox.put_nowait(started)

    def _logged(self, previous: Callable[[LogEntry], None] | None, entry: LogEntry) -> None:
        relayed = self.relayed.pop(entry.id, None)
        self._relayed_since.pop(entry.id, None)
        if relayed is not None:
            by_bus = entry.id in self._ended_by_bus
            self._ended_by_bus.discard(entry.id)
            if not by_bus and entry.reason == "stopped":  # stopped here: stop it everywhere
                self._outbox.put_nowait(BroadcastStopped(entry.id, "stopped", relayed[1]))
            if entry.heard_s and self.store is not None:
                task = asyncio.create_task(self._add_heard(entry))
                self._heard.add(task)
                task.add_done_callback(self._heard.discard)
            return
        if previous is not None:
            previous(entry)
        if entry.id in self.local:
            self.local.discard(entry.id)
            self._announced.pop(entry.id, None)
            self.bundler.route(entry.id, ())
            reason = entry.state if entry.state in ("finished", "failed") else "stopped"
            self._outbox.put_nowait(BroadcastStopped(entry.id, reason, self.id))

    async def _add_heard(self, entry: LogEntry) -> None:
        """Add this node's listeners to the row the encoding node writes (it may not have
        written it yet: retried for a few seconds)."""
        assert self.store is not None
        zones = {
            self.node.endpoints[e].spec.zone for e in entry.heard_s if e in self.node.endpoints
        }
        for _ in range(HEARD_RETRIES):
            try:
                if await self.store.log.add_heard(entry.id, entry.heard_s, zones=zones):
                    return
            except LoaError as exc:
                log.warning("[bc=%s] could not add this node's listeners: %s", entry.id, exc)
            await asyncio.sleep(1.0)
        log.warning("[bc=%s] no log row to add this node's listeners to", entry.id)

    def _tap(self, deliver: Deliver, bc: Broadcast, packet: bytes, index: int, end: bool) -> None:
        deliver(bc, packet, index, end)
        if bc.id in self.bundler.routes():
            start = 28 if packet[0] & 0x10 else 12  # a stamped packet's header is longer
            flags = (ITEM_END if end else 0) | (START if bc.frames == 1 else 0)
            self.bundler.add(Packet(bc.id, index & 0xFFFFFFFF, flags, packet[start:]))

    async def _ticks(self) -> None:
        # On absolute deadlines (Pacer): sleeping TICK_S after each tick's work ran ~45
        # ticks a second, not 50, and fewer under load (measured by bench.cluster).
        loop = asyncio.get_running_loop()
        pacer = self.pacer
        pacer.start(loop.time() + TICK_S)
        tick = 0
        while True:
            await asyncio.sleep(pacer.delay(loop.time()))
            pacer.advance(loop.time())
            tick += 1
            bundles = self.bundler.flush(time.time_ns() // 1000, tick)
            if bundles:
                try:
                    await self.bus.send_audio(bundles)
                    self.audio_sent += len(bundles)
                except FAILURES:
                    pass  # Redis away: this tick's audio is lost, as a late packet would be

    async def _publish(self) -> None:
        """Lifecycle messages in the order they happened here (a start before its stop);
        while Redis is away each waits, retried with backoff, so none is lost or reordered."""
        backoff = Backoff(self.bus.config.backoff_min_s, self.bus.config.backoff_max_s)
        while True:
            message = await self._outbox.get()
            try:
                while True:
                    try:
                        if isinstance(message, _RewriteOnAir):  # in order with the others
                            await self.bus.rewrite_onair(list(self._announced.values()))
                        else:
                            await self.bus.publish_lifecycle(message)
                        backoff.reset()
                        break
                    except FAILURES as exc:
                        what = getattr(message, "TYPE", "on-air snapshot")
                        log.warning("[node=%s] could not publish %s (%s); retrying", self.id,
                                    what, exc)  # fmt: skip
                        await asyncio.sleep(backoff.next())
            finally:
                self._outbox.task_done()

    def receivers(self, bc: Broadcast) -> set[str]:
        """The other live nodes that may have listeners of ``bc``: those serving a commune
        with a pole it targets, and those whose status shows such a pole online (a speaker
        let in there while its commune's node is gone)."""
        try:
            poles = self.node.zones.resolve(bc.spec.target_zones, bc.spec.target_endpoints)
        except LoaError:  # a target zone deleted meanwhile: everyone, to be safe
            return set(self.live) - {self.id}
        eps = self.node.endpoints
        communes = {self.commune_of_zone(eps[e].spec.zone) for e in poles if e in eps}
        out = {self.placement[c] for c in communes if c in self.placement}
        fresh = asyncio.get_running_loop().time() - 3 * STATUS_S
        for node, (at, views) in self._remote.items():
            if at >= fresh and not poles.isdisjoint(views):
                out.add(node)
        return (out & set(self.live)) - {self.id}

    def _on_audio(self, bundle: Bundle) -> None:
        relayed = self.relayed
        for packet in bundle.packets:
            found = relayed.get(packet.key)
            if found is not None:
                self.packets_relayed += 1
                found[0].feed(packet.payload, packet.frame, bool(packet.flags & ITEM_END),
                              bundle.sent_us)  # fmt: skip

    async def _apply_lifecycle(self) -> None:
        """Every node applies the lifecycle in the channel's order."""
        while True:
            envelope = await self._inbox.get()
            if envelope.sender == self.id:
                continue
            try:
                await self._lifecycle(envelope.message)
            except Exception:
                log.exception("[node=%s] could not apply %s", self.id, envelope.message.TYPE)

    async def _lifecycle(self, message: Message) -> None:
        match message:
            case BroadcastStarted(id=bc_id, node=origin, what=what) if origin != self.id:
                if bc_id in self.node.broadcasts:
                    return
                bc = await self.node.start_broadcast(
                    message.spec(_wall_offset()), RelayedSource(), what=what, source_kind="relayed",
                    created_by=f"node {origin}", factory=RelayedBroadcast,
                )  # fmt: skip
                if not bc.state.ended:
                    assert isinstance(bc, RelayedBroadcast)
                    self.relayed[bc_id] = (bc, origin)
                    self._relayed_since[bc_id] = asyncio.get_running_loop().time()
            case BroadcastStopped(id=bc_id, reason=reason, node=origin):
                self._stopped[bc_id] = None
                while len(self._stopped) > STOPPED_KEPT:
                    self._stopped.popitem(last=False)
                if bc_id in self.local and origin == self.id:  # stopped on another node
                    with contextlib.suppress(LoaError):
                        await self.node.stop_broadcast(bc_id)
                    return
                found = self.relayed.get(bc_id)
                if found is None:
                    return
                self._ended_by_bus.add(bc_id)
                if reason == "stopped":
                    with contextlib.suppress(LoaError):
                        await self.node.stop_broadcast(bc_id)
                else:
                    found[0].finish(reason, failed=reason == "failed")

    def metrics(self) -> list[str]:
        """This node's part of the cluster for /metrics (Prometheus text): per node, like
        every other family (scrape each node; sum in the query), except
        ``cluster_endpoints_online``, the poles online on any live node as this node knows
        them (its own and the fresh status of the others): the same on every node."""
        stats = self.bus.stats
        online = {e.id for e in self.node.poles() if e.online}
        online |= {ep for ep, view in self.remote_endpoints().items() if view.get("online")}
        node = f'{{node="{self.id}"}}'
        return [
            *family("cluster_node_info", "gauge", "This node's id in the cluster.", [(node, 1)]),
            *family("cluster_leader", "gauge", "1 while this node holds the leader lease.",
                    [("", int(self.bus.is_leader()))]),
            *family("cluster_nodes", "gauge", "Live nodes (presence keys) this node sees.",
                    [("", len(self.live))]),
            *family("cluster_communes", "gauge", "Communes assigned to this node.",
                    [("", len(self.mine()))]),
            *family("cluster_endpoints_online", "gauge",
                    "Endpoints online on any live node of the cluster.", [("", len(online))]),
            *family("cluster_broadcasts", "gauge", "Broadcasts encoded here or relayed here.",
                    [('{role="encoding"}', len(self.local)),
                     ('{role="relaying"}', len(self.relayed))]),
            *family("cluster_audio_messages_sent_total", "counter",
                    "Audio bundles published (one per tick per receiving node).",
                    [("", self.audio_sent)]),
            *family("cluster_audio_ticks_late_total", "counter",
                    "Bundle ticks more than 10 ms past their deadline.",
                    [("", self.pacer.late_frames)]),
            *family("cluster_packets_relayed_total", "counter",
                    "Packets received in other nodes' bundles and played here.",
                    [("", self.packets_relayed)]),
            *family("cluster_commands_refused_total", "counter",
                    "Fenced commands dropped: their token is older than one seen.",
                    [("", stats.dropped_stale)]),
            *family("cluster_lifecycle_gaps_total", "counter",
                    "Jumps in the lifecycle sequence (missed messages).", [("", stats.gaps)]),
            *family("cluster_redis_reconnects_total", "counter",
                    "Reconnections to Redis.", [("", stats.reconnects)]),
            *family("cluster_resyncs_total", "counter",
                    "Broadcasts started or ended here from the on-air snapshots.",
                    [('{action="started"}', self.resyncs_started),
                     ('{action="ended"}', self.resyncs_ended)]),
        ]  # fmt: skip

    def view(self) -> dict[str, Any]:
        """For /healthz: this node, the leader flag, live nodes, and the communes it serves."""
        return {
            "node": self.id,
            "leader": self.bus.is_leader(),
            "token": self.bus.token,  # the fencing token while leader, else null
            "fence": self.bus.fence.highest,  # the highest token seen
            "commands_refused": self.bus.stats.dropped_stale,  # fenced commands below it
            "nodes": sorted(self.live),
            "assignment": self.version[1],
            "communes": list(self.mine()),
            "leader_jobs": list(self.jobs_running),
            "encoding": sorted(self.local),
            "relaying": sorted(self.relayed),
            "audio_messages_sent": self.audio_sent,
            "audio_ticks_late": self.pacer.late_frames,
            "packets_relayed": self.packets_relayed,
            "resyncs": {"started": self.resyncs_started, "ended": self.resyncs_ended},
        }
