"""The conflicts report says what the router itself decides, per endpoint, with its reasons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from loa.errors import BadRequest, NotFound
from loa.relay.core.router import BroadcastStarted, Router
from loa.relay.core.zones import ZoneTree
from loa.schedule.conflicts import ConflictReport, RunReport, conflicts
from loa.schedule.programme import Programme
from loa.schedule.rules import Recurrence, zone_info
from loa.schedule.scheduler import Schedule

TZ = zone_info("Asia/Ho_Chi_Minh")
ENDPOINTS = {"c0-e0": "c0", "c0-e1": "c0", "c1-e0": "c1"}


def local(hhmm: str) -> float:
    return datetime.fromisoformat(f"2025-01-06T{hhmm}").replace(tzinfo=TZ).timestamp()


def tree() -> ZoneTree:
    return ZoneTree.build([("p", None), ("c0", "p"), ("c1", "p")])


def make(
    sid: str, rule: str, items: list[dict[str, Any]], zones: list[str], origin: str | None, cls: str
) -> Schedule:
    programme = Programme.from_json({"items": items, "targets": {"zones": zones}, "class": cls})
    recurrence = Recurrence.from_local("2025-01-06T00:00", rule)
    return Schedule(sid, sid, programme, recurrence, origin)


def silence(*seconds: float) -> list[dict[str, Any]]:
    return [{"type": "silence", "duration_s": s} for s in seconds]


BG = make(
    "bg",
    "FREQ=DAILY;BYHOUR=4;BYMINUTE=0;BYSECOND=0",
    [{"type": "url", "url": "http://vov.example/vov1", "duration_s": 18 * 3600}],
    ["p"],
    None,
    "background",
)
PROV = make(
    "prov", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5;BYMINUTE=0;BYSECOND=0",
    silence(900, 900), ["c0"], "p", "scheduled",
)  # fmt: skip
COMMUNE = make(
    "commune", "FREQ=DAILY;BYHOUR=5;BYMINUTE=10;BYSECOND=0", silence(1800), ["c0"], "c0",
    "scheduled",
)  # fmt: skip


def bid(schedule: Schedule, hhmm: str) -> str:
    return schedule.broadcast_id(local(hhmm))


def by_id(report: ConflictReport, broadcast_id: str) -> RunReport:
    (found,) = [r for r in report.runs if r.run.broadcast_id == broadcast_id]
    return found


def test_background_relay_and_two_overlapping_programmes_on_one_commune() -> None:
    report = conflicts([COMMUNE, BG, PROV], tree(), ENDPOINTS, (local("04:30"), local("07:00")))
    bg, prov, commune = bid(BG, "04:00"), bid(PROV, "05:00"), bid(COMMUNE, "05:10")
    assert [r.run.broadcast_id for r in report.runs] == [bg, prov, commune]

    # The same events, by hand, into a router: the report must hold its very answers.
    zones = tree()
    for endpoint, zone in ENDPOINTS.items():
        zones.attach(endpoint, zone)
    router = Router(zones)
    router.handle(BroadcastStarted(BG.broadcast_spec(local("04:00")), local("04:00")))
    at_bg = {e: router.explain(e) for e in ENDPOINTS}
    router.handle(BroadcastStarted(PROV.broadcast_spec(local("05:00")), local("05:00")))
    at_prov = {e: router.explain(e) for e in ("c0-e0", "c0-e1")}
    router.handle(BroadcastStarted(COMMUNE.broadcast_spec(local("05:10")), local("05:10")))
    at_commune = {e: router.explain(e) for e in ("c0-e0", "c0-e1")}

    r_bg, r_prov, r_commune = report.runs
    assert {o.endpoint_id: o.explanation for o in r_bg.outcomes} == at_bg
    assert {o.endpoint_id: o.explanation for o in r_prov.outcomes} == at_prov
    assert {o.endpoint_id: o.explanation for o in r_commune.outcomes} == at_commune

    assert r_bg.wins_on == ("c0-e0", "c0-e1", "c1-e0")
    assert r_prov.wins_on == ("c0-e0", "c0-e1")
    assert r_commune.wins_on == () and r_commune.waits_on == ("c0-e0", "c0-e1")
    assert report.contested == (r_commune,)

    (why_bg,) = r_prov.outcomes[0].explanation.others
    assert (why_bg.broadcast_id, why_bg.reason.code, why_bg.reason.fields) == (
        bg,
        "lower_class",
        {"holder": prov, "class": "background", "holder_class": "scheduled"},
    )
    outcome = r_commune.outcomes[0]
    assert outcome.holder == prov and not outcome.wins
    waiting = {s.broadcast_id: s.reason for s in outcome.explanation.others}
    assert waiting[commune].code == "lower_origin"
    assert waiting[commune].fields == {"holder": prov, "level": 1, "holder_level": 0}
    assert report.run_of(prov).schedule_id == "prov"

    # The commune's programme is resumable: it waits paused, plays all of it when the
    # province's ends at 05:30, and so ends at 06:00; the relay runs on all day.
    assert r_prov.end == local("05:30")
    assert r_commune.end == local("06:00")
    assert r_bg.end is None
    assert [o.heard_s for o in r_commune.outcomes] == [1800.0, 1800.0]
    assert [o.heard_s for o in r_prov.outcomes] == [1800.0, 1800.0]
    heard_bg = {o.endpoint_id: o.heard_s for o in r_bg.outcomes}
    assert heard_bg == {"c0-e0": 7200.0, "c0-e1": 7200.0, "c1-e0": 3 * 3600.0}


def test_a_higher_origin_waits_for_the_item_boundary() -> None:
    commune = make(
        "commune", "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0", silence(600, 600), ["c0"], "c0",
        "scheduled",
    )  # fmt: skip
    prov = make(
        "prov", "FREQ=DAILY;BYHOUR=5;BYMINUTE=5;BYSECOND=0", silence(1800), ["c0"], "p",
        "scheduled",
    )  # fmt: skip
    report = conflicts([commune, prov], tree(), ENDPOINTS, (local("04:30"), local("07:00")))
    r_commune, r_prov = report.runs
    c_id = r_commune.run.broadcast_id
    assert r_prov.waits_on == ("c0-e0", "c0-e1")
    mine = {s.broadcast_id: s.reason for s in r_prov.outcomes[0].explanation.others}
    assert mine[r_prov.run.broadcast_id].code == "at_boundary"
    assert mine[r_prov.run.broadcast_id].fields == {"holder": c_id}
    # 05:10 boundary: the province takes over until 05:40; the commune resumes, ends 05:50.
    assert r_prov.end == local("05:40")
    assert r_commune.end == local("05:50")
    assert [o.heard_s for o in r_commune.outcomes] == [1200.0, 1200.0]


def test_equal_ranks_starting_together_go_by_schedule_id() -> None:
    a = make("a", "FREQ=DAILY;BYHOUR=5", silence(60), ["c1"], "c1", "scheduled")
    b = make("b", "FREQ=DAILY;BYHOUR=5", silence(60), ["c1"], "c1", "scheduled")
    report = conflicts([b, a], tree(), ENDPOINTS, (local("04:00"), local("06:00")))
    r_a, r_b = report.runs
    assert r_a.run.schedule_id == "a" and r_a.wins_on == ("c1-e0",)
    assert r_b.outcomes[0].holder == r_a.run.broadcast_id
    (standing,) = r_b.outcomes[0].explanation.others
    assert standing.reason.code == "equal_rank"
    assert standing.reason.fields == {"holder": r_a.run.broadcast_id}
    assert r_b.end == local("05:02")  # waited paused for a's minute, then played its own


def test_runs_over_before_the_window_are_left_out_and_the_callers_tree_untouched() -> None:
    zones = tree()
    report = conflicts([PROV], zones, ENDPOINTS, (local("06:00"), local("07:00")))
    assert report.runs == ()
    assert zones.endpoints() == frozenset()
    report = conflicts([PROV], zones, ENDPOINTS, (local("04:00"), local("05:10")))
    (run,) = report.runs
    assert run.end is None  # still playing when the window closes
    assert [o.heard_s for o in run.outcomes] == [600.0, 600.0]


def test_media_lengths_come_from_the_library() -> None:
    media = make(
        "m", "FREQ=DAILY;BYHOUR=5", [{"type": "media", "id": "00112233aabbccdd"}], ["c1"],
        None, "scheduled",
    )  # fmt: skip
    window = (local("04:00"), local("06:00"))
    (run,) = conflicts([media], tree(), ENDPOINTS, window, media_s={"00112233aabbccdd": 90}).runs
    assert run.end == local("05:01:30")
    with pytest.raises(NotFound) as info:
        conflicts([media], tree(), ENDPOINTS, window)
    assert str(info.value) == ("items[0] (media): media '00112233aabbccdd' is not in the library")


def test_a_schedule_aimed_at_a_missing_zone_is_named() -> None:
    lost = make("lost", "FREQ=DAILY;BYHOUR=5", silence(60), ["c9"], None, "scheduled")
    with pytest.raises(NotFound) as info:
        conflicts([lost], tree(), ENDPOINTS, (local("04:00"), local("06:00")))
    assert str(info.value) == "schedule 'lost' cannot be simulated: zone 'c9' does not exist"
    assert info.value.fields == {"schedule": "lost", "zone": "c9"}


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ((10.0, 10.0), "window end 10 must be after its start 10"),
        ((0.0, float("inf")), "window must be two finite Unix times, got (0.0, inf)"),
        ((0.0, 40 * 86400.0), "window is 3.456e+06 s long; at most 2.6784e+06 s (31 days)"),
    ],
)
def test_bad_windows_are_refused(window: tuple[float, float], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        conflicts([PROV], tree(), ENDPOINTS, window)
    assert str(info.value) == message
