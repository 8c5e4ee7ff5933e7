"""Router invariants over random zone trees and random event sequences, checked after every
step against an independent oracle that knows only the rules of DESIGN.md.

The oracle keeps its own zone tree (parent links), endpoint homes, arrival order, ranks and
expiry state; it never asks the router how to rank or whom a broadcast targets."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.router import (
    BroadcastStarted,
    BroadcastStopped,
    Ended,
    EndpointAttached,
    EndpointDetached,
    Event,
    Expired,
    ItemBoundary,
    Paused,
    Resumed,
    Router,
    Switched,
    Tick,
    ZoneAdded,
    ZoneMoved,
    ZoneRemoved,
)
from loa.relay.core.zones import ZoneTree

BIDS = [f"b{i}" for i in range(6)]
EIDS = [f"e{i}" for i in range(8)]
MAX_LEVEL = 3  # trees of depth 1..4


@dataclass
class Bc:
    """The oracle's view of one running broadcast."""

    spec: BroadcastSpec
    arrival: int
    rank: tuple[int, int]
    closed: bool = False
    paused: bool = False
    pos: int = 0  # frames the simulated adapter read from the source
    heard: int = 0  # frames during which somebody listened
    paused_at: int | None = None
    held_before: frozenset[str] = field(default_factory=frozenset)

    @property
    def interrupts(self) -> bool:
        if self.spec.interrupt is not None:
            return self.spec.interrupt
        return self.spec.priority in (Priority.LIVE, Priority.EMERGENCY)

    def key(self) -> tuple[int, int, int]:
        return (*self.rank, -self.arrival)


