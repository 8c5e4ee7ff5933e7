"""The SQLite connection: one file, WAL, versioned migrations, one worker thread for every query.

Why one thread: sqlite3 connections must not be shared across threads, SQLite serialises
writers anyway, and a single owner makes every call a short critical section with no locks of
our own. The event loop never touches the file; it awaits the worker.

Why ``synchronous=NORMAL`` is safe here: in WAL mode NORMAL syncs the WAL at every checkpoint,
not at every commit. A crash of the process (kill -9, OOM) loses nothing that was committed,
because the WAL is already in the OS page cache; a power cut or kernel panic can lose the last
few commits since the previous checkpoint, but never corrupts the database. A relay that loses
a second of log rows on a power cut is fine; one that syncs on every log row is not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from loa.errors import BadRequest, LoaError
from loa.store.schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], float]
BUSY_TIMEOUT_MS = 5000


class StoreError(LoaError, RuntimeError):
    """The database cannot be used: closed, unreadable, or from a newer loa."""

    code = "store_error"


class SchemaTooNew(StoreError):
    code = "schema_too_new"


def hash_token(token: str) -> str:
    """SHA-256 hex of a random token (device, API, session); the relay node knows device
    tokens only by this hash. Tokens are long and random, so no salt or stretching."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


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
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, upto: int | None = None) -> int:
    """Apply the migrations after the file's ``user_version``, each in its own transaction
    (the version bump commits with it, so a failed step leaves the previous version intact)."""
    latest = len(MIGRATIONS) if upto is None else upto
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise SchemaTooNew(
            f"{path} has schema version {current}, newer than this loa knows "
            f"({len(MIGRATIONS)}); upgrade loa or restore a backup of the database",
            path=str(path),
            version=current,
            supported=len(MIGRATIONS),
        )
    for version in range(current + 1, latest + 1):
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};"
        try:
            conn.executescript(script)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("%s: migrated the schema to version %d", path, version)
    return schema_version(conn)


class Database:
    """Owns the connection and the one worker thread that runs every query on it."""

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Create the directory, connect and migrate (all on the worker thread)."""
        if self._executor is not None:
            raise StoreError(f"{self.path} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loa-store")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(executor, self._open)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        self._executor = executor

    def _open(self) -> sqlite3.Connection:
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
        return conn

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.execute("PRAGMA optimize")
            conn.close()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the worker thread (reads, or single statements)."""
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise StoreError(f"the database {self.path} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, partial(fn, conn, *args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` inside one ``BEGIN IMMEDIATE`` transaction: all or nothing."""
        return await self.run(transaction, fn, *args)


def transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


_FORBIDDEN_IN_ID = frozenset(" \t\r\n/?#%\\")


def check_id(kind: str, value: object) -> str:
    """Ids appear in URLs and logs: 1–64 characters, no whitespace, slash, ? # % or backslash."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind} id must be a non-empty string, got {value!r}")
    if len(value) > 64:
        raise BadRequest(f"{kind} id {value[:64]!r}… is longer than 64 characters")
    bad = sorted(set(value) & _FORBIDDEN_IN_ID)
    if bad or not value.isprintable():
        raise BadRequest(
            f"{kind} id {value!r} may not contain whitespace, control characters "
            "or any of / ? # % \\"
        )
    return value
