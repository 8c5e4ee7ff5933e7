"""Leader-only work in a cluster (issue 12 items 2 and 5), with real `loa serve` processes:
the scheduler runs on the leader alone, so a programme plays once (encoded on the leader,
relayed to the others), even when it was created through another node's API; and when the
leader is SIGKILLed just before a run, the new leader runs it, once."""

from __future__ import annotations

import asyncio
import itertools
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


async def test_a_repeat_begun_on_a_follower_plays_each_play_once_across_a_leader_change(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """An emergency repeating every 8 s (a play lasts ~6 s: the announcement, the tone) is begun
    through the follower's API: its first play starts there, the leader plays the next ones. The
    leader is SIGKILLed between plays; the follower, leading now, goes on. Every play
    (`<repeat>.<n>`) is logged once, n consecutive, starts at least ~every_s apart; cancelled
    through the new leader, it ends."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    every_s = 8.0
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        leader = next(n for n in nodes if views[n.name]["leader"])
        follower = next(n for n in nodes if n is not leader)
        started = await follower.api(http, "POST", "/broadcasts", {
            "source": {"type": "tone", "freq_hz": 1000, "duration_s": 1.0},
            "targets": {"zones": ["p"]}, "class": "emergency", "chime": False,
            "repeat": {"every_s": every_s},
        })  # fmt: skip
        rp = started["repeat"]["id"]
        second = await wait_logged(http, follower, f"{rp}.2", 25)
        health = await leader.health(http)
        assert health is not None
        leader.kill()  # after the second play ended: between plays
        await wait_logged(http, follower, f"{rp}.4", 30)
        rows = await runs_logged(http, follower, f"{rp}.")
        ids = sorted((r["id"] for r in rows), key=lambda i: int(i.split(".")[-1]))
        assert ids == [f"{rp}.{n}" for n in range(1, len(ids) + 1)], ids  # once each
        # (the latest may still wait for the floor: a play lasts about every_s)
        played = sorted(r["started_at"] for r in rows if r["started_at"])
        gaps = [b - a for a, b in itertools.pairwise(played)]
        assert min(gaps) > every_s - 1.5, gaps
        await follower.api(http, "DELETE", f"/repeats/{rp}")
        shown = await follower.api(http, "GET", f"/repeats/{rp}")
        assert shown["state"] == "cancelled"
    assert second[0]["id"] == f"{rp}.2"
    assert "the cluster's leader follows it" in follower.text()
    assert "begun elsewhere: following it" in leader.text()
    print(f"plays {ids}, {len(ids)} once each; starts apart by {[round(g, 1) for g in gaps]} s")


async def test_a_bulletin_submitted_on_a_follower_plays_on_the_leader_once_per_play(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """An emergency bulletin repeating every 10 s (a play lasts ~7 s), submitted through the
    follower's API: the leader takes it at its next tick and plays it; SIGKILLed between plays,
    the follower, leading now, goes on. Every play (`<bulletin>.<n>-…`) is logged once, n
    consecutive; cancelled through the new leader, it ends."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    every_s = 10.0
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        leader = next(n for n in nodes if views[n.name]["leader"])
        follower = next(n for n in nodes if n is not leader)
        made = await follower.api(http, "POST", "/bulletins", {
            "level": "emergency", "zones": ["p"], "title": "Bão số 3",
            "variants": [{"language": "vi", "text": "Bão"}], "repeat_every_s": every_s,
        })  # fmt: skip
        bulletin = made["id"]
        first = await wait_logged(http, follower, f"{bulletin}.1-", 10)
        assert first[0]["started_at"] - made["created_at"] < 3  # the leader's next tick
        await wait_logged(http, follower, f"{bulletin}.2-", 25)
        leader.kill()  # after the second play ended: between plays
        await wait_logged(http, follower, f"{bulletin}.4-", 30)
        rows = await runs_logged(http, follower, f"{bulletin}.")
        plays = sorted(int(r["id"].split(".")[-1].split("-")[0]) for r in rows)
        assert plays == list(range(1, len(plays) + 1)), [r["id"] for r in rows]  # once each
        await follower.api(http, "POST", f"/bulletins/{bulletin}/cancel")
        shown = await follower.api(http, "GET", f"/bulletins/{bulletin}")
        assert shown["state"] == "cancelled"
    assert "through another node: the leader takes it" in leader.text()
    print(f"bulletin plays {plays}, once each, across the leader's death")
