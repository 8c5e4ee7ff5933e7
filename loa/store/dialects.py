"""Which dialect a store path or URL means: a path or ``sqlite:///…`` is SQLite,
``postgresql://…`` is PostgreSQL (psycopg is imported only then)."""

from __future__ import annotations

from pathlib import Path

from loa.errors import ConfigError
from loa.store.db import Dialect, redact, sqlite_path
from loa.store.sqlite import SqliteDialect


def open_dialect(where: Path | str) -> Dialect:
    """The dialect for a path (SQLite) or a URL: ``sqlite:///…``, ``postgresql://…``."""
    if isinstance(where, Path):
        return SqliteDialect(where)
    if not isinstance(where, str) or not where:
        raise ConfigError(f"store url must be a non-empty string, got {where!r}")
    scheme = where.partition(":")[0].lower()
    if scheme == "sqlite" and where.startswith("sqlite://"):
        return SqliteDialect(sqlite_path(where))
    if scheme in ("postgresql", "postgres") and where[len(scheme) :].startswith("://"):
        from loa.store.postgres import PostgresDialect  # psycopg only for a postgresql:// URL

        return PostgresDialect(where)
    raise ConfigError(
        f"store url must start with sqlite:/// or postgresql://, got {redact(where)!r}"
    )
