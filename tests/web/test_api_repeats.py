"""Repeating emergencies on a real server (loopback): POST /broadcasts with ``repeat`` plays
again start to start, GET /repeats shows the next play, DELETE /repeats/{id} ends them, a
restart keeps them, scopes hold, and every refusal names what is wrong."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from loa.streamer.playlist import Playlist
from loa.streamer.tone import ChimeSource
from loa.streamer.tts import TtsSource
from loa.web.app import NODE, create_app
from loa.web.keys import REPEATS
from tests.conftest import ADMIN, AUTH, tree_config
from tests.relay.relayfix import free_port
from tests.web.test_api_admin import account
from tests.web.test_server import spawn, stop


def emergency(every_s: float, *, zones: tuple[str, ...] = ("c0",), **repeat: Any) -> dict[str, Any]:
    return {
        "source": {"type": "tone", "freq_hz": 700, "duration_s": 0.3},
        "targets": {"zones": list(zones)},
        "class": "emergency",
        "chime": False,
        "name": "Sơ tán khẩn cấp",
        "repeat": {"every_s": every_s, **repeat},
    }


async def call(
    client: TestClient, method: str, path: str, status: int, body: Any = None, **kw: Any
) -> Any:
    headers = kw.pop("headers", AUTH)
    if body is not None:
        kw["json"] = body
    async with client.request(method, "/api/v1" + path, headers=headers, **kw) as resp:
        data = await resp.json()
        assert resp.status == status, data
        return data


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    for _ in range(int(timeout / 0.05)):
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def quiet_client(aiohttp_client: Any, config: Any) -> TestClient:
    client = await aiohttp_client(create_app(config))
    client.app[REPEATS].announce = False  # plays of 0.3 s: fast tests (announce: see below)
    return client


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await quiet_client(aiohttp_client, tree_config(tmp_path))


async def plays(client: TestClient, repeat_id: str) -> list[str]:
    return list((await call(client, "GET", f"/repeats/{repeat_id}", 200))["plays"])


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_repeats_fire_start_to_start_until_cancelled(client: TestClient) -> None:
    t0 = time.time()
    made = await call(client, "POST", "/broadcasts", 201, emergency(1.5))
    rep = made["repeat"]
    assert made["id"] == f"{rep['id']}.1" and made["class"] == "emergency"
    assert rep["state"] == "active" and rep["every_s"] == 1.5 and rep["until_at"] is None
    assert rep["plays"] == [made["id"]] and rep["playing"] == made["id"]
    assert rep["next_at"] == pytest.approx(t0 + 1.5, abs=0.3)
    assert rep["what"] == "Sơ tán khẩn cấp" and rep["targets"] == {"zones": ["c0"], "endpoints": []}
    listed = await call(client, "GET", "/repeats", 200)
    assert [r["id"] for r in listed["repeats"]] == [rep["id"]]

    async def three() -> bool:
        return len(await plays(client, rep["id"])) >= 3

    await until(three, 5, "three plays")
    t3 = time.time()
    assert await plays(client, rep["id"]) == [f"{rep['id']}.{n}" for n in (1, 2, 3)]
    assert t3 - t0 == pytest.approx(3.0, abs=0.5)  # 1.5 s start to start, not after the end
    between = await call(client, "GET", f"/repeats/{rep['id']}", 200)
    assert between["next_at"] == pytest.approx(t3 + 1.5, abs=0.5)

    cancelled = await call(client, "DELETE", f"/repeats/{rep['id']}", 200)
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled by admin"
    assert cancelled["next_at"] is None and cancelled["playing"] is None
    assert client.app[NODE].broadcasts == {}, "the play on air stops with the cancel"
    await asyncio.sleep(3.5)
    assert len(await plays(client, rep["id"])) == 3, "no play after a cancel"
    assert (await call(client, "GET", "/repeats", 200))["repeats"] == []
    again = await call(client, "DELETE", f"/repeats/{rep['id']}", 409)
    assert (
        again["error"]["message"] == f"repeat {rep['id']} is cancelled; it cannot become cancelled"
    )


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_for_s_ends_the_repeat_and_stopping_a_play_keeps_it(client: TestClient) -> None:
    made = await call(client, "POST", "/broadcasts", 201, emergency(1.0, for_s=2.5))
    rep = made["repeat"]
    assert rep["until_at"] == pytest.approx(time.time() + 2.5, abs=0.3)
    stopped = await call(client, "DELETE", f"/broadcasts/{made['id']}", 200)
    assert stopped["state"] == "stopped"
    assert (await call(client, "GET", f"/repeats/{rep['id']}", 200))["state"] == "active"

    async def done() -> Any:
        row = await call(client, "GET", f"/repeats/{rep['id']}", 200)
        return row if row["state"] == "done" else None

    row = await until(done, 6, "the end of the repeat")
    assert row["plays"] == [f"{rep['id']}.{n}" for n in (1, 2, 3)]  # at 0, 1 and 2 s
    assert row["reason"] == "until reached" and row["next_at"] is None


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_replays_open_with_chime_and_the_issue_time(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(tree_config(tmp_path)))
    body = {**emergency(1.0), "chime": True}
    made = await call(client, "POST", "/broadcasts", 201, body)
    second = f"{made['repeat']['id']}.2"
    node = client.app[NODE]

    async def replay() -> Any:
        return node.broadcasts.get(second)

    bc = await until(replay, 6, "the second play")  # the chime (1.5 s) outlasts every_s
    playlist = bc.source
    assert isinstance(playlist, Playlist)
    chime, said, tone = playlist.items
    assert isinstance(chime, ChimeSource) and isinstance(said, TtsSource)
    at = time.strftime("%H:%M", time.gmtime(made["repeat"]["issued_at"] + 7 * 3600))
    assert said.text.startswith(f"Bản tin phát lúc {at} ngày ")
    assert tone.name.startswith("tone")
    await call(client, "DELETE", f"/repeats/{made['repeat']['id']}", 200)


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_a_restart_keeps_the_repeat(aiohttp_client: Any, tmp_path: Path) -> None:
    config = tree_config(tmp_path)
    first = await quiet_client(aiohttp_client, config)
    made = await call(first, "POST", "/broadcasts", 201, emergency(2.0))
    rep_id = made["repeat"]["id"]
    next_at = made["repeat"]["next_at"]
    await first.close()  # the server stops between plays

    second = await quiet_client(aiohttp_client, config)
    row = await call(second, "GET", f"/repeats/{rep_id}", 200)
    assert row["state"] == "active" and row["next_at"] == next_at

    async def replayed() -> bool:
        return len(await plays(second, rep_id)) >= 2

    await until(replayed, 5, "the play after the restart")
    assert time.time() >= next_at - 0.1, "it kept its time"
    assert (await plays(second, rep_id))[1] == f"{rep_id}.2"
    await call(second, "DELETE", f"/repeats/{rep_id}", 200)


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"class": "live"}, 400, "repeat is for emergency broadcasts only"),
        ({"repeat": {"every_s": 60, "until": 4e9, "for_s": 60}}, 400, "not both"),
        ({"repeat": {"every_s": 0.5}}, 400, "every_s"),
        ({"repeat": {"every_s": 60, "evry": 1}}, 400, 'unknown field "repeat.evry"'),
        ({"repeat": {"every_s": 60, "until": 1000}}, 422, "repeat.until is in the past"),
    ],
)
async def test_bad_repeats_are_refused_and_nothing_plays(
    client: TestClient, change: dict[str, Any], status: int, message: str
) -> None:
    data = await call(client, "POST", "/broadcasts", status, {**emergency(60), **change})
    assert message in data["error"]["message"]
    assert client.app[NODE].broadcasts == {}
    assert (await call(client, "GET", "/repeats", 200))["repeats"] == []


async def test_scopes(client: TestClient) -> None:
    made = await call(client, "POST", "/broadcasts", 201, emergency(60))
    rep_id = made["repeat"]["id"]
    other = await account(client.app, "b", "operator", "c1", emergency_right=True)
    assert (await call(client, "GET", "/repeats", 200, headers=other))["repeats"] == []
    for method in ("GET", "DELETE"):
        data = await call(client, method, f"/repeats/{rep_id}", 404, headers=other)
        assert data["error"]["message"] == f"repeat {rep_id} not found"
    local = await account(client.app, "a", "operator", "c0")  # no emergency right
    assert len((await call(client, "GET", "/repeats", 200, headers=local))["repeats"]) == 1
    data = await call(client, "DELETE", f"/repeats/{rep_id}", 403, headers=local)
    assert data["error"]["code"] == "forbidden"
    assert (await call(client, "GET", f"/repeats/{rep_id}", 200))["state"] == "active"
    mine = await account(client.app, "c", "operator", "c0", emergency_right=True)
    data = await call(client, "DELETE", f"/repeats/{rep_id}", 403, headers=mine)
    assert data["error"]["message"] == (
        f"broadcast {rep_id} comes from the national level, above c's zone c0: "
        "only that level may stop it"
    )
    theirs = await call(client, "POST", "/broadcasts", 201, emergency(60), headers=mine)
    own_id = theirs["repeat"]["id"]
    assert theirs["origin_zone"] == "c0"
    cancelled = await call(client, "DELETE", f"/repeats/{own_id}", 200, headers=mine)
    assert cancelled["state"] == "cancelled"
    assert (await call(client, "DELETE", f"/repeats/{rep_id}", 200))["state"] == "cancelled"


@pytest.mark.e2e
async def test_a_sigkilled_loa_serve_keeps_its_repeat(tmp_path: Path) -> None:
    """A real `loa serve`, killed with SIGKILL between plays, comes back with the repeat
    active at its stored next play time, and plays it."""
    port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "loa.toml"
    config.write_text(
        f'admin_token = "{ADMIN}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[relay]\nudp_host = "127.0.0.1"\nudp_port = {free_port()}\nchime = false\n'
        '[[zones]]\nid = "p"\nname = "P"\n[[zones]]\nid = "c0"\nname = "Xã 0"\nparent = "p"\n'
    )
    args = ["serve", "--config", str(config)]
    served = await spawn(args, port, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(served.url + "/api/v1/broadcasts", json=emergency(3.0)) as r:
                made = await r.json()
                assert r.status == 201, made
            rep_id, next_at = made["repeat"]["id"], made["repeat"]["next_at"]
            served.proc.send_signal(signal.SIGKILL)
            await served.proc.wait()
            served = await spawn(args, port, tmp_path / "serve.log")
            url = f"{served.url}/api/v1/repeats/{rep_id}"

            async def row() -> Any:
                async with http.get(url) as r:
                    assert r.status == 200
                    return await r.json()

            again = await row()
            assert again["state"] == "active" and again["next_at"] == next_at
            assert again["plays"] == [f"{rep_id}.1"]

            async def replayed() -> Any:
                data = await row()
                return data if len(data["plays"]) == 2 else None

            data = await until(replayed, 15, "the play after the SIGKILL")
            assert data["plays"][1] == f"{rep_id}.2" and time.time() >= next_at - 0.1
            async with http.delete(url) as r:
                assert r.status == 200 and (await r.json())["state"] == "cancelled"
    finally:
        await stop(served)


async def test_an_idempotent_retry_gets_the_same_repeat(client: TestClient) -> None:
    body = {**emergency(60), "idempotency_key": "bao-1"}
    first = await call(client, "POST", "/broadcasts", 201, body)
    again = await call(client, "POST", "/broadcasts", 200, body)  # the first answer, again
    assert again["repeat"]["id"] == first["repeat"]["id"] and again["id"] == first["id"]
    listed = (await call(client, "GET", "/repeats", 200))["repeats"]
    assert [r["id"] for r in listed] == [first["repeat"]["id"]]
