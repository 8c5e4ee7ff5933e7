"""The priority router: which broadcast holds the floor on each endpoint, and every switch.

Sans-IO: ``Router.handle(event)`` takes one event and returns the actions it causes; time
comes in only through ``BroadcastStarted.now`` and ``Tick.now``, and ``next_deadline()``
says when the next ``Tick`` is due (None: no time-driven change is pending). ``listeners`` and
``holder`` are the per-frame queries (O(1), no allocation once the tuple is cached).

Rules (DESIGN.md "Priority and preemption", and the decisions where it is silent):
- On each endpoint the holder keeps the floor unless a waiting broadcast outranks it
  (``priority.Rank``) and either interrupts, or the holder reaches an item boundary
  (``ItemBoundary``), or the holder is ``background``. Among several that may take it, the
  best rank wins, and among equal ranks the one that started first. Equal ranks never
  preempt, not even at a boundary: the holder keeps the floor.
- When a holder stops, expires or loses an endpoint, the best waiting broadcast on that
  endpoint takes it within the same ``handle`` call (next frame). A preempted broadcast
  waits on the endpoints it lost and gets them back when the preemptor ends.
- ``partial`` (default) plays where it can and waits elsewhere. ``exclusive`` is checked
  only at start, against the endpoints attached then (an offline speaker does not block
  it): if it cannot take all of them at once it is refused with ``Conflict`` naming one
  holder and one endpoint it holds, and the router is left exactly as it was.
- ``expires_at`` is the latest moment a broadcast may gain an endpoint. Started at or after
  it: ``Expired`` at once, never registered. Once a ``Tick`` (or a later start) reaches it,
  the broadcast stops waiting anywhere: if it holds nothing it is dropped with
  ``Expired``; otherwise it keeps what it holds, never gains or regains an endpoint, and is
  dropped with ``Expired`` the moment it holds nothing (it could never play again).
- A broadcast whose targets reach no attached endpoint is accepted and holds nothing
  (a resumable one is ``Paused`` at once); endpoints that attach later join by the rules.
- ``Paused``/``Resumed`` go only to resumable broadcasts, on the net change of one
  ``handle`` call (held nothing ↔ holds something), so they strictly alternate, starting
  with ``Paused``. Live and other non-resumable broadcasts get neither. A broadcast that
  ends or expires gets ``Ended``/``Expired`` and nothing after it.
- ``EndpointDetached`` emits ``Switched(endpoint, holder, None)`` (the broadcast log needs
  the end of listening) and may pause the former holder.
- The router owns its ``ZoneTree``: zone edits come in as ``ZoneAdded``/``ZoneRemoved``/
  ``ZoneMoved`` so the endpoints of a moved subtree are re-judged at once (a holder that no
  longer targets one releases it). A broadcast's rank is fixed at start.
- Actions of one call come in this order: ``Switched`` (by endpoint id), then
  ``Paused``/``Resumed``/``Expired`` of the broadcasts involved, then ``Ended``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal, get_args

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.priority import (
    NATIONAL_LEVEL,
    BroadcastSpec,
    Explanation,
    Rank,
    Reason,
    Standing,
    may_take,
    waiting_reason,
)
from loa.relay.core.zones import ZoneTree

StopReason = Literal["stopped", "finished", "failed"]
STOP_REASONS: frozenset[str] = frozenset(get_args(StopReason))


# -- events in ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointAttached:
    endpoint_id: str
    zone_id: str


@dataclass(frozen=True, slots=True)
class EndpointDetached:
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class BroadcastStarted:
    spec: BroadcastSpec
    now: float


@dataclass(frozen=True, slots=True)
class BroadcastStopped:
    broadcast_id: str
    reason: StopReason = "stopped"

    def __post_init__(self) -> None:
        if self.reason not in STOP_REASONS:
            expected = ", ".join(sorted(STOP_REASONS))
            raise BadRequest(f"stop reason must be one of {expected}, got {self.reason!r}")


@dataclass(frozen=True, slots=True)
class ItemBoundary:
    """The holder just sent the last frame of an item (file, playlist entry)."""

    broadcast_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has reached ``now``; send one when ``next_deadline()`` comes (O(1) unless an
    expiry is due, so an early or extra Tick costs nothing)."""

    now: float


