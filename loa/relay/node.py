"""One relay node: owns the router, the speaker sessions, the broadcasts and the fan-out.

The asyncio side of the sans-IO core: it feeds router events, applies the router's actions
(pause, resume, volume, log) and moves packets. Nothing here decides who hears what."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from loa.codecs import FRAME_S
from loa.codecs.opus import OpusEncoder
from loa.config import Config, EndpointSpec
from loa.errors import BadRequest, ConfigError, Conflict, NotFound
from loa.relay.broadcast import Broadcast, LogEntry, State
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.router import (
    BroadcastStarted,
    BroadcastStopped,
    EndpointAttached,
    EndpointDetached,
    Expired,
    ItemBoundary,
    Paused,
    Resumed,
    Router,
    StopReason,
    Switched,
    Tick,
    ZoneAdded,
    ZoneMoved,
    ZoneRemoved,
)
from loa.relay.core.session import Session, SessionTable, Transport
from loa.relay.core.zones import ZoneTree
from loa.relay.metrics import Metrics
from loa.streamer.base import Source

log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    """Device tokens are long random strings, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


class Peer(Protocol):
    """A speaker's control channel as the node sees it: never awaited on the hot path."""

    def send_json(self, message: dict[str, Any]) -> None: ...
    def send_audio(self, packet: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


@dataclass
class Endpoint:
    """An endpoint's configuration and what the node knows of it right now."""

    spec: EndpointSpec
    token_hash: str | None
    volume: int
    emergency_volume: int
    muted: bool = False
    session: Session | None = None
    peer: Peer | None = None
    rewriter: Rewriter | None = None  # static rtp endpoints only
    address: tuple[str, int] | None = None  # static rtp endpoints only
    last_seen: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    sink: Callable[[bytes], None] | None = None  # in-process listeners (Ogg mount, WHEP)
    heard_since: float | None = None
    idle_since: float | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def online(self) -> bool:
        return self.address is not None or self.session is not None or self.sink is not None

    @property
    def listener(self) -> bool:
        """A virtual endpoint standing for in-process listeners, not a pole."""
        return self.sink is not None


class Node:
    """Driven by its owner (the web app's cleanup context): ``start()``, then API calls and
    datagrams, then ``close()``."""

    def __init__(self, config: Config, *, on_log: Callable[[LogEntry], None] | None = None) -> None:
        self.config = config
        self.zones = ZoneTree.build((z.id, z.parent) for z in config.zones)
        self.router = Router(self.zones)
        self.sessions = SessionTable(
            keepalive_s=config.relay.keepalive_s, session_timeout_s=config.relay.session_timeout_s
        )
        self.metrics = Metrics()
        self.endpoints: dict[str, Endpoint] = {}
        self._by_token: dict[str, str] = {}
        self.broadcasts: dict[str, Broadcast] = {}
        self.history: list[LogEntry] = []
        self.on_log = on_log
        # Called with (endpoint id, online, Unix time) when a speaker connects or goes away:
        # the availability reports and status webhooks hang off this.
        self.on_presence: Callable[[str, bool, float], None] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._tasks: dict[str, asyncio.Task[State]] = {}
        self._keys = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None
        for spec in config.endpoints:
            self.add_endpoint(spec)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        from loa.relay.udp import RelayDatagramProtocol

        host, port = self.config.relay.udp_host, self.config.relay.udp_port
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot bind UDP {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        self._sock = sock
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: RelayDatagramProtocol(self), sock=sock
        )
        self._ticker = asyncio.create_task(self._tick_forever(), name="loa-node-ticker")

    @property
    def udp_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        for bc_id in list(self._tasks):
            await self.stop_broadcast(bc_id, reason="shutdown")
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for ep in self.endpoints.values():
            if ep.peer is not None:
                ep.peer.close(1001, "server shutting down")
        if self.transport is not None:
            self.transport.close()

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_expire = 0.0
        while True:
            await asyncio.sleep(FRAME_S)
            now = loop.time()
            self._apply(self.router.handle(Tick(now)), now)
            if now >= next_expire:
                next_expire = now + 1.0
                for session in self.sessions.expire(now):
                    self._session_lost_udp(session)

    # -- endpoints ----------------------------------------------------------------------
    def add_endpoint(self, spec: EndpointSpec, *, token_hash: str | None = None) -> Endpoint:
        if spec.id in self.endpoints:
            raise Conflict(f"endpoint {spec.id} already exists")
        ep = Endpoint(
            spec=spec,
            token_hash=token_hash or (hash_token(spec.token) if spec.token else None),
            volume=spec.volume,
            emergency_volume=spec.emergency_volume,
        )
        if spec.kind == "rtp":
            assert spec.address is not None
            host, _, port = spec.address.rpartition(":")
            if not host or not port.isdigit():
                raise BadRequest(
                    f"endpoint {spec.id}: address must be host:port, got {spec.address!r}"
                )
            ep.address = (host, int(port))
            ep.rewriter = Rewriter(secrets.randbits(32), secrets.randbits(16), secrets.randbits(32))
        if ep.token_hash:
            self._by_token[ep.token_hash] = spec.id
        self.endpoints[spec.id] = ep
        self._apply(self.router.handle(EndpointAttached(spec.id, spec.zone)), self._now())
        return ep

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Forget an endpoint: its speaker is disconnected and the router lets go of it."""
        ep = self.endpoint(endpoint_id)
        if ep.peer is not None:
            ep.peer.close(4404, "endpoint removed")
        if ep.session is not None:
            self.sessions.close(ep.session.id)
        now = asyncio.get_running_loop().time()
        self._apply(self.router.handle(EndpointDetached(ep.id)), now)
        if ep.token_hash:
            self._by_token.pop(ep.token_hash, None)
        del self.endpoints[ep.id]

    def update_endpoint(self, spec: EndpointSpec, *, token_hash: str | None) -> None:
        """Apply an edited endpoint (name, zone, address, levels, token) without a restart."""
        old = self.endpoint(spec.id)
        moved = old.spec.zone != spec.zone or old.spec.address != spec.address
        if moved or old.spec.kind != spec.kind:
            peer = old.peer
            self.remove_endpoint(spec.id)
            self.add_endpoint(spec, token_hash=token_hash)
            if peer is not None:
                peer.close(4409, "endpoint changed; reconnect")
            return
        if old.token_hash != token_hash:
            if old.token_hash:
                self._by_token.pop(old.token_hash, None)
            if token_hash:
                self._by_token[token_hash] = spec.id
            old.token_hash = token_hash
            if old.peer is not None:  # a rotated token ends the session that used the old one
                old.peer.close(4401, "device token rotated")
        old.spec = spec
        self.set_levels(old, volume=spec.volume, emergency_volume=spec.emergency_volume)

    def add_zone(self, zone_id: str, parent: str | None) -> None:
        self._apply(self.router.handle(ZoneAdded(zone_id, parent)), self._now())

    def move_zone(self, zone_id: str, parent: str | None) -> None:
        self._apply(self.router.handle(ZoneMoved(zone_id, parent)), self._now())

    def remove_zone(self, zone_id: str) -> None:
        self._apply(self.router.handle(ZoneRemoved(zone_id)), self._now())

    def sync_inventory(
        self, zones: list[tuple[str, str | None]], endpoints: list[tuple[EndpointSpec, str | None]]
    ) -> None:
        """Make the node's zones and endpoints exactly the store's (the store is authoritative
        after the first run; the config file only seeds an empty store). ``zones`` are in
        parent-first order; ``endpoints`` are (spec, token hash)."""
        wanted = {z for z, _ in zones}
        for zone_id, parent in zones:
            if zone_id not in self.zones:
                self.add_zone(zone_id, parent)
            elif self.zones.parent(zone_id) != parent:
                self.move_zone(zone_id, parent)
        by_id = {spec.id: (spec, token_hash) for spec, token_hash in endpoints}
        for ep in self.poles():
            if ep.id not in by_id:
                log.warning("[ep=%s] in the config file but not in the database: ignored", ep.id)
                self.remove_endpoint(ep.id)
        for spec, token_hash in by_id.values():
            if spec.id in self.endpoints:
                self.update_endpoint(spec, token_hash=token_hash)
            else:
                self.add_endpoint(spec, token_hash=token_hash)
        for zone_id in reversed([z for z in self._zone_order() if z not in wanted]):
            self.remove_zone(zone_id)

    def _zone_order(self) -> list[str]:
        out: list[str] = []

        def walk(zone_id: str) -> None:
            out.append(zone_id)
            for child in self.zones.children(zone_id):
                walk(child)

        for root in [z for z in self.zones if self.zones.parent(z) is None]:
            walk(root)
        return out

    def _now(self) -> float:
        return asyncio.get_running_loop().time() if _loop_running() else 0.0

    def attach_listener(self, zone_id: str, sink: Callable[[bytes], None]) -> Endpoint:
        """A virtual endpoint in ``zone_id`` that hears exactly what a pole there would hear
        (same router, same rules) and hands each rewritten RTP packet to ``sink``, which must
        not block. Used by the Ogg/Opus listen mount and WHEP. Detach with detach_listener."""
        if zone_id not in self.zones:
            raise NotFound(f"zone {zone_id} not found", zone=zone_id)
        spec = EndpointSpec(
            f"listener:{zone_id}:{next(self._keys)}",
            f"listener {zone_id}",
            zone_id,
            kind="listener",
        )
        ep = Endpoint(spec=spec, token_hash=None, volume=100, emergency_volume=100, sink=sink)
        ep.rewriter = Rewriter(secrets.randbits(32), secrets.randbits(16), secrets.randbits(32))
        self.endpoints[spec.id] = ep
        now = asyncio.get_running_loop().time()
        self._apply(self.router.handle(EndpointAttached(spec.id, zone_id)), now)
        return ep

    def detach_listener(self, ep: Endpoint) -> None:
        if self.endpoints.get(ep.id) is not ep or not ep.listener:
            return
        now = asyncio.get_running_loop().time()
        self._apply(self.router.handle(EndpointDetached(ep.id)), now)
        del self.endpoints[ep.id]

    def poles(self) -> list[Endpoint]:
        """Real endpoints (speakers and RTP receivers), without in-process listeners."""
        return [e for e in self.endpoints.values() if not e.listener]

    def endpoint(self, endpoint_id: str) -> Endpoint:
        ep = self.endpoints.get(endpoint_id)
        if ep is None or ep.listener:
            raise NotFound(f"endpoint {endpoint_id} not found")
        return ep

    def endpoint_by_token(self, token: str) -> Endpoint | None:
        ep_id = self._by_token.get(hash_token(token))
        return self.endpoints.get(ep_id) if ep_id else None

    def set_levels(
        self,
        ep: Endpoint,
        *,
        volume: int | None = None,
        emergency_volume: int | None = None,
        muted: bool | None = None,
    ) -> None:
        if volume is not None:
            ep.volume = volume
        if emergency_volume is not None:
            ep.emergency_volume = emergency_volume
        if muted is not None:
            ep.muted = muted
        if ep.peer is None:
            return
        if volume is not None:
            ep.peer.send_json({"type": "volume", "volume": volume})
        if muted is not None:
            ep.peer.send_json({"type": "mute", "muted": muted})
        holder = self.router.holder(ep.id)
        ep.peer.send_json(self.playing_message(ep, self.broadcasts.get(holder) if holder else None))

    # -- speaker sessions ---------------------------------------------------------------
    def attach_speaker(self, ep: Endpoint, peer: Peer, now: float) -> Session:
        session_id, key = secrets.token_bytes(8), secrets.token_bytes(32)
        session = self.sessions.open(
            ep.id,
            session_id,
            key,
            secrets.randbits(32),
            now,
            initial_sequence=secrets.randbits(16),
            initial_timestamp=secrets.randbits(32),
        ).session
        if ep.peer is not None and ep.peer is not peer:
            ep.peer.close(4409, "replaced by a newer connection")
        ep.peer, ep.session, ep.last_seen = peer, session, time.time()
        self._heard_start(ep, now, self.router.holder(ep.id))
        if self.on_presence is not None:
            self.on_presence(ep.id, True, ep.last_seen)
        self.metrics.speaker_connects += 1
        log.info("[ep=%s] speaker connected", ep.id)
        return session

    def detach_speaker(self, ep: Endpoint, peer: Peer, now: float) -> None:
        if ep.peer is not peer:  # an older connection ending after it was replaced
            return
        self._heard_stop(ep, now)
        if ep.session is not None:
            self.sessions.close(ep.session.id)
        ep.peer, ep.session = None, None
        log.info("[ep=%s] speaker disconnected", ep.id)
        if self.on_presence is not None:
            self.on_presence(ep.id, False, time.time())

    def _session_lost_udp(self, session: Session) -> None:
        ep = self.endpoints.get(session.endpoint_id)
        if ep is not None and ep.peer is not None:
            ep.peer.send_json({"type": "transport", "mode": "none", "reason": "udp timeout"})

    def on_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Returns the reply to send back (an ack), if any."""
        from loa.relay.core.session import Accepted, Dropped, RtcpReceived

        match self.sessions.on_datagram(data, addr, now):
            case Accepted(session=session, reply=reply):
                ep = self.endpoints.get(session.endpoint_id)
                if ep is not None:
                    ep.last_seen = time.time()
                return reply
            case RtcpReceived():
                self.metrics.rtcp_received += 1
            case Dropped():
                self.metrics.datagrams_dropped += 1
        return None

    # -- broadcasts ---------------------------------------------------------------------
    async def start_broadcast(
        self,
        spec: BroadcastSpec,
        source: Source,
        *,
        what: str,
        source_kind: str,
        created_by: str,
    ) -> Broadcast:
        if spec.id in self.broadcasts:
            raise Conflict(f"broadcast {spec.id} already exists")
        encoder = OpusEncoder.from_config(self.config.opus)
        bc = Broadcast(
            spec,
            source,
            encoder,
            key=next(self._keys),
            what=what,
            source_kind=source_kind,
            created_by=created_by,
            deliver=self.deliver,
            emergency_volume=spec.priority is Priority.EMERGENCY,
            stamp_frames=self.config.relay.stamp_frames,
        )
        now = asyncio.get_running_loop().time()
        try:
            actions = self.router.handle(BroadcastStarted(spec, now))
        except Conflict:
            await source.aclose()
            raise
        self.broadcasts[spec.id] = bc
        self._apply(actions, now)
        if bc.state.ended:  # expired on arrival
            await source.aclose()
            self._finish(bc)
            return bc
        if not self.router.listeners(spec.id) and spec.resumable and bc.state is State.PENDING:
            bc.pause()
        task = asyncio.create_task(bc.run(), name=f"loa-bc-{spec.id}")
        self._tasks[spec.id] = task
        task.add_done_callback(partial(self._on_task_done, bc))
        self.metrics.broadcasts_started[spec.priority.name.lower()] += 1
        log.info("[bc=%s] started: %s (%s)", spec.id, what, spec.priority.name.lower())
        return bc

    async def stop_broadcast(self, bc_id: str, *, reason: str = "stopped") -> Broadcast:
        bc = self.broadcasts.get(bc_id)
        if bc is None:
            raise NotFound(f"broadcast {bc_id} is not active")
        bc.request_stop(reason)
        task = self._tasks.get(bc_id)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return bc

    def _on_task_done(self, bc: Broadcast, task: asyncio.Task[State]) -> None:
        self._tasks.pop(bc.id, None)
        if bc.id not in self.broadcasts:
            return
        if bc.id in self.router.broadcasts():  # an expired one is already gone from the router
            reason: StopReason = "stopped"
            if bc.state is State.FINISHED:
                reason = "finished"
            elif bc.state is State.FAILED:
                reason = "failed"
            now = asyncio.get_running_loop().time()
            self._apply(self.router.handle(BroadcastStopped(bc.id, reason)), now)
        self._finish(bc)

    def _finish(self, bc: Broadcast) -> None:
        self.broadcasts.pop(bc.id, None)
        bc.ended.set()
        self.history.append(bc.log)
        del self.history[:-1000]
        if self.on_log is not None:
            self.on_log(bc.log)
        log.info("[bc=%s] ended: %s", bc.id, bc.log.reason)

    # -- the router's word --------------------------------------------------------------
    def _apply(self, actions: list[Any], now: float) -> None:
        for action in actions:
            match action:
                case Switched(endpoint_id=ep_id, old=old, new=new):
                    self._switched(ep_id, old, new, now)
                case Paused(broadcast_id=bc_id):
                    if (bc := self.broadcasts.get(bc_id)) is not None:
                        bc.pause()
                case Resumed(broadcast_id=bc_id):
                    if (bc := self.broadcasts.get(bc_id)) is not None:
                        bc.resume()
                case Expired(broadcast_id=bc_id):
                    if (bc := self.broadcasts.get(bc_id)) is not None:
                        bc.state = State.EXPIRED
                        bc.log.state, bc.log.reason = "expired", "expired"
                        bc.log.ended_at = time.time()
                        self.metrics.broadcasts_expired += 1
                        task = self._tasks.get(bc_id)
                        if task is not None:
                            bc.request_stop("expired")
                            task.cancel()

    def _switched(self, ep_id: str, old: str | None, new: str | None, now: float) -> None:
        ep = self.endpoints.get(ep_id)
        if ep is None:
            return
        self._heard_stop(ep, now, bc_id=old)
        if old is not None and new is not None:
            self.metrics.preemptions += 1
            if (old_bc := self.broadcasts.get(old)) is not None:
                old_bc.log.preemptions += 1
        new_bc = self.broadcasts.get(new) if new is not None else None
        if new is None:
            ep.idle_since = now
        elif old is None and ep.idle_since is not None:
            # Keep the receiver's clock honest across silence: the next packet's timestamp
            # jumps by the idle time and carries the marker.
            rewriter = ep.session.rewriter if ep.session is not None else ep.rewriter
            if rewriter is not None:
                rewriter.gap(max(1, round((now - ep.idle_since) / FRAME_S)))
            ep.idle_since = None
        if new_bc is not None:
            new_bc.mark_playing()
        self._heard_start(ep, now, new)
        if ep.peer is not None:
            old_bc = self.broadcasts.get(old) if old is not None else None
            if new is None and old_bc is not None and old_bc.stop_reason == "stopped":
                # An operator's stop is heard at once, not after the speaker's buffer drains.
                # (A speaker switching to another broadcast is told by that one's marker bit.)
                ep.peer.send_json({"type": "stop"})
            ep.peer.send_json(self.playing_message(ep, new_bc))

    def playing_message(self, ep: Endpoint, bc: Broadcast | None) -> dict[str, Any]:
        emergency = bc is not None and bc.emergency_volume
        return {
            "type": "playing",
            "broadcast": bc.id if bc else None,
            "class": bc.spec.priority.name.lower() if bc else None,
            "what": bc.log.what if bc else None,
            "volume": ep.emergency_volume if emergency else ep.volume,
            "override_mute": emergency,
        }

    def _heard_start(self, ep: Endpoint, now: float, holder: str | None) -> None:
        # The log counts poles; in-process listeners (browsers, the Ogg mount) are not poles.
        if ep.online and holder is not None and not ep.listener:
            ep.heard_since = now

    def _heard_stop(self, ep: Endpoint, now: float, *, bc_id: str | None = None) -> None:
        bc_id = bc_id if bc_id is not None else self.router.holder(ep.id)
        if ep.heard_since is not None and bc_id is not None:
            bc = self.broadcasts.get(bc_id)
            if bc is not None:
                bc.log.heard_s[ep.id] = bc.log.heard_s.get(ep.id, 0.0) + (now - ep.heard_since)
        ep.heard_since = None

    # -- the hot path ---------------------------------------------------------------------
    def deliver(self, bc: Broadcast, packet: bytes, frame_index: int, item_end: bool) -> None:
        """Fan one encoded frame out to every endpoint that hears ``bc``. Never awaits."""
        started = time.perf_counter()
        # The socket's own sendto: asyncio's transport adds ~0.5 µs to ~3 µs per packet
        # (bench profile). A full send buffer drops that packet: it would be stale anyway.
        sendto = self._sock.sendto if self._sock is not None else None
        endpoints = self.endpoints
        sent = dropped = 0
        for ep_id in self.router.listeners(bc.id):
            ep = endpoints[ep_id]
            session = ep.session
            if session is not None:
                destination = session.destination  # set only while the session is on UDP
                if destination is not None and sendto is not None:
                    try:
                        sendto(session.rewriter.rewrite(packet, bc.key, frame_index), destination)
                        sent += 1
                    except OSError:
                        dropped += 1
                elif session.transport is Transport.WS and ep.peer is not None:
                    ep.peer.send_audio(session.rewriter.rewrite(packet, bc.key, frame_index))
                    sent += 1
            elif ep.sink is not None and ep.rewriter is not None:
                ep.sink(ep.rewriter.rewrite(packet, bc.key, frame_index))
                sent += 1
            elif ep.address is not None and sendto is not None and ep.rewriter is not None:
                try:
                    sendto(ep.rewriter.rewrite(packet, bc.key, frame_index), ep.address)
                    sent += 1
                except OSError:
                    dropped += 1
        self.metrics.packets_sent += sent
        self.metrics.udp_send_dropped += dropped
        self.metrics.observe_fanout(time.perf_counter() - started)
        self.metrics.frames_encoded += 1
        if item_end:
            now = asyncio.get_running_loop().time()
            self._apply(self.router.handle(ItemBoundary(bc.id)), now)

    # -- helpers for the API ----------------------------------------------------------------
    def media_dir(self) -> Path:
        return self.config.data_dir / "media"

    def media_path(self, media_id: str) -> Path:
        from loa.web.media import media_file

        return media_file(self.media_dir(), media_id)

    @staticmethod
    def wall_to_loop(unix_time: float) -> float:
        """The API speaks Unix time; the core runs on the loop's monotonic clock."""
        return asyncio.get_running_loop().time() + (unix_time - time.time())

    # -- views ------------------------------------------------------------------------------
    def broadcast_json(self, bc: Broadcast) -> dict[str, Any]:
        data = bc.log.as_json()
        data["state"] = bc.state.value
        known = not bc.state.ended and bc.id in self.router.broadcasts()
        heard = self.router.listeners(bc.id) if known else ()
        data["listeners"] = sorted(e for e in heard if not self.endpoints[e].listener)
        data["virtual_listeners"] = len(heard) - len(data["listeners"])
        data["frames"] = bc.frames
        return data

    def endpoint_json(self, ep: Endpoint) -> dict[str, Any]:
        holder = self.router.holder(ep.id)
        return {
            "id": ep.id,
            "name": ep.spec.name,
            "zone": ep.spec.zone,
            "kind": ep.spec.kind,
            "location": {"lat": ep.spec.lat, "lon": ep.spec.lon},
            "online": ep.online,
            "transport": ep.session.transport.name.lower() if ep.session else None,
            "last_seen": ep.last_seen,
            "playing": holder,
            "volume": ep.volume,
            "emergency_volume": ep.emergency_volume,
            "muted": ep.muted,
            "status": ep.status,
        }


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
