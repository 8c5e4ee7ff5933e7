"""The database behind a ``Store``: one connection, one worker thread that runs every query on
it, versioned migrations, and all-or-nothing write transactions, on either of two dialects.

- ``sqlite:///<path>`` (or a plain path): one file, the single-node default
  (``loa.store.sqlite``).
- ``postgresql://…`` (a libpq URL): one database shared by the nodes of a cluster
  (``loa.store.postgres``).

Why one thread: sqlite3 connections must not be shared across threads, and psycopg's
blocking connection is used the same way, so both dialects run the very same repository
functions (``fn(conn, *args)``) with no locks of our own. The event loop never blocks on the
database; it awaits the worker.

Repository SQL is written once, in the subset both engines run: ``?`` placeholders (the
PostgreSQL dialect rewrites them), ``INSERT … ON CONFLICT``, ``RETURNING``, ``greatest()``
(registered on SQLite), booleans stored as integers 0/1 (tested with ``<> 0``), no
``IS ?`` with a NULL parameter, no ``json_each``, the column ``"user"`` quoted.

A write function passed to ``Database.write`` may run more than once on PostgreSQL (a
serialization failure against another node's transaction is retried), so it must only
touch the connection it is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from loa.errors import BadRequest, ConfigError, LoaError
from loa.store import schema

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], float]
BUSY_TIMEOUT_MS = 5000
Row = Any  # sqlite3.Row or loa.store.postgres.Row: both index by position and by column name


class Cursor(Protocol):
    """What repositories use of a cursor (sqlite3's and psycopg's both have it)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What repositories use of a connection: ``sqlite3.Connection`` as it is, or
    ``loa.store.postgres.PgConn`` (which rewrites ``?`` placeholders for psycopg)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class StoreError(LoaError, RuntimeError):
    """The database cannot be used: closed, unreachable, unreadable, or from a newer loa."""

    code = "store_error"


class SchemaTooNew(StoreError):
    code = "schema_too_new"


def hash_token(token: str) -> str:
    """SHA-256 hex of a random token (device, API, session); the relay node knows device
    tokens only by this hash. Tokens are long and random, so no salt or stretching."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def too_new(label: str, version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{label} has schema version {version}, newer than this loa knows "
        f"({len(schema.MIGRATIONS)}); upgrade loa or restore a backup of the database",
        path=label,
        version=version,
        supported=len(schema.MIGRATIONS),
    )


class Dialect(Protocol):
    """One engine's way to connect, migrate, run and retry; owns the connection. Every method
    but ``label`` and ``name`` runs on the database's worker thread."""

    name: str  # "sqlite" or "postgresql"
    label: str  # for messages: the file, or the URL without its password
    integrity_errors: tuple[type[Exception], ...]  # the driver's constraint violations

    def open(self) -> None: ...

    def close(self) -> None: ...

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T: ...

    def transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T: ...

    def integrity_check(self) -> str: ...


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(url: str) -> Path:
    """``sqlite:///data/loa.db`` → ``data/loa.db`` (relative), ``sqlite:////var/lib/loa.db`` →
    ``/var/lib/loa.db`` (absolute): the convention of SQLAlchemy and dj-database-url."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2 or "?" in rest or "#" in rest:
        raise ConfigError(
            f"store url {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return Path(rest[1:])


class Database:
    """Owns the dialect (and so the connection) and the one worker thread that runs every
    query on it."""

    def __init__(self, dialect: Dialect, clock: Clock = time.time) -> None:
        self.dialect = dialect
        self.path: Path | None = getattr(self.dialect, "path", None)  # SQLite's file
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None

    @property
    def label(self) -> str:
        return self.dialect.label

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Connect and migrate (on the worker thread)."""
        if self._executor is not None:
            raise StoreError(f"{self.label} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loa-store")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self.dialect.open)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        self._executor = executor

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self.dialect.close)
        finally:
            executor.shutdown(wait=True)

    def _submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        executor = self._executor
        if executor is None:
            raise StoreError(f"the database {self.label} is not open")
        return asyncio.get_running_loop().run_in_executor(executor, call)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the worker thread, outside a transaction (reads, or
        single statements)."""
        return await self._submit(partial(self.dialect.call, fn, args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` inside one transaction: all or nothing, and serial with
        every other writer (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SERIALIZABLE``, retried)."""
        return await self._submit(partial(self.dialect.transaction, fn, args))

    async def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: 'ok' or its list of problems."""
        return await self._submit(self.dialect.integrity_check)


def one_of(column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """``column IN (?, …)`` and its arguments (sorted); for no values, a condition that is
    false (SQLite accepts ``IN ()``, PostgreSQL does not)."""
    args = sorted(values)
    if not args:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(args))})", args


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
