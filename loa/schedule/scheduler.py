"""The sans-IO scheduler: which schedules are due, late or missed at a given wall time.

The adapter owns the clock and the persistence: it builds ``Scheduler(last_run=…)`` from the
time it saved last, calls ``due(now)`` when ``next_wakeup(now)`` comes (and after any
schedule edit), starts a broadcast for each ``Fire`` and ``CatchUp``, logs every event, and
saves ``scheduler.last_run``. Times are Unix seconds (RRULEs speak wall-clock time; the
router's monotonic clock is the adapter's business).

Rules:
- ``due(now)`` looks at every occurrence in ``(last_run, now]``. One at most ``on_time_s``
  old is a ``Fire``; an older one (the server was down, or stalled) is a ``CatchUp`` if it
  is still inside its schedule's ``grace_s`` window, else ``Skipped``.
- Only the latest missed occurrence of a schedule may catch up: earlier ones are
  ``Skipped`` as superseded, so a server back from an outage plays a programme once, not
  once per missed start.
- With no ``last_run`` (a new installation) the first ``due`` only records ``now``: there
  is no outage to catch up on. A clock that went back fires nothing twice: ``last_run``
  never decreases.
- Events come ordered by start time, then schedule id; the adapter starts broadcasts in
  that order, so equal-rank programmes starting together resolve as ``conflicts`` says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.priority import BroadcastSpec
from loa.schedule.programme import Programme
from loa.schedule.rules import DEFAULT_TZ, Occurrence, Recurrence

DEFAULT_GRACE_S = 600.0
MAX_GRACE_S = 86400.0
DEFAULT_ON_TIME_S = 5.0
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # fits in a broadcast id with its time


@dataclass(frozen=True, slots=True)
class Schedule:
    """A programme, when it plays, where it ranks from and how late it may still start.

    ``origin_zone`` is the owner's zone (``schedules.zone``): the broadcast ranks as coming
    from there, as an operator's live broadcast does; ``None`` is national."""

    id: str
    name: str
    programme: Programme
    recurrence: Recurrence
    origin_zone: str | None = None
    grace_s: float = DEFAULT_GRACE_S

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise BadRequest(
                "schedule id must be 1-40 letters, digits, '.', '_' or '-' "
                f"(starting with a letter or digit), got {self.id!r}",
                field="id",
            )
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            raise BadRequest(
                f"schedule name must be 1-200 characters, got {self.name!r}", field="name"
            )
        if self.origin_zone is not None and not (
            isinstance(self.origin_zone, str) and self.origin_zone
        ):
            raise BadRequest(
                f"zone must be a zone id or null, got {self.origin_zone!r}", field="zone"
            )
        grace = self.grace_s
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not math.isfinite(grace)
            or not 0 <= grace <= MAX_GRACE_S
        ):
            raise BadRequest(
                f"grace_s must be a number of seconds in [0, {MAX_GRACE_S:g}], got {grace!r}",
                field="grace_s",
            )

    def broadcast_id(self, at: float) -> str:
        """One id per occurrence, so a repeated ``due`` cannot start a run twice."""
        return f"sch-{self.id}-{int(at)}"

    def broadcast_spec(self, at: float) -> BroadcastSpec:
        p = self.programme
        return BroadcastSpec(
            id=self.broadcast_id(at),
            priority=p.priority,
            target_zones=p.target_zones,
            target_endpoints=p.target_endpoints,
            origin_zone=self.origin_zone,
            resumable=p.resumable,
        )

    @classmethod
    def from_json(cls, data: object) -> Schedule:
        """The API's and the ``schedules`` row's shape: id, name, zone, dtstart (Unix time),
        rrule, timezone, grace_s, and the programme's items, targets and class."""
        if not isinstance(data, Mapping):
            raise BadRequest(f"a schedule must be an object, got {data!r}")
        for key in ("id", "name", "dtstart", "rrule"):
            if key not in data:
                raise BadRequest(f"schedule is missing {key!r}", field=key)
        recurrence = Recurrence(data["dtstart"], data["rrule"], data.get("timezone", DEFAULT_TZ))
        return cls(
            data["id"],
            data["name"],
            Programme.from_json(data),
            recurrence,
            data.get("zone"),
            data.get("grace_s", DEFAULT_GRACE_S),
        )

    def to_json(self) -> dict[str, Any]:
        r = self.recurrence
        return {
            "id": self.id,
            "name": self.name,
            "zone": self.origin_zone,
            "dtstart": r.dtstart,
            "rrule": r.rrule,
            "timezone": r.timezone,
            "grace_s": self.grace_s,
            **self.programme.to_json(),
        }


