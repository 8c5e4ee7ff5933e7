"""Zones in the database: the administrative tree (any depth) and its edits.

The same rules as ``loa.relay.core.zones.ZoneTree``, enforced against the table: a parent
must exist, a zone with children, endpoints, users or schedules cannot be removed, and a zone
cannot move under its own subtree."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loa.config import DEFAULT_VOICE, ZONE_VOICES
from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.zones import INHERIT, ZoneAudio, ZoneTree
from loa.store.db import Conn, Database, Row, check_id

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
KEEP: Any = object()  # ``update``'s "leave the voice as it is" (None means inherit)
AUDIO_FIELDS = ("frame_ms", "redundancy", "playout_delay_ms")  # ZoneAudio's, as columns
_SUBTREE = """
WITH RECURSIVE sub(id) AS (
    SELECT id FROM zones WHERE id = ?
    UNION SELECT zones.id FROM zones JOIN sub ON zones.parent = sub.id
) SELECT id FROM sub
"""


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    parent: str | None
    timezone: str
    languages: tuple[str, ...]
    created_at: float
    voice: str | None = None  # one of ZONE_VOICES; None: the parent's
    audio: ZoneAudio = INHERIT  # its own packet settings; None fields: the parent's

    @classmethod
    def from_row(cls, row: Row) -> Zone:
        redundancy = row["redundancy"]
        return cls(
            id=row["id"],
            name=row["name"],
            parent=row["parent"],
            timezone=row["timezone"],
            languages=tuple(json.loads(row["languages"])),
            created_at=row["created_at"],
            voice=row["voice"],
            audio=ZoneAudio(
                row["frame_ms"],
                None if redundancy is None else bool(redundancy),
                row["playout_delay_ms"],
            ),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "timezone": self.timezone,
            "languages": list(self.languages),
            "voice": self.voice,
            **self.audio.as_json(),
        }


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > 200:
        raise BadRequest(f"{kind} name is longer than 200 characters")
    return name.strip()


def check_timezone(tz: object) -> str:
    if not isinstance(tz, str) or not tz:
        raise BadRequest(f"timezone must be an IANA name like {DEFAULT_TZ!r}, got {tz!r}")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown timezone {tz!r}; use an IANA name like {DEFAULT_TZ!r}") from None
    return tz


def check_languages(languages: object) -> tuple[str, ...]:
    if isinstance(languages, str) or not isinstance(languages, Iterable):
        raise BadRequest(f"languages must be a list of language tags, got {languages!r}")
    out = tuple(languages)
    for tag in out:
        if not isinstance(tag, str) or not 2 <= len(tag) <= 35 or not tag.isascii():
            raise BadRequest(f"languages: {tag!r} is not a language tag like 'vi' or 'vi-VN'")
    return out


def check_voice(voice: object) -> str | None:
    """A zone's voice: one of ZONE_VOICES, or None (its parent's)."""
    if voice is not None and voice not in ZONE_VOICES:
        raise BadRequest(
            f"voice must be one of {', '.join(ZONE_VOICES)} or null (the parent's), got {voice!r}",
            field="voice",
        )
    return None if voice is None else str(voice)


def voice_of(conn: Conn, zone_id: str) -> str:
    """The voice a zone speaks in: its own, else the nearest ancestor's, else DEFAULT_VOICE."""
    seen: set[str] = set()
    current: str | None = zone_id
    while current is not None and current not in seen:
        seen.add(current)
        row = conn.execute("SELECT parent, voice FROM zones WHERE id = ?", (current,)).fetchone()
        if row is None:
            break
        if row["voice"] is not None:
            return str(row["voice"])
        current = row["parent"]
    return DEFAULT_VOICE


