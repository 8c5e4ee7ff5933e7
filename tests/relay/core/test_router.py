"""The priority router, scenario by scenario: preemption, boundaries, origin level, expiry,
pause/resume, attach/detach, zone moves, explanations and exact error messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.priority import BroadcastSpec, Priority, Reason
from loa.relay.core.router import (
    BroadcastStarted,
    BroadcastStopped,
    Ended,
    EndpointAttached,
    EndpointDetached,
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


@contextmanager
def raises(kind: type[Exception], message: str) -> Iterator[pytest.ExceptionInfo[Exception]]:
    """Like pytest.raises, and the message must be exactly ``message``."""
    with pytest.raises(kind) as info:
        yield info
    assert str(info.value) == message


BG, SCHED, PRIO, LIVE, EMERG = (
    Priority.BACKGROUND,
    Priority.SCHEDULED,
    Priority.PRIORITY,
    Priority.LIVE,
    Priority.EMERGENCY,
)

# ha-tinh (province) ─ ky-anh (commune) ─ thon-1, thon-2 (villages)
#                    └ cam-xuyen (commune)
# nghe-an (province) ─ dien-chau (commune)
ENDPOINTS = {
    "a1": "thon-1",
    "a2": "thon-2",
    "a3": "ky-anh",
    "c1": "cam-xuyen",
    "c2": "cam-xuyen",
    "n1": "dien-chau",
}
KY_ANH = ("a1", "a2", "a3")
HA_TINH = ("a1", "a2", "a3", "c1", "c2")


@pytest.fixture
def router() -> Router:
    tree = ZoneTree.build(
        [
            ("ha-tinh", None),
            ("ky-anh", "ha-tinh"),
            ("thon-1", "ky-anh"),
            ("thon-2", "ky-anh"),
            ("cam-xuyen", "ha-tinh"),
            ("nghe-an", None),
            ("dien-chau", "nghe-an"),
        ]
    )
    r = Router(tree)
    for endpoint, zone in ENDPOINTS.items():
        assert r.handle(EndpointAttached(endpoint, zone)) == []
    return r


def spec(
    bid: str,
    priority: Priority,
    zones: Iterable[str] = (),
    endpoints: Iterable[str] = (),
    **kw: object,
) -> BroadcastSpec:
    return BroadcastSpec(
        bid, priority, target_zones=frozenset(zones), target_endpoints=frozenset(endpoints), **kw
    )  # type: ignore[arg-type]


def start(r: Router, s: BroadcastSpec, now: float = 0.0) -> list[object]:
    return list(r.handle(BroadcastStarted(s, now)))


def switched(endpoints: Iterable[str], old: str | None, new: str | None) -> list[Switched]:
    return [Switched(e, old, new) for e in sorted(endpoints)]


def holders(r: Router) -> dict[str, str | None]:
    return {e: r.holder(e) for e in ENDPOINTS if r.zones.has_endpoint(e)}


def snapshot(r: Router) -> tuple[object, ...]:
    bcs = r.broadcasts()
    return (
        bcs,
        holders(r),
        {b: r.listeners(b) for b in bcs},
        {e: r.waiting(e) for e in ENDPOINTS if r.zones.has_endpoint(e)},
    )


def test_idle_router_has_no_holders(router: Router) -> None:
    assert set(holders(router).values()) == {None}
    assert router.broadcasts() == ()


def test_emergency_to_a_commune_takes_only_that_commune(router: Router) -> None:
    prog = spec("prog", SCHED, ["ha-tinh"], origin_zone="ha-tinh")
    assert start(router, prog) == switched(HA_TINH, None, "prog")
    assert set(router.listeners("prog")) == set(HA_TINH)

    alarm = spec("flood", EMERG, ["ky-anh"], origin_zone="ky-anh")
    assert start(router, alarm, 1.0) == switched(KY_ANH, "prog", "flood")
    assert set(router.listeners("flood")) == set(KY_ANH)
    assert router.listeners("prog") == ("c1", "c2")
    assert router.holder("n1") is None
    assert router.waiting("a1") == ("prog",)

    # The emergency ends: its endpoints return to the programme in the same call.
    out = router.handle(BroadcastStopped("flood", "finished"))
    assert out == [*switched(KY_ANH, "flood", "prog"), Ended("flood", "finished")]
    assert set(router.listeners("prog")) == set(HA_TINH)
    assert router.waiting("a1") == ()


def test_priority_bulletin_waits_for_item_boundary_of_scheduled(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    assert start(router, spec("bulletin", PRIO, ["ky-anh"])) == []
    assert router.listeners("bulletin") == ()
    assert router.waiting("a1") == ("bulletin",)
    expl = router.explain("a1")
    assert expl.holder is not None
    assert expl.holder.broadcast_id == "prog"
    assert [o.reason for o in expl.others] == [Reason("at_boundary", (("holder", "prog"),))]
    out = router.handle(ItemBoundary("prog"))
    assert out == switched(KY_ANH, "prog", "bulletin")
    # The bulletin's own boundary hands nothing back: the programme does not outrank it.
    assert router.handle(ItemBoundary("bulletin")) == []
    assert router.handle(BroadcastStopped("bulletin", "finished")) == [
        *switched(KY_ANH, "bulletin", "prog"),
        Ended("bulletin", "finished"),
    ]


def test_priority_bulletin_takes_background_at_once(router: Router) -> None:
    start(router, spec("radio", BG, ["ha-tinh"]))
    assert start(router, spec("bulletin", PRIO, ["ky-anh"])) == switched(
        KY_ANH, "radio", "bulletin"
    )
    # Scheduled also outranks background and takes it without a boundary.
    assert start(router, spec("prog", SCHED, ["cam-xuyen"])) == switched(
        ["c1", "c2"], "radio", "prog"
    )
    assert router.listeners("radio") == ()


def test_explicit_interrupt_overrides_the_class_default(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    assert start(router, spec("urgent", PRIO, ["thon-1"], interrupt=True)) == switched(
        ["a1"], "prog", "urgent"
    )
    assert start(router, spec("calm-live", LIVE, ["thon-2"], interrupt=False)) == []
    assert router.holder("a2") == "prog"


def test_province_emergency_outranks_commune_emergency(router: Router) -> None:
    start(router, spec("commune", EMERG, ["ky-anh"], origin_zone="ky-anh"))
    province = spec("province", EMERG, ["ky-anh"], origin_zone="ha-tinh")
    assert start(router, province) == switched(KY_ANH, "commune", "province")
    assert router.waiting("a1") == ("commune",)


def test_commune_emergency_cannot_take_from_province_emergency(router: Router) -> None:
    start(router, spec("province", EMERG, ["ha-tinh"], origin_zone="ha-tinh"))
    assert start(router, spec("commune", EMERG, ["ky-anh"], origin_zone="ky-anh")) == []
    assert router.handle(ItemBoundary("province")) == []
    assert router.listeners("commune") == ()
    (other,) = router.explain("a1").others
    assert other.reason == Reason(
        "lower_origin", (("holder", "province"), ("level", 1), ("holder_level", 0))
    )
    # A national emergency outranks the province one.
    assert start(router, spec("national", EMERG, ["thon-1"])) == switched(
        ["a1"], "province", "national"
    )
    assert router.waiting("a1") == ("province", "commune")


def test_higher_class_from_lower_zone_still_wins(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ha-tinh"]))  # national programme
    out = start(router, spec("talk", LIVE, ["thon-1"], origin_zone="thon-1"))
    assert out == switched(["a1"], "prog", "talk")


def test_equal_rank_first_come_keeps_the_floor(router: Router) -> None:
    start(router, spec("first", EMERG, ["ky-anh"], origin_zone="ha-tinh"))
    assert start(router, spec("second", EMERG, ["ha-tinh"], origin_zone="ha-tinh")) == (
        switched(["c1", "c2"], None, "second")
    )
    assert router.handle(ItemBoundary("first")) == []
    (other,) = router.explain("a1").others
    assert other.reason == Reason("equal_rank", (("holder", "first"),))
    # Two equal waiting broadcasts: the earlier one gets the freed endpoint.
    start(router, spec("third", EMERG, ["ky-anh"], origin_zone="ha-tinh"))
    assert router.waiting("a1") == ("second", "third")
    out = router.handle(BroadcastStopped("first"))
    assert out == [*switched(KY_ANH, "first", "second"), Ended("first", "stopped")]


def test_exclusive_refusal_names_holder_and_leaves_state_unchanged(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ha-tinh"], resumable=True))
    start(router, spec("flood", EMERG, ["cam-xuyen"], expires_at=50.0))
    before = snapshot(router)
    excl = spec("excl", LIVE, ["ha-tinh"], exclusive=True, expires_at=60.0)
    with pytest.raises(Conflict) as info:
        start(router, excl, now=55.0)  # also past flood's expires_at: that must not apply
    assert str(info.value) == (
        "exclusive broadcast 'excl' cannot take endpoint 'c1': it is held by broadcast 'flood'"
    )
    assert info.value.fields == {"broadcast": "excl", "holder": "flood", "endpoint": "c1"}
    assert snapshot(router) == before
    # The refused call's clock did not apply either: flood (expires_at=50) may still gain.
    assert router.handle(EndpointAttached("c3", "cam-xuyen")) == switched(["c3"], None, "flood")
    # The same id may start later; exclusive succeeds where it gets everything.
    out = start(router, spec("excl", LIVE, ["ky-anh"], exclusive=True), now=1.0)
    assert out == [*switched(KY_ANH, "prog", "excl"), Paused("prog")]
    assert router.listeners("flood") == ("c1", "c2", "c3")


def test_exclusive_ignores_offline_endpoints_and_takes_idle_ones(router: Router) -> None:
    out = start(router, spec("x", LIVE, ["nghe-an"], ["offline"], exclusive=True))
    assert out == switched(["n1"], None, "x")


def test_expired_at_start_never_plays(router: Router) -> None:
    out = start(router, spec("late", EMERG, ["ha-tinh"], expires_at=10.0), now=10.0)
    assert out == [Expired("late")]
    assert router.broadcasts() == ()
    assert set(holders(router).values()) == {None}
    with raises(NotFound, "no running broadcast 'late'"):
        router.listeners("late")


def test_waiting_broadcast_expires_at_tick(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    start(router, spec("bulletin", PRIO, ["ky-anh"], resumable=True, expires_at=30.0), 1.0)
    assert router.handle(Tick(29.98)) == []
    assert router.handle(Tick(30.0)) == [Expired("bulletin")]  # not Paused first
    assert router.broadcasts() == ("prog",)
    assert router.handle(ItemBoundary("prog")) == []  # nothing left to take over
    assert router.handle(Tick(31.0)) == []


def test_holder_past_expiry_keeps_what_it_holds_but_never_gains(router: Router) -> None:
    start(router, spec("radio", BG, ["ha-tinh"]))
    start(router, spec("bulletin", PRIO, ["ky-anh", "cam-xuyen"], expires_at=10.0))
    start(router, spec("talk", LIVE, ["cam-xuyen"]))  # holds c1, c2 before bulletin came
    assert router.listeners("bulletin") == KY_ANH
    assert router.handle(Tick(10.0)) == []
    assert router.waiting("c1") == ("radio",)  # the bulletin no longer waits there
    assert router.handle(BroadcastStopped("talk")) == [
        *switched(["c1", "c2"], "talk", "radio"),
        Ended("talk", "stopped"),
    ]
    assert router.handle(EndpointAttached("a4", "thon-2")) == switched(["a4"], None, "radio")
    assert router.explain("a4").others[0].reason == Reason("past_expiry")
    # Losing its last endpoint after expiry ends it: it could never play again.
    router.handle(EndpointDetached("a4"))
    out = start(router, spec("flood", EMERG, ["ky-anh"]), 11.0)
    assert out == [*switched(KY_ANH, "bulletin", "flood"), Expired("bulletin")]
    assert router.handle(BroadcastStopped("flood")) == [
        *switched(KY_ANH, "flood", "radio"),
        Ended("flood", "stopped"),
    ]


def test_a_later_start_also_advances_time(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    start(router, spec("bulletin", PRIO, ["ky-anh"], expires_at=5.0))
    out = start(router, spec("other", SCHED, ["nghe-an"]), now=6.0)
    assert out == [*switched(["n1"], None, "other"), Expired("bulletin")]


def test_resumable_pauses_when_unheard_and_resumes(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"], resumable=True))
    assert start(router, spec("part", LIVE, ["thon-1"])) == switched(["a1"], "prog", "part")
    out = start(router, spec("flood", EMERG, ["ha-tinh"]))
    assert out == [
        *switched(["a1"], "part", "flood"),
        *switched(["a2", "a3"], "prog", "flood"),
        *switched(["c1", "c2"], None, "flood"),
        Paused("prog"),
    ]  # "part" is live: it keeps running unheard, no Paused
    assert router.handle(BroadcastStopped("flood")) == [
        *switched(["a1"], "flood", "part"),
        *switched(["a2", "a3"], "flood", "prog"),
        *switched(["c1", "c2"], "flood", None),
        Resumed("prog"),
        Ended("flood", "stopped"),
    ]


def test_zero_endpoint_broadcast_is_accepted_and_paused(router: Router) -> None:
    out = start(router, spec("tts", SCHED, ["nghe-an"], ["ghost"], resumable=True))
    assert out == [*switched(["n1"], None, "tts")]
    assert router.handle(EndpointDetached("n1")) == [Switched("n1", "tts", None), Paused("tts")]
    assert router.broadcasts() == ("tts",)
    assert start(router, spec("empty", SCHED, [], ["ghost-2"], resumable=True)) == [Paused("empty")]
    assert start(router, spec("mic", LIVE, [], ["ghost-3"], live=True)) == []
    assert router.handle(EndpointAttached("ghost-2", "thon-1")) == [
        *switched(["ghost-2"], None, "empty"),
        Resumed("empty"),
    ]


def test_detach_releases_and_pauses(router: Router) -> None:
    start(router, spec("file", SCHED, [], ["n1"], resumable=True))
    assert router.handle(EndpointDetached("n1")) == [Switched("n1", "file", None), Paused("file")]
    assert router.handle(EndpointAttached("n1", "dien-chau")) == [
        Switched("n1", None, "file"),
        Resumed("file"),
    ]


def test_attached_endpoint_goes_to_the_best_candidate(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ha-tinh"]))
    start(router, spec("bulletin", PRIO, ["ky-anh"]))  # waits for prog's boundary
    assert router.handle(EndpointAttached("a9", "thon-2")) == switched(["a9"], None, "bulletin")
    assert router.waiting("a9") == ("prog",)
    with raises(Conflict, "endpoint 'a9' is already attached in zone 'thon-2'"):
        router.handle(EndpointAttached("a9", "thon-1"))


def test_zone_move_rejudges_the_moved_subtree(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ha-tinh"]))
    start(router, spec("nghe", SCHED, ["nghe-an"]))
    assert router.handle(ZoneMoved("ky-anh", "nghe-an")) == switched(KY_ANH, "prog", "nghe")
    assert router.listeners("prog") == ("c1", "c2")
    assert router.handle(ZoneAdded("new-commune", "ha-tinh")) == []
    assert router.handle(ZoneMoved("thon-1", "new-commune")) == switched(["a1"], "nghe", "prog")
    assert router.handle(ZoneAdded("empty")) == []
    assert router.handle(ZoneRemoved("empty")) == []
    assert "empty" not in router.zones


def test_explain_lists_every_target_best_first(router: Router) -> None:
    start(router, spec("radio", BG, ["ha-tinh"]))
    start(router, spec("talk", LIVE, ["thon-1"], origin_zone="thon-1"))
    start(router, spec("prog", SCHED, ["thon-1"]))
    start(router, spec("elsewhere", SCHED, ["nghe-an"]))
    expl = router.explain("a1")
    assert expl.zone_id == "thon-1"
    assert expl.holder is not None
    assert (expl.holder.broadcast_id, expl.holder.origin_level) == ("talk", 2)
    assert expl.holder.reason == Reason("holds")
    below = (("holder", "talk"), ("class", "scheduled"), ("holder_class", "live"))
    assert [(o.broadcast_id, o.reason.fields) for o in expl.others] == [
        ("prog", dict(below)),
        ("radio", {**dict(below), "class": "background"}),
    ]
    assert router.waiting("a1") == ("prog", "radio")
    assert router.explain("n1").others == ()


def test_tick_without_expiries_returns_nothing(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ha-tinh"], expires_at=1000.0))
    assert [router.handle(Tick(t / 50)) for t in range(100)] == [[]] * 100
    assert router.listeners("prog") is router.listeners("prog")  # cached, not rebuilt


def test_listeners_cache_is_rebuilt_after_change(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    first = router.listeners("prog")
    router.handle(EndpointDetached("a2"))
    assert router.listeners("prog") == ("a1", "a3")
    assert first == KY_ANH


def test_error_messages(router: Router) -> None:
    start(router, spec("prog", SCHED, ["ky-anh"]))
    with raises(Conflict, "broadcast 'prog' is already running"):
        start(router, spec("prog", LIVE, ["nghe-an"]))
    with raises(NotFound, "no running broadcast 'nope'") as info:
        router.handle(BroadcastStopped("nope"))
    assert info.value.fields == {"broadcast": "nope"}
    with raises(NotFound, "no running broadcast 'nope'"):
        router.handle(ItemBoundary("nope"))
    with raises(NotFound, "endpoint 'x' is not attached"):
        router.holder("x")
    with raises(NotFound, "endpoint 'x' is not attached"):
        router.handle(EndpointDetached("x"))
    with raises(NotFound, "endpoint 'x' is not attached"):
        router.explain("x")
    with raises(NotFound, "zone 'hue' does not exist"):
        router.handle(EndpointAttached("x", "hue"))
    with raises(NotFound, "zone 'hue' does not exist"):
        start(router, spec("b", LIVE, ["ky-anh", "hue"]))
    with raises(NotFound, "zone 'hue' does not exist"):
        start(router, spec("b", LIVE, ["ky-anh"], origin_zone="hue"))
    with raises(BadRequest, "stop reason must be one of failed, finished, stopped, got 'oops'"):
        BroadcastStopped("prog", "oops")  # type: ignore[arg-type]
    with raises(TypeError, "not a router event: 'tick'"):
        router.handle("tick")  # type: ignore[arg-type]
    assert router.broadcasts() == ("prog",)
    assert router.listeners("prog") == KY_ANH


CLASSES = "background=10, scheduled=20, priority=40, live=50, emergency=90"


def test_spec_validation_messages() -> None:
    with raises(
        BadRequest, "broadcast b has no targets: give target_zones and/or target_endpoints"
    ):
        spec("b", LIVE)
    with raises(BadRequest, "unknown broadcast class 30; expected one of " + CLASSES):
        spec("b", 30, ["z"])  # type: ignore[arg-type]
    with raises(BadRequest, "unknown broadcast class 'urgent'; expected one of " + CLASSES):
        spec("b", "urgent", ["z"])  # type: ignore[arg-type]
    with raises(BadRequest, "broadcast b: a live source cannot be resumable"):
        spec("b", LIVE, ["z"], live=True, resumable=True)
    with raises(BadRequest, "broadcast b: expires_at must be a finite time, got nan"):
        spec("b", LIVE, ["z"], expires_at=float("nan"))
    with raises(BadRequest, "broadcast id must be a non-empty string, got ''"):
        spec("", LIVE, ["z"])
    with raises(BadRequest, "broadcast b: interrupt must be true, false or null"):
        spec("b", LIVE, ["z"], interrupt=1)
    assert spec("b", "Emergency", ["z"]).priority is EMERG  # type: ignore[arg-type]
    assert spec("b", 40, ["z"]).priority is PRIO  # type: ignore[arg-type]


def test_class_defaults() -> None:
    assert [p.interrupts_by_default for p in Priority] == [False, False, False, True, True]
    assert spec("b", EMERG, ["z"]).interrupts
    assert not spec("b", EMERG, ["z"], interrupt=False).interrupts
    assert spec("b", SCHED, ["z"], interrupt=True).interrupts
