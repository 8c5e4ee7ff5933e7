"""Reports upward over a scripted day, written through the store with fixed times and
checked against figures computed by hand; presence intervals; the CSV.

The world: province p ⊃ commune c0 ⊃ village v0, p ⊃ commune c1. Endpoints: A (v0), B (c0),
R (c0, a static rtp address), C (c1). The day is [00:00, 24:00) of DAY.

Presence: A online 06:00–18:00 (12 h: 50 %); B online from 23:00 the evening before until
12:00, and again from 18:00, still online at the end (12 h + 6 h: 75 %); C never (0 %);
R is rtp, not monitored (None).

The broadcast log (heard seconds in brackets):
- prog: scheduled to c0, 05:55–06:10. A came online at 06:00 and heard 10 min [A 600]; B and
  R heard it all [900 each]. Requested: 15 min for A, B, R.
- alert: emergency to p, 12:00–12:02. A and R heard it [120 each]; B went offline at 12:00,
  C is offline. Requested: 2 min for all four.
- night: background to endpoint C alone, 23:30 the evening before to 00:30. Nobody heard it.
  Requested for C: the 30 min inside the day.
- missed: priority to c1, requested 09:00, never started, expired 09:05: 5 min requested of C.
- late: live to c0, 23:50–00:10 next day; B and R heard all 20 min [1200 each], half of it
  inside the day: played 600 s each. Requested: 10 min for A, B, R.
- tomorrow: scheduled to p at 01:00 the next day: outside the period, ignored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from loa import reports
from loa.errors import BadRequest
from loa.relay.broadcast import LogEntry
from loa.relay.core.zones import ZoneTree
from loa.reports import EndpointReport, Period, ZoneReport
from loa.store import Store
from loa.store.endpoints import Endpoint
from loa.store.presence import Interval
from loa.store.zones import Zone
from tests.store.conftest import FakeClock, province

DAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC
H, M = 3600.0, 60.0


@pytest.fixture
async def store(store_where: Path | str) -> AsyncIterator[Store]:
    s = await Store.open(store_where, clock=FakeClock(DAY - 7 * 86400))
    yield s
    await s.close()


def entry(
    log_id: str,
    klass: str,
    start: float | None,
    end: float,
    heard: dict[str, float],
    *,
    zones: tuple[str, ...] = (),
    endpoints: tuple[str, ...] = (),
    requested: float | None = None,
) -> dict[str, Any]:
    e = LogEntry(
        id=log_id,
        what=log_id,
        source="tone",
        priority=klass,
        origin_zone=None,
        target_zones=list(zones),
        target_endpoints=list(endpoints),
        created_by="op",
        requested_at=start if requested is None else requested,
        started_at=start,
        ended_at=end,
        state="finished" if start is not None else "expired",
        heard_s=heard,
    )
    return e.as_json()


async def scripted_day(store: Store) -> None:
    await province(store)
    await store.endpoints.add("A", "Loa A", "v0")
    await store.endpoints.add("B", "Loa B", "c0")
    await store.endpoints.add("R", "=RTP R", "c0", kind="rtp", address="10.0.0.9:5004")
    await store.endpoints.add("C", "Loa C", "c1")
    for endpoint, online, at in [
        ("B", True, DAY - 1 * H),
        ("A", True, DAY + 6 * H),
        ("B", False, DAY + 12 * H),
        ("A", False, DAY + 18 * H),
        ("B", True, DAY + 18 * H),
    ]:
        assert await store.presence.record(endpoint, online, at)
    for e in [
        entry(
            "prog",
            "scheduled",
            DAY + 5 * H + 55 * M,
            DAY + 6 * H + 10 * M,
            {"A": 600, "B": 900, "R": 900},
            zones=("c0",),
        ),
        entry(
            "alert", "emergency", DAY + 12 * H, DAY + 12 * H + 2 * M, {"A": 120, "R": 120},
            zones=("p",),
        ),
        entry("night", "background", DAY - 30 * M, DAY + 30 * M, {}, endpoints=("C",)),
        entry(
            "missed", "priority", None, DAY + 9 * H + 5 * M, {}, zones=("c1",),
            requested=DAY + 9 * H,
        ),
        entry(
            "late", "live", DAY + 23 * H + 50 * M, DAY + 24 * H + 10 * M, {"B": 1200, "R": 1200},
            zones=("c0",),
        ),
        entry(
            "tomorrow", "scheduled", DAY + 25 * H, DAY + 25 * H + 5 * M, {"A": 300}, zones=("p",)
        ),
    ]:  # fmt: skip
        await store.log.put(e)


async def day_report(store: Store) -> tuple[list[EndpointReport], list[ZoneReport]]:
    period = Period(DAY, DAY + 24 * H, now=DAY + 30 * H)
    data = await reports.load(store, period)
    return reports.compute(period, data.endpoints, data.zones, data.tree, data.rows, data.intervals)


async def test_endpoints_over_a_scripted_day(store: Store) -> None:
    await scripted_day(store)
    by_endpoint, _ = await day_report(store)
    assert {r.endpoint: r for r in by_endpoint} == {
        "A": EndpointReport("A", "Loa A", "v0", 2, 1, 720.0, 900 + 120 + 600, 50.0),
        "B": EndpointReport("B", "Loa B", "c0", 2, 0, 900 + 600, 900 + 120 + 600, 75.0),
        "R": EndpointReport("R", "=RTP R", "c0", 3, 1, 900 + 120 + 600, 1620.0, None),
        "C": EndpointReport("C", "Loa C", "c1", 0, 0, 0.0, 120 + 1800 + 300, 0.0),
    }


async def test_zones_aggregate_their_subtree(store: Store) -> None:
    await scripted_day(store)
    _, by_zone = await day_report(store)
    assert {r.zone: r for r in by_zone} == {
        "v0": ZoneReport("v0", "Thôn 0", 1, 2, 1, 720.0, 1620.0, 50.0),
        # prog, alert and late were heard in c0; availability: mean of A and B (R is rtp)
        "c0": ZoneReport("c0", "Xã 0", 3, 3, 1, 720 + 1500 + 1620, 3 * 1620, 62.5),
        "c1": ZoneReport("c1", "Xã 1", 1, 0, 0, 0.0, 2220.0, 0.0),
        "p": ZoneReport("p", "Tỉnh P", 4, 3, 1, 3840.0, 3 * 1620 + 2220, 41.667),
    }


async def test_consecutive_periods_add_up(store: Store) -> None:
    """Two half days give the figures of the whole day: boundary rows are shared out."""
    await scripted_day(store)
    data = await reports.load(store, Period(DAY - H, DAY + 25 * H, DAY + 30 * H))
    halves = [
        Period(DAY, DAY + 12 * H, DAY + 30 * H),
        Period(DAY + 12 * H, DAY + 24 * H, DAY + 30 * H),
    ]
    whole = Period(DAY, DAY + 24 * H, DAY + 30 * H)

    def figures(period: Period) -> dict[str, tuple[float, float]]:
        eps, _ = reports.compute(period, data.endpoints, [], data.tree, data.rows, data.intervals)
        return {r.endpoint: (r.played_s, r.requested_s) for r in eps}

    first, second = (figures(p) for p in halves)
    total = {e: (first[e][0] + second[e][0], first[e][1] + second[e][1]) for e in first}
    assert total == figures(whole)
    assert first["A"] == (600.0, 900.0) and second["A"] == (120.0, 120 + 600)


def pole(endpoint_id: str, created_at: float = 0.0) -> Endpoint:
    return Endpoint(
        endpoint_id, f"Loa {endpoint_id}", "v0", "managed", None, None, None, 80, 100, None,
        created_at,
    )  # fmt: skip


def availability(
    period: Period, intervals: list[Interval], created_at: float = 0.0
) -> float | None:
    """Endpoint A's availability from these intervals (nothing else in the world)."""
    tree = ZoneTree.build([("v0", None)])
    tree.attach("A", "v0")
    (report,), _ = reports.compute(period, [pole("A", created_at)], [], tree, [], intervals)
    return report.availability_pct


