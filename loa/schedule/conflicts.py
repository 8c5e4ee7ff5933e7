"""Schedule conflicts: for each run in a window, which programme wins on which endpoints, and why.

Nothing here re-states a priority rule. The runs are played, in time order, into a fresh
``Router`` over a copy of the zone tree — ``BroadcastStarted`` at each start,
``ItemBoundary`` at each item's end, ``BroadcastStopped`` after the last item, a ``Tick``
whenever time moves — and the report reads ``holder()`` and ``explain()`` off that router.
So the report says what the node's own router will decide, and changes with it.

The simulation follows what the node does with the router's answers: a resumable programme
(no radio relay in it) is not read while ``Paused``, so its items end later by the time it
waited; a relay runs on unheard. Item lengths come from ``Programme.item_durations``
(media from the library, speech estimated). Runs that start together are started in the
scheduler's order (start time, then schedule id), so equal ranks resolve as they will live.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loa.errors import BadRequest, NotFound
from loa.relay.core.priority import Explanation
from loa.relay.core.router import (
    Action,
    BroadcastStarted,
    BroadcastStopped,
    Ended,
    Expired,
    ItemBoundary,
    Paused,
    Resumed,
    Router,
    Switched,
    Tick,
)
from loa.relay.core.zones import ZoneTree
from loa.schedule.scheduler import Schedule

MAX_WINDOW_S = 31 * 86400.0
_ITEM_END, _START = 0, 1  # at one instant, items end (and free the floor) before runs start


@dataclass(frozen=True, slots=True)
class Run:
    """One occurrence of a schedule, as a broadcast."""

    schedule_id: str
    broadcast_id: str
    start: float
    planned_s: float


@dataclass(frozen=True, slots=True)
class EndpointOutcome:
    """One targeted endpoint, once every run starting at the same instant is in."""

    endpoint_id: str
    holder: str | None
    wins: bool
    explanation: Explanation
    heard_s: float  # how long this run held the endpoint, up to the window's end


@dataclass(frozen=True, slots=True)
class RunReport:
    run: Run
    end: float | None  # when it finished; None if still running at the window's end
    outcomes: tuple[EndpointOutcome, ...]

    @property
    def wins_on(self) -> tuple[str, ...]:
        return tuple(o.endpoint_id for o in self.outcomes if o.wins)

    @property
    def waits_on(self) -> tuple[str, ...]:
        return tuple(o.endpoint_id for o in self.outcomes if not o.wins)


@dataclass(frozen=True, slots=True)
class ConflictReport:
    start: float
    end: float
    runs: tuple[RunReport, ...]

    def run_of(self, broadcast_id: str) -> Run:
        """The run behind a broadcast id named in an explanation."""
        for report in self.runs:
            if report.run.broadcast_id == broadcast_id:
                return report.run
        raise NotFound(f"no run {broadcast_id!r} in this report", broadcast=broadcast_id)

    @property
    def contested(self) -> tuple[RunReport, ...]:
        """Runs that do not take every endpoint they target when they start."""
        return tuple(r for r in self.runs if r.waits_on)


class _Live:
    """A simulated broadcast: where it is in its items and, if paused, how much is left."""

    __slots__ = ("durations", "index", "item_due", "left", "version")

    def __init__(self, durations: tuple[float, ...], now: float) -> None:
        self.durations = durations
        self.index = 0
        self.item_due = now + durations[0]
        self.left = 0.0
        self.version = 0  # bumped on pause: the item end queued before it is stale


class _Simulation:
    """Drives the router through the runs and keeps what the report needs."""

    def __init__(
        self, router: Router, runs: dict[str, tuple[Run, Schedule]], media_s: Mapping[str, float]
    ) -> None:
        self.router = router
        self.runs = runs
        self.media_s = media_s
        self.queue: list[tuple[float, int, int, int, str]] = []
        self.seq = 0
        self.live: dict[str, _Live] = {}
        self.ended: dict[str, float] = {}
        self.since: dict[str, float] = {}  # endpoint -> when its holder took it
        self.heard: dict[tuple[str, str], float] = {}  # (broadcast, endpoint) -> seconds
        self.snapshots: dict[str, list[tuple[str, str | None, Explanation]]] = {}
        for bid, (run, _) in sorted(runs.items(), key=lambda kv: (kv[1][0].start, kv[0])):
            self._push(run.start, _START, 0, bid)

    def _push(self, at: float, phase: int, version: int, bid: str) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, phase, self.seq, version, bid))

    def run_until(self, end: float) -> None:
        while self.queue and self.queue[0][0] <= end:
            now = self.queue[0][0]
            self._apply(self.router.handle(Tick(now)), now)
            started = []
            while self.queue and self.queue[0][0] == now:
                _, phase, _, version, bid = heapq.heappop(self.queue)
                if phase == _START:
                    self._start(bid, now)
                    started.append(bid)
                else:
                    self._item_end(bid, version, now)
            for bid in started:
                self._snapshot(bid)
        for endpoint, since in self.since.items():
            holder = self.router.holder(endpoint)
            if holder is not None:
                self._hear(holder, endpoint, end - since)

    def _start(self, bid: str, now: float) -> None:
        run, schedule = self.runs[bid]
        durations = schedule.programme.item_durations(self.media_s)
        live = self.live[bid] = _Live(durations, now)
        self._push(live.item_due, _ITEM_END, live.version, bid)
        try:
            actions = self.router.handle(BroadcastStarted(schedule.broadcast_spec(run.start), now))
        except NotFound as exc:
            raise NotFound(
                f"schedule {schedule.id!r} cannot be simulated: {exc.message}",
                schedule=schedule.id,
                **exc.fields,
            ) from None
        self._apply(actions, now)

    def _item_end(self, bid: str, version: int, now: float) -> None:
        live = self.live.get(bid)
        if live is None or live.version != version:
            return  # paused since, or ended: this item end is stale
        live.index += 1
        if live.index == len(live.durations):
            self._apply(self.router.handle(BroadcastStopped(bid, "finished")), now)
            return
        live.item_due = now + live.durations[live.index]
        self._push(live.item_due, _ITEM_END, live.version, bid)
        self._apply(self.router.handle(ItemBoundary(bid)), now)

    def _apply(self, actions: list[Action], now: float) -> None:
        for action in actions:
            match action:
                case Switched(endpoint_id=endpoint, old=old):
                    if old is not None:
                        self._hear(old, endpoint, now - self.since[endpoint])
                    self.since[endpoint] = now
                case Paused(broadcast_id=bid):
                    live = self.live[bid]
                    live.left = live.item_due - now
                    live.version += 1
                case Resumed(broadcast_id=bid):
                    live = self.live[bid]
                    live.item_due = now + live.left
                    self._push(live.item_due, _ITEM_END, live.version, bid)
                case Ended(broadcast_id=bid) | Expired(broadcast_id=bid):
                    self.live.pop(bid, None)
                    self.ended[bid] = now

    def _hear(self, bid: str, endpoint: str, seconds: float) -> None:
        key = (bid, endpoint)
        self.heard[key] = self.heard.get(key, 0.0) + seconds

    def _snapshot(self, bid: str) -> None:
        schedule = self.runs[bid][1]
        p = schedule.programme
        targets = self.router.zones.resolve(p.target_zones, p.target_endpoints)
        self.snapshots[bid] = [
            (e, self.router.holder(e), self.router.explain(e)) for e in sorted(targets)
        ]


def _copy_tree(zones: ZoneTree, endpoints: Mapping[str, str]) -> ZoneTree:
    """The zones (parents first) and the given endpoints; the caller's tree is untouched."""
    tree = ZoneTree()
    for zone in sorted(zones, key=zones.level):
        tree.add(zone, zones.parent(zone))
    for endpoint, zone in sorted(endpoints.items()):
        tree.attach(endpoint, zone)
    return tree


