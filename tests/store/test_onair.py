"""The on-air table and the log's interruption fields, on SQLite and PostgreSQL."""

from __future__ import annotations

from loa.relay.broadcast import LogEntry
from loa.store import Store
from tests.store.conftest import FakeClock

RECORD = {
    "spec": {"class": "emergency", "targets": {"zones": ["p"], "endpoints": []}},
    "source": {"type": "tts", "text": "Bão số 9 đổ bộ"},
    "created_by": "op",
}


async def test_on_air_rows_live_from_start_to_end(store: Store, clock: FakeClock) -> None:
    assert await store.onair.all() == []
    await store.onair.put("bc-1", RECORD, started_at=clock.now)
    clock.advance(5)
    await store.onair.put("bc-2", {**RECORD, "created_by": "op2"}, started_at=clock.now)
    rows = await store.onair.all()
    assert [(r.id, r.record, r.started_at, r.alive_at) for r in rows] == [
        ("bc-1", RECORD, 1_700_000_000.0, 1_700_000_000.0),
        ("bc-2", {**RECORD, "created_by": "op2"}, 1_700_000_005.0, 1_700_000_005.0),
    ]
    clock.advance(5)
    await store.onair.alive()
    assert {r.alive_at for r in await store.onair.all()} == {1_700_000_010.0}
    # re-recording (a restored broadcast) keeps its first start
    await store.onair.put("bc-1", {**RECORD, "restored": 1}, started_at=clock.now)
    first = (await store.onair.all())[0]
    assert first.started_at == 1_700_000_000.0 and first.record["restored"] == 1
    assert await store.onair.remove("bc-1") is True
    assert await store.onair.remove("bc-1") is False
    assert [r.id for r in await store.onair.all()] == ["bc-2"]


async def test_log_keeps_the_interruption(store: Store) -> None:
    entry = LogEntry("bc-1", "TTS: bão", "tts", "emergency", "p", ["p"], [], "op", 100.0, 101.0)
    entry.state = "playing"
    row = await store.log.put(entry.as_json())
    assert (row.interrupted_at, row.resumed_at) == (None, None)
    entry.interrupted_at, entry.resumed_at = 150.0, 162.5
    entry.state, entry.reason, entry.ended_at = "finished", "finished", 200.0
    await store.log.put(entry.as_json())
    got = await store.log.get("bc-1")
    assert got is not None
    assert (got.interrupted_at, got.resumed_at, got.started_at) == (150.0, 162.5, 101.0)
    assert got.as_json() == entry.as_json()
