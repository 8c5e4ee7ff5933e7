"""Fixtures that start the suite's own ``redis-server`` and PostgreSQL (free loopback ports,
temporary directories; see ``loa.localservers``) and stop them. Nothing here ever talks to a
service the machine runs on 6379 or 5432.

- ``postgres_server`` (session): one PostgreSQL cluster; ``postgres_url``: a fresh database
  in it for one test (dropped after), ``postgres_url_factory`` for more than one.
- ``store_where``: parametrized over both store dialects (a SQLite path, a PostgreSQL URL).
- ``redis_server`` (session): one shared redis-server, flushed before each test by
  ``redis_url``; ``own_redis``: a redis-server for one test alone, to kill and restart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from loa.localservers import RESERVED_PORTS, PostgresServer, RedisServer

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        assert server.port not in RESERVED_PORTS
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url_factory(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"loa_test_{next(_databases)}"
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(
                f"CREATE DATABASE {name} STRATEGY FILE_COPY"
            )  # 3x faster than WAL_LOG here
        made.append(name)
        return postgres_server.url(name)

    yield make
    if not postgres_server.running:  # a test stopped it and did not bring it back
        postgres_server.start()
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        for name in made:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_url_factory: Callable[[], str]) -> str:
    """A new, empty database for this test."""
    return postgres_url_factory()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's store lives, once per dialect: a SQLite file in the test's temporary
    directory, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "data" / "loa.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        assert server.port not in RESERVED_PORTS
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server, emptied for this test."""
    if not redis_server.running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone (to kill, stop and restart)."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
