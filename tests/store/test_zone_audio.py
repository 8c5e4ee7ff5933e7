"""A zone's packet settings in the store (frame_ms, redundancy, playout_delay_ms): the
migration that adds them to an existing database, their validation, and their inheritance
down the tree as the node resolves it. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from loa.config import Config, ZoneSpec
from loa.errors import BadRequest, ConfigError
from loa.relay.core.zones import AudioSettings, ZoneAudio, ZoneTree
from loa.store import Store, schema
from loa.store import postgres as pg_dialect
from loa.store import sqlite as sqlite_dialect
from tests.store.conftest import province

BEFORE = schema.MIGRATIONS.index(schema.V_ZONE_AUDIO)  # the version just before it


def _old_database(where: Path | str) -> None:
    """A database at the version before the packet settings, with a zone tree in it."""
    rows = [("p", None, "vi-vn-x-south"), ("c", "p", None)]
    insert = "INSERT INTO zones (id, name, parent, created_at, voice) VALUES ({})"
    if isinstance(where, Path):
        where.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite_dialect.connect(where)
        assert sqlite_dialect.migrate(conn, where, upto=BEFORE) == BEFORE
        for zone_id, parent, voice in rows:
            conn.execute(insert.format("?, ?, ?, 1.0, ?"), (zone_id, zone_id, parent, voice))
        conn.commit()
        conn.close()
        return
    with psycopg.connect(where, autocommit=True) as raw:
        assert pg_dialect.migrate(raw, "test", upto=BEFORE) == BEFORE  # type: ignore[arg-type]
        for zone_id, parent, voice in rows:
            raw.execute(insert.format("%s, %s, %s, 1.0, %s"), (zone_id, zone_id, parent, voice))


async def test_an_old_database_gets_the_settings_inherited(where: Path | str) -> None:
    _old_database(where)
    async with Store(where) as store:
        zones = {z.id: z for z in await store.zones.list()}
        assert {z: (zones[z].voice, zones[z].audio) for z in zones} == {
            "p": ("vi-vn-x-south", ZoneAudio()),
            "c": (None, ZoneAudio()),
        }
        changed = await store.zones.update("c", frame_ms=40, redundancy=True)
        assert changed.audio == ZoneAudio(40, True, None)
        assert changed.voice is None  # the rows kept what they had
    async with Store(where) as store:  # and it is there after a restart
        assert (await store.zones.get("c")).audio == ZoneAudio(40, True, None)


async def test_settings_are_set_kept_and_cleared_one_by_one(store: Store) -> None:
    await province(store)
    added = await store.zones.add("v1", "Thôn 1", "c1", frame_ms=60, playout_delay_ms=120)
    assert added.audio == ZoneAudio(60, None, 120)
    assert {k: added.as_json()[k] for k in ("frame_ms", "redundancy", "playout_delay_ms")} == {
        "frame_ms": 60,
        "redundancy": None,
        "playout_delay_ms": 120,
    }
    kept = await store.zones.update("v1", redundancy=False, name="Thôn Một")
    assert (kept.audio, kept.name) == (ZoneAudio(60, False, 120), "Thôn Một")
    cleared = await store.zones.update("v1", frame_ms=None)
    assert cleared.audio == ZoneAudio(None, False, 120)
    assert (await store.zones.update("v1", voice="vi")).audio == cleared.audio


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"frame_ms": 30},
            r"^frame_ms must be one of 20, 40, 60 or null \(the parent's\), got 30$",
        ),
        ({"frame_ms": True}, r"^frame_ms must be one of 20, 40, 60 .*got True$"),
        ({"redundancy": 1}, r"^redundancy must be true, false or null \(the parent's\), got 1$"),
        ({"playout_delay_ms": 39}, r"^playout_delay_ms must be an integer 40\.\.1000 .*got 39$"),
        ({"playout_delay_ms": 1001}, r"^playout_delay_ms must be an integer 40\.\.1000"),
        ({"playout_delay_ms": 300.5}, r"^playout_delay_ms must be an integer .*got 300\.5$"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    store: Store, change: dict[str, object], message: str
) -> None:
    await province(store)
    await store.zones.update("c0", playout_delay_ms=200)
    with pytest.raises(BadRequest, match=message) as info:
        await store.zones.update("c0", name="Xã Đổi", **change)  # type: ignore[arg-type]
    assert info.value.fields["field"] == next(iter(change))
    zone = await store.zones.get("c0")
    assert (zone.name, zone.audio) == ("Xã 0", ZoneAudio(None, None, 200))
    with pytest.raises(BadRequest, match=message):
        await store.zones.add("v9", "Thôn 9", "c0", **change)  # type: ignore[arg-type]
    assert "v9" not in {z.id for z in await store.zones.list()}


async def test_the_tree_inherits_from_the_nearest_zone_that_sets_each(store: Store) -> None:
    await province(store)  # p ⊃ c0 ⊃ v0, p ⊃ c1
    await store.zones.update("p", frame_ms=40)
    await store.zones.update("c0", redundancy=True, playout_delay_ms=150)
    await store.zones.update("v0", frame_ms=60)
    listed = await store.zones.list()
    tree = ZoneTree.build(((z.id, z.parent) for z in listed), AudioSettings(20, False, 300))
    for z in listed:
        tree.set_audio(z.id, z.audio)
    assert {z: tree.audio(z) for z in ("p", "c0", "v0", "c1")} == {
        "p": AudioSettings(40, False, 300),
        "c0": AudioSettings(40, True, 150),
        "v0": AudioSettings(60, True, 150),
        "c1": AudioSettings(40, False, 300),
    }
    tree.move("v0", "c1")  # moved, it inherits from its new parent
    assert tree.audio("v0") == AudioSettings(60, False, 300)
    assert tree.set_audio("p", ZoneAudio()) is True  # back to the defaults below
    assert tree.set_audio("p", ZoneAudio()) is False
    assert tree.audio("c1") == AudioSettings(20, False, 300)


async def test_the_config_seeds_the_settings(store: Store) -> None:
    config = Config(
        zones=(
            ZoneSpec("p", "P", frame_ms=60, playout_delay_ms=500),
            ZoneSpec("c", "C", parent="p", redundancy=True),
        )
    )
    assert await store.seed_from_config(config) is True
    assert [(z.id, z.audio) for z in await store.zones.list()] == [
        ("p", ZoneAudio(60, None, 500)),
        ("c", ZoneAudio(None, True, None)),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frame_ms": 10}, r"^zone p: frame_ms must be one of 20, 40, 60, got 10$"),
        ({"playout_delay_ms": 2000}, r"^zone p: playout_delay_ms must be 40\.\.1000, got 2000$"),
    ],
)
def test_a_config_zone_refuses_bad_settings(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ZoneSpec("p", "P", **fields)  # type: ignore[arg-type]
