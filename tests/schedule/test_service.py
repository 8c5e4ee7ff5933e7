"""ScheduleService on a real node and store, on the real clock: a rule that fires in a second
or two starts its broadcast, which is logged; a restart inside the grace window catches up; a
schedule that cannot start is audited and skipped while the others play; and in a cluster a
run happens exactly once across leaders (claimed in the store, fenced by the token), on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loa.errors import StaleLeader
from loa.inventory import load_inventory
from loa.relay.broadcast import Broadcast, LogEntry
from loa.relay.node import Node
from loa.schedule import Schedule
from loa.schedule.service import CREATED_BY, ScheduleService
from loa.store import Store
from tests.conftest import tree_config
from tests.relay.fleet import wait_for


def schedule(schedule_id: str, at: float, **extra: Any) -> Schedule:
    return Schedule.from_json(
        {
            "id": schedule_id,
            "name": f"Chương trình {schedule_id}",
            "zone": "c0",
            "dtstart": float(int(at)),
            "rrule": "FREQ=MINUTELY;COUNT=1",
            "items": [{"type": "silence", "duration_s": 0.5}],
            "targets": {"zones": ["c0"]},
            **extra,
        }
    )


@dataclass
class Relay:
    node: Node
    store: Store
    writer: asyncio.Task[None]
    queue: asyncio.Queue[LogEntry | Broadcast]


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    config = tree_config(tmp_path)
    store = Store.for_config(config)
    await store.start()
    await store.seed_from_config(config)
    node = Node(config)
    await load_inventory(node, store)
    queue: asyncio.Queue[LogEntry | Broadcast] = asyncio.Queue()
    node.on_log = queue.put_nowait
    await node.start()
    writer = asyncio.create_task(write_log(store, queue))
    yield Relay(node, store, writer, queue)
    await node.close()
    await queue.join()
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    await store.close()


async def write_log(store: Store, queue: asyncio.Queue[LogEntry | Broadcast]) -> None:
    """The app's log writer, reduced to what these tests read back: a row as a broadcast
    starts (when the node reports starts), its end as it ends."""
    while True:
        item = await queue.get()
        try:
            if isinstance(item, Broadcast):
                await store.log.put(item.log.as_json() | {"state": item.state.value},
                                    zones={"c0"})  # fmt: skip
            else:
                await store.log.put(item.as_json(), zones={"c0"})
        finally:
            queue.task_done()


async def audit_actions(store: Store) -> list[tuple[str, str | None]]:
    rows = await store.audit.query(user=CREATED_BY)
    return [(r.action, r.target) for r in reversed(rows)]


def run_of(relay: Relay, occurrence: str) -> str | None:
    """The running broadcast of a schedule's occurrence: its id is ``occurrence`` plus a
    random tail (8 characters), so nobody can know it before the run starts."""
    found = [b for b in relay.node.broadcasts if b.startswith(occurrence + "-")]
    assert all(len(b) == len(occurrence) + 9 for b in found), found
    return found[0] if found else None


@pytest.mark.slow
async def test_a_rule_due_in_two_seconds_starts_its_broadcast_and_logs_it(relay: Relay) -> None:
    service = ScheduleService(relay.node, relay.store)
    at = int(time.time()) + 2
    await relay.store.schedules.add(schedule("soon", at), "admin")
    await service.start()
    try:
        await wait_for(lambda: run_of(relay, f"sch-soon-{at}"), 5, "the scheduled broadcast")
        bc_id = run_of(relay, f"sch-soon-{at}") or ""
        assert time.time() - at < 1.0  # on time, not at the next minute
        bc = relay.node.broadcasts[bc_id]
        assert (bc.log.what, bc.log.created_by, bc.spec.priority.name) == (
            "Chương trình soon",
            "scheduler",
            "SCHEDULED",
        )
        assert bc.spec.origin_zone == "c0" and bc.spec.target_zones == {"c0"}
        row = None
        for _ in range(100):
            row = await relay.store.log.get(bc_id)
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row.as_json()["state"] == "finished"
        assert row.as_json()["created_by"] == "scheduler"
        assert await audit_actions(relay.store) == [("schedule.start", "soon")]
        assert (service.started, service.failed) == (1, 0)
        assert await relay.store.schedules.last_run() >= at  # type: ignore[operator]
    finally:
        await service.close()


@pytest.mark.slow
async def test_a_restart_inside_the_grace_window_catches_up(relay: Relay) -> None:
    service = ScheduleService(relay.node, relay.store)
    await service.start()  # a first run: records now, nothing to catch up on
    await wait_for(lambda: service.scheduler.last_run is not None, 2, "the first due")
    await asyncio.sleep(0.2)
    await service.close()
    saved = await relay.store.schedules.last_run()
    assert saved is not None
    # while the node is "down", a programme's start passes
    at = int(time.time()) + 1
    await relay.store.schedules.add(schedule("missed", at, grace_s=600), "admin")
    await relay.store.schedules.add(schedule("long-gone", at, grace_s=0), "admin")
    await asyncio.sleep(at + 1.2 - time.time())

    again = ScheduleService(relay.node, relay.store, on_time_s=0.5)
    await again.start()
    try:
        await wait_for(lambda: run_of(relay, f"sch-missed-{at}"), 3, "the caught-up broadcast")
        bc_id = run_of(relay, f"sch-missed-{at}")
        await wait_for(lambda: again.started == 1, 2, "the audit row")
        await asyncio.sleep(0.1)
        actions = await audit_actions(relay.store)
        assert sorted(actions) == [("schedule.catch_up", "missed"), ("schedule.skip", "long-gone")]
        rows = await relay.store.audit.query(action="schedule.catch_up")
        assert rows[0].detail["broadcast"] == bc_id and rows[0].detail["late_s"] > 0.5
        skip = (await relay.store.audit.query(action="schedule.skip"))[0].detail
        assert (
            skip["reason"].startswith("missed by ")
            and "past the 0 s grace window" in (skip["reason"])
        )
        assert run_of(relay, f"sch-long-gone-{at}") is None
    finally:
        await again.close()


@pytest.mark.slow
async def test_a_schedule_that_cannot_start_is_skipped_and_the_loop_goes_on(
    relay: Relay,
) -> None:
    service = ScheduleService(relay.node, relay.store)
    await service.start()
    at = int(time.time()) + 1
    # a target zone removed from the node after the schedule was written
    await relay.store.schedules.add(
        schedule("broken", at, targets={"zones": ["atlantis"]}), "admin"
    )
    await relay.store.schedules.add(schedule("fine", at), "admin")
    service.reload()
    try:
        await wait_for(lambda: service.failed == 1 and service.started == 1, 4, "both starts")
        (started,) = await relay.store.audit.query(action="schedule.start")
        assert started.detail["broadcast"].startswith(f"sch-fine-{at}-")
        fail = (await relay.store.audit.query(action="schedule.fail"))[0]
        assert fail.target == "broken"
        assert fail.detail["error"] == "zone 'atlantis' does not exist"
        assert fail.detail["message"] == (
            f"[sch=broken] could not start {fail.detail['broadcast']}: "
            "zone 'atlantis' does not exist"
        )
        assert fail.detail["broadcast"].startswith(f"sch-broken-{at}-")
        # and the loop still runs: a new schedule is picked up after reload()
        later = int(time.time()) + 1
        await relay.store.schedules.add(schedule("later", later), "admin")
        service.reload()
        await wait_for(lambda: service.started == 2, 4, "the next schedule")
    finally:
        await service.close()
    assert service._task is None


@pytest.mark.slow
async def test_edits_and_deletes_wake_the_loop(relay: Relay) -> None:
    service = ScheduleService(relay.node, relay.store)
    await service.start()
    try:
        at = int(time.time()) + 2
        await relay.store.schedules.add(schedule("gone", at), "admin")
        service.reload()
        await wait_for(lambda: len(service.scheduler.schedules()) == 1, 2, "the reload")
        await relay.store.schedules.remove("gone")
        service.reload()
        await wait_for(lambda: not service.scheduler.schedules(), 2, "the second reload")
        await asyncio.sleep(at + 0.5 - time.time())
        assert service.started == 0 and run_of(relay, f"sch-gone-{at}") is None
        # disabled schedules are not loaded
        await relay.store.schedules.add(schedule("off", at + 60), "admin", enabled=False)
        service.reload()
        await asyncio.sleep(0.2)
        assert not service.scheduler.schedules()
    finally:
        await service.close()


@dataclass
class Leader:
    """One cluster node's scheduler, on a store connection of its own, leading with
    ``token`` (``service.fence``)."""

    relay: Relay
    service: ScheduleService


@contextlib.asynccontextmanager
async def leader(tmp_path: Path, where: Path | str, name: str, token: int) -> AsyncIterator[Leader]:
    config = tree_config(tmp_path / name)
    store = await Store.open(where)
    await store.seed_from_config(config)
    node = Node(config)
    await load_inventory(node, store)
    queue: asyncio.Queue[LogEntry | Broadcast] = asyncio.Queue()
    node.on_log = node.on_start = queue.put_nowait
    await node.start()
    writer = asyncio.create_task(write_log(store, queue))
    service = ScheduleService(node, store, fence=lambda: token, node_id=name)
    try:
        yield Leader(Relay(node, store, writer, queue), service)
    finally:
        await service.close()
        await node.close()
        await queue.join()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await store.close()


async def logged(store: Store, occurrence: str) -> list[str]:
    rows = await store.log.query(limit=100)
    return [r.id for r in rows if r.id.startswith(occurrence + "-")]


@pytest.mark.slow
async def test_the_leader_dies_after_starting_a_run_before_saving_it_the_run_happens_once(
    tmp_path: Path, store_where: Path | str
) -> None:
    """a (token 1) starts the run and dies before saving last_run; b (token 2), leading
    next, judges the same window again: the run's claim is in the store and it started (its
    log row), so b does not start it again. a's late last_run is refused."""
    at = int(time.time()) + 2
    async with leader(tmp_path, store_where, "a", 1) as a:
        store = a.relay.store
        await store.schedules.add(schedule("news", at), "admin")
        save, died = store.schedules.set_last_run, asyncio.Event()

        async def dies_before_saving(when: float, *, token: int | None = None) -> None:
            if run_of(a.relay, f"sch-news-{at}") is None:
                await save(when, token=token)  # the steps before the run save as usual
                return
            died.set()
            await asyncio.Event().wait()  # killed here: never saved

        store.schedules.set_last_run = dies_before_saving  # type: ignore[method-assign]
        await a.service.start()
        await wait_for(died.is_set, 5, "a's run started, its last_run not saved")
        first = run_of(a.relay, f"sch-news-{at}")
    async with leader(tmp_path, store_where, "b", 2) as b:
        store = b.relay.store
        stale = await store.schedules.last_run()
        assert stale is not None and stale < at  # what a saved before the run
        await b.service.start()
        await wait_for(lambda: b.service.already_run == 1, 5, "b finding the run claimed")
        assert run_of(b.relay, f"sch-news-{at}") is None
        assert b.service.started == 0
        assert await logged(store, f"sch-news-{at}") == [first]
        run = await store.schedules.run("news", at)
        assert run is not None and (run.broadcast, run.token, run.node) == (first, 1, "a")
        await wait_for(lambda: b.service.scheduler.last_run is not None, 1, "b's step")
        with pytest.raises(StaleLeader):  # a, back from the dead, saves late
            await store.schedules.set_last_run(at, token=1)