@dataclass(frozen=True, slots=True)
class ZoneAdded:
    zone_id: str
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class ZoneRemoved:
    zone_id: str


@dataclass(frozen=True, slots=True)
class ZoneMoved:
    zone_id: str
    new_parent: str | None


Event = (
    EndpointAttached
    | EndpointDetached
    | BroadcastStarted
    | BroadcastStopped
    | ItemBoundary
    | Tick
    | ZoneAdded
    | ZoneRemoved
    | ZoneMoved
)


# -- actions out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Switched:
    endpoint_id: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class Paused:
    broadcast_id: str


@dataclass(frozen=True, slots=True)
class Resumed:
    broadcast_id: str


@dataclass(frozen=True, slots=True)
class Expired:
    broadcast_id: str


@dataclass(frozen=True, slots=True)
class Ended:
    broadcast_id: str
    reason: StopReason


Action = Switched | Paused | Resumed | Expired | Ended


# -- state -------------------------------------------------------------------------------


class _Bc:
    """A running broadcast's state; ``key`` orders candidates (best rank, then first come)."""

    __slots__ = (
        "cache",
        "closed",
        "held",
        "interrupts",
        "key",
        "playing",
        "rank",
        "seq",
        "spec",
        "waits",
    )

    def __init__(self, spec: BroadcastSpec, seq: int, rank: Rank) -> None:
        self.spec = spec
        self.seq = seq
        self.rank = rank
        self.key = (rank.priority, rank.height, -seq)
        self.interrupts = spec.interrupts
        self.held: dict[str, None] = {}  # ordered set of endpoints it holds
        self.waits: set[str] = set()  # endpoints where it is a candidate
        self.closed = False  # past expires_at: gains nothing more
        self.playing = True  # as last told by Paused/Resumed
        self.cache: tuple[str, ...] | None = None


class _Step:
    """What one ``handle`` call has done so far: actions, and broadcasts it touched."""

    __slots__ = ("out", "touched")

    def __init__(self) -> None:
        self.out: list[Action] = []
        self.touched: dict[str, _Bc] = {}


