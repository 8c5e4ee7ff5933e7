"""When a bulletin played now is heard, by the router's rules: at once on idle poles and over a
background relay, after the current item of a programme it outranks, when the holder ends if
the holder ranks equal or higher."""

from __future__ import annotations

from loa.bulletins.when import Outlook, Wait, outlook
from loa.relay.core.priority import NATIONAL_LEVEL, BroadcastSpec, Priority
from loa.relay.core.router import BroadcastStarted, EndpointAttached, Router
from loa.relay.core.zones import ZoneTree

POLES = {"p1": "x1", "p2": "x1", "p3": "x2", "p4": "x2", "p5": "x3"}


def router() -> Router:
    r = Router(ZoneTree.build([("tinh", None), ("x1", "tinh"), ("x2", "tinh"), ("x3", "tinh")]))
    for pole, zone in POLES.items():
        r.handle(EndpointAttached(pole, zone))
    return r


def play(r: Router, bid: str, priority: Priority, zone: str, origin: str | None) -> None:
    spec = BroadcastSpec(bid, priority, target_zones=frozenset({zone}), origin_zone=origin)
    r.handle(BroadcastStarted(spec, 0.0))


def test_idle_poles_hear_it_at_once() -> None:
    assert outlook(router(), POLES, Priority.SCHEDULED, NATIONAL_LEVEL) == Outlook(5, ())


def test_it_waits_for_the_item_of_a_programme_it_outranks_and_the_end_of_one_it_does_not() -> None:
    r = router()
    play(r, "relay", Priority.BACKGROUND, "x1", "x1")  # gives way at once
    play(r, "local", Priority.SCHEDULED, "x2", "x2")  # a commune's programme: its next item
    play(r, "live", Priority.LIVE, "x3", "x3")  # someone speaking: when it ends
    got = outlook(r, POLES, Priority.SCHEDULED, NATIONAL_LEVEL)
    assert got == Outlook(2, (Wait("local", 2, True), Wait("live", 1, False)))


def test_equal_rank_keeps_the_floor_until_it_ends() -> None:
    r = router()
    play(r, "other", Priority.SCHEDULED, "tinh", None)  # another national programme
    assert outlook(r, ["p1", "p3"], Priority.SCHEDULED, NATIONAL_LEVEL) == Outlook(
        0, (Wait("other", 2, False),)
    )
