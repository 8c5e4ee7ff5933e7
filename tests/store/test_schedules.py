"""The schedules repository: rows round-trip as ``Schedule``, errors name what is wrong, the
NULL time zone of an old row reads as its zone's, last_run never goes back, a run is
claimed once, and a deposed leader's writes (an older fencing token) are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loa.errors import BadRequest, Conflict, NotFound, StaleLeader
from loa.schedule import Schedule
from loa.store import Store
from loa.store.schedules import KEEP_RUNS_S
from tests.store.conftest import FakeClock, province

DAWN = 1_740_952_800.0  # 2025-03-03 05:00 in Hà Nội (UTC+7)


def schedule(schedule_id: str = "news", **extra: Any) -> Schedule:
    data = {
        "id": schedule_id,
        "name": "Bản tin sáng",
        "zone": "c0",
        "dtstart": DAWN,
        "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17",
        "timezone": "Asia/Ho_Chi_Minh",
        "grace_s": 300,
        "items": [
            {"type": "tts", "text": "Xin chào bà con", "voice": "vi", "rate_wpm": 150},
            {"type": "url", "url": "http://radio.example/vov1", "duration_s": 1800.0},
            {"type": "silence", "duration_s": 2.0},
        ],
        "targets": {"zones": ["c0"], "endpoints": []},
        "class": "scheduled",
        **extra,
    }
    return Schedule.from_json(data)


async def test_crud_round_trips_every_field(store: Store, clock: FakeClock) -> None:
    await province(store)
    sch = schedule()
    row = await store.schedules.add(sch, "op")
    assert row.schedule == sch
    assert row.schedule.to_json() == sch.to_json()
    assert (row.enabled, row.created_by, row.created_at) == (True, "op", clock.now)
    assert row.as_json()["items"][1] == {
        "type": "url",
        "url": "http://radio.example/vov1",
        "duration_s": 1800.0,
    }
    assert (await store.schedules.get("news")).schedule == sch

    clock.advance(60)
    moved = schedule(name="Bản tin chiều", zone="v0", grace_s=0)
    row = await store.schedules.replace(moved, enabled=False)
    assert (row.schedule.name, row.schedule.origin_zone, row.schedule.grace_s) == (
        "Bản tin chiều",
        "v0",
        0.0,
    )
    assert (row.enabled, row.created_by, row.created_at) == (False, "op", clock.now - 60)

    await store.schedules.add(schedule("evening"), "admin")
    assert [r.id for r in await store.schedules.list()] == ["news", "evening"]
    gone = await store.schedules.remove("news")
    assert gone.schedule.name == "Bản tin chiều"
    assert [r.id for r in await store.schedules.list()] == ["evening"]


async def test_errors_name_the_schedule_or_zone(store: Store) -> None:
    await province(store)
    await store.schedules.add(schedule(), "op")
    with pytest.raises(Conflict, match=r"^schedule 'news' already exists$"):
        await store.schedules.add(schedule(), "op")
    with pytest.raises(NotFound, match=r"^schedule 'nope' not found$"):
        await store.schedules.get("nope")
    with pytest.raises(NotFound, match=r"^schedule 'nope' not found$"):
        await store.schedules.replace(schedule("nope"), enabled=True)
    with pytest.raises(NotFound, match=r"^schedule 'nope' not found$"):
        await store.schedules.remove("nope")
    with pytest.raises(NotFound, match=r"^zone 'atlantis' does not exist$"):
        await store.schedules.add(schedule("lost", zone="atlantis"), "op")
    with pytest.raises(NotFound, match=r"^zone 'atlantis' does not exist$"):
        await store.schedules.replace(schedule(zone="atlantis"), enabled=True)
    # a zone that still has schedules cannot be deleted under them
    with pytest.raises(store.db.dialect.integrity_errors):
        await store.db.write(lambda c: c.execute("DELETE FROM zones WHERE id = 'c0'"))


async def test_a_null_timezone_reads_as_the_zones(store: Store) -> None:
    await store.zones.add("far", "Đảo xa", timezone="Asia/Bangkok")
    await store.zones.add("home", "Xã nhà")
    await store.schedules.add(schedule("a", zone="far"), "op")
    await store.schedules.add(schedule("b", zone=None), "admin")
    await store.schedules.add(schedule("c", zone="home"), "op")
    await store.db.write(lambda c: c.execute("UPDATE schedules SET timezone = NULL"))
    rows = {r.id: r.schedule.recurrence.timezone for r in await store.schedules.list()}
    assert rows == {"a": "Asia/Bangkok", "b": "Asia/Ho_Chi_Minh", "c": "Asia/Ho_Chi_Minh"}


async def test_an_unreadable_row_is_skipped_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await province(store)
    await store.schedules.add(schedule("good"), "op")
    await store.schedules.add(schedule("bad"), "op")
    await store.db.write(
        lambda c: c.execute("UPDATE schedules SET timezone = 'Mars/Olympus' WHERE id = 'bad'")
    )
    assert [r.id for r in await store.schedules.list()] == ["good"]
    assert "[sch=bad] unreadable schedule row skipped: unknown timezone 'Mars/Olympus'" in (
        caplog.text
    )
    with pytest.raises(BadRequest, match=r"^unknown timezone 'Mars/Olympus'"):
        await store.schedules.get("bad")


async def test_last_run_starts_empty_and_never_goes_back(store: Store) -> None:
    assert await store.schedules.last_run() is None
    await store.schedules.set_last_run(DAWN)
    assert await store.schedules.last_run() == DAWN
    await store.schedules.set_last_run(DAWN + 30)
    await store.schedules.set_last_run(DAWN - 3600)  # the wall clock went back
    assert await store.schedules.last_run() == DAWN + 30
    with pytest.raises(BadRequest, match=r"^last_run must be a Unix time, got nan$"):
        await store.schedules.set_last_run(float("nan"))


async def test_a_run_is_claimed_once_and_a_never_started_claim_is_taken_over(
    store: Store,
) -> None:
    claims = store.schedules
    first = await claims.claim_run("news", DAWN, "sch-news-a", token=None)
    assert first[0] and first[1].broadcast == "sch-news-a" and first[1].token is None
    again = await claims.claim_run("news", DAWN, "sch-news-b")
    assert again == (False, first[1])  # the run found, unchanged
    assert (await claims.run("news", DAWN)) == first[1]
    # another occurrence, or another schedule, is another run
    assert (await claims.claim_run("news", DAWN + 60, "sch-news-c"))[0]
    assert (await claims.claim_run("weather", DAWN, "sch-weather-a"))[0]
    # taking over a claim that never started: only the claim named as ``prior``
    assert (await claims.claim_run("news", DAWN, "sch-news-d", prior="sch-news-x"))[0] is False
    taken, run = await claims.claim_run("news", DAWN, "sch-news-d", prior="sch-news-a")
    assert taken and (await claims.run("news", DAWN)) == run and run.broadcast == "sch-news-d"


async def test_a_deposed_leaders_claim_and_last_run_are_refused(store: Store) -> None:
    """A leader with token 3 has written: token 2's late writes change nothing, token 3's
    and newer pass, and a write without a token (a single node) is not fenced."""
    claims = store.schedules
    await claims.set_last_run(DAWN, token=3)
    with pytest.raises(StaleLeader, match="fencing token 2 is older than 3") as refused:
        await claims.claim_run("news", DAWN + 60, "sch-news-late", token=2, node="a")
    assert refused.value.fields == {"token": 2, "fence": 3}
    assert await claims.run("news", DAWN + 60) is None  # nothing written
    with pytest.raises(StaleLeader):
        await claims.set_last_run(DAWN + 120, token=2)
    assert await claims.last_run() == DAWN
    claimed, run = await claims.claim_run("news", DAWN + 60, "sch-news-new", token=4, node="b")
    assert claimed and (run.token, run.node) == (4, "b")
    with pytest.raises(StaleLeader, match="older than 4"):  # the fence rose with the claim
        await claims.claim_run("news", DAWN + 120, "sch-news-x", token=3)
    await claims.set_last_run(DAWN + 60, token=4)
    await claims.set_last_run(DAWN + 90)  # unfenced
    assert await claims.last_run() == DAWN + 90


async def test_claims_from_two_nodes_at_once_give_the_run_to_one(where: Path | str) -> None:
    """Two stores on one database (two nodes) claim the same run together: one wins."""
    a, b = await Store.open(where), await Store.open(where)
    try:
        results = await asyncio.gather(
            *(s.schedules.claim_run("news", DAWN, f"sch-news-{n}", token=5, node=n)
              for s, n in ((a, "a"), (b, "b"), (a, "a2"), (b, "b2")))
        )  # fmt: skip
    finally:
        await a.close()
        await b.close()
    winners = [run for claimed, run in results if claimed]
    assert len(winners) == 1, results
    assert all(run == winners[0] for _, run in results)


async def test_runs_older_than_any_grace_window_are_pruned(store: Store) -> None:
    await store.schedules.claim_run("news", DAWN, "sch-news-old")
    await store.schedules.set_last_run(DAWN + KEEP_RUNS_S)
    assert await store.schedules.run("news", DAWN) is not None  # just inside
    await store.schedules.set_last_run(DAWN + KEEP_RUNS_S + 1)
    assert await store.schedules.run("news", DAWN) is None
