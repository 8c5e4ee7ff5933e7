"""Cluster mode with real `loa serve` processes (issue 12 items 1, 2, 4, 5): one Redis, one
PostgreSQL (the suite's own, on free ports), real speakers (``loa.speaker.client``) in the
test's loop. Nodes agree on one commune assignment, speakers are redirected to their
commune's node, and when a node is SIGKILLed its speakers are heard again on a survivor
within 5 s, with nothing lost from the broadcast log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from loa.codecs.pcm import rms_dbfs
from tests.cluster.nodes import ServeNode, converged, make_nodes, tokens
from tests.relay.fleet import Fleet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
PER_COMMUNE = 3


@contextlib.asynccontextmanager
async def running(nodes: list[ServeNode]) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        yield
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))


def online_on(view: dict[str, object]) -> int:
    return int(view["endpoints_online"])  # type: ignore[call-overload]


async def test_nodes_agree_and_speakers_are_redirected_to_their_commune(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        assert views["a"]["communes"] == ["c0"] and views["b"]["communes"] == ["c1"]
        # every speaker is told to connect to a; c1's are sent on to b
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:

            async def online() -> tuple[int, int]:
                ha, hb = await a.health(http), await b.health(http)
                assert ha and hb
                return online_on(ha), online_on(hb)

            deadline = time.monotonic() + 20
            while await online() != (PER_COMMUNE, PER_COMMUNE):
                assert time.monotonic() < deadline, await online()
                await asyncio.sleep(0.1)
            for ep, speaker in fleet.speakers.items():
                home, other = (a, b) if ep.startswith("c0") else (b, a)
                assert speaker.url == home.url, ep
                assert speaker.servers == (home.url, other.url)  # from the welcome
                assert speaker.redirects == (1 if home is b else 0)
            assert await a.metric(http, "loa_speaker_redirected_total") == PER_COMMUNE
            assert await b.metric(http, "loa_speaker_redirected_total") == 0
            # the API on either node serves the shared store
            zones_a = await a.api(http, "GET", "/zones")
            assert zones_a == await b.api(http, "GET", "/zones")
        finally:
            await fleet.close()
    for n in nodes:
        assert "Traceback" not in n.text(), n.text()[-3000:]


async def test_a_killed_nodes_speakers_are_heard_on_a_survivor_within_5_s(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """b plays a tone to the province; a is SIGKILLed; a's speakers (commune c0) reconnect
    to b, are admitted there (their hello names the lost node, whose presence has not
    expired yet) and hear the tone within 5 s; the leader then moves c0 to b for good; the
    broadcast's log row names every speaker that heard it."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:
            moved = [ep for ep in fleet.speakers if ep.startswith("c0")]
            await wait_for(lambda: all(s.endpoint for s in fleet.speakers.values()), 20,
                           "every speaker welcomed")  # fmt: skip
            started = await b.api(http, "POST", "/broadcasts", {
                "source": {"type": "tone", "freq_hz": 1000}, "targets": {"zones": ["p"]},
                "class": "emergency",
            })  # fmt: skip
            bc = started["id"]
            t0 = time.monotonic()
            on_b = [ep for ep in fleet.speakers if ep.startswith("c1")]
            await wait_for(lambda: all(fleet.heard[ep].since(t0, bc) for ep in on_b), 10,
                           "b's own speakers hearing the tone")  # fmt: skip

            a.kill()
            killed = time.monotonic()

            def heard_after_kill(ep: str) -> bool:
                return any(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(killed, bc))

            await wait_for(lambda: all(heard_after_kill(ep) for ep in moved), 5.0,
                           "a's speakers hearing the tone on b within 5 s")  # fmt: skip
            failover_s = time.monotonic() - killed
            for ep in moved:
                assert fleet.speakers[ep].url == b.url

            # the leader (b, once a's lease lapsed) moves c0 to b once a's presence expires
            async def b_serves_all() -> bool:
                health = await b.health(http)
                return bool(health) and health["cluster"]["communes"] == ["c0", "c1"]

            deadline = time.monotonic() + 15
            while not await b_serves_all():
                assert time.monotonic() < deadline, await b.health(http)
                await asyncio.sleep(0.2)
            health = await b.health(http)
            assert health is not None
            assert health["cluster"]["nodes"] == ["b"] and health["cluster"]["leader"]
            assert all(fleet.speakers[ep].url == b.url for ep in fleet.speakers)  # none moved

            await b.api(http, "DELETE", f"/broadcasts/{bc}")
            entries: list[dict[str, object]] = []
            deadline = time.monotonic() + 10
            while not entries:
                assert time.monotonic() < deadline, "the broadcast's log row never appeared"
                log = await b.api(http, "GET", "/log")
                entries = [e for e in log["entries"] if e["id"] == bc and e.get("ended_at")]
                await asyncio.sleep(0.2)
            heard = entries[0]["heard_s"]
            assert isinstance(heard, dict)
            assert sorted(heard) == sorted(fleet.speakers), heard
        finally:
            await fleet.close()
    print(f"failover: a's {len(moved)} speakers heard the tone on b {failover_s:.2f} s "
          "after the SIGKILL")  # fmt: skip
    assert "Traceback" not in b.text(), b.text()[-3000:]
