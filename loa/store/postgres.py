"""The PostgreSQL dialect (psycopg 3): one database shared by every node of a cluster.

The same repository functions as on SQLite run here through ``PgConn``, which rewrites the
``?`` placeholders to psycopg's ``%s`` and returns rows that index by position and by name,
like ``sqlite3.Row``. Python booleans are sent as integers 0/1, as SQLite stores them.

- **Schema**: the same migrations (``loa.store.schema``), written in SQLite's dialect and
  translated by ``translate_ddl``: ``REAL`` → ``DOUBLE PRECISION`` (PostgreSQL's ``REAL`` is
  4 bytes and would round a Unix time to minutes), ``INTEGER`` → ``BIGINT``,
  ``INTEGER PRIMARY KEY`` → an identity column, ``TEXT`` → ``TEXT COLLATE "C"`` (byte order,
  as SQLite sorts, whatever the database's locale), ``WITHOUT ROWID`` dropped, the column
  ``user`` quoted. Anything it cannot translate is refused by name. The version lives in
  table ``loa_schema``; migrations run under a session advisory lock, so nodes starting
  together migrate once, one after the other.
- **Transactions**: every write runs ``SERIALIZABLE``: two nodes' transactions behave as if
  one ran after the other, as SQLite's single writer guarantees. A serialization failure or
  deadlock is retried (jittered backoff, ``MAX_ATTEMPTS``); a repository's "check, then
  insert" races end as its own ``Conflict``, not a driver error.
- **Connection loss**: a call that finds the connection broken reconnects first; one that
  loses it midway raises ``StoreError`` (503) and the next call reconnects. A write whose
  COMMIT was cut off is not retried: whether it committed is unknown.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache, partial
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus

from loa.store import schema
from loa.store.db import StoreError, redact, too_new

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 20
CONNECT_TIMEOUT_S = 10
# pg_advisory_lock key for migrations: the first 8 bytes of SHA-256("loa.store.schema")
LOCK_KEY = int.from_bytes(hashlib.sha256(b"loa.store.schema").digest()[:8], "big", signed=True)
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS loa_schema"
    " (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
)


class Row:
    """A result row: ``row[0]``, ``row["name"]``, ``row.keys()``, ``dict(row)``."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=False))!r})"


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        names.setdefault(column.name, i)  # like sqlite3.Row: the first of duplicate names
    return partial(Row, names)


