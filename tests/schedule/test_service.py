"""ScheduleService on a real node and store, on the real clock: a rule that fires in a second
or two starts its broadcast, which is logged; a restart inside the grace window catches up; a
schedule that cannot start is audited and skipped while the others play."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loa.inventory import load_inventory
from loa.relay.broadcast import LogEntry
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
    queue: asyncio.Queue[LogEntry]


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    config = tree_config(tmp_path)
    store = Store.for_config(config)
    await store.start()
    await store.seed_from_config(config)
    node = Node(config)
    await load_inventory(node, store)
    queue: asyncio.Queue[LogEntry] = asyncio.Queue()
    node.on_log = queue.put_nowait
    await node.start()
    writer = asyncio.create_task(write_log(store, queue))
    yield Relay(node, store, writer, queue)
    await node.close()
    await queue.join()
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    await store.close()


async def write_log(store: Store, queue: asyncio.Queue[LogEntry]) -> None:
    """The app's log writer, reduced to what these tests read back."""
    while True:
        entry = await queue.get()
        try:
            await store.log.put(entry.as_json(), zones={"c0"})
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
