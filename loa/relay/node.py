"""One relay node: owns the router, the speaker sessions, the broadcasts and the fan-out.

The asyncio side of the sans-IO core: it feeds router events, applies the router's actions
(pause, resume, volume, log) and moves packets. Nothing here decides who hears what. Time
reaches the core only when the core asks for it: a timer is armed for the earliest of the
router's and the session table's ``next_deadline()``, nothing ticks while nothing is due.

How the node's objects read in the API is the web layer's (``loa.web.views``); a speaker's
control channel is the core's protocol (``loa.relay.core.control``) carried by the web
layer's WebSocket handler, which reaches the node through ``Peer``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from loa.codecs import FRAME_S
from loa.codecs.opus import OpusEncoder
from loa.codecs.rtcp import is_rtcp
from loa.config import Config, EndpointSpec
from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.broadcast import Broadcast, LogEntry, State
from loa.relay.core.control import (
    CLOSE_AUTH,
    CLOSE_REMOVED,
    CLOSE_REPLACED,
    Message,
    Mute,
    Playing,
    Stop,
    Volume,
)
from loa.relay.core.control import Transport as TransportMode
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.reception import read_reception, sender_report
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
from loa.relay.core.session import (
    Accepted,
    Dropped,
    RtcpReceived,
    Session,
    SessionTable,
    Transport,
)
from loa.relay.core.variants import Variant, broadcast_of
from loa.relay.core.zones import AudioSettings, ZoneAudio, ZoneTree
from loa.relay.endpoint import Endpoint, Peer
from loa.relay.fanout import LATE_S, FanOut
from loa.relay.metrics import Metrics
from loa.relay.sendmmsg import Batch
from loa.relay.udp import RelayDatagramProtocol, bind_udp
from loa.streamer.base import Source

log = logging.getLogger(__name__)

__all__ = ["Endpoint", "Node", "Peer"]  # the node's objects, whose module is endpoint.py


class Node:
    """Driven by its owner (the web app's cleanup context): ``start()``, then API calls and
    datagrams, then ``close()``."""

    def __init__(self, config: Config, *, on_log: Callable[[LogEntry], None] | None = None) -> None:
        self.config = config
        defaults = AudioSettings(config.opus.frame_ms, False, config.relay.playout_delay_ms)
        self.zones = ZoneTree.build(((z.id, z.parent) for z in config.zones), defaults)
        for z in config.zones:
            self.zones.set_audio(z.id, ZoneAudio(z.frame_ms, z.redundancy, z.playout_delay_ms))
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
        # Called with each broadcast once it is started (loa.onair records what is on air).
        self.on_start: Callable[[Broadcast], None] | None = None
        # Called with (endpoint id, online, Unix time) when a speaker connects or goes away:
        # the availability reports and status webhooks hang off this.
        self.on_presence: Callable[[str, bool, float], None] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        # RTCP: the RTCP address (port + 1) of each static RTP endpoint, for their RRs.
        self._rtcp_peers: dict[tuple[str, int], str] = {}
        self._rtcp_timer: asyncio.TimerHandle | None = None
        # Endpoints owed an SR after their next frame of a broadcast, by broadcast key.
        self._sr_due: dict[int, set[str]] = {}
        # Control messages held while a broadcast starts, so that its first frame goes out
        # before them (``start_broadcast``); None: they go at once.
        self._held: list[tuple[Peer, Message]] | None = None
        self.fanout = FanOut(
            self.endpoints,
            self.router,
            self.metrics,
            steady_groups=self.config.relay.steady_groups,
        )
        self._tasks: dict[str, asyncio.Task[State]] = {}
        self._keys = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        for spec in config.endpoints:  # tokens reach the node hashed, from the store
            self.add_endpoint(spec)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._sock = sock = bind_udp(self.config.relay.udp_host, self.config.relay.udp_port)
        self.fanout.batch = Batch(sock, batched=self.config.relay.sendmmsg)
        self._rtcp_timer = asyncio.get_running_loop().call_later(
            self.config.relay.rtcp_interval_s, self._send_sender_reports
        )
        self.transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: RelayDatagramProtocol(self.on_datagram), sock=sock
        )
        self._schedule()

    @property
    def udp_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        self._closing = True
        for bc_id in list(self._tasks):
            await self.stop_broadcast(bc_id, reason="shutdown")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        for ep in self.endpoints.values():
            if ep.peer is not None:
                ep.peer.close(1001, "server shutting down")
        if self.transport is not None:
            self.transport.close()

    def _schedule(self, due: float | None = None) -> None:
        """Arm the timer for the core's earliest deadline. ``due``, when given, is a deadline
        just added: if an earlier one is armed already, nothing needs computing."""
        if self.transport is None or self._closing:  # not started, or closing: no timer
            return
        timer = self._timer
        if due is not None and timer is not None and timer.when() <= due:
            return
        deadlines = [self.router.next_deadline(), self.sessions.next_deadline()]
        deadline = min((d for d in deadlines if d is not None), default=None)
        if timer is not None:
            if deadline is not None and timer.when() == deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        assert self._timer is not None
        # call_at may fire within the clock's resolution before its time: the core must
        # see the deadline reached, or it would ask for the same one again.
        now = max(asyncio.get_running_loop().time(), self._timer.when())
        self._timer = None
        self._apply(self.router.handle(Tick(now)), now)
        for session in self.sessions.expire(now):
            self._session_lost_udp(session)
        self._schedule()

    # -- endpoints ----------------------------------------------------------------------
    def add_endpoint(self, spec: EndpointSpec, *, token_hash: str | None = None) -> Endpoint:
        if spec.id in self.endpoints:
            raise Conflict(f"endpoint {spec.id} already exists")
        ep = Endpoint(
            spec=spec,
            token_hash=token_hash,
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
            self._rtcp_peers[(host, int(port) + 1)] = spec.id
            ep.rewriter = Rewriter(secrets.randbits(32), secrets.randbits(16), secrets.randbits(32))
        if ep.token_hash:
            self._by_token[ep.token_hash] = spec.id
        self.endpoints[spec.id] = ep
        self._apply(self.router.handle(EndpointAttached(spec.id, spec.zone)), self._now())
        ep.redundancy = self.zones.audio(spec.zone).redundancy
        self._set_variant(ep)
        return ep

    def _set_variant(self, ep: Endpoint) -> None:
        """How ``ep``'s packets are made: its zone's frames a packet, RED when its zone sends
        redundancy and it takes RED (a static RTP endpoint, a speaker whose hello said so);
        in-process listeners always plain 20 ms. A change applies at its next packet."""
        if ep.listener:
            return
        takes_red = ep.address is not None or (ep.session is not None and ep.session.red)
        variant = Variant.of(self.zones.audio(ep.spec.zone), takes_red=takes_red)
        if variant != ep.variant:
            ep.variant, ep.rejoining = variant, True

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Forget an endpoint: its speaker is disconnected and the router lets go of it."""
        ep = self.endpoint(endpoint_id)
        if ep.peer is not None:
            ep.peer.close(CLOSE_REMOVED, "endpoint removed")
        if ep.session is not None:
            self.sessions.close(ep.session.id)
        now = asyncio.get_running_loop().time()
        self._apply(self.router.handle(EndpointDetached(ep.id)), now)
        if ep.token_hash:
            self._by_token.pop(ep.token_hash, None)
        if ep.address is not None:
            self._rtcp_peers.pop((ep.address[0], ep.address[1] + 1), None)
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
                peer.close(CLOSE_REPLACED, "endpoint changed; reconnect")
            return
        if old.token_hash != token_hash:
            if old.token_hash:
                self._by_token.pop(old.token_hash, None)
            if token_hash:
                self._by_token[token_hash] = spec.id
            old.token_hash = token_hash
            if old.peer is not None:  # a rotated token ends the session that used the old one
                old.peer.close(CLOSE_AUTH, "device token rotated")
        old.spec = spec
        self.set_levels(old, volume=spec.volume, emergency_volume=spec.emergency_volume)

    def add_zone(self, zone_id: str, parent: str | None) -> None:
        self._apply(self.router.handle(ZoneAdded(zone_id, parent)), self._now())

    def move_zone(self, zone_id: str, parent: str | None) -> None:
        delays = self._playout_delays()
        self._apply(self.router.handle(ZoneMoved(zone_id, parent)), self._now())
        self._audio_changed(delays)

    def set_zone_audio(self, zone_id: str, audio: ZoneAudio) -> None:
        """A zone's own packet settings (None fields: its parent's), applied at once to every
        endpoint below it. A speaker whose playout delay changes is asked to reconnect: its
        welcome carries the delay."""
        delays = self._playout_delays()
        if self.zones.set_audio(zone_id, audio):
            self._audio_changed(delays)

    def _playout_delays(self) -> dict[str, int]:
        """Each connected speaker's playout delay (what its welcome said)."""
        audio = self.zones.audio
        return {
            ep.id: audio(ep.spec.zone).playout_delay_ms
            for ep in self.endpoints.values()
            if ep.peer is not None
        }

    def _audio_changed(self, delays: dict[str, int]) -> None:
        """Zone settings changed: each pole's packet variant (frames a packet, RED) follows
        at its next packet (a new stream key: the receiver sees a marker); a speaker whose
        delay changed is asked to reconnect (its welcome says the delay)."""
        audio = self.zones.audio
        for each in self.endpoints.values():
            each.redundancy = audio(each.spec.zone).redundancy
            self._set_variant(each)
        for ep_id, delay in delays.items():
            ep = self.endpoints.get(ep_id)
            if ep is None or ep.peer is None:
                continue
            if audio(ep.spec.zone).playout_delay_ms != delay:
                ep.peer.close(CLOSE_REPLACED, "zone playout delay changed; reconnect")

    def remove_zone(self, zone_id: str) -> None:
        self._apply(self.router.handle(ZoneRemoved(zone_id)), self._now())

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

    def endpoint_by_token_hash(self, token_hash: str) -> Endpoint | None:
        """The endpoint whose device token hashes to ``token_hash`` (a speaker's hello)."""
        ep_id = self._by_token.get(token_hash)
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
            self._tell(ep.peer, Volume(volume))
        if muted is not None:
            self._tell(ep.peer, Mute(muted))
        self._tell(ep.peer, self.playing_message(ep))

    # -- speaker sessions ---------------------------------------------------------------
    def attach_speaker(self, ep: Endpoint, peer: Peer, now: float, *, red: bool = False) -> Session:
        """``red``: the speaker takes RFC 2198 RED (its hello said so)."""
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
        session.red = red
        if ep.peer is not None and ep.peer is not peer:
            ep.peer.close(CLOSE_REPLACED, "replaced by a newer connection")
        ep.peer, ep.session, ep.last_seen = peer, session, time.time()
        self._set_variant(ep)
        self._heard_start(ep, now, self.router.holder(ep.id))
        self._report_start(ep, self.router.holder(ep.id))
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

    def report_status(self, ep: Endpoint, fields: dict[str, Any]) -> None:
        """A speaker's status report (its counters, as the control channel parsed them)."""
        ep.status = fields
        ep.last_seen = time.time()

    def request_transport(self, ep: Endpoint, session: Session, mode: str) -> None:
        """The speaker asked for audio over ``ws`` or back over ``udp``."""
        if not session.closed:
            self.sessions.set_transport(session.id, mode)
            log.info("[ep=%s] audio transport: %s", ep.id, mode)

    def _session_lost_udp(self, session: Session) -> None:
        ep = self.endpoints.get(session.endpoint_id)
        if ep is not None and ep.peer is not None:
            self._tell(ep.peer, TransportMode("none", "udp timeout"))

    def on_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Returns the reply to send back (an ack), if any."""
        if addr in self._rtcp_peers and is_rtcp(data):  # a static RTP receiver's RR
            ep = self.endpoints.get(self._rtcp_peers[addr])
            if ep is not None and ep.rewriter is not None:
                self.metrics.rtcp_received += 1
                self._read_receiver_report(ep, ep.rewriter, data, now)
                return None
        match self.sessions.on_datagram(data, addr, now, time.time()):
            case Accepted(session=session, reply=reply, addr_changed=bound):
                ep = self.endpoints.get(session.endpoint_id)
                if ep is not None:
                    ep.last_seen = time.time()
                if bound:  # a new binding can time out: the core has a new deadline
                    self._schedule(now + self.sessions.session_timeout_s)
                return reply
            case RtcpReceived(session=session, data=rtcp, lost=lost, bad_nacks=bad):
                self.metrics.rtcp_received += 1
                if bad:
                    self.metrics.nack_unserved["malformed"] += bad
                if lost:
                    self._retransmit(session, lost, now)
                ep = self.endpoints.get(session.endpoint_id)
                if ep is not None:
                    self._read_receiver_report(ep, session.rewriter, rtcp, now)
            case Dropped():
                self.metrics.datagrams_dropped += 1
        return None

    def _retransmit(self, session: Session, lost: tuple[int, ...], now: float) -> None:
        """A speaker's NACK: resend what its repairer allows, to where its RTP goes."""
        self.metrics.nacks_received += 1
        resent = session.repairer.on_nack(lost, session.rewriter, self.fanout.history, now)
        unserved = self.metrics.nack_unserved
        for reason, n in (
            ("unknown", resent.unknown),
            ("expired", resent.expired),
            ("limited", resent.limited),
        ):
            if n:
                unserved[reason] += n
        destination, sock = session.destination, self._sock
        if destination is None or sock is None:
            return
        for packet in resent.packets:
            try:
                sock.sendto(packet, destination)
                self.metrics.retransmitted += 1
            except OSError:
                self.metrics.udp_send_dropped += 1

    # -- RTCP (RFC 3550): sender reports out, receiver reports in --------------------------
    def _read_receiver_report(
        self, ep: Endpoint, rewriter: Rewriter, data: bytes, now: float
    ) -> None:
        try:
            reception = read_reception(data, rewriter.ssrc, time.time(), now)
        except ValueError:
            self.metrics.rtcp_malformed += 1
            return
        if reception is not None:
            ep.reception = reception

    def _send_sender_reports(self) -> None:
        """Every ``relay.rtcp_interval_s``: an SR to each endpoint that got audio since the
        last round, on the socket the audio left by (non-blocking; a full buffer skips it)."""
        interval = self.config.relay.rtcp_interval_s
        self._rtcp_timer = asyncio.get_running_loop().call_later(
            interval, self._send_sender_reports
        )
        unix_s, now_pc = time.time(), time.perf_counter()
        for ep in self.endpoints.values():
            self._send_sender_report(ep, unix_s, now_pc, interval)

    def _send_sender_report(
        self, ep: Endpoint, unix_s: float, now_pc: float, within_s: float
    ) -> bool:
        """An SR about ``ep``'s stream if its broadcast sent a frame within ``within_s``;
        whether one went."""
        sock = self._sock
        if ep.session is not None:
            rewriter, destination = ep.session.rewriter, ep.session.destination
        elif ep.address is not None and ep.rewriter is not None:
            rewriter, destination = ep.rewriter, (ep.address[0], ep.address[1] + 1)
        else:
            return False
        key = rewriter.broadcast_key
        last = self.fanout.frame_at.get(broadcast_of(key)) if key is not None else None
        if sock is None or destination is None or last is None or now_pc - last[0] > within_s:
            return False  # RFC 3550 §6.4: only a stream that sent since the last report
        # A packet of several frames carries its first frame's timestamp: the frames
        # delivered since that one are time passed too.
        since = now_pc - last[0] + (last[1] - rewriter.frame_index) * FRAME_S
        report = sender_report(rewriter, unix_s, since)
        if report is None:
            return False
        try:
            sock.sendto(report, destination)
            self.metrics.rtcp_sent += 1
        except OSError:
            self.metrics.udp_send_dropped += 1
        return True

    def _stalled_s(self, rewriter: Rewriter) -> float:
        """How long the stream ``rewriter`` writes has sent nothing past its last packet's
        end, if more than ``LATE_S`` (its capture timeline's own slack); else 0."""
        key = rewriter.broadcast_key
        last = self.fanout.frame_at.get(broadcast_of(key)) if key is not None else None
        if last is None:
            return 0.0
        ends = last[0] + (rewriter.frame_index + rewriter.last_frames - last[1]) * FRAME_S
        stalled = time.perf_counter() - ends
        return stalled if stalled > LATE_S else 0.0

    def _report_start(self, ep: Endpoint, bc_id: str | None) -> None:
        """``ep``'s stream starts (again) on ``bc_id``: its RTP timestamps jump, so its next
        frame is followed by an SR at once (``_send_due_reports``). A synchronised speaker
        learns each frame's capture time from the first one, not 5 s later."""
        bc = self.broadcasts.get(bc_id) if bc_id is not None else None
        if bc is not None and not ep.listener:
            self._sr_due.setdefault(bc.key, set()).add(ep.id)

    def _send_due_reports(self, key: int, due: set[str]) -> None:
        """After a frame of broadcast ``key``: the SRs owed to endpoints whose stream just
        started on it (those that did not get the frame wait for the next)."""
        unix_s, now_pc = time.time(), time.perf_counter()
        for ep_id in list(due):
            ep = self.endpoints.get(ep_id)
            if ep is None or self.router.holder(ep_id) is None:
                due.discard(ep_id)
                continue
            if ep.session is not None and ep.session.transport is Transport.WS:
                due.discard(ep_id)  # no SR goes over the WebSocket
                continue
            rewriter = ep.session.rewriter if ep.session is not None else ep.rewriter
            stream = rewriter.broadcast_key if rewriter is not None else None
            got_it = stream is not None and broadcast_of(stream) == key
            if got_it and self._send_sender_report(ep, unix_s, now_pc, 1.0):
                due.discard(ep_id)
        if not due:
            del self._sr_due[key]

    # -- broadcasts ---------------------------------------------------------------------
    async def start_broadcast(
        self,
        spec: BroadcastSpec,
        source: Source,
        *,
        what: str,
        source_kind: str,
        created_by: str,
        description: dict[str, Any] | None = None,
        factory: type[Broadcast] = Broadcast,
    ) -> Broadcast:
        """``description``: how to build its source again after a restart (``{"source": the
        API's source object, "chime": bool}``); None: it cannot be (live, or built in code).
        ``factory``: another kind of broadcast (a cluster's relayed one, ``loa.relay.relayed``)."""
        if spec.id in self.broadcasts:
            raise Conflict(f"broadcast {spec.id} already exists")
        encoder = OpusEncoder.from_config(self.config.opus)
        bc = factory(
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
            description=description,
        )
        # Its first frame is read before it is routed (a file opened, a voice synthesised:
        # the old broadcast plays on meanwhile) and sent right after (``Broadcast.prime``),
        # with no yield between the switch and it.
        try:
            await bc.preload()
        except BaseException:  # cancelled (the caller went away): nothing was started
            await source.aclose()
            raise
        if spec.id in self.broadcasts:  # started meanwhile
            await source.aclose()
            raise Conflict(f"broadcast {spec.id} already exists")
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            actions = self.router.handle(BroadcastStarted(spec, now))
        except Conflict:
            await source.aclose()
            raise
        self.broadcasts[spec.id] = bc
        # The first frame goes out before anything else the start causes (a live one when
        # it comes, from the task), and the switched speakers' control messages (what
        # plays, at which volume: a few hundred WebSocket writes) are held until the loop's
        # next turn. Each names the switch's time, so a speaker in step applies it from the
        # right frame however late it comes.
        if self._held is None:
            self._held = []
            loop.call_soon(self._release)
        self._apply(actions, now)
        if bc.state.ended:  # expired on arrival
            await source.aclose()
            self._finish(bc)
            return bc
        if not self.router.listeners(spec.id) and spec.resumable and bc.state is State.PENDING:
            bc.pause()
        if spec.expires_at is not None:
            self._schedule(spec.expires_at)
        if self.router.listeners(spec.id):
            bc.prime()
        task = asyncio.create_task(bc.run(), name=f"loa-bc-{spec.id}")
        self._tasks[spec.id] = task
        task.add_done_callback(partial(self._on_task_done, bc))
        self.metrics.broadcasts_started[spec.priority.name.lower()] += 1
        if self.on_start is not None:
            self.on_start(bc)
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
            self.fanout.flush(bc)  # its last frames, to whoever still hears it
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
        self._sr_due.pop(bc.key, None)
        self.fanout.forget(bc)
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
        rewriter = ep.session.rewriter if ep.session is not None else ep.rewriter
        # Keep the receiver's clock honest across silence: the next packet's timestamp jumps
        # by the time nothing was sent and carries the marker. Silence is idle time (no
        # holder) and a holder's stall: a broadcast that held the floor without sending
        # (a relayed copy whose node died). Its SRs went on extrapolating its RTP clock;
        # without the jump, the next stream would start at timestamps they already named.
        stalled = self._stalled_s(rewriter) if old is not None and rewriter is not None else 0.0
        if new is None:
            ep.idle_since = now - stalled
        elif old is None and ep.idle_since is not None:
            if rewriter is not None:
                rewriter.gap(max(1, round((now - ep.idle_since) / FRAME_S)))
            ep.idle_since = None
        elif stalled and rewriter is not None:
            rewriter.gap(math.ceil(stalled / FRAME_S))
        if new_bc is not None:
            new_bc.mark_playing()
        self._heard_start(ep, now, new)
        self._report_start(ep, new)
        if ep.peer is not None:
            old_bc = self.broadcasts.get(old) if old is not None else None
            if new is None and old_bc is not None and old_bc.stop_reason == "stopped":
                # An operator's stop is heard at once, not after the speaker's buffer drains.
                # (A speaker switching to another broadcast is told by that one's marker bit.)
                self._tell(ep.peer, Stop())
            self._tell(ep.peer, self._playing(ep, new_bc, time.time()))

    def playing_message(self, ep: Endpoint) -> Playing:
        """What ``ep`` plays now, as the speaker is told it (and at which volume)."""
        holder = self.router.holder(ep.id)
        return self._playing(ep, self.broadcasts.get(holder) if holder is not None else None)

    @staticmethod
    def _playing(ep: Endpoint, bc: Broadcast | None, since: float | None = None) -> Playing:
        """``since``: a switch's time (Unix), which the message carries (``Playing``)."""
        if bc is None:
            return Playing(None, volume=ep.volume, since=since)
        emergency = bc.emergency_volume
        return Playing(
            bc.id,
            bc.spec.priority.name.lower(),
            bc.log.what,
            ep.emergency_volume if emergency else ep.volume,
            emergency,
            since,
        )

    def _tell(self, peer: Peer, message: Message) -> None:
        """A control message to a speaker: at once, or after the held ones (in order)."""
        if self._held is None:
            peer.send(message)
        else:
            self._held.append((peer, message))

    def _release(self) -> None:
        """The messages held while broadcasts started, in the order they were told."""
        held, self._held = self._held, None
        for peer, message in held or ():
            peer.send(message)

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
        """One encoded frame of ``bc``: to its listeners (``FanOut.frame``), then the SRs
        owed to endpoints whose stream just started on it or whose capture timeline moved,
        then the item boundary it may end, for the router. Never awaits."""
        if self.fanout.frame(bc, packet, frame_index):  # its capture timeline moved
            for ep_id in self.router.listeners(bc.id):
                self._report_start(self.endpoints[ep_id], bc.id)
        due = self._sr_due.get(bc.key)
        if due:
            self._send_due_reports(bc.key, due)
        if item_end:
            now = asyncio.get_running_loop().time()
            self._apply(self.router.handle(ItemBoundary(bc.id)), now)

    @staticmethod
    def wall_to_loop(unix_time: float) -> float:
        """The API speaks Unix time; the core runs on the loop's monotonic clock."""
        return asyncio.get_running_loop().time() + (unix_time - time.time())


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
