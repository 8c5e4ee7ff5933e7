"""``Store``: the one SQLite database of a node and its repositories, opened and closed once.

Seeding rule: the config file's ``[[zones]]`` and ``[[endpoints]]`` are copied into the
database only when it holds no zone and no endpoint (first run). From then on the database
is authoritative: edits go through the API or the CLI, and a config file that lists zones or
endpoints the database lacks only earns a warning in the log."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from types import TracebackType

from loa.config import Config
from loa.store.accounts import Users
from loa.store.audit import Audit
from loa.store.bulletins import Bulletins
from loa.store.db import Clock, Database, check_id, hash_token
from loa.store.endpoints import Endpoints, check_fields, insert_endpoint
from loa.store.log import BroadcastLog
from loa.store.media import Media
from loa.store.presence import Presence
from loa.store.schedules import Schedules
from loa.store.sessions import Sessions
from loa.store.webhooks import Webhooks
from loa.store.zones import Zone, Zones, check_name, check_timezone, insert_zone, ordered

log = logging.getLogger(__name__)
DB_NAME = "loa.db"


class Store:
    """Owned by the app's cleanup context (``start``/``close``) or used as ``async with``."""

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        self.db = Database(path, clock)
        self.zones = Zones(self.db)
        self.endpoints = Endpoints(self.db)
        self.users = Users(self.db)
        self.sessions = Sessions(self.db)
        self.media = Media(self.db)
        self.log = BroadcastLog(self.db)
        self.audit = Audit(self.db)
        self.bulletins = Bulletins(self.db)
        self.presence = Presence(self.db)
        self.webhooks = Webhooks(self.db)
        self.schedules = Schedules(self.db)

    @property
    def path(self) -> Path:
        return self.db.path

    @classmethod
    def for_config(cls, config: Config, *, clock: Clock = time.time) -> Store:
        return cls(Path(config.data_dir) / DB_NAME, clock=clock)

    @classmethod
    async def open(cls, path: Path, *, clock: Clock = time.time) -> Store:
        """Create the directory if needed, open the file and bring its schema up to date."""
        store = cls(path, clock=clock)
        await store.start()
        return store

    async def start(self) -> None:
        await self.db.start()

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        if not self.db.is_open:
            await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: 'ok' or SQLite's list of problems."""
        rows = await self.db.run(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(r[0]) for r in rows)

    async def seed_from_config(self, config: Config) -> bool:
        """Copy the config's zones and endpoints into an empty database (their device tokens
        hashed); True if it did. See the module docstring for the rule."""
        for e in config.endpoints:  # validate before touching the database
            check_fields(
                e.id,
                {
                    "name": e.name,
                    "address": e.address,
                    "lat": e.lat,
                    "lon": e.lon,
                    "volume": e.volume,
                    "emergency_volume": e.emergency_volume,
                },
            )
        for z in config.zones:
            check_name("zone", z.name)
        seeded = await self.db.write(_seed, config, self.db.clock())
        if not seeded:
            await self._warn_drift(config)
        return seeded

    async def _warn_drift(self, config: Config) -> None:
        zones = {z.id for z in await self.zones.list()}
        eps = {e.id for e in await self.endpoints.list()}
        missing = sorted({z.id for z in config.zones} - zones) + sorted(
            {e.id for e in config.endpoints} - eps
        )
        if missing:
            log.warning(
                "%s: the config lists %s, absent from the database; the database is "
                "authoritative after the first run (add them through the API)",
                self.path,
                ", ".join(missing),
            )


def _seed(conn: sqlite3.Connection, config: Config, now: float) -> bool:
    if conn.execute(
        "SELECT EXISTS(SELECT 1 FROM zones) OR EXISTS(SELECT 1 FROM endpoints)"
    ).fetchone()[0]:
        return False
    specs = {z.id: z for z in config.zones}
    as_rows = [Zone(z.id, z.name, z.parent, z.timezone, ("vi",), now) for z in config.zones]
    for zone in ordered(as_rows):
        spec = specs[zone.id]
        check_id("zone", spec.id)
        check_timezone(spec.timezone)
        insert_zone(conn, spec.id, spec.name.strip(), spec.parent, spec.timezone, ("vi",), now)
    for e in config.endpoints:
        check_id("endpoint", e.id)
        fields = {
            "name": e.name.strip(),
            "zone": e.zone,
            "address": e.address,
            "lat": e.lat,
            "lon": e.lon,
            "volume": e.volume,
            "emergency_volume": e.emergency_volume,
        }
        insert_endpoint(conn, e.id, e.kind, hash_token(e.token) if e.token else None, fields, now)
    log.info(
        "seeded the database with %d zones and %d endpoints from the config",
        len(config.zones),
        len(config.endpoints),
    )
    return True