def may_take(w: Bc, h: Bc, *, boundary: bool = False) -> bool:
    return w.rank > h.rank and (w.interrupts or boundary or h.spec.priority == Priority.BACKGROUND)


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router()
        self.parent: dict[str, str | None] = {}
        self.where: dict[str, str] = {}
        self.live: dict[str, Bc] = {}
        self.now = 0.0
        self.arrivals = 0
        self.zone_ids = 0

    # -- oracle ----------------------------------------------------------------------------

    def lineage(self, zone: str) -> list[str]:
        out: list[str] = []
        cur: str | None = zone
        while cur is not None:
            out.append(cur)
            cur = self.parent[cur]
        return out

    def targets(self, endpoint: str, spec: BroadcastSpec) -> bool:
        if endpoint in spec.target_endpoints:
            return True
        return any(z in spec.target_zones for z in self.lineage(self.where[endpoint]))

    def eligible(self, endpoint: str, holder: str | None) -> list[Bc]:
        """Running, not past expiry, targeting the endpoint, not its holder; best first."""
        found = [
            bc
            for bid, bc in self.live.items()
            if bid != holder and not bc.closed and self.targets(endpoint, bc.spec)
        ]
        return sorted(found, key=Bc.key, reverse=True)

    def holders(self) -> dict[str, str | None]:
        return {e: self.router.holder(e) for e in self.where}

    def snapshot(self) -> tuple[object, ...]:
        bcs = self.router.broadcasts()
        return (
            bcs,
            self.holders(),
            {b: self.router.listeners(b) for b in bcs},
            {e: self.router.waiting(e) for e in self.where},
        )

    # -- stepping ----------------------------------------------------------------------------

    def apply(self, event: Event) -> list[object]:
        """Handle one event and check the actions against the holders before and after."""
        before = self.holders()
        for bid in self.router.broadcasts():
            self.live[bid].held_before = frozenset(self.router.listeners(bid))
        actions: list[object] = list(self.router.handle(event))
        match event:
            case EndpointAttached(endpoint_id=e, zone_id=z):
                self.where[e] = z
                before[e] = None
            case EndpointDetached(endpoint_id=e):
                del self.where[e]
            case Tick(now=now) | BroadcastStarted(now=now):
                self.now = max(self.now, now)
            case ZoneMoved(zone_id=z, new_parent=p):
                self.parent[z] = p
        for bc in self.live.values():
            if bc.spec.expires_at is not None and self.now >= bc.spec.expires_at:
                bc.closed = True
        self.check_switches(before, actions)
        self.check_lifecycle(event, actions)
        self.play_one_frame()
        return actions

    def check_switches(self, before: dict[str, str | None], actions: list[object]) -> None:
        seen: set[str] = set()
        for act in actions:
            if isinstance(act, Switched):
                assert act.endpoint_id not in seen, "two switches for one endpoint"
                seen.add(act.endpoint_id)
                assert act.old != act.new
                assert before[act.endpoint_id] == act.old
                before[act.endpoint_id] = act.new
        gone = set(before) - set(self.where)
        assert all(before.pop(e) is None for e in gone), "detached endpoint still held"
        assert before == self.holders(), "Switched actions do not explain the new holders"

    def check_lifecycle(self, event: Event, actions: list[object]) -> None:
        for act in actions:
            match act:
                case Paused(broadcast_id=b):
                    bc = self.live[b]
                    assert bc.spec.resumable
                    assert not bc.paused
                    bc.paused, bc.paused_at = True, bc.pos
                case Resumed(broadcast_id=b):
                    bc = self.live[b]
                    assert bc.spec.resumable
                    assert bc.paused
                    assert bc.pos == bc.paused_at, "resumed somewhere else than it paused"
                    bc.paused = False
                case Expired(broadcast_id=b):
                    if b in self.live:
                        assert self.live.pop(b).closed, "expired before its expires_at"
                    else:  # expired at start: never registered
                        assert isinstance(event, BroadcastStarted)
                        assert event.spec.id == b
                        assert event.spec.expires_at is not None
                        assert event.now >= event.spec.expires_at
                case Ended(broadcast_id=b):
                    assert isinstance(event, BroadcastStopped)
                    assert event.broadcast_id == b
                    del self.live[b]

    def play_one_frame(self) -> None:
        """The simulated adapter reads a frame from every source it has not paused."""
        for bc in self.live.values():
            if not bc.paused:
                bc.pos += 1
            if self.router.listeners(bc.spec.id):
                bc.heard += 1

    # -- rules -----------------------------------------------------------------------------

    @initialize(data=st.data())
    def build_tree(self, data: st.DataObject) -> None:
        tree = ZoneTree()
        levels: dict[str, int] = {}
        for i in range(data.draw(st.integers(1, 7), label="zones")):
            deep_enough = [z for z, lvl in levels.items() if lvl < MAX_LEVEL]
            parent = data.draw(_one_of((None, *deep_enough)), label="parent")
            zone = f"z{i}"
            tree.add(zone, parent)
            self.parent[zone] = parent
            levels[zone] = 0 if parent is None else levels[parent] + 1
        self.zone_ids = len(self.parent)
        zones = tuple(self.parent)
        for endpoint in data.draw(st.lists(st.sampled_from(EIDS), unique=True), label="online"):
            self.where[endpoint] = data.draw(_one_of(zones), label="home")
            tree.attach(endpoint, self.where[endpoint])
        self.router = Router(tree)

    @rule(endpoint=st.sampled_from(EIDS), data=st.data())
    def attach_or_detach(self, endpoint: str, data: st.DataObject) -> None:
        zone = data.draw(_one_of(tuple(sorted(self.parent))), label="zone")
        if endpoint in self.where and data.draw(st.booleans(), label="twice"):
            with pytest.raises(Conflict):
                self.router.handle(EndpointAttached(endpoint, zone))
        elif endpoint in self.where:
            self.apply(EndpointDetached(endpoint))
            with pytest.raises(NotFound):
                self.router.handle(EndpointDetached(endpoint))
        else:
            self.apply(EndpointAttached(endpoint, zone))
            # Assigned at once by the same rules: the best eligible broadcast, if any.
            best = self.eligible(endpoint, None)
            assert self.router.holder(endpoint) == (best[0].spec.id if best else None)

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        spec = data.draw(self.specs(), label="spec")
        now = self.now + data.draw(st.sampled_from([0.0, 0.02, 1.0]), label="dt")
        event = BroadcastStarted(spec, now)
        if spec.id in self.live:
            with pytest.raises(Conflict):
                self.router.handle(event)
            return
        origin = spec.origin_zone
        level = -1 if origin is None else len(self.lineage(origin)) - 1
        new = Bc(spec, self.arrivals + 1, (int(spec.priority), -level))
        before, snap = self.holders(), self.snapshot()
        try:
            self.live[spec.id] = new
            self.apply(event)
        except Conflict as exc:
            del self.live[spec.id]
            self.check_refusal(new, exc, snap)
            return
        self.arrivals += 1
        if spec.id not in self.live:  # expired at start
            assert spec.id not in self.router.broadcasts()
            return
        for e in self.where:
            if self.targets(e, spec):
                old = self.live.get(before[e] or "")
                takes = old is None or may_take(new, old)
                assert (self.router.holder(e) == spec.id) == takes
                assert takes or not spec.exclusive

    @rule(data=st.data())
    def start_another(self, data: st.DataObject) -> None:
        self.start(data)

    def check_refusal(self, new: Bc, exc: Conflict, snap: tuple[object, ...]) -> None:
        assert new.spec.exclusive
        assert self.snapshot() == snap, "a refused start changed the router"
        endpoint, holder = exc.fields["endpoint"], exc.fields["holder"]
        assert isinstance(endpoint, str)
        assert isinstance(holder, str)
        assert self.router.holder(endpoint) == holder
        assert self.targets(endpoint, new.spec)
        assert not may_take(new, self.live[holder])
        assert f"endpoint {endpoint!r}" in str(exc)
        assert f"broadcast {holder!r}" in str(exc)

    def pick(self, data: st.DataObject) -> str:
        """Mostly a running broadcast, sometimes any id (running or not)."""
        running = tuple(self.live)
        if running and data.draw(st.integers(0, 3), label="pick running"):
            return str(data.draw(_one_of(running), label="running"))
        return data.draw(st.sampled_from(BIDS), label="any id")

    @rule(data=st.data(), reason=st.sampled_from(["stopped", "finished", "failed"]))
    def stop(self, data: st.DataObject, reason: str) -> None:
        bid = self.pick(data)
        if bid not in self.live:
            with pytest.raises(NotFound):
                self.router.handle(BroadcastStopped(bid, reason))  # type: ignore[arg-type]
            return
        freed = self.router.listeners(bid)
        actions = self.apply(BroadcastStopped(bid, reason))  # type: ignore[arg-type]
        assert actions[-1] == Ended(bid, reason)  # type: ignore[arg-type]
        for e in freed:  # the best waiting broadcast takes over in the same call
            best = self.eligible(e, None)
            assert self.router.holder(e) == (best[0].spec.id if best else None)

    @rule(data=st.data())
    def boundary(self, data: st.DataObject) -> None:
        bid = self.pick(data)
        if bid not in self.live:
            with pytest.raises(NotFound):
                self.router.handle(ItemBoundary(bid))
            return
        holder = self.live[bid]
        held = self.router.listeners(bid)
        outranking = {e: [w for w in self.eligible(e, bid) if w.rank > holder.rank] for e in held}
        self.apply(ItemBoundary(bid))
        for e in held:
            best = outranking[e]
            assert self.router.holder(e) == (best[0].spec.id if best else bid)

    @rule(dt=st.sampled_from([0.0, 0.02, 0.5, 1.0, 3.0]))
    def tick(self, dt: float) -> None:
        self.apply(Tick(self.now + dt))

    @rule(data=st.data())
    def edit_zone(self, data: st.DataObject) -> None:
        zones = tuple(sorted(self.parent))
        zone = data.draw(_one_of(zones), label="zone")
        match data.draw(st.sampled_from(["move", "add", "remove"]), label="edit"):
            case "move":
                new_parent = data.draw(_one_of((None, *zones)), label="new parent")
                if new_parent is not None and zone in self.lineage(new_parent):
                    snap = self.snapshot()
                    with pytest.raises(BadRequest):
                        self.router.handle(ZoneMoved(zone, new_parent))
                    assert self.snapshot() == snap
                else:
                    self.apply(ZoneMoved(zone, new_parent))
            case "add":
                new = f"z{self.zone_ids}"
                self.zone_ids += 1
                assert self.router.handle(ZoneAdded(new, zone)) == []
                self.parent[new] = zone
            case _ if zone in self.parent.values() or zone in self.where.values():
                with pytest.raises(Conflict):
                    self.router.handle(ZoneRemoved(zone))
            case _ if len(self.parent) > 1:  # keep a zone to target
                assert self.router.handle(ZoneRemoved(zone)) == []
                del self.parent[zone]

    def specs(self) -> st.SearchStrategy[BroadcastSpec]:
        now = self.now
        return _spec_parts(tuple(sorted(self.parent))).map(lambda parts: _spec(now, *parts))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def listeners_are_the_inverse_of_holder(self) -> None:
        assert self.router.broadcasts() == tuple(self.live)
        heard_by: dict[str, str] = {}
        for bid in self.live:
            listeners = self.router.listeners(bid)
            assert len(set(listeners)) == len(listeners)
            for e in listeners:
                assert e not in heard_by, "one endpoint, two holders"
                heard_by[e] = bid
        assert heard_by == {e: h for e, h in self.holders().items() if h is not None}

    @invariant()
    def holders_obey_the_rules(self) -> None:
        for e, hid in self.holders().items():
            waiting = self.eligible(e, hid)
            assert self.router.waiting(e) == tuple(w.spec.id for w in waiting)
            if hid is None:
                assert waiting == [], f"{e} idle while {waiting[0].spec.id} waits"
                continue
            holder = self.live[hid]
            assert self.targets(e, holder.spec), f"{e} hears {hid} which does not target it"
            assert not any(may_take(w, holder) for w in waiting)
            expl = self.router.explain(e)
            assert expl.holder is not None
            assert expl.holder.broadcast_id == hid

    @invariant()
    def expired_broadcasts_never_gain(self) -> None:
        for bid, bc in self.live.items():
            held = frozenset(self.router.listeners(bid))
            if bc.closed:
                assert held, f"{bid} is past expiry and holds nothing but was not dropped"
                assert held <= bc.held_before, f"{bid} gained endpoints after its expiry"

    @invariant()
    def resumable_sources_play_only_while_heard(self) -> None:
        for bid, bc in self.live.items():
            if bc.spec.resumable:
                assert bc.paused == (not self.router.listeners(bid))
                assert bc.pos == bc.heard, "a frame was read unheard or skipped"
            else:
                assert not bc.paused


