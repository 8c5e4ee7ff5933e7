"""Reports upward: per endpoint and per zone, over a period ``[since, until)``, what played,
what was asked to play, emergencies, and availability; as JSON-ready dataclasses or CSV.

``compute`` is pure (log rows, presence intervals, the zone tree in; figures out); ``load``
is the one function that reads, on the store's worker thread. The rules:

- A log row concerns the period when its span — from ``started_at`` (or ``requested_at`` if
  it never started) to ``ended_at`` (or the period's end while it runs) — overlaps it.
- *requested_s*: for every row targeting the endpoint (its zone's subtree, the endpoint
  itself, or that it heard), the span clipped to the period: what the endpoint was asked to
  play, whether or not it could.
- *played_s*: the row's ``heard_s`` for the endpoint. A row crossing a period boundary
  contributes the share of its span inside the period, so consecutive periods add up.
- *broadcasts* / *emergencies*: rows the endpoint heard (class emergency for the latter).
- *availability_pct*: online time (presence intervals, an open one counting up to the period
  end) over the time the endpoint existed inside the period: from ``max(since, created_at)``
  to the period's end, ``min(until, now)`` — a pole installed halfway through and online
  since is at 100 %, and a report on today says how today has gone so far (no future hours).
  None when there is no such time (the period is still ahead, or the pole came later), and
  for ``rtp`` endpoints, which have no session to watch.
- A zone aggregates its subtree's endpoints: broadcasts and emergencies are distinct rows
  heard there, times are sums (endpoint-seconds), availability the online endpoint-seconds
  over the existing endpoint-seconds of its monitored endpoints (the plain mean when they all
  existed the whole period).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from loa.errors import BadRequest
from loa.relay.core.zones import ZoneTree
from loa.store import Store
from loa.store.endpoints import Endpoint
from loa.store.log import LogRow
from loa.store.presence import Interval
from loa.store.zones import Zone

MAX_PERIOD_S = 93 * 86400  # a quarter: reports hold a period's log rows in memory


@dataclass(frozen=True, slots=True)
class Period:
    since: float
    until: float
    now: float

    def __post_init__(self) -> None:
        if not self.since < self.until:
            raise BadRequest(f"since ({self.since}) must be before until ({self.until})")
        if self.until - self.since > MAX_PERIOD_S:
            raise BadRequest(
                f"the period is {(self.until - self.since) / 86400:.1f} days long; "
                f"at most {MAX_PERIOD_S // 86400} days per report"
            )

    @property
    def end(self) -> float:
        """Where measured time stops: ``until``, or now for a period still under way."""
        return max(self.since, min(self.until, self.now))


@dataclass(frozen=True, slots=True)
class EndpointReport:
    endpoint: str
    name: str
    zone: str
    broadcasts: int
    emergencies: int
    played_s: float
    requested_s: float
    availability_pct: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ZoneReport:
    zone: str
    name: str
    endpoints: int
    broadcasts: int
    emergencies: int
    played_s: float
    requested_s: float
    availability_pct: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Tally:
    heard: set[str] = field(default_factory=set)
    emergencies: set[str] = field(default_factory=set)
    played_s: float = 0.0
    requested_s: float = 0.0
    online_s: float = 0.0
    existed_s: float = 0.0  # monitored time inside the period; 0: not monitored


def _clip(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


def _share(start: float, end: float, period: Period) -> float:
    """The fraction of ``[start, end)`` inside the period (an instant inside counts whole)."""
    if end <= start:
        return 1.0 if period.since <= start < period.until else 0.0
    return _clip(start, end, period.since, period.until) / (end - start)


def _targets(row: LogRow, tree: ZoneTree) -> set[str]:
    out = set(row.target_endpoints) | {e for e, s in row.heard_s.items() if s > 0}
    for zone in row.target_zones:
        if zone in tree:
            out |= tree.endpoints_in(zone)
    return out


def _tally(
    rows: Iterable[LogRow], tree: ZoneTree, period: Period, eps: set[str]
) -> dict[str, _Tally]:
    tallies = {e: _Tally() for e in eps}
    for row in rows:
        start = row.started_at if row.started_at is not None else row.requested_at
        end = row.ended_at if row.ended_at is not None else max(start, period.end)
        share = _share(start, end, period)
        if share <= 0:
            continue
        requested = _clip(start, end, period.since, period.until)
        for ep in _targets(row, tree) & eps:
            t = tallies[ep]
            t.requested_s += requested
            heard = row.heard_s.get(ep, 0.0)
            if heard > 0:
                t.played_s += heard * share
                t.heard.add(row.id)
                if row.klass == "emergency":
                    t.emergencies.add(row.id)
    return tallies


def _measured_from(endpoint: Endpoint, period: Period) -> float:
    """Where the endpoint's measured time starts: the period's start, or its creation."""
    return max(period.since, endpoint.created_at)


def _online_s(
    intervals: Iterable[Interval], period: Period, starts: Mapping[str, float]
) -> dict[str, float]:
    """Online time per endpoint inside ``[starts[endpoint], period.end)``, overlapping
    intervals merged; endpoints not in ``starts`` are left out."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for i in intervals:
        start = starts.get(i.endpoint)
        if start is None:
            continue
        off = period.end if i.offline_at is None else i.offline_at
        lo, hi = max(i.online_at, start), min(off, period.end)
        if hi > lo:
            spans.setdefault(i.endpoint, []).append((lo, hi))
    out: dict[str, float] = {}
    for ep, pieces in spans.items():
        total, reach = 0.0, starts[ep]
        for lo, hi in sorted(pieces):
            lo = max(lo, reach)
            if hi > lo:
                total += hi - lo
                reach = hi
        out[ep] = total
    return out


