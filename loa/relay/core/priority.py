"""Broadcast classes, what a broadcast asks for (its spec), its rank, and the preemption rule.

Rank = (class value, height) where height = -origin level: a root zone (province) has level
0, its children 1, and a national broadcast (``origin_zone=None``) counts as level -1, above
every zone. Ranks compare as tuples: a higher class always wins; within a class, a broadcast
from a higher zone wins. Equal ranks never preempt each other: the holder keeps the floor.

The preemption rule (``may_take``): a waiting broadcast takes an endpoint from its holder
only if it outranks the holder and either it interrupts, or the holder is at an item
boundary, or the holder is ``background`` (which has no boundaries).

Why a broadcast stands where it does is a ``Reason``: a stable code and its parameters, no
sentence. The web layer words it for the API and the pages translate the code.
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
        raise BadRequest(
            f"unknown broadcast class {value!r}; expected one of {names}",
            field="class",
            allowed=[p.name.lower() for p in cls],
        )


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


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a broadcast holds an endpoint or not: ``code`` (one of ``REASONS``) and its
    parameters, as (name, value) pairs."""

    code: str
    params: tuple[tuple[str, str | int], ...] = ()

    def __post_init__(self) -> None:
        if self.code not in REASONS:
            raise ValueError(f"unknown reason code {self.code!r}")

    @property
    def fields(self) -> dict[str, str | int]:
        return dict(self.params)


REASONS = frozenset(
    {
        "holds",  # it holds the floor
        "holds_past_expiry",  # it holds the floor but, past its expires_at, gains no more
        "past_expiry",  # past its expires_at: keeps what it holds, gains nothing
        "equal_rank",  # holder: equal rank never preempts, first come keeps the floor
        "lower_class",  # holder, class, holder_class
        "lower_origin",  # holder, level, holder_level (origin levels; -1 is national)
        "at_boundary",  # holder: outranks it, takes the floor at its next item boundary
        "interrupts",  # holder: outranks it and interrupts (settles within the same frame)
        "waiting",  # no holder to compare with (not reachable while the invariants hold)
    }
)


def waiting_reason(challenger: Rank, interrupts: bool, holder_id: str, holder: Rank) -> Reason:
    """Why a waiting broadcast does not hold an endpoint that ``holder_id`` holds."""
    held: tuple[tuple[str, str | int], ...] = (("holder", holder_id),)
    if challenger == holder:
        return Reason("equal_rank", held)
    if challenger.priority < holder.priority:
        mine, theirs = Priority(challenger.priority), Priority(holder.priority)
        classes = (("class", mine.name.lower()), ("holder_class", theirs.name.lower()))
        return Reason("lower_class", held + classes)
    if challenger < holder:
        levels = (("level", challenger.origin_level), ("holder_level", holder.origin_level))
        return Reason("lower_origin", held + levels)
    if not may_take(challenger, interrupts, holder, at_boundary=False):
        return Reason("at_boundary", held)
    return Reason("interrupts", held)


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
            raise BadRequest(
                f"broadcast id must be a non-empty string, got {self.id!r}", field="id"
            )
        object.__setattr__(self, "priority", Priority.parse(self.priority))
        for name in ("target_zones", "target_endpoints"):
            ids = getattr(self, name)
            if not isinstance(ids, frozenset) or not all(isinstance(i, str) and i for i in ids):
                raise BadRequest(
                    f"broadcast {self.id}: {name} must be a frozenset of ids", field=name
                )
        if not self.target_zones and not self.target_endpoints:
            raise BadRequest(
                f"broadcast {self.id} has no targets: give target_zones and/or target_endpoints",
                field="targets",
            )
        if self.origin_zone is not None and not (
            isinstance(self.origin_zone, str) and self.origin_zone
        ):
            raise BadRequest(
                f"broadcast {self.id}: origin_zone must be a zone id or None", field="origin_zone"
            )
        if self.expires_at is not None and not (
            isinstance(self.expires_at, int | float) and math.isfinite(self.expires_at)
        ):
            raise BadRequest(
                f"broadcast {self.id}: expires_at must be a finite time, got {self.expires_at!r}",
                field="expires_at",
            )
        self._check_flags()

    def _check_flags(self) -> None:
        if self.interrupt is not None and not isinstance(self.interrupt, bool):
            raise BadRequest(
                f"broadcast {self.id}: interrupt must be true, false or null", field="interrupt"
            )
        for flag in ("exclusive", "resumable", "live"):
            if not isinstance(getattr(self, flag), bool):
                raise BadRequest(f"broadcast {self.id}: {flag} must be true or false", field=flag)
        if self.live and self.resumable:
            raise BadRequest(
                f"broadcast {self.id}: a live source cannot be resumable", field="resumable"
            )

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
    reason: Reason


@dataclass(frozen=True, slots=True)
class Explanation:
    """Who holds an endpoint and why each other broadcast that targets it does not."""

    endpoint_id: str
    zone_id: str
    holder: Standing | None
    others: tuple[Standing, ...]