# -- events out --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fire:
    """Start the programme now: this is its time (give or take ``on_time_s``)."""

    schedule: Schedule
    at: float
    now: float

    @property
    def broadcast_id(self) -> str:
        return self.schedule.broadcast_id(self.at)

    @property
    def message(self) -> str:
        return f"[sch={self.schedule.id}] starts {_local(self.schedule, self.at)}"


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Start the programme now, late: its start was missed but is inside the grace window."""

    schedule: Schedule
    at: float
    now: float

    @property
    def broadcast_id(self) -> str:
        return self.schedule.broadcast_id(self.at)

    @property
    def late_s(self) -> float:
        return self.now - self.at

    @property
    def message(self) -> str:
        return (
            f"[sch={self.schedule.id}] catching up {_local(self.schedule, self.at)}, "
            f"{self.late_s:.0f} s late (grace {self.schedule.grace_s:g} s)"
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """The start was missed and will not be played; ``reason`` says why."""

    schedule: Schedule
    at: float
    now: float
    reason: str

    @property
    def late_s(self) -> float:
        return self.now - self.at

    @property
    def message(self) -> str:
        return f"[sch={self.schedule.id}] skipped {_local(self.schedule, self.at)}: {self.reason}"


Event = Fire | CatchUp | Skipped


def _local(schedule: Schedule, at: float) -> str:
    return schedule.recurrence.local(at).isoformat(timespec="seconds")


class Scheduler:
    """Schedules by id, driven by ``due(now)``; see the module docstring."""

    def __init__(
        self, *, last_run: float | None = None, on_time_s: float = DEFAULT_ON_TIME_S
    ) -> None:
        if last_run is not None and not math.isfinite(last_run):
            raise BadRequest(f"last_run must be a finite Unix time, got {last_run!r}")
        if not 0 <= on_time_s <= 60:
            raise BadRequest(f"on_time_s must be in [0, 60], got {on_time_s!r}")
        self._schedules: dict[str, Schedule] = {}
        self._last_run = last_run
        self._on_time_s = on_time_s

    @property
    def last_run(self) -> float | None:
        """What the adapter persists after each ``due``."""
        return self._last_run

    def add(self, schedule: Schedule) -> None:
        if schedule.id in self._schedules:
            raise Conflict(f"schedule {schedule.id!r} already exists", schedule=schedule.id)
        self._schedules[schedule.id] = schedule

    def remove(self, schedule_id: str) -> Schedule:
        try:
            return self._schedules.pop(schedule_id)
        except KeyError:
            raise NotFound(f"no schedule {schedule_id!r}", schedule=schedule_id) from None

    def schedules(self) -> tuple[Schedule, ...]:
        return tuple(self._schedules.values())

    def due(self, now: float) -> list[Event]:
        last = self._last_run
        if last is None or now <= last:
            self._last_run = now if last is None else last
            return []
        events: list[Event] = []
        for schedule in self._schedules.values():
            events += self._judge(schedule, schedule.recurrence.between(last, now), now)
        self._last_run = now
        events.sort(key=lambda e: (e.at, e.schedule.id))
        return events

    def _judge(self, schedule: Schedule, starts: list[Occurrence], now: float) -> list[Event]:
        out: list[Event] = []
        for i, occurrence in enumerate(starts):
            at = occurrence.at
            late = now - at
            if late <= self._on_time_s:
                out.append(Fire(schedule, at, now))
            elif late <= schedule.grace_s and i < len(starts) - 1:
                # the last start is later, so inside the grace window too: it plays instead
                later = _local(schedule, starts[-1].at)
                out.append(Skipped(schedule, at, now, f"superseded by the start at {later}"))
            elif late <= schedule.grace_s:
                out.append(CatchUp(schedule, at, now))
            else:
                out.append(
                    Skipped(
                        schedule,
                        at,
                        now,
                        f"missed by {late:.0f} s, past the {schedule.grace_s:g} s grace window",
                    )
                )
        return out

    def next_wakeup(self, now: float) -> float | None:
        """When ``due`` next has something to say (at or before ``now``: call it at once);
        ``None`` while no schedule will ever start again."""
        since = now if self._last_run is None else self._last_run
        times = [s.recurrence.next_after(since) for s in self._schedules.values()]
        return min((t for t in times if t is not None), default=None)

    def preview(self, schedule: Schedule, n: int, *, after: float) -> list[Occurrence]:
        """The next ``n`` starts of a schedule (added or not) after ``after``."""
        return schedule.recurrence.after(after, n)
