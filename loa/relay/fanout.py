"""The fan-out: each encoded frame of a broadcast to every endpoint that hears it, as packets
of the endpoint's variant (``loa.relay.core.variants``), over one ``sendmmsg`` a frame.

Driven by the node: ``frame`` for every frame a broadcast encodes, ``flush`` when one ends
(the frames its packers still hold go out as shorter packets), ``forget`` after. It keeps
what retransmissions and sender reports need: each stream's recent packets (``history``, by
stream key) and each broadcast's capture timeline (``frame_at``).

**Capture times.** The sender reports map RTP time to the server's clock, and synchronised
speakers play each frame at that capture time + D. A broadcast's frames should go out one
per frame time, but they do not always: a live source may hand over a backlog at once (a WHIP
publisher's audio queued while the relay was busy), a stalled loop sends late. So the
timeline is not the last frame's send time but an anchor: frame ``i`` is captured at
``anchor + i × 20 ms``, the anchor being the earliest any frame went out (a frame that
leaves earlier than the timeline says moves it back), except that a frame more than
``LATE_S`` late (a stall the pacer gave up on, a broadcast resumed after a pause) restarts it
there. A move of a frame or more is announced: ``frame`` returns True once the timeline is
steady again, and the node sends an SR to every listener of the broadcast
(``Node.deliver``). Without it, a speaker mapped the frames after a 280 ms backlog 280 ms
early and its buffer, bounded at D, dropped most of them.

A variant's packets are shared by all its endpoints: one payload per variant per packet in
the batch, one header per endpoint. A preempted endpoint switches at the next packet of its
variant: it leaves the old broadcast's listeners at once, so frames the old broadcast's
packers still held for it are dropped for it (sending them would only delay the new
broadcast), and the new broadcast's first packet to it is the next one its packer completes
(a packer started for it begins with the frame that switched it). An endpoint whose variant
changes mid-broadcast skips packets that start on a frame it already got (``_overlaps``).

RFC 2198: an endpoint whose zone sends redundancy and that takes RED has a redundancy
variant, whose packer makes RED packets (``loa.relay.core.variants``). RED goes by UDP only:
a speaker of such a zone that fell back to the WebSocket gets the same variant's plain
packets. Histories are filed by payload type, then stream key (what ``Repairer.on_nack``
reads: a located packet's type says which)."""

from __future__ import annotations

import time
from operator import attrgetter
from typing import Final

import numpy as np

from loa.codecs import FRAME_S
from loa.relay.broadcast import Broadcast
from loa.relay.core.repair import PacketHistory
from loa.relay.core.rewriter import HEADER_SIZE
from loa.relay.core.router import Router
from loa.relay.core.session import Session, Transport, Watch
from loa.relay.core.steady import SteadyGroup
from loa.relay.core.variants import PLAIN, Packer, Ready, Variant, broadcast_of
from loa.relay.endpoint import Endpoint
from loa.relay.metrics import Metrics
from loa.relay.sendmmsg import NAME_SIZE, Batch

_NOT_MADE: Ready = Ready(b"", 0, 0, -1)  # a variant none of the broadcast's packers makes
# A frame this late against its broadcast's capture timeline restarts the timeline there:
# more than the pacer's catch-up window (``Pacer.max_behind_s``, 0.2 s), less than D.
LATE_S: Final = 0.25
MIN_GROUP: Final = 8  # fewer steady endpoints of one stream than this stay on the loop
# A plan with listeners outside its groups is made again after this many frames (they may
# have become steady since; from the rewriters' state, no frame goes through the loop for
# it); one without groups sooner
REFORM_FRAMES: Final = 50
RETRY_FRAMES: Final = 10
_session = attrgetter("session")
_destination = attrgetter("destination")
_variant = attrgetter("variant")
_rejoining = attrgetter("rejoining")
Addr = tuple[str, int]


