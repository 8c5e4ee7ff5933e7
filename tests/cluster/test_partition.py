"""A network partition isolates the leader (issue 12 item 5, last bullet), with real `loa
serve` processes, each in a network namespace of its own (``bench/netns.py``),
joined by veth pairs to a bridge where Redis, PostgreSQL and the test's speakers are.

The leader's link goes down: it can reach nothing (Redis, PostgreSQL, speakers). It stops
acting as leader when its lease can lapse (no leader jobs), a survivor takes the lease with
a higher fencing token and places the isolated node's commune, and its speakers move to the
survivors and hear the broadcast. A command the deposed leader sends late, with its old
token, is refused by every node. Healed, it rejoins as a follower; the broadcast's one log
row names every speaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from bench.netns import Bridge, skip_reason
from loa.cluster.keys import Keys
from loa.cluster.messages import Assignment, Envelope
from loa.codecs.pcm import rms_dbfs
from loa.localservers import PostgresServer, RedisServer
from tests.cluster.nodes import ServeNode, converged, make_nodes, tokens
from tests.cluster.test_serve_cluster import ended_rows, running, tone_to_province, welcomed
from tests.relay.fleet import Fleet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]
PER_COMMUNE = 2
LEASE_TTL_S = 3.0  # loa serve's lease (LeaseTiming): a leader acts < 3 s after its last renewal


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made = Bridge()
    try:
        made.start()
        yield made
    finally:
        made.close()  # every namespace, veth and the bridge, also when the test failed


@pytest.fixture
def servers(bridge: Bridge) -> Iterator[tuple[str, str]]:
    """This test's own Redis and PostgreSQL, listening on the bridge too: their URLs there."""
    redis_server = RedisServer(also_on=(bridge.address,))
    postgres = PostgresServer(also_on=(bridge.address,), trust=(str(bridge.network),))
    try:
        redis_server.start()
        postgres.start()
        yield redis_server.url_on(bridge.address), postgres.url(address=bridge.address)
    finally:
        redis_server.close()
        postgres.close()


async def views_of(http: aiohttp.ClientSession, nodes: list[ServeNode]) -> dict[str, Any]:
    return {n.name: h["cluster"] for n in nodes if (h := await n.health(http)) is not None}


async def test_a_partitioned_leader_stops_leading_and_its_speakers_move(
    tmp_path: Path, bridge: Bridge, servers: tuple[str, str]
) -> None:
    redis_url, store_url = servers
    nodes = make_nodes(tmp_path, ("a", "b", "c"), redis_url=redis_url, store_url=store_url,
                       communes=3, per_commune=PER_COMMUNE, bridge=bridge)  # fmt: skip
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        leader = next(n for n in nodes if views[n.name]["leader"])
        survivors = [n for n in nodes if n is not leader]
        old_token = views[leader.name]["token"]
        assert isinstance(old_token, int) and views[leader.name]["leader_jobs"] == [
            "scheduler", "bulletins", "repeats",
        ]  # fmt: skip
        isolated_communes = views[leader.name]["communes"]
        fleet = Fleet(survivors[0].url, tokens(3, PER_COMMUNE))
        await fleet.start()
        try:
            await welcomed(fleet)
            moved = [ep for ep, s in fleet.speakers.items() if s.url == leader.url]
            assert sorted({ep.split("-")[0] for ep in moved}) == isolated_communes
            started = await tone_to_province(http, survivors[0], "scheduled")
            bc = started["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "every speaker hearing the tone (the leader relaying it)")  # fmt: skip

            bridge.cut(leader.name)
            cut = time.monotonic()

            # the isolated leader stops acting when its lease can lapse
            while True:
                inside = await leader.health_inside()
                assert inside is not None, leader.text()[-3000:]
                if not inside["cluster"]["leader"] and inside["cluster"]["leader_jobs"] == []:
                    break
                assert time.monotonic() - cut < LEASE_TTL_S + 1.0, inside["cluster"]
                await asyncio.sleep(0.1)
            stopped_s = time.monotonic() - cut
            assert inside["cluster"]["token"] is None
            assert "not leader: stopped scheduler" in leader.text()

            # a survivor takes the lease with a higher token and places the lost commune
            deadline = cut + 15
            while True:
                views = await views_of(http, survivors)
                heads = [v for v in views.values() if v["leader"]]
                placed = sorted(c for v in views.values() for c in v["communes"])
                if (
                    len(views) == 2
                    and len(heads) == 1
                    and all(v["nodes"] == sorted(n.name for n in survivors) for v in views.values())
                    and placed == ["c0", "c1", "c2"]
                    and len({v["assignment"] for v in views.values()}) == 1
                ):
                    break
                assert time.monotonic() < deadline, views
                await asyncio.sleep(0.1)
            new_token = heads[0]["token"]
            assert new_token > old_token
            assert heads[0]["leader_jobs"] == ["scheduler", "bulletins", "repeats"]
            placed_s = time.monotonic() - cut

            # the isolated node's speakers hear the tone on the survivors
            def again(ep: str) -> bool:
                return sum(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(cut + 0.5, bc)) >= 5

            await wait_for(lambda: all(again(ep) for ep in moved), 10,
                           "the isolated node's speakers hearing the tone elsewhere")  # fmt: skip
            moved_s = time.monotonic() - cut
            survivor_urls = {n.url for n in survivors}
            assert all(fleet.speakers[ep].url in survivor_urls for ep in moved)

            # a command the deposed leader sends late, with its old token, is ignored
            refused = {n: v["commands_refused"] for n, v in views.items()}
            late = Assignment(heads[0]["assignment"] + 100, {c: leader.name for c in placed})
            client = redis.Redis.from_url(redis_url)
            try:
                await client.publish(
                    Keys("loa").commands, bytes(Envelope(0, leader.name, old_token, late))
                )
            finally:
                await client.aclose()
            await asyncio.sleep(1.0)
            after = await views_of(http, survivors)
            for name, view in after.items():
                assert view["commands_refused"] == refused[name] + 1, (name, view)
                assert view["assignment"] == views[name]["assignment"]
                assert view["communes"] == views[name]["communes"]

            # healed: it rejoins as a follower and learns the new token
            bridge.heal(leader.name)
            views = await converged(http, nodes, timeout=20)
            assert not views[leader.name]["leader"]
            assert views[leader.name]["leader_jobs"] == []
            assert views[leader.name]["fence"] >= new_token
            assert all(fleet.speakers[ep].url in survivor_urls for ep in moved)

            await survivors[0].api(http, "DELETE", f"/broadcasts/{bc}")
            entries, _ = await ended_rows(http, survivors[0], bc, fleet)
            assert sorted(entries[0]["heard_s"]) == sorted(fleet.speakers)
        finally:
            await fleet.close()
    print(f"partition of the leader {leader.name}: it stopped leading {stopped_s:.2f} s after "
          f"the cut; {len(moved)} speakers heard the tone elsewhere {moved_s:.2f} s after; "
          f"a survivor led with token {new_token} > {old_token} and placed "
          f"{isolated_communes} {placed_s:.2f} s after")  # fmt: skip
    for n in nodes:
        assert "Traceback" not in n.text(), (n.name, n.text()[-3000:])