def targets_voice(conn: Conn, zones: Iterable[str], endpoints: Iterable[str]) -> str:
    """The voice a broadcast to these targets speaks in: its first zone's (by id), else the
    zone of its first endpoint's; DEFAULT_VOICE if none of them exists. (One broadcast has one
    voice: a broadcast to several regions speaks in its first zone's.)"""
    for zone_id in sorted(zones):
        if conn.execute("SELECT 1 FROM zones WHERE id = ?", (zone_id,)).fetchone():
            return voice_of(conn, zone_id)
    for endpoint_id in sorted(endpoints):
        row = conn.execute("SELECT zone FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
        if row is not None:
            return voice_of(conn, row["zone"])
    return DEFAULT_VOICE


def effective_voices(zones: Iterable[Zone]) -> dict[str, str]:
    """``voice_of`` for every zone of a complete list, without reading."""
    by_id = {z.id: z for z in zones}
    out: dict[str, str] = {}

    def of(zone_id: str | None, depth: int = 0) -> str:
        zone = by_id.get(zone_id) if zone_id is not None else None
        if zone is None or depth > len(by_id):
            return DEFAULT_VOICE
        if zone.id not in out:
            out[zone.id] = zone.voice or of(zone.parent, depth + 1)
        return out[zone.id]

    for z in by_id:
        of(z)
    return out


def get_zone(conn: Conn, zone_id: str, what: str = "zone") -> Zone:
    row = conn.execute("SELECT * FROM zones WHERE id = ?", (zone_id,)).fetchone()
    if row is None:
        raise NotFound(f"{what} {zone_id!r} does not exist", zone=zone_id)
    return Zone.from_row(row)


def subtree(conn: Conn, zone_id: str) -> frozenset[str]:
    get_zone(conn, zone_id)
    return frozenset(r[0] for r in conn.execute(_SUBTREE, (zone_id,)))


def insert_zone(
    conn: Conn,
    zone_id: str,
    name: str,
    parent: str | None,
    timezone: str,
    languages: Sequence[str],
    now: float,
    voice: str | None = None,
    audio: ZoneAudio = INHERIT,
) -> Zone:
    if conn.execute("SELECT 1 FROM zones WHERE id = ?", (zone_id,)).fetchone():
        raise Conflict(f"zone {zone_id!r} already exists", zone=zone_id)
    if parent is not None:
        get_zone(conn, parent, "parent zone")
    conn.execute(
        "INSERT INTO zones (id, name, parent, timezone, languages, created_at, voice,"
        " frame_ms, redundancy, playout_delay_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            zone_id,
            name,
            parent,
            timezone,
            json.dumps(list(languages)),
            now,
            voice,
            audio.frame_ms,
            audio.redundancy,
            audio.playout_delay_ms,
        ),
    )
    return get_zone(conn, zone_id)


def _names(conn: Conn, sql: str, zone_id: str) -> list[str]:
    return [r[0] for r in conn.execute(sql, (zone_id,))]


def _remove(conn: Conn, zone_id: str) -> None:
    get_zone(conn, zone_id)
    blockers = [
        ("child zones", "SELECT id FROM zones WHERE parent = ? ORDER BY id"),
        ("endpoints", "SELECT id FROM endpoints WHERE zone = ? ORDER BY id"),
        ("users", "SELECT username FROM users WHERE zone = ? ORDER BY username"),
        ("schedules", "SELECT id FROM schedules WHERE zone = ? ORDER BY id"),
    ]
    for what, sql in blockers:
        names = _names(conn, sql, zone_id)
        if names:
            raise Conflict(
                f"zone {zone_id!r} still has {what} ({', '.join(names)}); "
                "move or remove them first",
                zone=zone_id,
                **{what.replace(" ", "_"): names},
            )
    conn.execute("DELETE FROM zones WHERE id = ?", (zone_id,))


def _move(conn: Conn, zone_id: str, parent: str | None) -> Zone:
    get_zone(conn, zone_id)
    if parent is not None:
        get_zone(conn, parent, "parent zone")
        if parent in subtree(conn, zone_id):
            raise BadRequest(
                f"cannot move zone {zone_id!r} under {parent!r}: "
                f"{parent!r} is inside {zone_id!r}'s subtree",
                zone=zone_id,
                parent=parent,
            )
    conn.execute("UPDATE zones SET parent = ? WHERE id = ?", (parent, zone_id))
    return get_zone(conn, zone_id)


def _update(conn: Conn, zone_id: str, changes: dict[str, Any]) -> Zone:
    get_zone(conn, zone_id)
    for column, value in changes.items():  # column names come from our own code, not input
        conn.execute(f"UPDATE zones SET {column} = ? WHERE id = ?", (value, zone_id))
    return get_zone(conn, zone_id)