def _check_window(window: tuple[float, float]) -> tuple[float, float]:
    start, end = window
    if not (math.isfinite(start) and math.isfinite(end)):
        raise BadRequest(f"window must be two finite Unix times, got {window!r}", field="window")
    if end <= start:
        raise BadRequest(f"window end {end:g} must be after its start {start:g}", field="window")
    if end - start > MAX_WINDOW_S:
        raise BadRequest(
            f"window is {end - start:g} s long; at most {MAX_WINDOW_S:g} s (31 days)",
            field="window",
        )
    return start, end


def conflicts(
    schedules: Iterable[Schedule],
    zones: ZoneTree,
    endpoints: Mapping[str, str],
    window: tuple[float, float],
    *,
    media_s: Mapping[str, float] | None = None,
) -> ConflictReport:
    """Every run that starts in ``window`` or is still playing when it opens, and per
    endpoint it targets: the holder once its start instant has settled, the router's
    explanation, and how long the run is heard there before the window closes.

    ``endpoints`` maps endpoint id → zone id (the poles to judge; listeners are not poles);
    ``media_s`` maps media id → duration in seconds (the library's ``duration_s``)."""
    start, end = _check_window(window)
    media = dict(media_s or {})
    chosen = list(schedules)
    lengths = {s.id: sum(s.programme.item_durations(media)) for s in chosen}
    lookback = max(lengths.values(), default=0.0)
    runs: dict[str, tuple[Run, Schedule]] = {}
    for schedule in chosen:
        for occurrence in schedule.recurrence.between(start - lookback - 1.0, end):
            bid = schedule.broadcast_id(occurrence.at)
            runs[bid] = (Run(schedule.id, bid, occurrence.at, lengths[schedule.id]), schedule)
    sim = _Simulation(Router(_copy_tree(zones, endpoints)), runs, media)
    sim.run_until(end)
    reports = []
    for bid, (run, _) in sorted(runs.items(), key=lambda kv: (kv[1][0].start, kv[0])):
        ended = sim.ended.get(bid)
        if ended is not None and ended <= start:
            continue  # over before the window opens: simulated only for its effect
        outcomes = tuple(
            EndpointOutcome(e, holder, holder == bid, why, sim.heard.get((bid, e), 0.0))
            for e, holder, why in sim.snapshots[bid]
        )
        reports.append(RunReport(run, ended, outcomes))
    return ConflictReport(start, end, tuple(reports))