@pytest.mark.slow
async def test_a_run_claimed_by_a_leader_that_died_before_starting_it_runs_once(
    tmp_path: Path, store_where: Path | str
) -> None:
    """a (token 1) claimed the run and died before starting it: b (token 2) finds the claim,
    no broadcast and no log row, takes the claim over and runs it, once. A node that does
    not lead now starts nothing."""
    at = int(time.time()) + 1
    async with leader(tmp_path, store_where, "b", 2) as b:
        store = b.relay.store
        await store.schedules.add(schedule("news", at), "admin")
        await store.schedules.set_last_run(at - 1, token=1)  # a's last step before the run
        never = f"sch-news-{at}-never"
        assert (await store.schedules.claim_run("news", at, never, token=1, node="a"))[0]
        follower = ScheduleService(b.relay.node, store, fence=lambda: None, node_id="c")
        await follower.start()
        await asyncio.sleep(at + 0.3 - time.time())
        await b.service.start()
        await wait_for(lambda: b.service.started == 1, 5, "b running the run a never started")
        bc = run_of(b.relay, f"sch-news-{at}")
        assert bc is not None and bc != never
        run = await store.schedules.run("news", at)
        assert run is not None and (run.broadcast, run.token, run.node) == (bc, 2, "b")
        await asyncio.sleep(0.3)
        assert await logged(store, f"sch-news-{at}") == [bc]
        assert (follower.started, follower.already_run) == (0, 0)
        await follower.close()
