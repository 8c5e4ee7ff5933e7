"""The dashboard's live status: one publisher watches the node and pushes coalesced snapshots
to every dashboard over ``GET /api/v1/status/ws``.

The node has no change events, so the publisher polls a cheap fingerprint of what a dashboard
shows (who is online, who plays what, levels, broadcast states) every ``POLL_S``. A change is
pushed at once unless the last push was less than ``MIN_PUSH_S`` ago, in which case it waits
for the window, so a burst of changes becomes one push. Speakers' own counters (received,
lost, jitter) change with every status report; those alone are pushed at most every
``STATS_PUSH_S``, so a fleet of a thousand speakers does not flood a phone. Each snapshot is
serialised once per scope and shared; every socket has a one-slot mailbox (the newest snapshot
wins) and its own sender, so a slow phone never delays the others.

Scope. Each socket gets only what its user may see: the poles of their zone's subtree and the
broadcasts that play there (listeners cut to those poles), counts over those poles; admins
and unscoped viewers everything. Sockets of one zone share one snapshot, and a scope whose
snapshot did not change is not pushed to (a commune does not learn when another changes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from weakref import WeakSet

from aiohttp import WSCloseCode, WSMsgType, web

from loa.access import User, visible_zones
from loa.relay.core.priority import BroadcastSpec
from loa.relay.endpoint import Endpoint
from loa.relay.node import Node
from loa.web.keys import NODE, PUBLISHER, SOCKETS, USER
from loa.web.views import broadcast_json, endpoint_json

log = logging.getLogger(__name__)

POLL_S = 0.05
MIN_PUSH_S = 0.25
STATS_PUSH_S = 2.0
HEARTBEAT_S = 20.0


def scope_of(user: User | None) -> str | None:
    """Sockets with the same scope see the same snapshot: a zone, or None for everything."""
    if user is None or user.role == "admin" or user.zone is None:
        return None
    return user.zone


Parts = tuple[list[dict[str, Any]], list[tuple[BroadcastSpec, dict[str, Any]]]]
Remote = Callable[[], Mapping[str, dict[str, Any]]]


def parts(node: Node, remote: Mapping[str, dict[str, Any]] | None = None) -> Parts:
    """Every pole's and every active broadcast's view, built once per push for all scopes.
    ``remote``: in a cluster, the views other nodes published of the poles they serve; a
    pole offline here and online there is shown as there."""
    remote = remote or {}
    endpoints = [endpoint_view(node, e, remote) for e in node.poles()]
    broadcasts = [(bc.spec, broadcast_json(node, bc)) for bc in node.broadcasts.values()]
    return endpoints, broadcasts


def endpoint_view(node: Node, ep: Endpoint, remote: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """A pole's view: this node's, or, in a cluster, the view of the live node it is online
    on (``remote``), when it is offline here."""
    return remote[ep.id] if not ep.online and ep.id in remote else endpoint_json(node, ep)


def snapshot(
    node: Node,
    user: User | None = None,
    views: Parts | None = None,
    remote: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What a dashboard shows: the poles and active broadcasts ``user`` sees (None: all),
    and the totals over those poles. ``views``: ``parts(node)``, when already built."""
    endpoints, broadcasts = parts(node, remote) if views is None else views
    zones = above = None
    if user is not None and (zone := scope_of(user)) is not None:
        zones = visible_zones(user, node.zones) or frozenset()
        above = set(node.zones.lineage(zone)) if zone in node.zones else set()
        endpoints = [e for e in endpoints if e["zone"] in zones]
    online = {e["id"] for e in endpoints if e["online"]}
    shown = []
    for spec, data in broadcasts:
        if zones is not None and above is not None:
            if not _plays_in(node, spec, zones, above):
                continue
            data = _cut(node, data, zones)
        shown.append({**data, "hearing": sum(1 for e in data["listeners"] if e in online)})
    playing = sum(1 for e in endpoints if e["online"] and e["playing"] is not None)
    return {
        "type": "status",
        "time": time.time(),
        "endpoints": endpoints,
        "broadcasts": shown,
        "counts": {
            "online": len(online),
            "offline": len(endpoints) - len(online),
            "playing": playing,
        },
    }


def _plays_in(node: Node, spec: BroadcastSpec, zones: frozenset[str], above: set[str]) -> bool:
    """``views.sees_broadcast`` with the scope's zone sets at hand."""
    if any(z in zones or z in above for z in spec.target_zones):
        return True
    eps = node.endpoints
    return any(e in eps and eps[e].spec.zone in zones for e in spec.target_endpoints)


def _cut(node: Node, data: dict[str, Any], zones: frozenset[str]) -> dict[str, Any]:
    """``views.scoped`` with the scope's zone set at hand; a copy (views are shared)."""
    eps = node.endpoints

    def mine(ep_id: str) -> bool:
        return ep_id in eps and eps[ep_id].spec.zone in zones

    heard = {k: v for k, v in data["heard_s"].items() if mine(k)}
    return {
        **data,
        "listeners": [e for e in data["listeners"] if mine(e)],
        "heard_s": heard,
        "endpoints_heard": sum(1 for v in heard.values() if v > 0),
    }


def fingerprint(node: Node) -> tuple[Any, ...]:
    """Everything a dashboard shows except the speakers' counters; cheap to build and compare
    (about 1 µs per endpoint)."""
    holder = node.router.holder
    endpoints = tuple(
        (
            e.spec.id,
            e.online,
            holder(e.spec.id),
            e.volume,
            e.emergency_volume,
            e.muted,
            e.session.transport if e.session is not None else None,
        )
        for e in node.poles()
    )
    broadcasts = tuple((b.id, b.state) for b in node.broadcasts.values())
    return endpoints, broadcasts


