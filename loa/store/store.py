"""``Store``: the database of a node (a SQLite file, or a PostgreSQL database that the nodes
of a cluster share) and its repositories, opened and closed once.

Seeding rule: the config file's ``[[zones]]`` and ``[[endpoints]]`` are copied into the
database only when it holds no zone and no endpoint (first run). From then on the database
is authoritative: edits go through the API or the CLI, and a config file that lists zones or
endpoints the database lacks only earns a warning in the log."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

from loa.config import Config
from loa.relay.core.zones import ZoneAudio
from loa.store.accounts import Users
from loa.store.audit import Audit
from loa.store.bulletins import Bulletins
from loa.store.db import Clock, Conn, Database, check_id, hash_token
from loa.store.dialects import open_dialect
from loa.store.endpoints import Endpoints, check_fields, insert_endpoint
from loa.store.idempotency import IdempotencyKeys
from loa.store.log import BroadcastLog
from loa.store.media import Media
from loa.store.onair import OnAir
from loa.store.prepared import Prepared
from loa.store.presence import Presence
from loa.store.repeats import Repeats
from loa.store.schedules import Schedules
from loa.store.sessions import Sessions
from loa.store.webhooks import Webhooks
from loa.store.zones import Zone, Zones, check_name, check_timezone, insert_zone, ordered

log = logging.getLogger(__name__)
DB_NAME = "loa.db"


class Store:
    """Owned by the app's cleanup context (``start``/``close``) or used as ``async with``."""

    def __init__(self, where: Path | str, *, clock: Clock = time.time) -> None:
        """``where``: a SQLite file's path, or a URL (``sqlite:///…``, ``postgresql://…``)."""
        self.db = Database(open_dialect(where), clock)
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
        self.idempotency = IdempotencyKeys(self.db)
        self.onair = OnAir(self.db)
        self.repeats = Repeats(self.db)
        self.prepared = Prepared(self.db)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self.db.path

    @property
    def label(self) -> str:
        """Where the data is, for messages: the file, or the URL without its password."""
        return self.db.label

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.db.dialect.name

    @classmethod
    def for_url(cls, url: str, *, clock: Clock = time.time) -> Store:
        """``sqlite:///relative/loa.db``, ``sqlite:////absolute/loa.db`` or a libpq URL
        ``postgresql://user:password@host:5432/dbname`` (``?host=/run/dir`` for a socket).
        Anything else is a ``ConfigError`` naming the URL (password redacted)."""
        return cls(url, clock=clock)

    @classmethod
    def for_config(cls, config: Config, *, clock: Clock = time.time) -> Store:
        """``[store] url`` when set, else ``loa.db`` in ``data_dir``."""
        if config.store.url is not None:
            return cls(config.store.url, clock=clock)
        return cls(Path(config.data_dir) / DB_NAME, clock=clock)

    @classmethod
    async def open(cls, where: Path | str, *, clock: Clock = time.time) -> Store:
        """Connect (creating a SQLite file's directory if needed) and bring the schema up to
        date."""
        store = cls(where, clock=clock)
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
        """``PRAGMA integrity_check``: 'ok' or SQLite's list of problems (SQLite only)."""
        return await self.db.integrity_check()

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
                self.label,
                ", ".join(missing),
            )


def _seed(conn: Conn, config: Config, now: float) -> bool:
    if conn.execute(
        "SELECT EXISTS(SELECT 1 FROM zones) OR EXISTS(SELECT 1 FROM endpoints)"
    ).fetchone()[0]:
        return False
    specs = {z.id: z for z in config.zones}
    as_rows = [
        Zone(z.id, z.name, z.parent, z.timezone, ("vi",), now, z.voice) for z in config.zones
    ]
    for zone in ordered(as_rows):
        spec = specs[zone.id]
        check_id("zone", spec.id)
        check_timezone(spec.timezone)
        audio = ZoneAudio.checked(spec.frame_ms, spec.redundancy, spec.playout_delay_ms)
        name = spec.name.strip()
        insert_zone(
            conn, spec.id, name, spec.parent, spec.timezone, ("vi",), now, spec.voice, audio
        )
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