class _Member:
    """A steady group and what must hold of its endpoints for it to go on: each still has
    the session, the UDP destination and the variant it had when the group was made, and is
    not rejoining. Checked member by member only when something of the kind changed
    somewhere (``Watch``) since it last held: not 4 × N attribute reads every frame."""

    __slots__ = (
        "addrs",
        "endpoints",
        "group",
        "ids",
        "names",
        "seen",
        "sessions",
        "variant",
        "variants",
    )

    def __init__(
        self,
        group: SteadyGroup,
        variant: Variant,
        ids: list[str],
        endpoints: list[Endpoint],
        sessions: list[Session],
        addrs: list[Addr],
        names: np.ndarray,
    ) -> None:
        self.group, self.variant, self.ids = group, variant, ids
        self.endpoints, self.sessions, self.addrs, self.names = endpoints, sessions, addrs, names
        self.variants = [variant] * len(endpoints)
        self.seen = Watch.changes  # made from what its members hold now

    def holds(self) -> bool:
        if self.group.departed:
            return False
        changes = Watch.changes
        if changes == self.seen:
            return True
        held = (
            list(map(_session, self.endpoints)) == self.sessions
            and list(map(_destination, self.sessions)) == self.addrs
            and list(map(_variant, self.endpoints)) == self.variants
            and not any(map(_rejoining, self.endpoints))
        )
        if held:
            self.seen = changes
        return held


class _Plan:
    """A broadcast's steady groups, made for one ``Router.listeners`` tuple (a new tuple is
    a new listener set), and the listeners in none of them (``rest``, the loop's)."""

    __slots__ = ("frames", "groups", "listeners", "rest")

    def __init__(
        self, listeners: tuple[str, ...], groups: list[_Member], rest: tuple[str, ...]
    ) -> None:
        self.listeners, self.groups, self.rest = listeners, groups, rest
        # frames it serves before it is made again (-1: for good, every listener in a group)
        self.frames = -1 if not rest else REFORM_FRAMES if groups else RETRY_FRAMES

    def dissolve(self) -> None:
        for member in self.groups:
            member.group.dissolve()