def ordered(zones: Iterable[Zone]) -> list[Zone]:
    """Parents before children (then by id): the order ``ZoneTree.build`` needs."""
    pending = sorted(zones, key=lambda z: z.id)
    placed: set[str] = set()
    out: list[Zone] = []
    while pending:
        ready = [z for z in pending if z.parent is None or z.parent in placed]
        if not ready:  # a cycle cannot be written through this module; refuse to loop
            raise Conflict(f"zones {[z.id for z in pending]} form a cycle")
        out += ready
        placed.update(z.id for z in ready)
        pending = [z for z in pending if z.id not in placed]
    return out


def _list(conn: Conn) -> list[Zone]:
    return ordered(Zone.from_row(r) for r in conn.execute("SELECT * FROM zones"))


def _tree(conn: Conn) -> ZoneTree:
    tree = ZoneTree.build((z.id, z.parent) for z in _list(conn))
    for row in conn.execute("SELECT id, zone FROM endpoints ORDER BY id"):
        tree.attach(row["id"], row["zone"])
    return tree


class Zones:
    """Zone repository: every method is one round trip to the store's worker thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        zone_id: str,
        name: str,
        parent: str | None = None,
        *,
        timezone: str = DEFAULT_TZ,
        languages: Sequence[str] = ("vi",),
        voice: str | None = None,
        frame_ms: int | None = None,
        redundancy: bool | None = None,
        playout_delay_ms: int | None = None,
    ) -> Zone:
        """A zone; ``voice`` and the packet settings None: the parent's."""
        zone_id = check_id("zone", zone_id)
        voice = check_voice(voice)
        audio = ZoneAudio.checked(frame_ms, redundancy, playout_delay_ms)
        name = check_name("zone", name)
        if parent is not None:
            check_id("parent zone", parent)
        langs = check_languages(languages)
        now = self._db.clock()
        tz = await self._db.run(lambda _c: check_timezone(timezone))  # reads tzdata files
        return await self._db.write(
            insert_zone, zone_id, name, parent, tz, langs, now, voice, audio
        )

    async def get(self, zone_id: str) -> Zone:
        return await self._db.run(get_zone, zone_id)

    async def list(self) -> list[Zone]:
        return await self._db.run(_list)

    async def update(
        self,
        zone_id: str,
        *,
        name: str | None = None,
        timezone: str | None = None,
        languages: Sequence[str] | None = None,
        voice: object = KEEP,
        frame_ms: object = KEEP,
        redundancy: object = KEEP,
        playout_delay_ms: object = KEEP,
    ) -> Zone:
        """Only what is given changes; ``voice=None`` (or a packet setting None) makes the
        zone inherit its parent's."""
        changes: dict[str, Any] = {}
        if voice is not KEEP:
            changes["voice"] = check_voice(voice)
        given = dict(zip(AUDIO_FIELDS, (frame_ms, redundancy, playout_delay_ms), strict=True))
        checked = ZoneAudio.checked(*(None if v is KEEP else v for v in given.values()))
        changes.update({k: getattr(checked, k) for k, v in given.items() if v is not KEEP})
        if name is not None:
            changes["name"] = check_name("zone", name)
        if timezone is not None:
            changes["timezone"] = await self._db.run(lambda _c: check_timezone(timezone))
        if languages is not None:
            changes["languages"] = json.dumps(list(check_languages(languages)))
        return await self._db.write(_update, zone_id, changes)

    async def move(self, zone_id: str, parent: str | None) -> Zone:
        return await self._db.write(_move, zone_id, parent)

    async def remove(self, zone_id: str) -> None:
        await self._db.write(_remove, zone_id)

    async def voice(self, zone_id: str) -> str:
        """The voice ``zone_id`` speaks in (its own, else its nearest ancestor's, else the
        North's); DEFAULT_VOICE for a zone that does not exist."""
        return await self._db.run(voice_of, zone_id)

    async def targets_voice(self, zones: Iterable[str], endpoints: Iterable[str] = ()) -> str:
        """See ``targets_voice``."""
        return await self._db.run(targets_voice, tuple(zones), tuple(endpoints))

    async def subtree(self, zone_id: str) -> frozenset[str]:
        """The zone and every zone below it (for log filters and scope checks)."""
        return await self._db.run(subtree, zone_id)

    async def parents(self) -> dict[str, str | None]:
        return {z.id: z.parent for z in await self.list()}

    async def tree(self) -> ZoneTree:
        """A ``ZoneTree`` of every zone with every endpoint attached (what the node routes on)."""
        return await self._db.run(_tree)
