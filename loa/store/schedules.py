"""The schedules ("lịch phát"): rows of the ``schedules`` table as ``loa.schedule.Schedule``,
whether each is enabled, the scheduler's last run (``scheduler_state``) and its runs
(``schedule_runs``).

Runs are claimed once: ``claim_run`` inserts the row of a (schedule, occurrence) in the same
transaction that checks it is not there, so a run whose ``last_run`` was never saved (the
leader died between starting it and saving) is not started twice. In a cluster every
scheduler write carries the leader's fencing token: the store keeps the highest it has seen
(``fences``) and refuses an older one with ``StaleLeader``, checked in the same transaction
as the write, so a deposed or partitioned leader's late claim or ``last_run`` changes
nothing. A write without a token (a single node) is not fenced.

A row's ``timezone`` may be NULL (rows written before V5): it then reads as its origin zone's
time zone, else ``Asia/Ho_Chi_Minh``. Rows are validated on the way in, so a row that no longer
parses (its time zone left the tz database) is skipped with a warning, never a crash."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest, Conflict, LoaError, NotFound, StaleLeader
from loa.schedule import DEFAULT_TZ, Schedule
from loa.schedule.scheduler import MAX_GRACE_S
from loa.store.db import Conn, Database, Row

log = logging.getLogger(__name__)

_SELECT = """
SELECT s.*, COALESCE(s.timezone, z.timezone, ?) AS tz
FROM schedules s LEFT JOIN zones z ON z.id = s.zone
"""


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    schedule: Schedule
    enabled: bool
    created_by: str
    created_at: float

    @property
    def id(self) -> str:
        return self.schedule.id

    def as_json(self) -> dict[str, Any]:
        return {
            **self.schedule.to_json(),
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


def _row(r: Row) -> ScheduleRow:
    data = {
        "id": r["id"],
        "name": r["name"],
        "zone": r["zone"],
        "dtstart": r["dtstart"],
        "rrule": r["rrule"],
        "timezone": r["tz"],
        "grace_s": r["grace_s"],
        "items": json.loads(r["items"]),
        "targets": json.loads(r["targets"]),
        "class": r["class"],
    }
    return ScheduleRow(
        Schedule.from_json(data), bool(r["enabled"]), r["created_by"], r["created_at"]
    )


def _get(conn: Conn, schedule_id: str) -> ScheduleRow:
    r = conn.execute(_SELECT + " WHERE s.id = ?", (DEFAULT_TZ, schedule_id)).fetchone()
    if r is None:
        raise NotFound(f"schedule {schedule_id!r} not found", schedule=schedule_id)
    return _row(r)


def _list(conn: Conn) -> list[ScheduleRow]:
    out = []
    for r in conn.execute(_SELECT + " ORDER BY s.created_at, s.id", (DEFAULT_TZ,)):
        try:
            out.append(_row(r))
        except LoaError as exc:
            log.warning("[sch=%s] unreadable schedule row skipped: %s", r["id"], exc)
    return out


def _values(schedule: Schedule, enabled: bool) -> dict[str, Any]:
    data = schedule.to_json()
    return {
        "name": data["name"],
        "zone": data["zone"],
        "targets": json.dumps(data["targets"], ensure_ascii=False),
        "class": data["class"],
        "dtstart": data["dtstart"],
        "rrule": data["rrule"],
        "items": json.dumps(data["items"], ensure_ascii=False),
        "enabled": int(enabled),
        "grace_s": data["grace_s"],
        "timezone": data["timezone"],
    }


def _check_zone(conn: Conn, zone: str | None) -> None:
    if (
        zone is not None
        and not conn.execute("SELECT 1 FROM zones WHERE id = ?", (zone,)).fetchone()
    ):
        raise NotFound(f"zone {zone!r} does not exist", zone=zone)


def _insert(conn: Conn, schedule: Schedule, enabled: bool, by: str, now: float) -> ScheduleRow:
    if conn.execute("SELECT 1 FROM schedules WHERE id = ?", (schedule.id,)).fetchone():
        raise Conflict(f"schedule {schedule.id!r} already exists", schedule=schedule.id)
    _check_zone(conn, schedule.origin_zone)
    values = {"id": schedule.id, **_values(schedule, enabled), "created_by": by, "created_at": now}
    conn.execute(
        f"INSERT INTO schedules ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )
    return _get(conn, schedule.id)


def _update(conn: Conn, schedule: Schedule, enabled: bool) -> ScheduleRow:
    _get(conn, schedule.id)
    _check_zone(conn, schedule.origin_zone)
    values = _values(schedule, enabled)
    conn.execute(
        f"UPDATE schedules SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
        [*values.values(), schedule.id],
    )
    return _get(conn, schedule.id)


def _remove(conn: Conn, schedule_id: str) -> ScheduleRow:
    row = _get(conn, schedule_id)
    conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
    return row


FENCE = "scheduler"  # the fences row of the scheduler's writes
KEEP_RUNS_S = 2 * MAX_GRACE_S  # older runs can no longer be due again: pruned


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """A claimed run: the occurrence ``at`` of ``schedule``, started as ``broadcast`` by the
    leader holding ``token`` on ``node`` (both None on a single node)."""

    schedule: str
    at: float
    broadcast: str
    token: int | None
    node: str | None
    claimed_at: float


def _fence(conn: Conn, token: int | None) -> None:
    """Refuse a write whose token is below the highest seen; raise the highest to it."""
    if token is None:
        return
    r = conn.execute("SELECT token FROM fences WHERE name = ?", (FENCE,)).fetchone()
    if r is not None and int(r[0]) > token:
        raise StaleLeader(
            f"fencing token {token} is older than {r[0]}: another leader has written since",
            token=token, fence=int(r[0]),
        )  # fmt: skip
    if r is None or int(r[0]) < token:  # written only when it rises: no hot row
        conn.execute(
            "INSERT INTO fences (name, token) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET token = excluded.token",
            (FENCE, token),
        )


def _run(conn: Conn, schedule_id: str, at: float) -> ScheduleRun | None:
    r = conn.execute(
        "SELECT schedule, at, broadcast, token, node, claimed_at FROM schedule_runs"
        " WHERE schedule = ? AND at = ?",
        (schedule_id, at),
    ).fetchone()
    return None if r is None else ScheduleRun(*r)


def _claim(conn: Conn, run: ScheduleRun, prior: str | None) -> tuple[bool, ScheduleRun]:
    _fence(conn, run.token)
    found = _run(conn, run.schedule, run.at)
    if found is not None and (prior is None or found.broadcast != prior):
        return False, found
    if found is None:
        conn.execute(
            "INSERT INTO schedule_runs (schedule, at, broadcast, token, node, claimed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run.schedule, run.at, run.broadcast, run.token, run.node, run.claimed_at),
        )
    else:  # taking over a claim whose run never started (``prior``)
        conn.execute(
            "UPDATE schedule_runs SET broadcast = ?, token = ?, node = ?, claimed_at = ?"
            " WHERE schedule = ? AND at = ?",
            (run.broadcast, run.token, run.node, run.claimed_at, run.schedule, run.at),
        )
    return True, run


def _set_last_run(conn: Conn, at: float, token: int | None) -> None:
    _fence(conn, token)
    conn.execute("DELETE FROM schedule_runs WHERE at < ?", (at - KEEP_RUNS_S,))
    # never backwards: a clock that went back must not replay what already fired
    conn.execute(
        "INSERT INTO scheduler_state (id, last_run) VALUES (1, ?) "
        "ON CONFLICT(id) DO UPDATE"
        " SET last_run = greatest(scheduler_state.last_run, excluded.last_run)",
        (at,),
    )


class Schedules:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, schedule: Schedule, created_by: str, *, enabled: bool = True
    ) -> ScheduleRow:
        """409 if the id is taken, 404 if the origin zone does not exist."""
        return await self._db.write(_insert, schedule, enabled, created_by, self._db.clock())

    async def get(self, schedule_id: str) -> ScheduleRow:
        return await self._db.run(_get, schedule_id)

    async def list(self) -> list[ScheduleRow]:
        """Oldest first; rows that no longer parse are left out (and logged)."""
        return await self._db.run(_list)

    async def replace(self, schedule: Schedule, *, enabled: bool) -> ScheduleRow:
        """Overwrite an existing schedule (same id); its creator and creation time stay."""
        return await self._db.write(_update, schedule, enabled)

    async def remove(self, schedule_id: str) -> ScheduleRow:
        return await self._db.write(_remove, schedule_id)

    async def last_run(self) -> float | None:
        """The scheduler's last ``due`` time, or None on a new installation."""
        r = await self._db.run(
            lambda c: c.execute("SELECT last_run FROM scheduler_state WHERE id = 1").fetchone()
        )
        return None if r is None else float(r[0])

    async def set_last_run(self, at: float, *, token: int | None = None) -> None:
        """Save the scheduler's last ``due`` time (never backwards); ``StaleLeader`` when
        ``token`` is older than a token that wrote before."""
        if not isinstance(at, int | float) or isinstance(at, bool) or at != at:
            raise BadRequest(f"last_run must be a Unix time, got {at!r}")
        await self._db.write(_set_last_run, float(at), token)

    async def claim_run(
        self, schedule_id: str, at: float, broadcast: str, *, token: int | None = None,
        node: str | None = None, prior: str | None = None,
    ) -> tuple[bool, ScheduleRun]:  # fmt: skip
        """Claim the run of ``schedule_id``'s occurrence ``at`` as ``broadcast``: (True, it)
        when this call claimed it, (False, the claim found) when it was claimed before —
        unless that claim's broadcast is ``prior``, a run that never started, which this
        call takes over. ``StaleLeader`` when ``token`` is older than one seen before."""
        run = ScheduleRun(schedule_id, float(at), broadcast, token, node, self._db.clock())
        return await self._db.write(_claim, run, prior)

    async def run(self, schedule_id: str, at: float) -> ScheduleRun | None:
        return await self._db.run(_run, schedule_id, float(at))