def test_a_pole_is_measured_from_when_it_was_created() -> None:
    """Over a finished day: A installed at 12:00 and online from then on is at 100 %, not
    50 %; installed at 12:00 and online 15:00–18:00, 3 h of 12 h: 25 %; installed before the
    day and online 12:00–24:00, 50 %; installed after the day: no figure at all."""
    day = Period(DAY, DAY + 24 * H, now=DAY + 48 * H)
    noon = DAY + 12 * H
    assert availability(day, [Interval("A", noon, None)], created_at=noon) == 100.0
    assert availability(day, [Interval("A", noon, DAY + 30 * H)], created_at=noon) == 100.0
    assert availability(day, [Interval("A", DAY + 15 * H, DAY + 18 * H)], created_at=noon) == 25.0
    assert availability(day, [Interval("A", noon, None)], created_at=DAY - 86400) == 50.0
    assert availability(day, [], created_at=DAY + 25 * H) is None
    # presence before the creation (an id reused after a pole was removed) does not count
    earlier = [Interval("A", DAY, DAY + 6 * H), Interval("A", DAY + 18 * H, None)]
    assert availability(day, earlier, created_at=noon) == 50.0


def test_a_window_ending_in_the_future_stops_at_now() -> None:
    """A week whose last day is under way, at Wednesday 18:00 (2.75 days in): A installed on
    Tuesday 06:00 (1.5 days before now) and online since, but for 6 hours on Wednesday
    night 00:00–06:00: 30 h of 36 h, 83.333 %; a week in the future has no figure."""
    week = Period(DAY, DAY + 7 * 86400, now=DAY + 2 * 86400 + 18 * H)
    created = DAY + 86400 + 6 * H
    intervals = [
        Interval("A", created, DAY + 2 * 86400),
        Interval("A", DAY + 2 * 86400 + 6 * H, None),
    ]
    assert availability(week, intervals, created_at=created) == 83.333
    assert availability(Period(DAY + 86400, DAY + 8 * 86400, now=DAY), [], 0.0) is None


