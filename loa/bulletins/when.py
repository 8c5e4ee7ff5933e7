"""When a bulletin played "now" is heard, by the router's own rules (sans-IO: the router and
the poles in, an outlook out).

On each pole the bulletin targets: at once if nothing holds it, the holder gives way at once
(a ``background`` relay) or the bulletin interrupts a holder it outranks (an emergency);
after the holder's current item if the bulletin outranks a holder it does not interrupt (a
normal bulletin over a local programme, a priority one over a programme: the router hands
over at its next item boundary); when the holder ends if the holder ranks equal or higher
(first come keeps the floor; a live broadcast or an emergency outranks it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loa.relay.core.priority import NATIONAL_LEVEL, Priority, Rank, waiting_reason
from loa.relay.core.router import Router


@dataclass(frozen=True, slots=True)
class Wait:
    """Poles held by ``holder`` that the bulletin gets later: after the holder's current item
    (``at_boundary``) or when it ends."""

    holder: str
    endpoints: int
    at_boundary: bool


@dataclass(frozen=True, slots=True)
class Outlook:
    """How many poles hear it at once, and who holds the others."""

    now: int
    waits: tuple[Wait, ...]


def outlook(
    router: Router,
    endpoints: Iterable[str],
    priority: Priority,
    origin_level: int,
    interrupts: bool = False,
) -> Outlook:
    """The outlook for a broadcast of ``priority`` from ``origin_level`` (that interrupts or
    not) started now on ``endpoints`` (ids the router knows)."""
    challenger = Rank.of(priority, origin_level)
    now = 0
    held: dict[tuple[str, bool], int] = {}
    for endpoint in endpoints:
        holder = router.holder(endpoint)
        if holder is None:
            now += 1
            continue
        spec = router.spec(holder)
        zone = spec.origin_zone
        level = NATIONAL_LEVEL if zone is None else router.zones.level(zone)
        reason = waiting_reason(challenger, interrupts, holder, Rank.of(spec.priority, level))
        if reason.code == "interrupts":  # it interrupts, or a background holder gives way
            now += 1
        else:
            key = (holder, reason.code == "at_boundary")
            held[key] = held.get(key, 0) + 1
    waits = tuple(Wait(h, n, boundary) for (h, boundary), n in held.items())
    return Outlook(now, waits)
