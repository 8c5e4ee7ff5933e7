"""Media metadata, the broadcast log (filters, CSV) and the audit trail."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.broadcast import LogEntry
from loa.store import Store, to_csv
from loa.store.schema import MIGRATIONS, V_MEDIA_OWNER, V_VOICES
from loa.store.sqlite import migrate
from tests.store.conftest import FakeClock

INFO = {
    "id": "0123456789abcdef",
    "name": "bản tin.mp3",
    "file": "0123456789abcdef.mp3",
    "size": 1000,
    "duration_s": 3.5,
    "rms_dbfs": -20.1,
    "peak_dbfs": -3.0,
}


async def test_media_rows(store: Store) -> None:
    row = await store.media.add(INFO, "op")
    assert row.as_json() == {
        **INFO,
        "created_by": "op",
        "created_at": 1_700_000_000.0,
        "zone": None,  # the top level
    }
    assert await store.media.list() == [row]
    owned = await store.media.add({**INFO, "id": "fedcba9876543210"}, "op", "c0")
    assert (await store.media.get(owned.id)).zone == "c0"
    await store.media.remove(owned.id)
    with pytest.raises(Conflict, match=r"^media '0123456789abcdef' already exists$"):
        await store.media.add(INFO, "op")
    with pytest.raises(BadRequest, match=r"^media metadata lacks duration_s, size$"):
        await store.media.add(
            {k: v for k, v in INFO.items() if k not in ("size", "duration_s")}, "op"
        )
    with pytest.raises(BadRequest, match=r"^media x: bad number in metadata"):
        await store.media.add({**INFO, "id": "x", "size": "big"}, "op")
    assert await store.media.remove(row.id) == row
    with pytest.raises(NotFound, match=r"^media '0123456789abcdef' not found$"):
        await store.media.get(row.id)


def entry(
    n: int, klass: str = "live", zones: tuple[str, ...] = ("c0",), **kw: Any
) -> dict[str, Any]:
    e = LogEntry(
        id=f"b{n}",
        what=f"Bản tin {n}",
        source="tone",
        priority=klass,
        origin_zone=None,
        target_zones=list(zones),
        target_endpoints=[],
        created_by="op",
        requested_at=1000.0 + n,
        **kw,
    )
    return e.as_json()


async def test_log_round_trips_the_entry_shape_and_updates(store: Store) -> None:
    first = entry(1, heard_s={"e1": 2.5, "e2": 0.0}, state="playing", started_at=1001.5)
    row = await store.log.put(first)
    assert row.as_json() == first
    done = {
        **first,
        "state": "done",
        "ended_at": 1010.0,
        "heard_s": {"e1": 8.5, "e2": 1.0},
        "endpoints_heard": 2,
    }
    await store.log.put(done)
    got = await store.log.get("b1")
    assert got is not None and got.as_json() == done
    assert await store.log.count() == 1
    assert await store.log.get("nope") is None


async def test_log_filters(store: Store) -> None:
    await store.log.put(entry(1, "live", ("c0",)))
    await store.log.put(entry(2, "emergency", ("p",)), zones=["c0", "c1"])  # reached c0 and c1
    await store.log.put(entry(3, "scheduled", ("c1",)))
    await store.log.put(entry(4, "live", ("v9",)))

    async def ids(**kw: Any) -> list[str]:
        return [r.id for r in await store.log.query(**kw)]

    assert await ids() == ["b4", "b3", "b2", "b1"]
    assert await ids(zones={"c0", "v0"}) == ["b2", "b1"]
    assert await ids(zones={"c1"}) == ["b3", "b2"]
    assert await ids(zones=set()) == []
    assert await ids(klass="live") == ["b4", "b1"]
    assert await ids(since=1002.0, until=1004.0) == ["b3", "b2"]
    assert await ids(limit=2, offset=1) == ["b3", "b2"]
    assert await store.log.count(zones={"c1"}, klass="emergency") == 1
    bad = [
        ({"limit": 0}, "limit must be 1..1000, got 0"),
        ({"offset": -1}, "offset must be an integer >= 0, got -1"),
        (
            {"klass": "loud"},
            "class must be one of ('background', 'scheduled', 'priority', 'live', "
            "'emergency'), got 'loud'",
        ),
        ({"since": 5.0, "until": 4.0}, "since (5.0) is after until (4.0)"),
        ({"zones": "c0"}, "zones must be a set of zone ids, not one string"),
    ]
    for kw, message in bad:
        with pytest.raises(BadRequest) as info:
            await store.log.query(**kw)
        assert info.value.message == message


async def test_log_refuses_malformed_entries(store: Store) -> None:
    broken = entry(1)
    del broken["requested_at"]
    with pytest.raises(BadRequest, match=r"^log entry lacks the field 'requested_at'$"):
        await store.log.put(broken)
    with pytest.raises(BadRequest, match=r"^log entry b1: class must be one of"):
        await store.log.put({**entry(1), "class": "loud"})


async def test_csv_has_bom_vietnamese_and_local_times(store: Store) -> None:
    await store.log.put(entry(1, heard_s={"e1": 2.25, "e2": 1.0}, started_at=1001.0))
    await store.log.put({**entry(2), "what": '=HYPERLINK("x")'})
    data = to_csv(await store.log.query(), tz=timezone(timedelta(hours=7)))
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[1]["what"] == "Bản tin 1"
    assert rows[1]["requested_at"] == "1970-01-01T07:16:41+07:00"
    assert rows[1]["ended_at"] == "" and rows[1]["heard_s_total"] == "3.25"
    assert rows[1]["target_zones"] == "c0" and rows[1]["class"] == "live"
    assert rows[0]["what"] == '\'=HYPERLINK("x")'  # not a formula in Excel


async def test_audit_records_and_filters(store: Store, clock: FakeClock) -> None:
    await store.audit.record("admin", "user.add", "op", {"role": "operator"}, "10.0.0.1")
    clock.advance(10)
    await store.audit.record("op", "broadcast.start", "b1", {"zones": ["c0"]}, None)
    clock.advance(10)
    await store.audit.record("admin", "user.update", "op")
    rows = await store.audit.query()
    assert [r.action for r in rows] == ["user.update", "broadcast.start", "user.add"]
    assert rows[2].as_json() == {
        "id": 1,
        "ts": 1_700_000_000.0,
        "user": "admin",
        "action": "user.add",
        "target": "op",
        "detail": {"role": "operator"},
        "ip": "10.0.0.1",
    }
    assert [r.id for r in await store.audit.query(action="user.")] == [3, 1]
    assert [r.id for r in await store.audit.query(user="op")] == [2]
    assert [
        r.id for r in await store.audit.query(since=1_700_000_005.0, until=1_700_000_015.0)
    ] == [2]
    with pytest.raises(BadRequest, match=r"^limit must be 1\.\.1000, got 5000$"):
        await store.audit.query(limit=5000)


async def test_media_uploaded_before_owners_become_the_top_levels(tmp_path: Path) -> None:
    """A database from before V_MEDIA_OWNER: its files belong to the top level (zone NULL),
    usable by every operator, deletable by admins only."""
    path = tmp_path / "loa.db"
    conn = sqlite3.connect(path)
    migrate(conn, path, upto=MIGRATIONS.index(V_MEDIA_OWNER))
    names = ", ".join(INFO)
    conn.execute(
        f"INSERT INTO media ({names}, created_by, created_at) VALUES"
        f" ({', '.join('?' * len(INFO))}, 'op', 1)",
        list(INFO.values()),
    )
    conn.commit()
    conn.close()
    async with Store(path) as store:
        row = await store.media.get(str(INFO["id"]))
    assert (row.zone, row.created_by) == (None, "op")


async def test_bulletins_and_zones_from_before_voices_are_kept(tmp_path: Path) -> None:
    """A database from before V_VOICES: its zones speak the North's (no voice of their own),
    its bulletins keep every field through the table's rebuild, and may now become failed."""
    path = tmp_path / "loa.db"
    conn = sqlite3.connect(path)
    migrate(conn, path, upto=MIGRATIONS.index(V_VOICES))
    conn.execute(
        "INSERT INTO zones (id, name, parent, timezone, languages, created_at)"
        " VALUES ('c0', 'Xã 0', NULL, 'Asia/Ho_Chi_Minh', '[\"vi\", \"hmn\"]', 1)"
    )
    conn.execute(
        "INSERT INTO bulletins (id, level, zones, title, variants, issued_at, expires_at,"
        " repeat_every_s, state, source, cap_sender, cap_identifier, broadcasts, created_by,"
        " created_at, updated_at, scheduled_at) VALUES ('b-1', 'normal', '[\"c0\"]', 'Bão',"
        ' \'[{"language": "hmn", "text": "Nyob zoo"}]\', 10, 99, NULL, \'scheduled\','
        " 'cap', 's', 'i', '[\"b-1.1\"]', 'op', 11, 12, 50)"
    )
    conn.commit()
    conn.close()
    async with Store(path, clock=FakeClock(100.0)) as store:
        zone = await store.zones.get("c0")
        assert (zone.voice, await store.zones.voice("c0")) == (None, "vi")
        row = await store.bulletins.get("b-1")
        assert (row.zones, row.variants, row.scheduled_at, row.cap_identifier) == (
            ("c0",),
            ({"language": "hmn", "text": "Nyob zoo"},),
            50.0,
            "i",
        )
        failed = await store.bulletins.transition("b-1", "failed", expect={"scheduled"})
        assert (failed.state, failed.updated_at) == ("failed", 100.0)
        assert [r.id for r in await store.bulletins.list(("failed",))] == ["b-1"]