def test_a_zone_weighs_its_poles_by_the_time_they_existed() -> None:
    """Over a finished day in v0: A existed all 24 h and was online 12 h (50 %); B was
    installed at 12:00 and online ever since (100 %). The zone was online 12 + 12 of
    24 + 12 pole-hours: 66.667 %, not the 75 % mean of the two."""
    tree = ZoneTree.build([("v0", None)])
    tree.attach("A", "v0")
    tree.attach("B", "v0")
    day = Period(DAY, DAY + 24 * H, now=DAY + 30 * H)
    zone = Zone("v0", "Thôn 0", None, "Asia/Ho_Chi_Minh", ("vi",), 0.0)
    intervals = [Interval("A", DAY + 6 * H, DAY + 18 * H), Interval("B", DAY + 12 * H, None)]
    eps, (v0,) = reports.compute(
        day, [pole("A", DAY - 86400), pole("B", DAY + 12 * H)], [zone], tree, [], intervals
    )
    assert [e.availability_pct for e in eps] == [50.0, 100.0]
    assert v0.availability_pct == 66.667


def test_a_period_under_way_is_measured_up_to_now() -> None:
    """At 12:00, A online since 06:00 and still online: half of the day so far."""
    period = Period(DAY, DAY + 24 * H, now=DAY + 12 * H)
    assert period.end == DAY + 12 * H
    assert availability(period, [Interval("A", DAY + 6 * H, None)]) == 50.0
    assert availability(Period(DAY, DAY + H, now=DAY - H), []) is None  # not begun yet