class _BoolAsInt(Dumper):
    """True/False as the integers 1/0 (SQLite's storage of booleans; our columns are BIGINT)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


@lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """``?`` → ``%s`` and ``%`` → ``%%``, outside quoted literals and identifiers."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            out.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgConn:
    """A psycopg connection with sqlite3's calling convention (``?`` placeholders)."""

    def __init__(self, raw: psycopg.Connection[Row]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> Any:
        if parameters is None:
            return self.raw.execute(sql)
        return self.raw.execute(to_pyformat(sql), parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any:
        cur = self.raw.cursor()
        cur.executemany(to_pyformat(sql), seq_of_parameters)
        return cur


_TOKENS = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*)""")
_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID\b"), ")"),
    (re.compile(r"\buser\b"), '"user"'),  # a reserved word in PostgreSQL, a column here
)
_UNPORTABLE = re.compile(
    r"\b(AUTOINCREMENT|PRAGMA|STRICT|INSERT OR|REPLACE INTO|VIRTUAL TABLE|json_each|"
    r"user_version|ATTACH)\b",
    re.IGNORECASE,
)


def translate_ddl(script: str) -> str:
    """A migration written for SQLite, as PostgreSQL DDL (see the module docstring); a
    construct with no translation raises ``ValueError`` naming it."""
    out: list[str] = []
    for i, part in enumerate(_TOKENS.split(script)):
        if i % 2:  # a literal, a quoted identifier or a comment
            if not part.startswith("--"):
                out.append(part)
            continue
        bad = _UNPORTABLE.search(part)
        if bad:
            raise ValueError(f"migration uses {bad.group(0)!r}, which has no PostgreSQL form")
        for pattern, replacement in _TYPES:
            part = pattern.sub(replacement, part)
        out.append(part)
    return "".join(out)


def schema_version(raw: psycopg.Connection[Row]) -> int:
    row = raw.execute("SELECT version FROM loa_schema WHERE id = 1").fetchone()
    return 0 if row is None else int(row[0])


def _idle(raw: psycopg.Connection[Row]) -> bool:
    return raw.info.transaction_status == TransactionStatus.IDLE


def _rollback(raw: psycopg.Connection[Row]) -> None:
    if not raw.broken and not _idle(raw):
        raw.execute("ROLLBACK")


def migrate(raw: psycopg.Connection[Row], label: str, upto: int | None = None) -> int:
    """Apply the migrations after ``loa_schema.version``, each in its own transaction with
    its version bump, holding the advisory lock so that one node migrates at a time."""
    raw.execute("SELECT pg_advisory_lock(%s::bigint)", (LOCK_KEY,))
    try:
        raw.execute(_VERSION_TABLE)
        migrations = schema.MIGRATIONS
        latest = len(migrations) if upto is None else upto
        current = schema_version(raw)
        if current > len(migrations):
            raise too_new(label, current)
        for version in range(current + 1, latest + 1):
            ddl = translate_ddl(migrations[version - 1])
            raw.execute("BEGIN")
            try:
                raw.execute(ddl)
                raw.execute(
                    "INSERT INTO loa_schema (id, version) VALUES (1, %s)"
                    " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (version,),
                )
                raw.execute("COMMIT")
            except BaseException:
                _rollback(raw)
                raise
            log.info("%s: migrated the schema to version %d", label, version)
        return schema_version(raw)
    finally:
        if not raw.broken:
            raw.execute("SELECT pg_advisory_unlock(%s::bigint)", (LOCK_KEY,))


class PostgresDialect:
    """One connection to a PostgreSQL database, reconnected when lost."""

    name = "postgresql"
    integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = redact(url)
        self._conn: PgConn | None = None
        self._opened = False

    def _connect(self) -> PgConn:
        try:
            raw = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=row_factory,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="loa",
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the database {self.label}: {exc}") from None
        raw.adapters.register_dumper(bool, _BoolAsInt)
        return PgConn(raw)

    def open(self) -> None:
        conn = self._connect()
        try:
            migrate(conn.raw, self.label)
        except BaseException:
            conn.raw.close()
            raise
        self._conn = conn
        self._opened = True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._opened = False
        if conn is not None:
            conn.raw.close()

    def _connection(self) -> PgConn:
        if not self._opened:
            raise StoreError(f"the database {self.label} is not open")
        conn = self._conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            if conn is not None:
                conn.raw.close()
            self._conn = None
            self._conn = conn = self._connect()
            log.info("%s: reconnected to the database", self.label)
        return conn

    def _lost(self, conn: PgConn, exc: BaseException) -> StoreError:
        log.warning("%s: lost the connection to the database: %s", self.label, exc)
        return StoreError(f"lost the connection to the database {self.label}: {exc}")

    def call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        try:
            return fn(conn, *args)
        except psycopg.OperationalError as exc:
            if conn.raw.broken:
                raise self._lost(conn, exc) from exc
            raise

    def transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            conn = self._connection()
            try:
                conn.raw.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                result = fn(conn, *args)
                conn.raw.execute("COMMIT")
                return result
            except _RETRYABLE as exc:
                _rollback(conn.raw)
                if attempt == MAX_ATTEMPTS:
                    raise StoreError(
                        f"{self.label}: a write kept conflicting with concurrent writes "
                        f"({MAX_ATTEMPTS} attempts): {exc}"
                    ) from exc
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            except psycopg.OperationalError as exc:
                if conn.raw.broken:
                    raise self._lost(conn, exc) from exc
                _rollback(conn.raw)
                raise
            except BaseException:
                _rollback(conn.raw)
                raise
        raise AssertionError("unreachable")  # the loop returns or raises

    def integrity_check(self) -> str:
        raise StoreError(
            f"{self.label}: integrity_check is SQLite's; check a PostgreSQL database with "
            "pg_amcheck"
        )
