"""The SQLite dialect: one file, WAL, versioned migrations via ``PRAGMA user_version``.

Why ``synchronous=NORMAL`` is safe here: in WAL mode NORMAL syncs the WAL at every checkpoint,
not at every commit. A crash of the process (kill -9, OOM) loses nothing that was committed,
because the WAL is already in the OS page cache; a power cut or kernel panic can lose the last
few commits since the previous checkpoint, but never corrupts the database. A relay that loses
a second of log rows on a power cut is fine; one that syncs on every log row is not.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loa.store import schema
from loa.store.db import BUSY_TIMEOUT_MS, StoreError, too_new

log = logging.getLogger(__name__)
T = TypeVar("T")


def greatest(*values: Any) -> Any:
    """PostgreSQL's ``greatest()``: the largest non-NULL argument (NULL if all are)."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with the house pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        conn.close()
        raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.create_function("greatest", -1, greatest, deterministic=True)
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, upto: int | None = None) -> int:
    """Apply the migrations after the file's ``user_version``, each in its own transaction
    (the version bump commits with it, so a failed step leaves the previous version intact)."""
    migrations = schema.MIGRATIONS
    latest = len(migrations) if upto is None else upto
    current = schema_version(conn)
    if current > len(migrations):
        raise too_new(str(path), current)
    for version in range(current + 1, latest + 1):
        script = f"BEGIN IMMEDIATE;\n{migrations[version - 1]}\nPRAGMA user_version = {version};"
        try:
            conn.executescript(script)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("%s: migrated the schema to version %d", path, version)
    return schema_version(conn)


def transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SqliteDialect:
    """One SQLite file; ``BEGIN IMMEDIATE`` takes the write lock at the start of a write, so
    writers are serial and never need a retry."""

    name = "sqlite"
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        try:
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.execute("PRAGMA optimize")
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the database {self.label} is not open")
        return self._conn

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._connection(), *args)

    def transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return transaction(self._connection(), fn, *args)

    def integrity_check(self) -> str:
        rows = self._connection().execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)
