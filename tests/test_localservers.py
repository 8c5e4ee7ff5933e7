"""The throwaway servers the tests and benches use: found robustly, on free ports, never the
machine's own 5432/6379, and stopped, killed and restarted on demand."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from loa.errors import MissingDependency
from loa.localservers import RESERVED_PORTS, PostgresServer, RedisServer, free_port, postgres_bindir


def _bindir(root: Path, version: str, binaries: tuple[str, ...]) -> Path:
    bindir = root / version / "bin"
    bindir.mkdir(parents=True)
    for name in binaries:
        (bindir / name).write_text("#!/bin/sh\n")
    return bindir


def test_the_newest_complete_postgresql_is_chosen(tmp_path: Path) -> None:
    full = ("initdb", "postgres", "pg_isready")
    old = _bindir(tmp_path, "13", full)
    new = _bindir(tmp_path, "16", full)
    broken = _bindir(tmp_path, "17", ("initdb",))  # no server binary: not a candidate
    assert postgres_bindir([old, broken, new]) == new
    assert postgres_bindir([old]) == old


def test_no_postgresql_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingDependency, match=r"apt-get install -y postgresql"):
        postgres_bindir([_bindir(tmp_path, "15", ("psql",))])


def test_free_ports_are_never_the_machines_services() -> None:
    ports = {free_port() for _ in range(50)}
    assert not ports & RESERVED_PORTS


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
def test_redis_stops_kills_and_restarts_on_its_port() -> None:
    with RedisServer() as server:
        server.start()
        port = server.port
        assert _listening(port) and server.url == f"redis://127.0.0.1:{port}/0"
        server.kill()
        assert not server.running and not _listening(port)
        server.start()
        assert server.port == port and _listening(port)
        server.stop()
        assert not _listening(port)
    assert not server.root.exists()


@pytest.mark.e2e
def test_postgres_listens_on_tcp_and_its_own_socket(postgres_server: PostgresServer) -> None:
    assert _listening(postgres_server.port)
    assert (postgres_server.root / f".s.PGSQL.{postgres_server.port}").is_socket()
    assert postgres_server.url("x") == (
        f"postgresql://loa@/x?host={postgres_server.root}&port={postgres_server.port}"
    )
    assert (
        postgres_server.url("x", tcp=True) == f"postgresql://loa@127.0.0.1:{postgres_server.port}/x"
    )