class Mailbox:
    """One dashboard's slot: the newest snapshot of its user's scope not yet sent to it."""

    __slots__ = ("event", "latest", "user")

    def __init__(self, user: User | None = None) -> None:
        self.user = user
        self.latest: str | None = None
        self.event = asyncio.Event()

    def put(self, data: str) -> None:
        self.latest = data
        self.event.set()

    async def take(self) -> str:
        await self.event.wait()
        self.event.clear()
        data, self.latest = self.latest, None
        assert data is not None
        return data


class StatusPublisher:
    """Driven by its cleanup context (``run()`` as a task); sockets subscribe and unsubscribe.
    Bound to the node by the first subscriber (the API sub-app reaches the node only through
    a request)."""

    def __init__(self) -> None:
        self.node: Node | None = None
        self.mailboxes: set[Mailbox] = set()
        self.pushes = 0
        self._wake = asyncio.Event()
        self._key: tuple[Any, ...] | None = None
        self._stats: list[dict[str, Any]] = []
        self._last_push = float("-inf")
        self._shown: dict[str | None, dict[str, Any]] = {}  # scope → last snapshot pushed
        self.remote: Remote | None = None  # cluster: other nodes' poles (ClusterMember)

    def remote_views(self) -> Mapping[str, dict[str, Any]]:
        """In a cluster, the poles other live nodes serve, as they report them."""
        return self.remote() if self.remote is not None else {}

    def _fingerprint(self) -> tuple[Any, ...]:
        assert self.node is not None
        remote = self.remote_views()
        seen = tuple(
            (k, v["online"], v["playing"], v["transport"], v["volume"], v["muted"])
            for k, v in sorted(remote.items())
        )
        return fingerprint(self.node), seen

    def _statuses(self) -> list[Any]:
        assert self.node is not None
        remote = self.remote_views()
        return [e.status for e in self.node.poles()] + [v["status"] for v in remote.values()]

    def subscribe(self, node: Node, user: User | None = None) -> Mailbox:
        self.node = node
        if not self.mailboxes:  # nobody saw the changes made while no one was watching
            self._record()
        box = Mailbox(user)
        data = snapshot(node, user, remote=self.remote_views())
        box.put(_serialise(data))  # a new dashboard gets the whole picture at once
        scope = scope_of(user)
        if not any(scope_of(b.user) == scope for b in self.mailboxes):
            self._shown[scope] = {k: v for k, v in data.items() if k != "time"}
        self.mailboxes.add(box)
        self._wake.set()
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        self.mailboxes.discard(box)

    def _record(self) -> None:
        assert self.node is not None
        self._key = self._fingerprint()
        self._stats = self._statuses()

    def poll(self, now: float) -> bool:
        """Push if something changed and the coalescing window allows; True if it pushed."""
        assert self.node is not None
        key = self._fingerprint()
        stats = self._statuses()
        # A speaker's report replaces its status dict, so identity tells a new report.
        stats_changed = len(stats) != len(self._stats) or any(
            a is not b for a, b in zip(stats, self._stats, strict=True)
        )
        since = now - self._last_push
        if not (
            (key != self._key and since >= MIN_PUSH_S) or (stats_changed and since >= STATS_PUSH_S)
        ):
            return False
        self._key, self._stats, self._last_push = key, stats, now
        self.pushes += 1
        self._push()
        return True

    def _push(self) -> None:
        """One snapshot per scope, to that scope's sockets, unless it shows what it showed."""
        assert self.node is not None
        scopes: dict[str | None, list[Mailbox]] = {}
        for box in self.mailboxes:
            scopes.setdefault(scope_of(box.user), []).append(box)
        for scope in set(self._shown) - set(scopes):
            del self._shown[scope]
        views = parts(self.node, self.remote_views())
        for scope, boxes in scopes.items():
            data = snapshot(self.node, boxes[0].user, views)
            shown = {k: v for k, v in data.items() if k != "time"}
            if self._shown.get(scope) == shown:
                continue
            self._shown[scope] = shown
            text = _serialise(data)
            for box in boxes:
                box.put(text)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.mailboxes:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(POLL_S)
            if self.mailboxes:
                self.poll(loop.time())


def _serialise(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def _send_loop(ws: web.WebSocketResponse, box: Mailbox) -> None:
    while not ws.closed:
        data = await box.take()
        try:
            await ws.send_str(data)
        except (ConnectionError, RuntimeError):  # the peer went away mid-send
            return


async def status_ws(request: web.Request) -> web.WebSocketResponse:
    """Push {"type": "status", endpoints, broadcasts, counts} on every change (coalesced)."""
    publisher = request.config_dict[PUBLISHER]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
    await ws.prepare(request)
    request.config_dict[SOCKETS].add(ws)
    box = publisher.subscribe(request.config_dict[NODE], request.get(USER))
    sender = asyncio.create_task(_send_loop(ws, box), name="loa-status-ws-send")
    try:
        async for msg in ws:  # the dashboard only listens; anything it sends is ignored
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        publisher.unsubscribe(box)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


def setup(api_app: web.Application) -> None:
    """Add ``GET /status/ws`` to the API sub-app, with the publisher as a cleanup context.
    Idempotent."""
    if PUBLISHER in api_app:
        return
    sockets: WeakSet[web.WebSocketResponse] = WeakSet()
    publisher = StatusPublisher()
    api_app[SOCKETS] = sockets
    api_app[PUBLISHER] = publisher

    async def close_sockets(app: web.Application) -> None:
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(publisher.run(), name="loa-status-publisher")
        yield
        await close_sockets(app)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    api_app.cleanup_ctx.append(publisher_ctx)
    api_app.on_shutdown.append(close_sockets)
    api_app.router.add_get("/status/ws", status_ws)