class FanOut:
    """Owned by the node; ``batch`` is set once the node's UDP socket is bound."""

    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        router: Router,
        metrics: Metrics,
        *,
        steady_groups: bool = True,
    ) -> None:
        self._endpoints = endpoints
        self._router = router
        self._metrics = metrics
        self.batch: Batch | None = None
        # each stream's recent packets, by payload type then stream key (broadcast and
        # variant): NACKs are served from them
        self.history: dict[int, dict[int, PacketHistory]] = {}
        # each broadcast's capture timeline: a frame index and its capture time (perf_counter);
        # the others follow at 20 ms a frame (RTCP SRs)
        self.frame_at: dict[int, tuple[float, int]] = {}
        self._announced: dict[int, float] = {}  # the timeline's origin the SRs last said
        self._packers: dict[int, dict[Variant, Packer]] = {}  # by broadcast key
        # Steady groups (``loa.relay.core.steady``), by broadcast key; off: every endpoint
        # goes through the loop (the tests' and the bench's comparison)
        self.steady_groups = steady_groups
        self._plans: dict[int, _Plan] = {}

    def forget(self, bc: Broadcast) -> None:
        """A broadcast has ended: drop its packers and histories."""
        self.frame_at.pop(bc.key, None)
        self._announced.pop(bc.key, None)
        plan = self._plans.pop(bc.key, None)
        if plan is not None:
            plan.dissolve()
        for packer in self._packers.pop(bc.key, {}).values():
            for by_key in self.history.values():
                by_key.pop(packer.key, None)

    def frame(self, bc: Broadcast, packet: bytes, frame_index: int) -> bool:
        """Fan one encoded frame out to every endpoint that hears ``bc``. Never awaits.

        Each packet variant its listeners need (``Endpoint.variant``: frames a packet, RFC
        2198) has a ``Packer``: a variant whose packet this frame completes sends it, shared
        by all of that variant's endpoints; one still gathering frames sends nothing yet.
        UDP destinations go out in one ``sendmmsg`` (``loa.relay.sendmmsg``): each message is
        the endpoint's header, packed in place, and its variant's shared payload. A full
        send buffer drops the rest of the frame: it would be stale anyway.

        True when the broadcast's capture timeline moved by a frame or more since the SRs
        last said it and is steady again: its listeners need a sender report now."""
        started = time.perf_counter()
        key = bc.key
        packers = self._packers.get(key)
        if packers is None:
            packers = self._packers[key] = {PLAIN: Packer(PLAIN, key)}
        ready = {v: self._filed(p.add(packet, frame_index)) for v, p in packers.items()}
        self._fan_out(bc, ready, (packet, frame_index))
        if self.steady_groups and None not in ready.values():
            plan = self._plans.get(key)
            if plan is None or plan.frames == 0:  # none (it failed), or one due again
                if plan is not None:
                    plan.dissolve()
                self._form(bc, ready)
        announce = self._capture(key, started, frame_index)
        self._metrics.observe_fanout(time.perf_counter() - started)
        self._metrics.frames_encoded += 1
        return announce

    def _capture(self, key: int, sent: float, frame_index: int) -> bool:
        """Place frame ``frame_index`` of broadcast ``key``, which went out at ``sent``, on
        its capture timeline (the module's docstring); whether to announce the timeline."""
        last = self.frame_at.get(key)
        steady = False
        if last is None:
            captured = sent
            self._announced[key] = sent - frame_index * FRAME_S
        else:
            captured = last[0] + (frame_index - last[1]) * FRAME_S
            lag = sent - captured
            if lag < 0 or lag > LATE_S:
                captured = sent
            else:
                steady = True
        self.frame_at[key] = (captured, frame_index)
        origin = captured - frame_index * FRAME_S
        if steady and abs(origin - self._announced.get(key, origin)) >= FRAME_S:
            self._announced[key] = origin
            return True
        return False

    def _filed(self, ready: Ready | None) -> Ready | None:
        """``ready`` kept in its stream's history, for retransmissions."""
        if ready is not None:
            by_key = self.history.setdefault(ready.packet[1] & 0x7F, {})
            history = by_key.get(ready.key)
            if history is None:
                history = by_key[ready.key] = PacketHistory()
            history.add(ready.frame_index, ready.packet)
        return ready

    def flush(self, bc: Broadcast) -> None:
        """A broadcast ends: the frames its packers still hold go out as shorter packets."""
        packers = self._packers.get(bc.key, {})
        ready = {v: self._filed(p.flush()) for v, p in packers.items()}
        if any(r is not None for r in ready.values()):
            self._fan_out(bc, ready, None)

    def _fan_out(
        self,
        bc: Broadcast,
        ready: dict[Variant, Ready | None],
        frame: tuple[bytes, int] | None,
    ) -> bool:
        """Send each listener of ``bc`` its variant's packet, if one is ready. ``frame``: the
        frame just delivered, for a variant no packer makes yet (one is started with it).
        The members of the broadcast's steady groups get theirs in blocks, the others one by
        one; True if the groups were used (else they were dissolved, if any)."""
        batch = self.batch
        endpoints = self._endpoints
        sent = 0
        listeners = self._router.listeners(bc.id)
        if batch is not None:
            batch.begin()
            headers = batch.headers
            slot = batch.slot
        grouped = False
        plan = self._plans.get(bc.key)
        if plan is not None:
            if (
                batch is not None
                and batch.batched
                and (listeners is not plan.listeners or not all(m.holds() for m in plan.groups))
            ):
                plan = self._trim(bc.key, plan, listeners)
            if batch is not None and self._grouped(plan, ready, batch):
                listeners, grouped = plan.rest, True
            else:
                del self._plans[bc.key]
                plan.dissolve()
        for ep_id in listeners:
            ep = endpoints[ep_id]
            variant = ep.variant  # (inline: one dict lookup an endpoint, no call)
            out = ready.get(variant, _NOT_MADE)
            if out is _NOT_MADE:
                out = ready[variant] = self._start_packer(bc, variant, frame)
            if out is None or (ep.rejoining and self._overlaps(ep, bc, out)):
                continue
            session = ep.session
            if session is not None:
                destination = session.destination  # set only while the session is on UDP
                if destination is not None and batch is not None:
                    if out.slot < 0:
                        out.slot = batch.add(memoryview(out.packet)[HEADER_SIZE:])
                    offset = slot(destination, out.slot)
                    rewriter = session.rewriter
                    if offset is not None:
                        rewriter.pack_header_into(
                            headers, offset, out.packet, out.key, out.frame_index, out.frames
                        )
                    else:
                        header = rewriter.header(out.packet, out.key, out.frame_index, out.frames)
                        batch.later(header, destination, out.slot)
                elif session.transport is Transport.WS and ep.peer is not None:
                    if ep.variant.redundancy:  # RED goes by UDP only: the same frames plain
                        out = self._variant_packet(bc, ready, ep.variant.plain, frame)
                        if out is None:
                            continue
                    ep.peer.send_audio(
                        session.rewriter.rewrite(out.packet, out.key, out.frame_index, out.frames)
                    )
                    sent += 1
            elif ep.sink is not None and ep.rewriter is not None:
                ep.sink(ep.rewriter.rewrite(out.packet, out.key, out.frame_index, out.frames))
                sent += 1
            elif ep.address is not None and batch is not None and ep.rewriter is not None:
                if out.slot < 0:
                    out.slot = batch.add(memoryview(out.packet)[HEADER_SIZE:])
                offset = slot(ep.address, out.slot)
                if offset is not None:
                    ep.rewriter.pack_header_into(
                        headers, offset, out.packet, out.key, out.frame_index, out.frames
                    )
                else:
                    header = ep.rewriter.header(out.packet, out.key, out.frame_index, out.frames)
                    batch.later(header, ep.address, out.slot)
        dropped = 0
        if batch is not None:
            udp_sent, dropped = batch.flush()
            sent += udp_sent
        self._metrics.packets_sent += sent
        self._metrics.udp_send_dropped += dropped
        return grouped

    def _trim(self, key: int, plan: _Plan, listeners: tuple[str, ...]) -> _Plan:
        """``plan`` for the listeners now, its groups made again with only the members that
        still listen, have the session, destination and variant they had, are not
        rejoining and still steady on the group's stream (none was released: ``departed``);
        the others go through the loop. No frame is sent the one-by-one way for it."""
        now = set(listeners)
        groups: list[_Member] = []
        grouped: set[str] = set()
        for member in plan.groups:
            old = member.group
            old.dissolve()
            keep = [
                k
                for k, (ep_id, ep, session, addr) in enumerate(
                    zip(member.ids, member.endpoints, member.sessions, member.addrs, strict=True)
                )
                if ep_id in now
                and ep.session is session
                and session.destination == addr
                and ep.variant == member.variant
                and not ep.rejoining
                and session.rewriter.steady_on(old.key, old.frame, old.step, old.pt)
            ]
            if len(keep) < MIN_GROUP:
                continue
            group = SteadyGroup(
                [member.sessions[k].rewriter for k in keep],
                old.key,
                old.frame,
                old.step,
                old.b0,
                old.pt,
            )
            groups.append(
                _Member(
                    group,
                    member.variant,
                    [member.ids[k] for k in keep],
                    [member.endpoints[k] for k in keep],
                    [member.sessions[k] for k in keep],
                    [member.addrs[k] for k in keep],
                    member.names.reshape(-1, NAME_SIZE)[keep].reshape(-1),
                )
            )
            grouped.update(member.ids[k] for k in keep)
        rest = tuple(ep_id for ep_id in listeners if ep_id not in grouped)
        trimmed = self._plans[key] = _Plan(listeners, groups, rest)
        return trimmed

    def _grouped(self, plan: _Plan, ready: dict[Variant, Ready | None], batch: Batch) -> bool:
        """Put the packets of ``plan``'s groups in ``batch`` (its members hold: ``_trim``),
        if the packets ready continue each group. Otherwise nothing is sent and False: every
        listener goes through the loop."""
        if not batch.batched:
            return False
        for member in plan.groups:
            out = ready.get(member.variant)
            if out is not None and not member.group.continues(
                out.packet, out.key, out.frame_index, out.frames
            ):
                return False
        if plan.frames > 0:
            plan.frames -= 1
        for member in plan.groups:
            out = ready.get(member.variant)
            if out is None:  # its packer is still gathering frames
                continue
            if out.slot < 0:
                out.slot = batch.add(memoryview(out.packet)[HEADER_SIZE:])
            member.group.advance(out.packet, out.frame_index)
            batch.block(member.group.raw, member.names, member.addrs, out.slot)
        return True

    def _form(self, bc: Broadcast, ready: dict[Variant, Ready | None]) -> None:
        """After a frame went through the loop: the listeners of ``bc`` whose rewriters are
        now steady on their variant's stream, in groups (at least ``MIN_GROUP`` a group);
        UDP by ``sendmmsg`` to numeric addresses only. The rest stay on the loop."""
        batch = self.batch
        if batch is None or not batch.batched:
            return
        listeners = self._router.listeners(bc.id)
        endpoints = self._endpoints
        name = batch.name
        # by variant: its packet and the endpoints, sessions, addresses and names found
        found: dict[Variant, tuple[Ready, list[tuple[str, Endpoint, Session, Addr, bytes]]]] = {}
        last: Variant | None = None
        out: Ready | None = None
        members: list[tuple[str, Endpoint, Session, Addr, bytes]] = []
        for ep_id in listeners:
            ep = endpoints[ep_id]
            session = ep.session
            if session is None or ep.rejoining:
                continue
            destination = session.destination
            if destination is None:
                continue
            variant = ep.variant
            if variant is not last:  # (most listeners share one variant object)
                last = variant
                out = ready.get(variant)
                if out is not None and out is not _NOT_MADE:
                    members = found.setdefault(variant, (out, []))[1]
                else:
                    out = None
            if out is None or not session.rewriter.steady_on(
                out.key, out.frame_index, out.frames, out.packet[1]
            ):
                continue
            sockaddr = name(destination)
            if sockaddr is not None:
                members.append((ep_id, ep, session, destination, sockaddr))
        groups = []
        grouped: set[str] = set()
        for variant, (out, members) in found.items():
            if len(members) < MIN_GROUP:
                continue
            names = b"".join(m[4].ljust(NAME_SIZE, b"\0") for m in members)
            group = SteadyGroup(
                [m[2].rewriter for m in members],
                out.key,
                out.frame_index,
                out.frames,
                out.packet[0],
                out.packet[1],
            )
            groups.append(
                _Member(
                    group,
                    variant,
                    [m[0] for m in members],
                    [m[1] for m in members],
                    [m[2] for m in members],
                    [m[3] for m in members],
                    np.frombuffer(names, dtype=np.uint8),
                )
            )
            grouped.update(m[0] for m in members)
        rest = tuple(ep_id for ep_id in listeners if ep_id not in grouped)
        self._plans[bc.key] = _Plan(listeners, groups, rest)

    @staticmethod
    def _overlaps(ep: Endpoint, bc: Broadcast, out: Ready) -> bool:
        """Whether ``out`` starts on a frame of ``bc`` that ``ep``, whose variant just changed,
        already got: it is skipped (the receiver conceals the frames after the last one it
        got; no audio is heard twice). The first packet it does get ends its rejoining."""
        rewriter = ep.session.rewriter if ep.session is not None else ep.rewriter
        if rewriter is not None and rewriter.broadcast_key is not None:
            same = broadcast_of(rewriter.broadcast_key) == bc.key
            if same and out.frame_index < rewriter.next_frame:
                return True
        ep.rejoining = False
        return False

    def _variant_packet(
        self,
        bc: Broadcast,
        ready: dict[Variant, Ready | None],
        variant: Variant,
        frame: tuple[bytes, int] | None,
    ) -> Ready | None:
        """``variant``'s packet of this frame, if one is ready (its packer started here if
        none makes it yet)."""
        out = ready.get(variant, _NOT_MADE)
        if out is _NOT_MADE:
            out = ready[variant] = self._start_packer(bc, variant, frame)
        return out

    def _start_packer(
        self, bc: Broadcast, variant: Variant, frame: tuple[bytes, int] | None
    ) -> Ready | None:
        """The first listener of ``variant`` in ``bc``: its packer, started with ``frame``."""
        if frame is None:
            return None
        packer = self._packers[bc.key][variant] = Packer(variant, bc.key)
        return self._filed(packer.add(*frame))
