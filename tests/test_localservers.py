"""The throwaway servers the tests and benches use: found robustly, on free ports, never the
machine's own 5432/6379, and stopped, killed and restarted on demand."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from loa.errors import MissingDependency
from loa.localservers import (
    LOWEST_PORT,
    RESERVED_PORTS,
    PostgresServer,
    RedisServer,
    ephemeral_range,
    free_port,
    postgres_bindir,
)


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


def test_free_ports_are_below_the_ephemeral_range_where_nobody_takes_them_unasked(
    tmp_path: Path,
) -> None:
    """A port the kernel handed out may be taken by any process's next client socket
    before our server binds it; below the ephemeral range nothing takes one unasked."""
    low, _ = ephemeral_range()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        ports = [free_port(kind=kind) for _ in range(20)]
        assert all(LOWEST_PORT <= p < low for p in ports), ports
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", ports[0]))  # it is free for that kind
    (tmp_path / "range").write_text("1024\t65535\n")  # all ephemeral: the kernel's choice
    assert ephemeral_range(str(tmp_path / "range")) == (1024, 65535)
    assert ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)


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