@functools.cache
def _spec_parts(zones: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    """The random parts of a spec; cached per zone set (building strategies is slow)."""
    return st.tuples(
        st.sampled_from(BIDS),
        st.sampled_from(list(Priority)),
        st.frozensets(st.sampled_from(zones), max_size=3),
        st.frozensets(st.sampled_from(EIDS), max_size=2),
        st.none() | st.sampled_from(zones),
        st.sampled_from([None, None, True, False]),
        st.sampled_from([False, False, False, True]),
        st.none() | st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]),
        st.sampled_from([(False, False), (True, False), (False, True)]),
    )


@functools.cache
def _one_of(ids: tuple[str | None, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(ids)


def _spec(
    now: float,
    bid: str,
    priority: Priority,
    zones: frozenset[str],
    endpoints: frozenset[str],
    origin: str | None,
    interrupt: bool | None,
    exclusive: bool,
    expires_in: float | None,
    kind: tuple[bool, bool],
) -> BroadcastSpec:
    if not zones and not endpoints:
        endpoints = frozenset({EIDS[0]})
    resumable, live = kind
    return BroadcastSpec(
        bid,
        priority,
        target_zones=zones,
        target_endpoints=endpoints,
        origin_zone=origin,
        interrupt=interrupt,
        exclusive=exclusive,
        expires_at=None if expires_in is None else now + expires_in,
        resumable=resumable,
        live=live,
    )


RouterMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouter = RouterMachine.TestCase
TestRouter.pytestmark = [pytest.mark.slow]  # a few seconds of stateful examples
