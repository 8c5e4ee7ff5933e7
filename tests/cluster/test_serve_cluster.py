"""Cluster mode with real `loa serve` processes (issue 12 items 1, 2, 4, 5): one Redis, one
PostgreSQL (the suite's own, on free ports), real speakers (``loa.speaker.client``) in the
test's loop. Nodes agree on one commune assignment, speakers are redirected to their
commune's node, and when a node is SIGKILLed its speakers are heard again on a survivor
within 5 s, with nothing lost from the broadcast log."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from loa.codecs.pcm import rms_dbfs
from loa.localservers import RedisServer
from tests.cluster.nodes import ServeNode, converged, make_nodes, tokens
from tests.conftest import AUTH
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


async def welcomed(fleet: Fleet) -> None:
    await wait_for(lambda: all(s.endpoint for s in fleet.speakers.values()), 20,
                   "every speaker welcomed")  # fmt: skip


async def tone_to_province(
    http: aiohttp.ClientSession, node: ServeNode, klass: str
) -> dict[str, Any]:
    """A 1 kHz tone of ``klass`` to the whole province (zone p), started through ``node``."""
    started: dict[str, Any] = await node.api(http, "POST", "/broadcasts", {
        "source": {"type": "tone", "freq_hz": 1000}, "targets": {"zones": ["p"]}, "class": klass,
    })  # fmt: skip
    return started


async def ended_rows(
    http: aiohttp.ClientSession, node: ServeNode, bc: str, fleet: Fleet
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``bc``'s log rows, read through ``node`` once it has ended and its row names every
    speaker (each node adds its own speakers' seconds), and the whole log answer."""
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not entries or len(entries[0]["heard_s"]) < len(fleet.speakers):
        assert time.monotonic() < deadline, entries
        await asyncio.sleep(0.2)
        log: dict[str, Any] = await node.api(http, "GET", "/log")
        entries = [e for e in log["entries"] if e["id"] == bc and e.get("ended_at")]
    return entries, log


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
    """Three nodes, one commune each; b plays an emergency to the province (a and c relay
    it). a is SIGKILLed: a's speakers reconnect to the next server of their list (b or c,
    by rendezvous rank), are admitted there (their hello names the lost node, whose presence
    has not expired yet) and hear the emergency within 5 s. Once a's presence expires the
    leader places c0 on a survivor (redirecting them if it is not the one they chose); the
    broadcast's one log row names every speaker."""
    nodes = make_nodes(tmp_path, ("a", "b", "c"), redis_url=redis_url, store_url=postgres_url,
                       communes=3, per_commune=PER_COMMUNE)  # fmt: skip
    a, b, c = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        views = await converged(http, nodes)
        assert [views[n]["communes"] for n in "abc"] == [["c0"], ["c1"], ["c2"]]
        fleet = Fleet(b.url, tokens(3, PER_COMMUNE))
        await fleet.start()
        try:
            moved = [ep for ep in fleet.speakers if ep.startswith("c0")]
            await welcomed(fleet)
            assert {fleet.speakers[ep].url for ep in moved} == {a.url}
            started = await tone_to_province(http, b, "emergency")
            bc = started["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "every speaker hearing b's emergency (a and c relaying)")  # fmt: skip

            a.kill()
            killed = time.monotonic()

            def heard_after(ep: str, t: float) -> bool:
                return sum(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(t, bc)) >= 5

            # after 0.3 s what a relayed before it died has played out of the speakers' buffers
            await wait_for(lambda: all(heard_after(ep, killed + 0.3) for ep in moved), 5.0,
                           "a's speakers hearing the emergency on b or c within 5 s")  # fmt: skip
            failover_s = time.monotonic() - killed
            landed = sorted({fleet.speakers[ep].url for ep in moved})
            assert set(landed) <= {b.url, c.url}

            # the leader places c0 on a survivor once a's presence key expires (≤ 6 s)
            deadline = time.monotonic() + 15
            while True:
                views = {n.name: h["cluster"] for n in (b, c) if (h := await n.health(http))}
                owners = [n for n in ("b", "c") if "c0" in views.get(n, {}).get("communes", [])]
                if (
                    len(views) == 2
                    and all(v["nodes"] == ["b", "c"] for v in views.values())
                    and len(owners) == 1
                ):
                    break
                assert time.monotonic() < deadline, views
                await asyncio.sleep(0.2)
            owner = b if owners == ["b"] else c
            await wait_for(lambda: all(fleet.speakers[ep].url == owner.url for ep in moved), 10,
                           "a's speakers on c0's new node")  # fmt: skip
            settled = time.monotonic()
            await wait_for(lambda: all(heard_after(ep, settled) for ep in moved), 5.0,
                           "a's speakers hearing the emergency on c0's new node")  # fmt: skip

            await b.api(http, "DELETE", f"/broadcasts/{bc}")
            entries, _ = await ended_rows(http, b, bc, fleet)
            assert sorted(entries[0]["heard_s"]) == sorted(fleet.speakers)
        finally:
            await fleet.close()
    print(f"failover: a's {len(moved)} speakers heard the emergency on {landed} "
          f"{failover_s:.2f} s after the SIGKILL; c0 then placed on {owner.name}")  # fmt: skip
    for n in (b, c):
        assert "Traceback" not in n.text(), n.text()[-3000:]


async def test_a_broadcast_reaches_every_nodes_speakers_encoded_once(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """A tone started on a plays to the province: b relays it to its own speakers from
    a's bundles (one Redis message per 20 ms tick), nothing is encoded on b; a stop on b
    ends it everywhere, and the one log row names the speakers of both nodes."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:
            await welcomed(fleet)
            started = await tone_to_province(http, a, "scheduled")
            bc = started["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.frequency(t0, bc) > 900 for h in fleet.heard.values()),
                           10, "every speaker, on a and on b, hearing a's tone")  # fmt: skip
            health_b = await b.health(http)
            assert health_b is not None
            assert health_b["cluster"]["relaying"] == [bc]
            assert health_b["endpoints_online"] == PER_COMMUNE
            health_a = await a.health(http)
            assert health_a is not None and health_a["cluster"]["encoding"] == [bc]
            sent_before, t_before = health_a["cluster"]["audio_messages_sent"], time.monotonic()
            await asyncio.sleep(2.0)
            health_a = await a.health(http)
            assert health_a is not None
            rate = (health_a["cluster"]["audio_messages_sent"] - sent_before) / (
                time.monotonic() - t_before
            )
            assert 25 <= rate <= 55, rate  # one bundle per 20 ms tick for the one other node
            # an operator on b stops it: it ends on a, which logs it once
            await b.api(http, "DELETE", f"/broadcasts/{bc}")
            entries, log = await ended_rows(http, a, bc, fleet)
            assert sorted(entries[0]["heard_s"]) == sorted(fleet.speakers)
            assert entries[0]["reason"] == "stopped" and len(log["entries"]) == 1
            for n in nodes:
                health = await n.health(http)
                assert health is not None and health["broadcasts"] == 0, health
            # a broadcast to a's own commune only: no node has listeners of it, no audio out
            own = await a.api(http, "POST", "/broadcasts", {
                "source": {"type": "tone", "freq_hz": 500}, "targets": {"zones": ["c0"]},
                "class": "scheduled",
            })  # fmt: skip
            await asyncio.sleep(1.0)
            before = (await a.health(http) or {})["cluster"]["audio_messages_sent"]
            await asyncio.sleep(1.0)
            after = (await a.health(http) or {})["cluster"]["audio_messages_sent"]
            assert after == before, (before, after)
            await a.api(http, "DELETE", f"/broadcasts/{own['id']}")
        finally:
            await fleet.close()
    print(f"a → b audio: {rate:.1f} Redis messages/s")
    for n in nodes:
        assert "Traceback" not in n.text(), n.text()[-3000:]


async def test_the_encoding_node_dies_and_the_emergency_restarts_on_a_survivor(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """a encodes an emergency to the province (b relays it); a is SIGKILLed. b's relayed
    copy ends when a's presence expires (3 s); b, leader, adopts a's on-air record and
    replays the emergency (same id, "issued at" first) within 5 s of the kill, to its own
    speakers and to a's, which moved to b. The log row says when it was interrupted and
    when it resumed, and names every speaker."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:
            await welcomed(fleet)
            started = await tone_to_province(http, a, "emergency")
            bc = started["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "every speaker hearing a's emergency")  # fmt: skip
            a.kill()
            killed = time.monotonic()

            def again(ep: str) -> bool:  # after 0.5 s: what a sent before it died has played
                frames = fleet.heard[ep].since(killed + 0.5, bc)
                return sum(rms_dbfs(p) > -40 for p in frames) >= 5

            # a's own speakers hear nothing from a any more; the restart is what they hear
            await wait_for(lambda: all(again(ep) for ep in fleet.speakers), 5.0,
                           "every speaker hearing the emergency again within 5 s")  # fmt: skip
            restart_s = time.monotonic() - killed
            # in step again: b's speakers held the relayed copy, silent, until a's presence
            # expired; its last SR named an RTP time past the restart's first one, and
            # mapped through it the restart's frames came 2.4 s late (unplaceable: 64 frames
            # each by here) before the speakers took the report that came last
            await asyncio.sleep(1.0)
            out_of_step = {ep: s.unplaceable for ep, s in fleet.speakers.items() if s.unplaceable}
            assert all(n <= 5 for n in out_of_step.values()), out_of_step
            health = await b.health(http)
            assert health is not None and health["cluster"]["encoding"] == [bc]
            await b.api(http, "DELETE", f"/broadcasts/{bc}")
            entries, _ = await ended_rows(http, b, bc, fleet)
            row = entries[0]
            assert row["interrupted_at"] is not None and row["resumed_at"] is not None
            assert row["interrupted_at"] <= row["resumed_at"]
            assert sorted(row["heard_s"]) == sorted(fleet.speakers)
        finally:
            await fleet.close()
    print(f"the emergency was heard again {restart_s:.2f} s after its encoding node died")
    assert "Traceback" not in b.text(), b.text()[-3000:]


async def test_a_redis_restart_loses_and_duplicates_nothing(
    tmp_path: Path, own_redis: RedisServer, postgres_url: str
) -> None:
    """Redis stops for 2 s and comes back empty. a keeps playing its broadcast to its own
    speakers throughout; the nodes reconnect, nobody is judged gone for one presence TTL,
    a new leader republishes the assignment, b's speakers hear a's broadcast again, and it
    is neither restarted nor duplicated (one encoder, one log row)."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=own_redis.url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:
            await welcomed(fleet)
            started = await tone_to_province(http, a, "scheduled")
            bc = started["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "every speaker hearing a's tone")  # fmt: skip
            on_a = [ep for ep in fleet.speakers if ep.startswith("c0")]
            on_b = [ep for ep in fleet.speakers if ep.startswith("c1")]

            await asyncio.to_thread(own_redis.stop)
            down = time.monotonic()
            await asyncio.sleep(2.0)
            for ep in on_a:  # a plays on to its own speakers while Redis is away
                assert sum(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(down + 0.5, bc)) > 40
            await asyncio.to_thread(own_redis.start)
            back = time.monotonic()

            await converged(http, nodes, timeout=20)
            await wait_for(
                lambda: all(
                    sum(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(back, bc)) >= 5
                    for ep in on_b
                ),
                15, "b's speakers hearing a's broadcast again",
            )  # fmt: skip
            heard_again_s = time.monotonic() - back
            views = {n.name: (await n.health(http) or {}).get("cluster", {}) for n in nodes}
            assert views["a"]["encoding"] == [bc] and views["a"]["relaying"] == []
            assert views["b"]["encoding"] == [] and views["b"]["relaying"] == [bc]
            assert all(fleet.speakers[ep].url == a.url for ep in on_a)  # nobody moved
            assert all(fleet.speakers[ep].url == b.url for ep in on_b)

            await a.api(http, "DELETE", f"/broadcasts/{bc}")
            deadline = time.monotonic() + 10
            while True:
                log = await a.api(http, "GET", "/log")
                if log["entries"] and log["entries"][0].get("ended_at"):
                    break
                assert time.monotonic() < deadline, log
                await asyncio.sleep(0.2)
            assert [e["id"] for e in log["entries"]] == [bc]
            for n in nodes:
                health = await n.health(http)
                assert health is not None and health["broadcasts"] == 0, health
        finally:
            await fleet.close()
    print(f"Redis down {back - down:.1f} s: b's speakers heard a's broadcast again "
          f"{heard_again_s:.2f} s after it came back")  # fmt: skip
    for n in nodes:
        assert "adopting" not in n.text() and "Traceback" not in n.text(), n.text()[-3000:]


async def test_an_endpoint_added_on_one_node_is_served_by_the_others(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """A commune and a speaker added through a's API: every node follows the store within
    a few seconds, the leader places the new commune, and the new speaker, pointed at b,
    is welcomed by the node that serves it."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        await a.api(http, "POST", "/zones", {"id": "c9", "name": "Xã mới", "parent": "p"})
        made = await a.api(http, "POST", "/endpoints",
                           {"id": "c9-e0", "name": "Loa mới", "zone": "c9"})  # fmt: skip
        fleet = Fleet(b.url, [("c9-e0", made["token"])])
        await fleet.start()
        try:
            speaker = fleet.speakers["c9-e0"]
            await wait_for(lambda: speaker.endpoint == "c9-e0", 15, "the new speaker welcomed")
            views = {n.name: (await n.health(http) or {}).get("cluster", {}) for n in nodes}
            owner = next(n for n in nodes if "c9" in views[n.name]["communes"])
            assert speaker.url == owner.url
        finally:
            await fleet.close()
    for n in nodes:  # followed once, not at every comparison
        assert n.text().count("inventory changed in the store") <= 2, n.name


async def test_a_plain_rtp_receiver_gets_one_stream_from_its_communes_node(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """An RTP receiver in c0 (a's commune) while b encodes a province broadcast: only a
    sends to it (one source address, one SSRC, 50 packets a second), not every node that
    plays the broadcast."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    address = f"127.0.0.1:{receiver.getsockname()[1]}"
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1, rtp={"c0": address})  # fmt: skip
    a, b = nodes
    loop = asyncio.get_running_loop()
    try:
        async with running(nodes), aiohttp.ClientSession() as http:
            views = await converged(http, nodes)
            assert views["a"]["communes"] == ["c0"]
            await asyncio.sleep(1.0)  # a refresh gates the receiver on the non-serving node
            started = await tone_to_province(http, b, "scheduled")
            await asyncio.sleep(1.0)
            with contextlib.suppress(BlockingIOError):
                while True:  # what queued up meanwhile is not this measurement's
                    receiver.recv(2048)
            sources: set[tuple[str, int]] = set()
            ssrcs: set[int] = set()
            packets = 0
            end = time.monotonic() + 2.0
            while (left := end - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    data, source = await asyncio.wait_for(loop.sock_recvfrom(receiver, 2048), left)
                    if len(data) >= 12 and data[1] & 0x7F == 111:  # RTP, not RTCP
                        sources.add(source[:2])
                        ssrcs.add(int.from_bytes(data[8:12], "big"))
                        packets += 1
            await b.api(http, "DELETE", f"/broadcasts/{started['id']}")
    finally:
        receiver.close()
    assert sources == {("127.0.0.1", a.udp_port)}, sources
    assert len(ssrcs) == 1 and 80 <= packets <= 110, (ssrcs, packets)


async def test_a_dashboard_on_any_node_shows_every_nodes_speakers(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """The live status socket on b shows a's speakers online (from a's status messages),
    what they play, and counts them among the broadcast's hearers; so do b's GET /endpoints
    and GET /endpoints/{id}, and b's /metrics counts them in the cluster's online poles."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=PER_COMMUNE)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, PER_COMMUNE))
        await fleet.start()
        try:
            await welcomed(fleet)
            started = await tone_to_province(http, a, "scheduled")
            async with http.ws_connect(b.url + "/api/v1/status/ws", headers=AUTH) as ws:
                deadline = time.monotonic() + 10
                while True:
                    snap = await ws.receive_json(timeout=10)
                    online = {e["id"]: e for e in snap["endpoints"] if e["online"]}
                    if len(online) == len(fleet.speakers) and all(
                        e["playing"] == started["id"] for e in online.values()
                    ):
                        break
                    assert time.monotonic() < deadline, snap["counts"]
                assert snap["counts"]["online"] == 2 * PER_COMMUNE
                assert snap["broadcasts"][0]["hearing"] == 2 * PER_COMMUNE
            # GET /endpoints and /metrics on b: the same, from the same status messages
            listed = {e["id"]: e for e in (await b.api(http, "GET", "/endpoints"))["endpoints"]}
            for ep in fleet.speakers:
                assert listed[ep]["online"] and listed[ep]["playing"] == started["id"], ep
            one = await b.api(http, "GET", "/endpoints/c0-e0")  # on a, asked on b
            assert (one["id"], one["online"], one["playing"]) == ("c0-e0", True, started["id"])
            assert await b.metric(http, "loa_cluster_endpoints_online") == 2 * PER_COMMUNE
            assert await b.metric(http, "loa_endpoints_online") == PER_COMMUNE  # its own
            assert await b.metric(http, "loa_cluster_nodes") == 2
            leaders = [await n.metric(http, "loa_cluster_leader") for n in nodes]
            assert sorted(leaders) == [0, 1]
            await a.api(http, "DELETE", f"/broadcasts/{started['id']}")
        finally:
            await fleet.close()


async def test_a_mute_through_one_node_reaches_a_speaker_on_another(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """PATCH muted through a's API for a speaker connected to b: b tells the speaker (a
    speaker command on the bus), and every node keeps the level."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(b.url, [("c1-e0", "tok-c1-e0")])
        await fleet.start()
        try:
            speaker = fleet.speakers["c1-e0"]
            await wait_for(lambda: speaker.endpoint == "c1-e0", 15, "the speaker welcomed")
            assert speaker.url == b.url and not speaker.muted
            await a.api(http, "PATCH", "/endpoints/c1-e0", {"muted": True})
            await wait_for(lambda: speaker.muted, 3, "the speaker muted through a")
            shown = await b.api(http, "GET", "/endpoints/c1-e0")
            assert shown["muted"] is True
            await a.api(http, "PATCH", "/endpoints/c1-e0", {"muted": False})
            await wait_for(lambda: not speaker.muted, 3, "the speaker unmuted through a")
        finally:
            await fleet.close()


async def test_a_node_admits_speakers_at_a_bounded_rate(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """admit_per_s = 3 and nine speakers at once: three are welcomed at once, the others are
    sent back to retry after a short random wait and come in at about three a second."""
    [a] = make_nodes(tmp_path, ("a",), redis_url=redis_url, store_url=postgres_url,
                     communes=3, per_commune=3, admit_per_s=3)  # fmt: skip
    async with running([a]), aiohttp.ClientSession() as http:
        await converged(http, [a])
        fleet = Fleet(a.url, tokens(3, 3))
        t0 = time.monotonic()
        await fleet.start()
        try:
            await wait_for(lambda: all(s.endpoint for s in fleet.speakers.values()), 20,
                           "every speaker welcomed in the end")  # fmt: skip
            took = time.monotonic() - t0
            busy = sum(s.redirects for s in fleet.speakers.values())
            assert busy >= 6, busy
            assert took >= 1.5, took  # 6 beyond the burst at 3 a second: 2 s at the least
            assert await a.metric(http, "loa_speaker_redirected_total") == busy
        finally:
            await fleet.close()
    print(f"9 speakers at 3/s admitted in {took:.1f} s, {busy} sent back to retry")


async def test_a_node_that_joins_while_a_broadcast_is_on_air_relays_it(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """a alone serves four communes and plays a tone to the province. b starts: it never
    received the tone's `broadcast.started`, so it reads the on-air snapshots when it
    connects and relays the tone; the leader moves communes to b, whose speakers hear the
    tone there. The log row names every speaker."""
    a, b = make_nodes(tmp_path, ("a", "b"), redis_url=redis_url, store_url=postgres_url,
                      communes=4, per_commune=1)  # fmt: skip
    async with running([a]), aiohttp.ClientSession() as http:
        await converged(http, [a])
        fleet = Fleet(a.url, tokens(4, 1))
        await fleet.start()
        try:
            await welcomed(fleet)
            bc = (await tone_to_province(http, a, "scheduled"))["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "every speaker hearing a's tone")  # fmt: skip
            try:
                await b.start()
                views = await converged(http, [a, b])
                moved = [ep for ep in fleet.speakers if ep.split("-")[0] in views["b"]["communes"]]
                assert moved, views  # rebalanced towards b
                await wait_for(lambda: all(fleet.speakers[ep].url == b.url for ep in moved), 10,
                               "the moved communes' speakers on b")  # fmt: skip
                on_b = time.monotonic()
                await wait_for(
                    lambda: all(
                        sum(rms_dbfs(p) > -40 for p in fleet.heard[ep].since(on_b, bc)) >= 5
                        for ep in moved
                    ),
                    5, "b's speakers hearing a's tone, relayed by b",
                )  # fmt: skip
                view = (await b.health(http) or {})["cluster"]
                assert view["relaying"] == [bc] and view["resyncs"] == {"started": 1, "ended": 0}
                await a.api(http, "DELETE", f"/broadcasts/{bc}")
                entries, _ = await ended_rows(http, a, bc, fleet)
                assert sorted(entries[0]["heard_s"]) == sorted(fleet.speakers)
            finally:
                await b.stop()
        finally:
            await fleet.close()
    for n in (a, b):
        assert "Traceback" not in n.text(), n.text()[-3000:]


async def test_a_node_that_missed_a_stop_ends_its_copy_after_reconnecting(
    tmp_path: Path, own_redis: RedisServer, postgres_url: str
) -> None:
    """b relays a's tone and freezes (SIGSTOP, as a long GC pause or a stalled VM would);
    meanwhile its Redis connections drop (CLIENT KILL: a blip, a Redis failover), so the
    `broadcast.stopped` sent then never reaches b. Thawed, b reconnects, compares the
    on-air snapshots and ends its copy: nothing plays on there any more."""
    nodes = make_nodes(tmp_path, ("a", "b"), redis_url=own_redis.url, store_url=postgres_url,
                       communes=2, per_commune=1)  # fmt: skip
    a, b = nodes
    async with running(nodes), aiohttp.ClientSession() as http:
        await converged(http, nodes)
        fleet = Fleet(a.url, tokens(2, 1))
        await fleet.start()
        try:
            await welcomed(fleet)
            bc = (await tone_to_province(http, a, "scheduled"))["id"]
            t0 = time.monotonic()
            await wait_for(lambda: all(h.since(t0, bc) for h in fleet.heard.values()), 10,
                           "both speakers hearing a's tone")  # fmt: skip
            client = redis.Redis.from_url(own_redis.url)
            try:
                assert b.proc is not None
                b.proc.send_signal(signal.SIGSTOP)
                try:
                    clients = await client.client_list()
                    of_b = [c["id"] for c in clients if c["name"] == "loa-loa-b"]
                    assert of_b, clients
                    for client_id in of_b:
                        await client.client_kill_filter(_id=client_id)
                    await a.api(http, "DELETE", f"/broadcasts/{bc}")
                    await asyncio.sleep(0.2)
                finally:
                    b.proc.send_signal(signal.SIGCONT)
            finally:
                await client.aclose()
            thawed = time.monotonic()
            while True:
                view = (await b.health(http) or {}).get("cluster", {})
                if view.get("relaying") == [] and view["resyncs"]["ended"] == 1:
                    break
                assert time.monotonic() - thawed < 15, view
                await asyncio.sleep(0.2)
            ended_s = time.monotonic() - thawed
            assert "missed its stop" in b.text()
        finally:
            await fleet.close()
    print(f"b ended the copy whose stop it missed {ended_s:.2f} s after it thawed")
    for n in nodes:
        assert "Traceback" not in n.text(), n.text()[-3000:]
