"""The database itself: pragmas, migrations, refusal of newer files, restart, crash, threading."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from loa.errors import BadRequest
from loa.store import SchemaTooNew, Store, StoreError
from loa.store.db import check_id
from loa.store.schema import MIGRATIONS
from loa.store.sqlite import connect, migrate
from tests.store.conftest import FakeClock, province

ROOT = Path(__file__).resolve().parents[2]


async def test_open_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "loa.db"
    async with Store(path) as store:
        pragmas = await store.db.run(
            lambda c: [
                c.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        )
        assert pragmas == ["wal", 1, 1, 5000]  # synchronous 1 = NORMAL
        version = await store.db.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == len(MIGRATIONS)
    assert path.exists()


async def test_every_query_runs_on_one_worker_thread(store: Store) -> None:
    names = await asyncio.gather(
        *(store.db.run(lambda _c: threading.current_thread().name) for _ in range(20))
    )
    assert len(set(names)) == 1 and names[0].startswith("loa-store")
    assert names[0] != threading.current_thread().name


async def test_closed_store_refuses_calls_and_close_is_idempotent(where: Path | str) -> None:
    store = await Store.open(where)
    await store.close()
    await store.close()
    with pytest.raises(StoreError) as info:
        await store.zones.list()
    assert info.value.message == f"the database {store.label} is not open"
    assert store.label == (str(where) if isinstance(where, Path) else where)


async def test_opening_twice_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="is already open"):
        await store.start()


def _v1_database(path: Path) -> None:
    conn = connect(path)
    assert migrate(conn, path, upto=1) == 1
    conn.execute("INSERT INTO zones (id, name, created_at) VALUES ('p', 'Tỉnh P', 1.0)")
    conn.close()


async def test_old_database_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "loa.db"
    _v1_database(path)
    with pytest.raises(sqlite3.OperationalError, match="no such table: broadcast_log"):
        sqlite3.connect(path).execute("SELECT * FROM broadcast_log")
    async with Store(path) as store:
        assert [z.id for z in await store.zones.list()] == ["p"]
        assert await store.log.count() == 0  # a table of migration 2
        tables = await store.db.run(
            lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        )
        assert {"schedules", "audit", "media", "log_zones"} <= tables
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_database_from_a_newer_loa_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loa.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = Store(path)
    with pytest.raises(SchemaTooNew) as info:
        await store.start()
    assert info.value.message == (
        f"{path} has schema version {len(MIGRATIONS) + 1}, newer than this loa knows "
        f"({len(MIGRATIONS)}); upgrade loa or restore a backup of the database"
    )
    assert info.value.code == "schema_too_new"
    assert not store.db.is_open


async def test_failed_migration_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "loa.db"
    _v1_database(path)
    broken = (MIGRATIONS[0], "CREATE TABLE media (id TEXT); CREATE TABLE media (id TEXT);")
    monkeypatch.setattr("loa.store.schema.MIGRATIONS", broken)
    with pytest.raises(sqlite3.OperationalError, match="table media already exists"):
        await Store(path).start()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'media'").fetchone()[0] == 0
    )


async def test_restart_keeps_everything(where: Path | str, clock: FakeClock) -> None:
    async with Store(where, clock=clock) as store:
        await province(store)
        ep, token = await store.endpoints.add("e1", "Loa 1", "v0", lat=21.5, lon=105.8)
    async with Store(where, clock=clock) as store:
        assert [z.id for z in await store.zones.list()] == ["p", "c0", "c1", "v0"]
        assert await store.endpoints.get("e1") == ep
        assert token is not None and (await store.endpoints.by_token(token)) == ep


async def test_concurrent_writes_serialize(store: Store) -> None:
    await store.zones.add("p", "P")

    def bump(conn: sqlite3.Connection) -> int:
        # read-modify-write with a pause: only serial execution keeps every increment
        (n,) = conn.execute("SELECT count(*) FROM zones").fetchone()
        time.sleep(0.001)
        conn.execute(
            "INSERT INTO zones (id, name, parent, created_at) VALUES (?, 'x', 'p', 0)", (f"z{n}",)
        )
        return int(n)

    results = await asyncio.gather(*(store.db.write(bump) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    added = await asyncio.gather(*(store.zones.add(f"c{i}", f"Xã {i}", "p") for i in range(50)))
    assert len({z.id for z in added}) == 50
    assert len(await store.zones.list()) == 151


async def test_failed_write_rolls_back_the_whole_transaction(store: Store) -> None:
    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO zones (id, name, created_at) VALUES ('p', 'P', 0)")
        raise BadRequest("stop here")

    with pytest.raises(BadRequest, match="stop here"):
        await store.db.write(half)
    assert await store.zones.list() == []


WRITER = """
import asyncio, sys
from pathlib import Path
from loa.store import Store

async def main():
    store = await Store.open(Path(sys.argv[1]))
    await store.zones.add("p", "P")
    for i in range(100000):
        await store.zones.add(f"z{i}", f"Zone {i}", "p")
        print(i, flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "loa.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None
    last = -1
    async with asyncio.timeout(60):
        while last < 300:
            last = int(await proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    # lines printed before the kill but not read yet: on a busy machine there can be several
    for line in (await proc.stdout.read()).split():
        last = max(last, int(line))
    async with Store(path) as store:
        assert await store.integrity_check() == "ok"
        ids = {z.id for z in await store.zones.list()}
    committed = {f"z{i}" for i in range(last + 1)}  # printed only after its commit
    assert committed <= ids
    assert len(ids - committed - {"p"}) <= 1  # at most the one committed after the last print


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "zone id must be a non-empty string, got ''"),
        (7, "zone id must be a non-empty string, got 7"),
        (
            "a b",
            "zone id 'a b' may not contain whitespace, control characters or any of / ? # % \\",
        ),
        (
            "a/b",
            "zone id 'a/b' may not contain whitespace, control characters or any of / ? # % \\",
        ),
        ("x" * 65, f"zone id {'x' * 64!r}… is longer than 64 characters"),
    ],
)
def test_bad_ids_are_refused(value: object, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_id("zone", value)
    assert info.value.message == message


def test_ids_may_be_vietnamese() -> None:
    assert check_id("zone", "xã-tân-phú") == "xã-tân-phú"
