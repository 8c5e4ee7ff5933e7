"""Leader-only work in a cluster (issue 12 items 2 and 5), with real `loa serve` processes:
the scheduler runs on the leader alone, so a programme plays once (encoded on the leader,
relayed to the others), even when it was created through another node's API; and when the
leader is SIGKILLed just before a run, the new leader runs it, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.nodes import ServeNode, converged, make_nodes
from tests.cluster.test_serve_cluster import running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def schedule(schedule_id: str, at: int) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": f"Chương trình {schedule_id}",
        "dtstart": at,
        "rrule": "FREQ=MINUTELY;COUNT=1",
        "items": [{"type": "silence", "duration_s": 1.0}],
        "targets": {"zones": ["p"]},
    }


async def runs_logged(http: aiohttp.ClientSession, node: ServeNode, prefix: str) -> list[Any]:
    log = await node.api(http, "GET", "/log?limit=100")
    return [e for e in log["entries"] if e["id"].startswith(prefix)]


async def wait_logged(
    http: aiohttp.ClientSession, node: ServeNode, prefix: str, timeout: float
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in await runs_logged(http, node, prefix) if r["ended_at"]]
        if rows:
            return rows
        assert time.monotonic() < deadline, f"no ended run {prefix}…"
        await asyncio.sleep(0.25)


async def test_a_programme_runs_once_on_the_leader_even_when_the_leader_dies(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        leader = next(n for n in nodes if views[n.name]["leader"])
        follower = next(n for n in nodes if n is not leader)
        assert views[leader.name]["leader_jobs"] == ["scheduler", "bulletins", "repeats"]
        assert views[follower.name]["leader_jobs"] == []

        # created through the follower's API: the leader's scheduler picks it up
        at = int(time.time()) + 4
        await follower.api(http, "POST", "/schedules", schedule("one", at))
        seen_on: dict[str, set[str]] = {"encoding": set(), "relaying": set()}
        deadline = time.monotonic() + 12
        while not seen_on["relaying"] and time.monotonic() < deadline:
            for n in nodes:
                health = await n.health(http)
                if health is not None:
                    for what in seen_on:
                        if any(b.startswith(f"sch-one-{at}-") for b in health["cluster"][what]):
                            seen_on[what].add(n.name)
            await asyncio.sleep(0.1)
        assert seen_on == {"encoding": {leader.name}, "relaying": {follower.name}}
        await wait_logged(http, follower, f"sch-one-{at}-", 10)
        await asyncio.sleep(1.0)  # a second run, if any, would be logged by now
        assert len(await runs_logged(http, follower, f"sch-one-{at}-")) == 1

        # the leader dies 2 s before the next run: the follower takes the lease and runs it
        at = int(time.time()) + 3
        await follower.api(http, "POST", "/schedules", schedule("two", at))
        await asyncio.sleep(max(0.0, at - 2 - time.time()))
        leader.kill()
        rows = await wait_logged(http, follower, f"sch-two-{at}-", 20)
        health = await follower.health(http)
        assert health is not None and health["cluster"]["leader"]
        assert health["cluster"]["leader_jobs"] == ["scheduler", "bulletins", "repeats"]
        await asyncio.sleep(1.5)
        rows = await runs_logged(http, follower, f"sch-two-{at}-")
        assert len(rows) == 1, rows
        late_s = rows[0]["started_at"] - at
        print(f"the run the dead leader owed started {late_s:.2f} s late, once")
        assert late_s < 8
