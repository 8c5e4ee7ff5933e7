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
from collections.abc import Callable
from typing import Any

from loa.cluster.assign import assign
from loa.cluster.messages import Assignment, Envelope
from loa.config import ClusterConfig
from loa.relay.bus import FAILURES, Bus, BusConfig, Handlers
from loa.relay.node import Node

log = logging.getLogger(__name__)
REFRESH_S = 0.5  # how often live nodes are read and (on the leader) communes placed


def _rank(commune: str, node: str) -> bytes:
    return hashlib.blake2b(f"{commune}\0{node}".encode(), digest_size=8).digest()


class ClusterMember:
    """This node in the cluster: see the module docstring."""

    def __init__(self, config: ClusterConfig, node: Node, *, bus: BusConfig | None = None) -> None:
        self.config = config
        self.node = node
        self.id = config.node_id
        self.bus = Bus(
            bus
            or BusConfig(
                config.redis_url, config.node_id, config.name, config.public_url.rstrip("/"),
                config.capacity,
            ),
            Handlers(command=self._on_command, resync=self._on_resync,
                     leadership=self._on_leadership),
        )  # fmt: skip
        self.live: dict[str, dict[str, Any]] = {}  # node id → presence (public_url, capacity)
        self.placement: dict[str, str] = {}  # commune → node, the newest assignment seen
        self.version: tuple[int, int] = (0, 0)  # its (fencing token, version)
        # Called after the placement changed (the web layer redirects moved speakers).
        self.on_placement: Callable[[], None] | None = None
        self.assignments_published = 0
        self._reread = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifetime ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self._task = asyncio.create_task(self._run(), name=f"loa-cluster-{self.id}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.bus.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except FAILURES as exc:  # Redis away: the bus reconnects; keep what we know
                log.debug("[node=%s] cluster refresh failed: %s", self.id, exc)
            except Exception:
                log.exception("[node=%s] cluster refresh failed", self.id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):
                    await self._wake.wait()

    async def refresh(self) -> None:
        """One round: live nodes, the stored assignment if needed, the leader's placement."""
        self.live = await self.bus.nodes()
        if self._reread:
            envelope = await self.bus.assignment()
            self._reread = False
            if envelope is not None:
                self._follow(envelope)
        if self.bus.is_leader() and self.id in self.live:
            await self._place()

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
        if isinstance(envelope.message, Assignment):
            self._follow(envelope)

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
        self._reread = True
        self._wake.set()

    def _on_leadership(self, leader: bool) -> None:
        self._wake.set()

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

    def view(self) -> dict[str, Any]:
        """For /healthz: this node, the leader flag, live nodes, and the communes it serves."""
        return {
            "node": self.id,
            "leader": self.bus.is_leader(),
            "nodes": sorted(self.live),
            "assignment": self.version[1],
            "communes": list(self.mine()),
        }
