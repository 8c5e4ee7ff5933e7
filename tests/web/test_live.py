"""The dashboard's status WebSocket: a snapshot on connect, a push on every change, coalesced,
closed on shutdown; and the push latency, measured."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from loa.relay.node import Node
from loa.web import live
from loa.web.app import CONFIG, create_app
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet

WS = "/api/v1/status/ws"


def tone(zones: list[str], klass: str = "live") -> dict[str, Any]:
    return {
        "source": {"type": "tone", "freq_hz": 800},
        "targets": {"zones": zones},
        "class": klass,
    }


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


async def receive(ws: Any, timeout: float = 2.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, msg
    data: dict[str, Any] = msg.json()
    return data


async def test_needs_credentials(client: TestClient) -> None:
    resp = await client.get(WS)
    assert resp.status == 401


@pytest.mark.slow
async def test_snapshot_on_connect_then_a_push_per_change(client: TestClient) -> None:
    async with client.ws_connect(WS, headers=AUTH) as ws:
        first = await receive(ws)
        assert first["type"] == "status"
        assert [e["id"] for e in first["endpoints"]] == ["c0-e0", "c0-e1", "c1-e0", "c1-e1"]
        assert first["broadcasts"] == []
        assert first["counts"] == {"online": 0, "offline": 4, "playing": 0}

        resp = await client.post("/api/v1/broadcasts", json=tone(["c0"]), headers=AUTH)
        assert resp.status == 201
        b1 = (await resp.json())["id"]
        pushed = await receive(ws)
        (bc,) = pushed["broadcasts"]
        assert bc["id"] == b1 and bc["listeners"] == ["c0-e0", "c0-e1"]
        assert bc["hearing"] == 0  # routed, but no speaker is connected
        assert {e["id"]: e["playing"] for e in pushed["endpoints"]}["c0-e0"] == b1

        resp = await client.patch("/api/v1/endpoints/c1-e1", json={"volume": 35}, headers=AUTH)
        assert resp.status == 200
        pushed = await receive(ws)
        assert {e["id"]: e["volume"] for e in pushed["endpoints"]}["c1-e1"] == 35

        resp = await client.delete(f"/api/v1/broadcasts/{b1}", headers=AUTH)
        assert resp.status == 200
        pushed = await receive(ws)
        assert pushed["broadcasts"] == []
        # Nothing changes: nothing is pushed.
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.6)


async def test_a_burst_of_changes_is_coalesced(client: TestClient) -> None:
    async with client.ws_connect(WS, headers=AUTH) as ws:
        await receive(ws)
        for volume in range(10, 60, 5):  # ten changes within a few ms
            resp = await client.patch(
                "/api/v1/endpoints/c0-e0", json={"volume": volume}, headers=AUTH
            )
            assert resp.status == 200
        times, volumes = [], []
        while not volumes or volumes[-1] != 55:
            data = await receive(ws)
            times.append(time.monotonic())
            volumes.append({e["id"]: e["volume"] for e in data["endpoints"]}["c0-e0"])
        assert len(volumes) <= 2, volumes  # the first change, then everything since
        assert all(b - a >= live.MIN_PUSH_S * 0.9 for a, b in itertools.pairwise(times))


def test_publisher_windows_by_the_clock_it_is_given(tmp_path: Path) -> None:
    """State changes wait for MIN_PUSH_S; counter-only changes for STATS_PUSH_S."""
    node = Node(tree_config(tmp_path))
    publisher = live.StatusPublisher()
    box = publisher.subscribe(node)
    ep = node.endpoints["c0-e0"]
    assert not publisher.poll(0.0)  # nothing changed since the subscriber's snapshot
    ep.volume = 10
    assert publisher.poll(0.0)
    ep.volume = 20
    assert not publisher.poll(0.1)  # inside the window: held back, not lost
    assert publisher.poll(0.3)
    assert '"volume":20' in (box.latest or "")
    ep.status = {"received": 5, "lost": 1}
    assert not publisher.poll(1.0)
    assert publisher.poll(2.31)
    assert publisher.pushes == 3


@pytest.mark.slow
async def test_speakers_coming_online_are_pushed(client: TestClient) -> None:
    server = client.server
    config = server.app[CONFIG]
    fleet = Fleet(
        str(server.make_url("")).rstrip("/"), [(e.id, e.token) for e in config.endpoints[:2]]
    )
    async with client.ws_connect(WS, headers=AUTH) as ws:
        await receive(ws)
        await fleet.start()
        try:
            online: set[str] = set()
            deadline = time.monotonic() + 10
            while online != {"c0-e0", "c0-e1"}:
                assert time.monotonic() < deadline, online
                data = await receive(ws, timeout=10)
                online = {e["id"] for e in data["endpoints"] if e["online"]}
            assert data["counts"]["online"] == 2
        finally:
            await fleet.close()


async def test_shutdown_closes_dashboards(tmp_path: Path) -> None:
    server = TestServer(create_app(tree_config(tmp_path)), host="127.0.0.1")
    await server.start_server()

    async with ClientSession() as http:
        ws = await http.ws_connect(server.make_url(WS), headers=AUTH)
        await receive(ws)
        t0 = time.monotonic()
        closing = asyncio.create_task(server.close())
        msg = await ws.receive(timeout=5)  # the client answers the close as it reads it
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001, msg
        await closing
        assert time.monotonic() - t0 < 3
        await ws.close()


@pytest.mark.slow
async def test_push_latency_after_a_change(client: TestClient) -> None:
    """From sending a broadcast start (or stop) to the dashboard holding the push: an upper
    bound of change → push (the change happens inside the request)."""
    latencies = []
    async with client.ws_connect(WS, headers=AUTH) as ws:
        await receive(ws)
        rng = random.Random(7)
        started = ""
        for i in range(16):
            # Changes at random phases of the publisher's poll, as operators make them.
            await asyncio.sleep(live.MIN_PUSH_S + rng.uniform(0.0, live.POLL_S * 2))
            t0 = time.monotonic()
            if i % 2 == 0:
                resp = await client.post("/api/v1/broadcasts", json=tone(["c1"]), headers=AUTH)
                started = (await resp.json())["id"]
            else:
                resp = await client.delete(f"/api/v1/broadcasts/{started}", headers=AUTH)
            assert resp.status in (200, 201)
            data = await receive(ws)
            latencies.append(time.monotonic() - t0)
            ids = [b["id"] for b in data["broadcasts"]]
            assert ids == ([started] if i % 2 == 0 else [])
    median = statistics.median(latencies)
    print(f"status push latency: median {median * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert median < live.POLL_S * 3, latencies