def compute(
    period: Period,
    endpoints: Sequence[Endpoint],
    zones: Sequence[Zone],
    tree: ZoneTree,
    rows: Iterable[LogRow],
    intervals: Iterable[Interval],
) -> tuple[list[EndpointReport], list[ZoneReport]]:
    """Figures for ``endpoints`` and for each of ``zones`` (over the endpoints of its subtree
    that are among ``endpoints``); ``tree`` is the zone tree with every endpoint attached."""
    eps = {e.id for e in endpoints}
    tallies = _tally(rows, tree, period, eps)
    starts = {e.id: _measured_from(e, period) for e in endpoints if e.kind == "managed"}
    online = _online_s(intervals, period, starts)
    by_endpoint: dict[str, tuple[EndpointReport, _Tally]] = {}
    for e in endpoints:
        t = tallies[e.id]
        availability = None
        if e.id in starts and period.end > starts[e.id]:
            t.existed_s = period.end - starts[e.id]
            t.online_s = online.get(e.id, 0.0)
            availability = round(100.0 * t.online_s / t.existed_s, 3)
        report = EndpointReport(
            e.id, e.name, e.zone, len(t.heard), len(t.emergencies), round(t.played_s, 3),
            round(t.requested_s, 3), availability,
        )  # fmt: skip
        by_endpoint[e.id] = (report, t)
    zone_reports = [_zone(z, tree, by_endpoint) for z in zones]
    return [r for r, _ in by_endpoint.values()], zone_reports


def _zone(
    zone: Zone, tree: ZoneTree, by_endpoint: Mapping[str, tuple[EndpointReport, _Tally]]
) -> ZoneReport:
    members = [by_endpoint[e] for e in sorted(tree.endpoints_in(zone.id)) if e in by_endpoint]
    heard: set[str] = set().union(*(t.heard for _, t in members))
    emergencies: set[str] = set().union(*(t.emergencies for _, t in members))
    existed = sum(t.existed_s for _, t in members)
    online = sum(t.online_s for _, t in members)
    return ZoneReport(
        zone.id, zone.name, len(members), len(heard), len(emergencies),
        round(sum(r.played_s for r, _ in members), 3),
        round(sum(r.requested_s for r, _ in members), 3),
        round(100.0 * online / existed, 3) if existed > 0 else None,
    )  # fmt: skip


def _log_rows(conn: sqlite3.Connection, since: float, until: float) -> list[LogRow]:
    sql = (
        "SELECT * FROM broadcast_log WHERE (ended_at > ? OR ended_at IS NULL)"
        " AND requested_at < ? AND coalesce(started_at, requested_at) < ?"
    )
    return [LogRow.from_row(r) for r in conn.execute(sql, (since, until, until))]


@dataclass(frozen=True, slots=True)
class Inputs:
    """What ``compute`` needs, read in one go."""

    endpoints: list[Endpoint]
    zones: list[Zone]
    tree: ZoneTree
    rows: list[LogRow]
    intervals: list[Interval]


async def load(store: Store, period: Period) -> Inputs:
    """Every endpoint and zone (callers narrow them to a scope), the zone tree, and the log
    rows and presence intervals overlapping the period."""
    return Inputs(
        await store.endpoints.list(),
        await store.zones.list(),
        await store.zones.tree(),
        await store.db.run(_log_rows, period.since, period.until),
        await store.presence.intervals(period.since, period.until),
    )


# -- CSV ------------------------------------------------------------------------------------

ENDPOINT_COLUMNS = (
    "since", "until", "endpoint", "name", "zone", "broadcasts", "emergencies", "played_s",
    "requested_s", "availability_pct",
)  # fmt: skip
ZONE_COLUMNS = (
    "since", "until", "zone", "name", "endpoints", "broadcasts", "emergencies", "played_s",
    "requested_s", "availability_pct",
)  # fmt: skip


def _cell(value: object) -> object:
    """Neutralise text a spreadsheet would run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv(header: Sequence[str], reports: Sequence[Any], period: Period, tz: tzinfo) -> bytes:
    since = datetime.fromtimestamp(period.since, tz).isoformat(timespec="seconds")
    until = datetime.fromtimestamp(period.until, tz).isoformat(timespec="seconds")
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for r in reports:
        writer.writerow([since, until, *(_cell(v) for v in asdict(r).values())])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _header(columns: Sequence[str], labels: Mapping[str, str] | None) -> list[str]:
    return [str(_cell(labels.get(c, c))) if labels else c for c in columns]


def endpoints_csv(
    reports: Sequence[EndpointReport],
    period: Period,
    tz: tzinfo = UTC,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """UTF-8 with a byte-order mark (Excel shows Vietnamese names right), the period in ISO
    8601 in ``tz`` on every line; an empty availability means not monitored. The header
    line words each of ENDPOINT_COLUMNS by ``labels`` (the reader's language), else names it."""
    return _csv(_header(ENDPOINT_COLUMNS, labels), reports, period, tz)


def zones_csv(
    reports: Sequence[ZoneReport],
    period: Period,
    tz: tzinfo = UTC,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """As ``endpoints_csv``, one line per zone (ZONE_COLUMNS)."""
    return _csv(_header(ZONE_COLUMNS, labels), reports, period, tz)