def test_overlapping_intervals_are_counted_once() -> None:
    period = Period(DAY, DAY + 10 * H, now=DAY + 20 * H)
    intervals = [
        Interval("A", DAY - H, DAY + 2 * H),
        Interval("A", DAY + H, DAY + 3 * H),  # a clock step made it overlap the first
        Interval("A", DAY + 9 * H, None),
    ]
    assert availability(period, intervals) == 40.0  # 00:00–03:00 and 09:00–10:00


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (DAY, DAY, r"^since \(1704067200.0\) must be before until \(1704067200.0\)$"),
        (DAY, DAY + 94 * 86400, r"^the period is 94.0 days long; at most 93 days per report$"),
    ],
)
def test_bad_periods(since: float, until: float, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Period(since, until, DAY)


async def test_csv(store: Store) -> None:
    await scripted_day(store)
    by_endpoint, by_zone = await day_report(store)
    period = Period(DAY, DAY + 24 * H, DAY + 30 * H)
    ict = timezone(timedelta(hours=7))
    data = reports.endpoints_csv(by_endpoint, period, ict)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == list(reports.ENDPOINT_COLUMNS)
    by_id = {r[2]: r for r in rows[1:]}
    since, until = "2024-01-01T07:00:00+07:00", "2024-01-02T07:00:00+07:00"
    assert by_id["A"] == [since, until, "A", "Loa A", "v0", "2", "1", "720.0", "1620.0", "50.0"]
    # formula-looking text is neutralised; no availability for an rtp endpoint
    assert by_id["R"][3] == "'=RTP R" and by_id["R"][9] == ""
    zones = list(csv.reader(io.StringIO(reports.zones_csv(by_zone, period).decode("utf-8-sig"))))
    assert zones[0] == list(reports.ZONE_COLUMNS)
    assert {r[2]: r for r in zones[1:]}["p"] == [
        "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00", "p", "Tỉnh P", "4", "3", "1",
        "3840.0", "7080.0", "41.667",
    ]  # fmt: skip
    # the header line in the reader's words, a column without words keeps its name
    labels = {"since": "Từ", "zone": "Mã khu vực", "availability_pct": "Sẵn sàng (%)"}
    worded = reports.zones_csv(by_zone, period, labels=labels).decode("utf-8-sig")
    assert worded.splitlines()[0] == (
        "Từ,until,Mã khu vực,name,endpoints,broadcasts,emergencies,played_s,requested_s,"
        "Sẵn sàng (%)"
    )


async def test_presence_intervals(store: Store) -> None:
    await province(store)
    assert await store.presence.record("A", True, DAY + H)
    assert not await store.presence.record("A", True, DAY + 2 * H)  # already online
    assert await store.presence.online() == {"A"}
    assert await store.presence.record("A", False, DAY + 3 * H)
    assert not await store.presence.record("A", False, DAY + 4 * H)  # already offline
    assert await store.presence.record("A", True, DAY + 5 * H)
    assert await store.presence.record("B", True, DAY + 6 * H)
    assert await store.presence.intervals(DAY + 4 * H, DAY + 7 * H) == [
        Interval("A", DAY + 5 * H, None),
        Interval("B", DAY + 6 * H, None),
    ]
    assert await store.presence.intervals(DAY, DAY + 4 * H, {"A"}) == [
        Interval("A", DAY + H, DAY + 3 * H)
    ]
    with pytest.raises(BadRequest, match=r"^endpoints must be a set of endpoint ids"):
        await store.presence.intervals(DAY, DAY + H, "A")


async def test_an_interval_left_open_by_a_crash_ends_at_its_last_checkpoint(store: Store) -> None:
    await store.presence.record("A", True, DAY)
    await store.presence.record("B", True, DAY + H)
    assert await store.presence.checkpoint(DAY + 2 * H) == 2
    # ... the process is killed here; the next start:
    assert await store.presence.close_orphans() == 2
    assert await store.presence.online() == frozenset()
    assert await store.presence.intervals(DAY, DAY + 5 * H) == [
        Interval("A", DAY, DAY + 2 * H),
        Interval("B", DAY + H, DAY + 2 * H),
    ]
    await store.presence.record("A", True, DAY + 3 * H)
    assert await store.presence.close_all(DAY + 4 * H) == 1
    assert (await store.presence.intervals(DAY + 3 * H, DAY + 5 * H))[0].offline_at == DAY + 4 * H


def test_json_shape() -> None:
    r = EndpointReport("A", "Loa A", "v0", 2, 1, 720.0, 1620.0, 50.0)
    assert r.as_json() == {
        "endpoint": "A",
        "name": "Loa A",
        "zone": "v0",
        "broadcasts": 2,
        "emergencies": 1,
        "played_s": 720.0,
        "requested_s": 1620.0,
        "availability_pct": 50.0,
    }
