"""The broadcast log (nhật ký phát): one row per broadcast, written when it is requested and
rewritten as it starts and ends, queried by zone subtree, time range and class, exported as CSV.

A row's zones (table ``log_zones``) are its target zones, its origin zone and any zones the
caller adds — the relay passes the zones of the endpoints a broadcast reached, so an operator
of a commune sees a province-wide bulletin that played in the commune."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from loa.errors import BadRequest
from loa.store.audit import check_page
from loa.store.db import Conn, Database, Row, one_of

CLASSES = ("background", "scheduled", "priority", "live", "emergency")
CSV_COLUMNS = (
    "id",
    "what",
    "source",
    "class",
    "origin_zone",
    "target_zones",
    "target_endpoints",
    "created_by",
    "requested_at",
    "started_at",
    "ended_at",
    "state",
    "reason",
    "endpoints_heard",
    "heard_s_total",
    "preemptions",
    "interrupted_at",
    "resumed_at",
)


@dataclass(frozen=True, slots=True)
class LogRow:
    """The shape of ``loa.relay.broadcast.LogEntry.as_json()``, typed."""

    id: str
    what: str
    source: str
    klass: str
    origin_zone: str | None
    target_zones: tuple[str, ...]
    target_endpoints: tuple[str, ...]
    created_by: str
    requested_at: float
    started_at: float | None
    ended_at: float | None
    state: str
    reason: str | None
    endpoints_heard: int
    heard_s: Mapping[str, float]
    preemptions: int
    interrupted_at: float | None = None
    resumed_at: float | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> LogRow:
        """From ``LogEntry.as_json()``; a missing or mistyped field is a ``BadRequest``."""
        try:
            targets = entry["targets"]
            heard = {str(k): float(v) for k, v in dict(entry.get("heard_s") or {}).items()}
            row = cls(
                id=str(entry["id"]),
                what=str(entry["what"]),
                source=str(entry["source"]),
                klass=str(entry["class"]),
                origin_zone=entry.get("origin_zone"),
                target_zones=tuple(map(str, targets.get("zones", ()))),
                target_endpoints=tuple(map(str, targets.get("endpoints", ()))),
                created_by=str(entry["created_by"]),
                requested_at=float(entry["requested_at"]),
                started_at=_opt_float(entry.get("started_at")),
                ended_at=_opt_float(entry.get("ended_at")),
                state=str(entry["state"]),
                reason=entry.get("reason"),
                endpoints_heard=int(
                    entry.get("endpoints_heard", sum(1 for s in heard.values() if s > 0))
                ),
                heard_s=heard,
                preemptions=int(entry.get("preemptions", 0)),
                interrupted_at=_opt_float(entry.get("interrupted_at")),
                resumed_at=_opt_float(entry.get("resumed_at")),
            )
        except KeyError as exc:
            raise BadRequest(f"log entry lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"log entry {entry.get('id')!r}: malformed ({exc})") from None
        if row.klass not in CLASSES:
            raise BadRequest(
                f"log entry {row.id}: class must be one of {CLASSES}, got {row.klass!r}"
            )
        return row

    @classmethod
    def from_row(cls, r: Row) -> LogRow:
        targets = json.loads(r["targets"])
        return cls(
            id=r["id"],
            what=r["what"],
            source=r["source"],
            klass=r["class"],
            origin_zone=r["origin_zone"],
            target_zones=tuple(targets["zones"]),
            target_endpoints=tuple(targets["endpoints"]),
            created_by=r["created_by"],
            requested_at=r["requested_at"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            state=r["state"],
            reason=r["reason"],
            endpoints_heard=r["endpoints_heard"],
            heard_s=json.loads(r["heard_s"]),
            preemptions=r["preemptions"],
            interrupted_at=r["interrupted_at"],
            resumed_at=r["resumed_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "source": self.source,
            "class": self.klass,
            "origin_zone": self.origin_zone,
            "targets": {"zones": list(self.target_zones), "endpoints": list(self.target_endpoints)},
            "created_by": self.created_by,
            "requested_at": self.requested_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "state": self.state,
            "reason": self.reason,
            "endpoints_heard": self.endpoints_heard,
            "heard_s": dict(self.heard_s),
            "preemptions": self.preemptions,
            "interrupted_at": self.interrupted_at,
            "resumed_at": self.resumed_at,
        }


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _stored_heard(conn: Conn, log_id: str) -> dict[str, float] | None:
    found = conn.execute("SELECT heard_s FROM broadcast_log WHERE id = ?", (log_id,)).fetchone()
    return None if found is None else dict(json.loads(found[0] or "{}"))


def _put(conn: Conn, row: LogRow, zones: frozenset[str]) -> None:
    targets = {"zones": list(row.target_zones), "endpoints": list(row.target_endpoints)}
    # Endpoints another cluster node added (``add_heard``) stay; this writer's own win.
    heard = {**(_stored_heard(conn, row.id) or {}), **row.heard_s}
    conn.execute(
        "INSERT INTO broadcast_log (id, what, source, class, origin_zone, targets, created_by,"
        " requested_at, started_at, ended_at, state, reason, endpoints_heard, heard_s,"
        " preemptions, interrupted_at, resumed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET what = excluded.what, started_at = excluded.started_at,"
        " ended_at = excluded.ended_at, state = excluded.state, reason = excluded.reason,"
        " endpoints_heard = excluded.endpoints_heard, heard_s = excluded.heard_s,"
        " preemptions = excluded.preemptions, targets = excluded.targets,"
        " interrupted_at = excluded.interrupted_at, resumed_at = excluded.resumed_at",
        (
            row.id,
            row.what,
            row.source,
            row.klass,
            row.origin_zone,
            json.dumps(targets, ensure_ascii=False),
            row.created_by,
            row.requested_at,
            row.started_at,
            row.ended_at,
            row.state,
            row.reason,
            sum(1 for v in heard.values() if v > 0),
            json.dumps(dict(sorted(heard.items())), ensure_ascii=False),
            row.preemptions,
            row.interrupted_at,
            row.resumed_at,
        ),
    )
    conn.executemany(
        "INSERT INTO log_zones (log_id, zone) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(row.id, z) for z in sorted(zones)],
    )


def _add_heard(conn: Conn, log_id: str, heard_s: dict[str, float], zones: frozenset[str]) -> bool:
    heard = _stored_heard(conn, log_id)
    if heard is None:
        return False
    for endpoint, seconds in heard_s.items():
        heard[endpoint] = round(heard.get(endpoint, 0.0) + seconds, 3)
    conn.execute(
        "UPDATE broadcast_log SET heard_s = ?, endpoints_heard = ? WHERE id = ?",
        (json.dumps(dict(sorted(heard.items())), ensure_ascii=False),
         sum(1 for v in heard.values() if v > 0), log_id),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO log_zones (log_id, zone) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(log_id, z) for z in sorted(zones)],
    )
    return True


def _where(
    zones: Collection[str] | None, since: float | None, until: float | None, klass: str | None
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if zones is not None:
        condition, values = one_of("zone", zones)
        where.append(f"id IN (SELECT log_id FROM log_zones WHERE {condition})")
        args += values
    if since is not None:
        where.append("requested_at >= ?")
        args.append(since)
    if until is not None:
        where.append("requested_at < ?")
        args.append(until)
    if klass is not None:
        where.append("class = ?")
        args.append(klass)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def _check_filters(
    zones: Collection[str] | None, since: float | None, until: float | None, klass: str | None
) -> None:
    if isinstance(zones, str):
        raise BadRequest("zones must be a set of zone ids, not one string")
    if zones is not None and len(zones) > 10_000:
        raise BadRequest(f"zones: at most 10000 ids, got {len(zones)}")
    if since is not None and until is not None and since > until:
        raise BadRequest(f"since ({since}) is after until ({until})")
    if klass is not None and klass not in CLASSES:
        raise BadRequest(f"class must be one of {CLASSES}, got {klass!r}")


class BroadcastLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, entry: Mapping[str, Any], *, zones: Iterable[str] = ()) -> LogRow:
        """Insert or update one entry (``LogEntry.as_json()``); ``zones`` adds zones it
        concerns beyond its targets and origin (e.g. the zones of endpoints that heard it)."""
        row = LogRow.from_json(entry)
        concerned = frozenset(row.target_zones) | frozenset(zones)
        if row.origin_zone is not None:
            concerned |= {row.origin_zone}
        await self._db.write(_put, row, concerned)
        return row

    async def add_heard(
        self, log_id: str, heard_s: Mapping[str, float], *, zones: Iterable[str] = ()
    ) -> bool:
        """Cluster: add what another node's speakers heard of a broadcast logged by the node
        that encoded it (seconds add up per endpoint); False when it has no row yet."""
        return await self._db.write(_add_heard, log_id, dict(heard_s), frozenset(zones))

    async def get(self, log_id: str) -> LogRow | None:
        r = await self._db.run(
            lambda c: c.execute("SELECT * FROM broadcast_log WHERE id = ?", (log_id,)).fetchone()
        )
        return None if r is None else LogRow.from_row(r)

    async def query(
        self,
        *,
        zones: Collection[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        klass: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LogRow]:
        """Newest request first. ``zones``: rows concerning any of these zones (pass an
        operator's subtree); ``since <= requested_at < until``; ``klass``: one class."""
        _check_filters(zones, since, until, klass)
        check_page(limit, offset)
        where, args = _where(zones, since, until, klass)
        sql = f"SELECT * FROM broadcast_log{where} ORDER BY requested_at DESC, id LIMIT ? OFFSET ?"
        rows = await self._db.run(lambda c: c.execute(sql, [*args, limit, offset]).fetchall())
        return [LogRow.from_row(r) for r in rows]

    async def count(
        self,
        *,
        zones: Collection[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        klass: str | None = None,
    ) -> int:
        _check_filters(zones, since, until, klass)
        where, args = _where(zones, since, until, klass)
        sql = f"SELECT count(*) FROM broadcast_log{where}"
        return int(await self._db.run(lambda c: c.execute(sql, args).fetchone()[0]))


def _when(ts: float | None, tz: tzinfo) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def _cell(value: object) -> object:
    """Neutralise text Excel would run as a formula (CSV injection): prefix a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(
    rows: Sequence[LogRow],
    tz: tzinfo = UTC,
    *,
    columns: Mapping[str, str] | None = None,
    classes: Mapping[str, str] | None = None,
    states: Mapping[str, str] | None = None,
) -> bytes:
    """The log as CSV, UTF-8 with a byte-order mark so Excel shows Vietnamese correctly;
    times in ISO 8601 in ``tz``; lists joined with spaces. ``columns`` words the header line
    (each of CSV_COLUMNS; a column without a word keeps its name), ``classes`` and ``states``
    the class and state of each row (the reader's language); ids and names stay as stored."""
    columns, classes, states = columns or {}, classes or {}, states or {}
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_cell(columns.get(c, c)) for c in CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            _cell(v)
            for v in [
                r.id,
                r.what,
                r.source,
                classes.get(r.klass, r.klass),
                r.origin_zone or "",
                " ".join(r.target_zones),
                " ".join(r.target_endpoints),
                r.created_by,
                _when(r.requested_at, tz),
                _when(r.started_at, tz),
                _when(r.ended_at, tz),
                states.get(r.state, r.state),
                r.reason or "",
                r.endpoints_heard,
                round(sum(r.heard_s.values()), 3),
                r.preemptions,
                _when(r.interrupted_at, tz),
                _when(r.resumed_at, tz),
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")
