"""Broadcast classes, what a broadcast asks for (its spec), its rank, and the preemption rule.

Rank = (class value, height) where height = -origin level: a root zone (province) has level
0, its children 1, and a national broadcast (``origin_zone=None``) counts as level -1, above
every zone. Ranks compare as tuples: a higher class always wins; within a class, a broadcast
from a higher zone wins. Equal ranks never preempt each other: the holder keeps the floor.

The preemption rule (``may_take``): a waiting broadcast takes an endpoint from its holder
only if it outranks the holder and either it interrupts, or the holder is at an item
boundary, or the holder is ``background`` (which has no boundaries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from loa.errors import BadRequest

NATIONAL_LEVEL = -1
"""The origin level of a broadcast with no origin zone: above every root zone (level 0)."""


class Priority(IntEnum):
    """The broadcast classes of DESIGN.md ("Priority and preemption")."""

    BACKGROUND = 10
    SCHEDULED = 20
    PRIORITY = 40
    LIVE = 50
    EMERGENCY = 90

    @property
    def interrupts_by_default(self) -> bool:
        return self >= Priority.LIVE

    @classmethod
    def parse(cls, value: object) -> Priority:
        """A class from itself, its value (40) or its name ("priority", any case)."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value in cls._value2member_map_:
                return cls(value)
        elif isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        names = ", ".join(f"{p.name.lower()}={p.value}" for p in cls)
        raise BadRequest(f"unknown broadcast class {value!r}; expected one of {names}")


class Rank(NamedTuple):
    """Compares as a tuple: class first, then height (-origin level)."""

    priority: int
    height: int

    @classmethod
    def of(cls, priority: Priority, origin_level: int) -> Rank:
        return cls(int(priority), -origin_level)

    @property
    def origin_level(self) -> int:
        return -self.height


def may_take(challenger: Rank, interrupts: bool, holder: Rank, *, at_boundary: bool) -> bool:
    """May a waiting broadcast take an endpoint from its holder now?"""
    return challenger > holder and (
        interrupts or at_boundary or holder.priority == Priority.BACKGROUND
    )


def _level_text(level: int) -> str:
    return "national" if level == NATIONAL_LEVEL else f"zone level {level}"


def waiting_reason(challenger: Rank, interrupts: bool, holder_id: str, holder: Rank) -> str:
    """Why a waiting broadcast does not hold an endpoint that ``holder_id`` holds."""
    if challenger == holder:
        return f"equal rank with {holder_id}, which holds the floor (equal rank never preempts)"
    if challenger.priority < holder.priority:
        mine, theirs = Priority(challenger.priority), Priority(holder.priority)
        return f"class {mine.name.lower()} ranks below {holder_id}'s {theirs.name.lower()}"
    if challenger < holder:
        return (
            f"same class as {holder_id} but from a lower origin "
            f"({_level_text(challenger.origin_level)} vs {_level_text(holder.origin_level)})"
        )
    if not may_take(challenger, interrupts, holder, at_boundary=False):
        return (
            f"outranks {holder_id} but does not interrupt: "
            f"takes the floor at {holder_id}'s next item boundary"
        )
    return f"outranks {holder_id} and interrupts: takes the floor at once"


@dataclass(frozen=True, slots=True)
class BroadcastSpec:
    """What a broadcast asks of the router: class, origin, targets and how it contends.

    ``interrupt=None`` means the class default. ``expires_at`` is the latest moment (in the
    router's clock) at which the broadcast may still gain an endpoint. ``resumable``
    sources (file, playlist, TTS) are paused while unheard; ``live`` ones keep running."""

    id: str
    priority: Priority
    target_zones: frozenset[str] = frozenset()
    target_endpoints: frozenset[str] = frozenset()
    origin_zone: str | None = None
    interrupt: bool | None = None
    exclusive: bool = False
    expires_at: float | None = None
    resumable: bool = False
    live: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise BadRequest(f"broadcast id must be a non-empty string, got {self.id!r}")
        object.__setattr__(self, "priority", Priority.parse(self.priority))
        for name in ("target_zones", "target_endpoints"):
            ids = getattr(self, name)
            if not isinstance(ids, frozenset) or not all(isinstance(i, str) and i for i in ids):
                raise BadRequest(f"broadcast {self.id}: {name} must be a frozenset of ids")
        if not self.target_zones and not self.target_endpoints:
            raise BadRequest(
                f"broadcast {self.id} has no targets: give target_zones and/or target_endpoints"
            )
        if self.origin_zone is not None and not (
            isinstance(self.origin_zone, str) and self.origin_zone
        ):
            raise BadRequest(f"broadcast {self.id}: origin_zone must be a zone id or None")
        if self.expires_at is not None and not (
            isinstance(self.expires_at, int | float) and math.isfinite(self.expires_at)
        ):
            raise BadRequest(
                f"broadcast {self.id}: expires_at must be a finite time, got {self.expires_at!r}"
            )
        self._check_flags()

    def _check_flags(self) -> None:
        if self.interrupt is not None and not isinstance(self.interrupt, bool):
            raise BadRequest(f"broadcast {self.id}: interrupt must be true, false or null")
        for flag in ("exclusive", "resumable", "live"):
            if not isinstance(getattr(self, flag), bool):
                raise BadRequest(f"broadcast {self.id}: {flag} must be true or false")
        if self.live and self.resumable:
            raise BadRequest(f"broadcast {self.id}: a live source cannot be resumable")

    @property
    def interrupts(self) -> bool:
        if self.interrupt is None:
            return self.priority.interrupts_by_default
        return self.interrupt


@dataclass(frozen=True, slots=True)
class Standing:
    """One broadcast's place on one endpoint, as ``Router.explain`` reports it."""

    broadcast_id: str
    priority: Priority
    origin_level: int
    arrival: int
    interrupts: bool
    holds: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Who holds an endpoint and why each other broadcast that targets it does not."""

    endpoint_id: str
    zone_id: str
    holder: Standing | None
    others: tuple[Standing, ...]