class Router:
    """Per-endpoint floor control, driven by ``handle(event)``; see the module docstring."""

    def __init__(self, zones: ZoneTree | None = None) -> None:
        """``zones`` is the initial tree (with any endpoints already attached, all idle);
        the router owns it from now on: edit it only through zone events."""
        self._zones = zones if zones is not None else ZoneTree()
        self._bcs: dict[str, _Bc] = {}
        self._holder: dict[str, str | None] = dict.fromkeys(sorted(self._zones.endpoints()))
        self._waiting: dict[str, set[str]] = {e: set() for e in self._holder}
        self._expiries: list[tuple[float, int, str]] = []  # (expires_at, seq, id)
        self._seq = 0
        self._now = -math.inf

    @property
    def zones(self) -> ZoneTree:
        """The router's zone tree (read it; change it only through zone events)."""
        return self._zones

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Tick(now=now):
                if now > self._now:
                    self._now = now
                heap = self._expiries
                if not heap or heap[0][0] > self._now:
                    return []
                step = _Step()
                self._expire_due(step)
                return self._settle(step)
            case BroadcastStarted(spec=spec, now=now):
                return self._start(spec, now)
            case BroadcastStopped(broadcast_id=bid, reason=reason):
                return self._stop(bid, reason)
            case ItemBoundary(broadcast_id=bid):
                return self._boundary(bid)
            case EndpointAttached(endpoint_id=endpoint, zone_id=zone):
                return self._attach(endpoint, zone)
            case EndpointDetached(endpoint_id=endpoint):
                return self._detach(endpoint)
            case ZoneAdded(zone_id=zone, parent=parent):
                self._zones.add(zone, parent)
                return []
            case ZoneRemoved(zone_id=zone):
                self._zones.remove(zone)
                return []
            case ZoneMoved(zone_id=zone, new_parent=parent):
                return self._move(zone, parent)
        raise TypeError(f"not a router event: {event!r}")

    # -- hot-path and page queries -------------------------------------------------------

    def listeners(self, broadcast_id: str) -> tuple[str, ...]:
        """Endpoints that hear this broadcast now (a cached tuple, rebuilt only on change)."""
        bc = self._bcs.get(broadcast_id)
        if bc is None:
            raise self._no_broadcast(broadcast_id)
        cached = bc.cache
        if cached is None:
            cached = bc.cache = tuple(bc.held)
        return cached

    def holder(self, endpoint_id: str) -> str | None:
        try:
            return self._holder[endpoint_id]
        except KeyError:
            raise self._no_endpoint(endpoint_id) from None

    def next_deadline(self) -> float | None:
        """When the next ``Tick`` can change anything: the earliest pending ``expires_at``
        (perhaps of a broadcast stopped since; that Tick is then a no-op)."""
        return self._expiries[0][0] if self._expiries else None

    def broadcasts(self) -> tuple[str, ...]:
        """Running broadcasts, in the order they started."""
        return tuple(self._bcs)

    def spec(self, broadcast_id: str) -> BroadcastSpec:
        bc = self._bcs.get(broadcast_id)
        if bc is None:
            raise self._no_broadcast(broadcast_id)
        return bc.spec

    def waiting(self, endpoint_id: str) -> tuple[str, ...]:
        """Broadcasts waiting for this endpoint, best first."""
        self.holder(endpoint_id)
        ranked = sorted((self._bcs[b] for b in self._waiting[endpoint_id]), key=_by_key)
        return tuple(bc.spec.id for bc in ranked)

    def explain(self, endpoint_id: str) -> Explanation:
        """The holder and every other running broadcast that targets the endpoint, best
        first, each with the reason it does not hold it, by the router's own rules."""
        zone = self._zones.zone_of(endpoint_id)
        hid = self._holder[endpoint_id]
        holder = self._bcs[hid] if hid is not None else None
        others = []
        for bc in sorted(self._bcs.values(), key=_by_key):
            if bc is holder or not self._targets(endpoint_id, bc):
                continue
            if bc.closed:
                reason = Reason("past_expiry")
            elif holder is None:
                reason = Reason("waiting")  # unreachable while the invariants hold
            else:
                reason = waiting_reason(bc.rank, bc.interrupts, holder.spec.id, holder.rank)
            others.append(_standing(bc, False, reason))
        standing = None
        if holder is not None:
            code = "holds_past_expiry" if holder.closed else "holds"
            standing = _standing(holder, True, Reason(code))
        return Explanation(endpoint_id, zone, standing, tuple(others))

    # -- transitions ---------------------------------------------------------------------

    def _start(self, spec: BroadcastSpec, now: float) -> list[Action]:
        if spec.id in self._bcs:
            raise Conflict(f"broadcast {spec.id!r} is already running", broadcast=spec.id)
        origin = spec.origin_zone
        level = NATIONAL_LEVEL if origin is None else self._zones.level(origin)
        targets = sorted(self._zones.resolve(spec.target_zones, spec.target_endpoints))
        step = _Step()
        if spec.expires_at is not None and now >= spec.expires_at:
            self._advance(now, step)
            step.out.append(Expired(spec.id))
            return self._settle(step)
        bc = _Bc(spec, self._seq + 1, Rank.of(spec.priority, level))
        takes = self._claims(bc, targets)  # raises before any state changes
        self._advance(now, step)
        self._seq += 1
        self._bcs[spec.id] = bc
        step.touched[spec.id] = bc
        if spec.expires_at is not None:
            heapq.heappush(self._expiries, (spec.expires_at, bc.seq, spec.id))
        for endpoint in targets:
            if endpoint in takes:
                self._assign(step, endpoint, bc)
            else:
                self._waiting[endpoint].add(spec.id)
                bc.waits.add(endpoint)
        return self._settle(step)

    def _claims(self, bc: _Bc, targets: list[str]) -> set[str]:
        """The endpoints a new broadcast takes at once; refuses an exclusive one that
        cannot take them all. Idle endpoints have no waiting candidate, so it takes them."""
        takes = set()
        for endpoint in targets:
            hid = self._holder[endpoint]
            if hid is None or may_take(
                bc.rank, bc.interrupts, self._bcs[hid].rank, at_boundary=False
            ):
                takes.add(endpoint)
            elif bc.spec.exclusive:
                raise Conflict(
                    f"exclusive broadcast {bc.spec.id!r} cannot take endpoint {endpoint!r}: "
                    f"it is held by broadcast {hid!r}",
                    broadcast=bc.spec.id,
                    holder=hid,
                    endpoint=endpoint,
                )
        return takes

    def _stop(self, broadcast_id: str, reason: StopReason) -> list[Action]:
        bc = self._bcs.get(broadcast_id)
        if bc is None:
            raise self._no_broadcast(broadcast_id)
        self._drop(bc)
        step = _Step()
        for endpoint in sorted(bc.held):
            self._assign(step, endpoint, self._best(endpoint))
        self._settle(step)
        step.out.append(Ended(broadcast_id, reason))
        return step.out

    def _boundary(self, broadcast_id: str) -> list[Action]:
        bc = self._bcs.get(broadcast_id)
        if bc is None:
            raise self._no_broadcast(broadcast_id)
        step = _Step()
        for endpoint in sorted(bc.held):
            best = self._best(endpoint, bc, at_boundary=True)
            if best is not None:
                self._assign(step, endpoint, best)
        return self._settle(step)

    def _attach(self, endpoint: str, zone: str) -> list[Action]:
        self._zones.attach(endpoint, zone)
        self._holder[endpoint] = None
        self._waiting[endpoint] = set()
        step = _Step()
        self._reassess(step, endpoint)
        return self._settle(step)

    def _detach(self, endpoint: str) -> list[Action]:
        self._zones.detach(endpoint)
        hid = self._holder.pop(endpoint)
        for bid in self._waiting.pop(endpoint):
            self._bcs[bid].waits.discard(endpoint)
        step = _Step()
        if hid is not None:
            bc = self._bcs[hid]
            del bc.held[endpoint]
            bc.cache = None
            step.touched[hid] = bc
            step.out.append(Switched(endpoint, hid, None))
        return self._settle(step)

    def _move(self, zone: str, parent: str | None) -> list[Action]:
        self._zones.move(zone, parent)
        step = _Step()
        for endpoint in sorted(self._zones.endpoints_in(zone)):
            self._reassess(step, endpoint)
        return self._settle(step)

    def _reassess(self, step: _Step, endpoint: str) -> None:
        """Rebuild an endpoint's candidates from scratch and apply the rules to them."""
        hid = self._holder[endpoint]
        fresh = {
            bid
            for bid, bc in self._bcs.items()
            if bid != hid and not bc.closed and self._targets(endpoint, bc)
        }
        for bid in self._waiting[endpoint] - fresh:
            self._bcs[bid].waits.discard(endpoint)
        for bid in fresh:
            self._bcs[bid].waits.add(endpoint)
        self._waiting[endpoint] = fresh
        holder = self._bcs[hid] if hid is not None else None
        if holder is not None and not self._targets(endpoint, holder):
            self._assign(step, endpoint, self._best(endpoint), requeue=False)
        elif (best := self._best(endpoint, holder)) is not None:
            self._assign(step, endpoint, best)

    def _advance(self, now: float, step: _Step) -> None:
        if now > self._now:
            self._now = now
        self._expire_due(step)

    def _expire_due(self, step: _Step) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= self._now:
            _, seq, bid = heapq.heappop(heap)
            bc = self._bcs.get(bid)
            if bc is None or bc.seq != seq:
                continue  # stopped (and perhaps its id reused) before it expired
            bc.closed = True
            for endpoint in bc.waits:
                self._waiting[endpoint].discard(bid)
            bc.waits.clear()
            step.touched[bid] = bc

    # -- primitives ----------------------------------------------------------------------

    def _assign(self, step: _Step, endpoint: str, new: _Bc | None, *, requeue: bool = True) -> None:
        """Give an endpoint to ``new`` (or nobody); a preempted holder waits for it again."""
        old_id = self._holder[endpoint]
        old = self._bcs.get(old_id) if old_id is not None else None
        if old is not None and old_id is not None:
            del old.held[endpoint]
            old.cache = None
            step.touched[old_id] = old
            if requeue and not old.closed:
                self._waiting[endpoint].add(old_id)
                old.waits.add(endpoint)
        new_id = None
        if new is not None:
            new_id = new.spec.id
            self._waiting[endpoint].discard(new_id)
            new.waits.discard(endpoint)
            new.held[endpoint] = None
            new.cache = None
            step.touched[new_id] = new
        self._holder[endpoint] = new_id
        step.out.append(Switched(endpoint, old_id, new_id))

    def _best(
        self, endpoint: str, holder: _Bc | None = None, *, at_boundary: bool = False
    ) -> _Bc | None:
        """The best waiting broadcast that may take the endpoint from ``holder`` now (the
        best of all when there is no holder)."""
        best = None
        for bid in self._waiting[endpoint]:
            bc = self._bcs[bid]
            if holder is not None and not may_take(
                bc.rank, bc.interrupts, holder.rank, at_boundary=at_boundary
            ):
                continue
            if best is None or bc.key > best.key:
                best = bc
        return best

    def _settle(self, step: _Step) -> list[Action]:
        """Drop expired broadcasts left with nothing; pause/resume on the call's net change."""
        for bid, bc in step.touched.items():
            if self._bcs.get(bid) is not bc:
                continue
            if bc.closed and not bc.held:
                self._drop(bc)
                step.out.append(Expired(bid))
            elif bc.spec.resumable and bc.playing != bool(bc.held):
                bc.playing = not bc.playing
                step.out.append(Resumed(bid) if bc.playing else Paused(bid))
        return step.out

    def _drop(self, bc: _Bc) -> None:
        del self._bcs[bc.spec.id]
        for endpoint in bc.waits:
            self._waiting[endpoint].discard(bc.spec.id)
        bc.waits.clear()

    def _targets(self, endpoint: str, bc: _Bc) -> bool:
        spec = bc.spec
        return self._zones.targets(endpoint, spec.target_zones, spec.target_endpoints)

    @staticmethod
    def _no_broadcast(broadcast_id: str) -> NotFound:
        return NotFound(f"no running broadcast {broadcast_id!r}", broadcast=broadcast_id)

    @staticmethod
    def _no_endpoint(endpoint_id: str) -> NotFound:
        return NotFound(f"endpoint {endpoint_id!r} is not attached", endpoint=endpoint_id)


def _by_key(bc: _Bc) -> tuple[int, int, int]:
    """Sort key, best first: higher rank, then earlier start."""
    return (-bc.key[0], -bc.key[1], -bc.key[2])


def _standing(bc: _Bc, holds: bool, reason: Reason) -> Standing:
    spec = bc.spec
    return Standing(
        spec.id, spec.priority, bc.rank.origin_level, bc.seq, bc.interrupts, holds, reason
    )
