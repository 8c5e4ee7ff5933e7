"""Records nobody can forge: an operator of commune c0 (A) tries every way to touch commune
c1's (B's) records through a real server on loopback, and gets 4xx with nothing changed.

Ids are the server's; the idempotency key is scoped to the caller's account; the broadcast
log is append-only."""

from __future__ import annotations

import asyncio
import csv
import io
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from loa.web.app import create_app
from loa.web.keys import NODE, STORE
from tests.conftest import AUTH, tree_config
from tests.web.test_api_admin import account

TONE = {"type": "tone", "freq_hz": 1000}


def bc(zone: str, klass: str = "scheduled", **extra: Any) -> dict[str, Any]:
    return {"source": TONE, "targets": {"zones": [zone]}, "class": klass, "chime": False, **extra}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(tree_config(tmp_path)))
    return client


async def call(
    client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
    status: int = 200,
) -> Any:
    resp = await client.request(method, "/api/v1" + path, json=body, headers=headers)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def test_a_client_id_is_refused_and_the_other_row_stays(client: TestClient) -> None:
    """The old overwrite attack: A posts a broadcast naming B's id. Refused (400, the field
    named), and B's running broadcast and its log row are as they were."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    op_b = await account(client.app, "op-b", "operator", "c1")
    b = await call(client, "POST", "/broadcasts", op_b, bc("c1", name="Tin xã B"), 201)
    assert b["id"].startswith("bc-") and len(b["id"]) == 19
    err = await call(client, "POST", "/broadcasts", op_a, bc("c0", id=b["id"], name="giả mạo"), 400)
    assert err["error"]["code"] == "unknown_field" and err["error"]["field"] == "id"
    node = client.app[NODE]
    assert list(node.broadcasts) == [b["id"]]
    assert node.broadcasts[b["id"]].log.what == "Tin xã B"
    stopped = await call(client, "DELETE", f"/broadcasts/{b['id']}", op_b)
    err = await call(client, "POST", "/broadcasts", op_a, bc("c0", id=b["id"]), 400)
    assert err["error"]["field"] == "id"
    row = await client.app[STORE].log.get(b["id"])
    assert row is not None and row.as_json() == stopped
    assert (row.what, row.created_by, row.target_zones) == ("Tin xã B", "op-b", ("c1",))
    # Ids never repeat: a hundred starts, a hundred ids, none derived from the last.
    made = set()
    for _ in range(100):
        new = (await call(client, "POST", "/broadcasts", op_a, bc("c0"), 201))["id"]
        await call(client, "DELETE", f"/broadcasts/{new}", AUTH)
        made.add(new)
    assert len(made) == 100


async def test_a_scheduled_run_id_cannot_be_claimed(client: TestClient) -> None:
    """Before: creating ``sch-<schedule>-<unix time>`` first made the run fail. A client
    cannot name a broadcast at all now, and a run's id has a random tail."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    err = await call(
        client, "POST", "/broadcasts", op_a, bc("c0", id="sch-morning-1764720000"), 400
    )
    assert err["error"]["message"] == 'unknown field "id"'
    assert not client.app[NODE].broadcasts


async def test_a_whip_id_in_the_query_is_refused(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/whip?zones=c0&id=mine",
        data="v=0\r\n",
        headers={**AUTH, "Content-Type": "application/sdp"},
    )
    assert resp.status == 400
    assert "id" in (await resp.json())["error"]["message"]
    assert not client.app[NODE].broadcasts


async def test_the_same_idempotency_key_gets_the_same_broadcast(client: TestClient) -> None:
    op_a = await account(client.app, "op-a", "operator", "c0")
    body = bc("c0", "live", name="Loa sáng", idempotency_key="nut-bam-7f3a")
    first = await call(client, "POST", "/broadcasts", op_a, body, 201)
    again = await client.post("/api/v1/broadcasts", json=body, headers=op_a)
    assert again.status == 200
    assert await again.json() == first  # the same body, word for word
    node = client.app[NODE]
    assert list(node.broadcasts) == [first["id"]]
    # The same key with another request is a client bug: refused, naming the first broadcast.
    other = {**body, "name": "Loa chiều"}
    err = await call(client, "POST", "/broadcasts", op_a, other, 409)
    assert err["error"]["broadcast"] == first["id"]
    assert "nut-bam-7f3a" in err["error"]["message"]
    # Still the same answer after the broadcast ended: a retry must not start it again.
    await call(client, "DELETE", f"/broadcasts/{first['id']}", op_a)
    again = await client.post("/api/v1/broadcasts", json=body, headers=op_a)
    assert again.status == 200 and (await again.json())["id"] == first["id"]
    assert not node.broadcasts


async def test_an_idempotency_key_is_scoped_to_its_account(client: TestClient) -> None:
    """Another account's key of the same spelling is independent: B neither gets A's
    broadcast back nor blocks A's key."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    op_b = await account(client.app, "op-b", "operator", "c1")
    a = await call(client, "POST", "/broadcasts", op_a, bc("c0", idempotency_key="k1"), 201)
    b = await call(client, "POST", "/broadcasts", op_b, bc("c1", idempotency_key="k1"), 201)
    assert a["id"] != b["id"]
    assert b["targets"]["zones"] == ["c1"]
    assert sorted(client.app[NODE].broadcasts) == sorted([a["id"], b["id"]])
    kept = await client.app[STORE].idempotency.get("op-a", "k1")
    assert kept is not None and kept.broadcast == a["id"]


async def test_a_refused_request_does_not_use_up_its_key(client: TestClient) -> None:
    op_a = await account(client.app, "op-a", "operator", "c0")
    await call(client, "POST", "/broadcasts", op_a, bc("c1", idempotency_key="k2"), 403)
    made = await call(client, "POST", "/broadcasts", op_a, bc("c0", idempotency_key="k2"), 201)
    assert made["targets"]["zones"] == ["c0"]


async def test_an_operator_cannot_stop_a_provincial_emergency(client: TestClient) -> None:
    """The province's emergency plays on commune c0's speakers: its operator sees it (it is
    on their speakers) but may not stop it — 403 naming the origin; it plays on."""
    province = await account(client.app, "tinh", "operator", "p", emergency_right=True)
    op_a = await account(client.app, "op-a", "operator", "c0", emergency_right=True)
    em = await call(client, "POST", "/broadcasts", province, bc("p", "emergency"), 201)
    assert em["origin_zone"] == "p"
    listed = await call(client, "GET", "/broadcasts", op_a)
    assert [b["id"] for b in listed["broadcasts"]] == [em["id"]]
    err = await call(client, "DELETE", f"/broadcasts/{em['id']}", op_a, status=403)
    assert err["error"]["origin_zone"] == "p"
    assert "comes from zone p, above op-a's zone c0" in err["error"]["message"]
    assert em["id"] in client.app[NODE].broadcasts
    # The admin's own (national) broadcast to c0 is not c0's to stop either.
    national = await call(client, "POST", "/broadcasts", AUTH, bc("c0", "live"), 201)
    err = await call(client, "DELETE", f"/broadcasts/{national['id']}", op_a, status=403)
    assert err["error"]["origin_zone"] == "national"
    # What c0 itself started, c0 stops; the province stops its own.
    mine = await call(client, "POST", "/broadcasts", op_a, bc("c0", "live"), 201)
    assert (await call(client, "DELETE", f"/broadcasts/{mine['id']}", op_a))["state"] == "stopped"
    assert (await call(client, "DELETE", f"/broadcasts/{em['id']}", province))["state"] == "stopped"
    # Commune c1's operator does not see c0's broadcasts at all: 404, as if absent.
    op_b = await account(client.app, "op-b", "operator", "c1")
    a_live = await call(client, "POST", "/broadcasts", op_a, bc("c0", "live"), 201)
    await call(client, "DELETE", f"/broadcasts/{a_live['id']}", op_b, status=404)
    await call(client, "GET", f"/broadcasts/{a_live['id']}", op_b, status=404)
    assert a_live["id"] in client.app[NODE].broadcasts


async def ws_status(ws: Any, timeout: float = 3.0) -> dict[str, Any]:
    data: dict[str, Any] = await ws.receive_json(timeout=timeout)
    assert data["type"] == "status"
    return data


async def test_the_status_socket_shows_each_client_its_own_scope(client: TestClient) -> None:
    """Commune c0's operator sees c0's poles and what plays there, never c1's; a change in
    c1 is not even pushed to them. The admin sees everything."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    op_b = await account(client.app, "op-b", "operator", "c1", emergency_right=True)
    province = await account(client.app, "tinh", "operator", "p", emergency_right=True)
    async with (
        client.ws_connect("/api/v1/status/ws", headers=op_a) as ws_a,
        client.ws_connect("/api/v1/status/ws", headers=AUTH) as ws_admin,
    ):
        first = await ws_status(ws_a)
        assert [e["id"] for e in first["endpoints"]] == ["c0-e0", "c0-e1"]
        assert first["counts"] == {"online": 0, "offline": 2, "playing": 0}
        everything = await ws_status(ws_admin)
        assert len(everything["endpoints"]) == 4
        # B's emergency: the admin is told, A hears nothing about it.
        b_em = await call(client, "POST", "/broadcasts", op_b, bc("c1", "emergency"), 201)
        pushed = await ws_status(ws_admin)
        assert [b["id"] for b in pushed["broadcasts"]] == [b_em["id"]]
        with pytest.raises(TimeoutError):
            await ws_a.receive_json(timeout=1.0)
        # The province's broadcast plays in c0 too: A sees it, with c0's poles only.
        prov = await call(client, "POST", "/broadcasts", province, bc("p", "live"), 201)
        pushed = await ws_status(ws_a)
        (seen,) = pushed["broadcasts"]
        assert seen["id"] == prov["id"] and seen["listeners"] == ["c0-e0", "c0-e1"]
        assert set(seen["heard_s"]) <= {"c0-e0", "c0-e1"}
        assert {e["playing"] for e in pushed["endpoints"]} == {prov["id"]}
        assert b_em["id"] not in str(pushed)
        everything = await ws_status(ws_admin)
        assert {b["id"] for b in everything["broadcasts"]} == {b_em["id"], prov["id"]}
    # The REST list agrees with the socket.
    listed = await call(client, "GET", "/broadcasts", op_a)
    assert [(b["id"], b["listeners"]) for b in listed["broadcasts"]] == [
        (prov["id"], ["c0-e0", "c0-e1"])
    ]


def wav(seconds: float = 0.2) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


async def upload(client: TestClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/media?filename={name}.wav", data=wav(), headers=headers)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 201, data
    return data


def schedule(schedule_id: str, media_id: str, zone: str) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": "Phát thanh sáng",
        "dtstart": "2025-03-03T05:00",
        "rrule": "FREQ=DAILY;BYHOUR=5",
        "items": [{"type": "media", "id": media_id}],
        "targets": {"zones": [zone]},
    }


async def test_media_belong_to_a_zone(client: TestClient) -> None:
    """A lists, uses and deletes c0's media; uses the province's and the top level's but may
    not delete them (403 naming the owner); B's are absent to A (404) whatever A tries;
    media a schedule plays cannot be deleted (409 naming the schedule)."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    op_b = await account(client.app, "op-b", "operator", "c1")
    province = await account(client.app, "tinh", "operator", "p")
    mine = await upload(client, op_a, "a")
    theirs = await upload(client, op_b, "b")
    provincial = await upload(client, province, "p")
    top = await upload(client, AUTH, "top")
    assert (mine["zone"], theirs["zone"], provincial["zone"], top["zone"]) == (
        "c0",
        "c1",
        "p",
        None,
    )
    listed = await call(client, "GET", "/media", op_a)
    assert {m["id"] for m in listed["media"]} == {mine["id"], provincial["id"], top["id"]}
    everything = await call(client, "GET", "/media", AUTH)
    assert len(everything["media"]) == 4

    # B's media: not listed, not playable, not schedulable, not in a bulletin, not deletable.
    b_media = {"type": "media", "id": theirs["id"]}
    for body in (
        {**bc("c0"), "source": b_media},
        {**bc("c0"), "source": {"type": "playlist", "items": [b_media]}},
    ):
        err = await call(client, "POST", "/broadcasts", op_a, body, 404)
        assert err["error"]["media"] == theirs["id"]
    err = await call(client, "POST", "/schedules", op_a, schedule("a1", theirs["id"], "c0"), 404)
    assert err["error"]["media"] == theirs["id"]
    note = {
        "level": "normal",
        "zones": ["c0"],
        "title": "Thông báo",
        "variants": [{"language": "vi", "media": theirs["id"]}],
    }
    await call(client, "POST", "/bulletins", op_a, note, 404)
    await call(client, "DELETE", f"/media/{theirs['id']}", op_a, status=404)
    assert not client.app[NODE].broadcasts

    # From above: playable, read-only.
    from_above = {**bc("c0"), "source": {"type": "media", "id": provincial["id"]}}
    played = await call(client, "POST", "/broadcasts", op_a, from_above, 201)
    assert played["source"] == "media"
    err = await call(client, "DELETE", f"/media/{provincial['id']}", op_a, status=403)
    assert err["error"]["owner_zone"] == "p"
    assert "above op-a's zone c0: read-only" in err["error"]["message"]
    err = await call(client, "DELETE", f"/media/{top['id']}", op_a, status=403)
    assert err["error"]["owner_zone"] == "national"

    # A's own, played by a schedule: 409 naming it; free again once the schedule is gone.
    await call(client, "POST", "/schedules", op_a, schedule("sang", mine["id"], "c0"), 201)
    err = await call(client, "DELETE", f"/media/{mine['id']}", op_a, status=409)
    assert err["error"]["schedules"] == "sang"
    assert "schedule(s) sang" in err["error"]["message"]
    await call(client, "DELETE", "/schedules/sang", op_a)
    gone = await call(client, "DELETE", f"/media/{mine['id']}", op_a)
    assert gone["id"] == mine["id"]

    # Nothing of B's or of the province changed.
    left = await call(client, "GET", "/media", AUTH)
    assert {m["id"] for m in left["media"]} == {theirs["id"], provincial["id"], top["id"]}
    seen_by_b = await call(client, "GET", "/media", op_b)
    assert {m["id"] for m in seen_by_b["media"]} == {theirs["id"], provincial["id"], top["id"]}
    # The province's operator deletes its own.
    await call(client, "DELETE", f"/media/{provincial['id']}", province)


async def test_the_log_shows_an_operator_only_their_poles(client: TestClient) -> None:
    """A provincial broadcast's log row, read by commune c0's operator, names c0's poles
    only; the admin reads them all."""
    node = client.app[NODE]
    prov = await call(client, "POST", "/broadcasts", AUTH, bc("p", "live"), 201)
    bc_obj = node.broadcasts[prov["id"]]
    bc_obj.log.heard_s.update({"c0-e0": 1.5, "c1-e0": 2.0})  # as if both had heard it
    await call(client, "DELETE", f"/broadcasts/{prov['id']}", AUTH)
    op_a = await account(client.app, "op-a", "operator", "c0")
    (row,) = (await call(client, "GET", "/log", op_a))["entries"]
    assert row["heard_s"] == {"c0-e0": 1.5} and row["endpoints_heard"] == 1
    (row,) = (await call(client, "GET", "/log", AUTH))["entries"]
    assert row["heard_s"] == {"c0-e0": 1.5, "c1-e0": 2.0}
    single = await call(client, "GET", f"/broadcasts/{prov['id']}", op_a)
    assert single["heard_s"] == {"c0-e0": 1.5}
    op_b = await account(client.app, "op-b", "operator", "c1")
    assert (await call(client, "GET", f"/broadcasts/{prov['id']}", op_b))["heard_s"] == {
        "c1-e0": 2.0
    }
    # The CSV export is cut the same way: poles heard and seconds heard are c0's.
    row = await log_csv(client, op_a)
    assert (row["Số loa nghe"], row["Tổng thời gian nghe (giây)"]) == ("1", "1.5")
    row = await log_csv(client, AUTH)
    assert (row["Số loa nghe"], row["Tổng thời gian nghe (giây)"]) == ("2", "3.5")


async def test_the_log_csv_speaks_the_readers_language(client: TestClient) -> None:
    """Headers, class and outcome in Vietnamese by default, in English by ?lang=en or by
    Accept-Language; ids and the operator's own text stay as written."""
    started = await call(client, "POST", "/broadcasts", AUTH, bc("c0", "emergency"), 201)
    await call(client, "DELETE", f"/broadcasts/{started['id']}", AUTH)
    vi = await log_csv(client, AUTH)
    assert list(vi)[:4] == ["Mã lượt phát", "Nội dung", "Nguồn", "Mức độ"]
    assert (vi["Mã lượt phát"], vi["Mức độ"], vi["Kết quả"]) == (
        started["id"],
        "Khẩn cấp",
        "đã dừng",
    )
    en = await log_csv(client, AUTH, "?lang=en")
    assert (en["Broadcast id"], en["Class"], en["Outcome"]) == (
        started["id"],
        "Emergency",
        "stopped",
    )
    assert await log_csv(client, {**AUTH, "Accept-Language": "en-GB,vi;q=0.5"}) == en
    assert await log_csv(client, {**AUTH, "Accept-Language": "fr, en;q=0.1"}) == en
    assert await log_csv(client, {**AUTH, "Accept-Language": "fr"}) == vi
    bad = await client.get("/api/v1/log.csv?lang=fr", headers=AUTH)
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "lang"


async def log_csv(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, str]:
    """The one row of ``GET /log.csv`` as ``headers`` reads it, by its header line's words."""
    resp = await client.get(f"/api/v1/log.csv{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    columns, line = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert len(columns) == len(line) == 18, columns
    return dict(zip(columns, line, strict=True))


async def test_a_retry_racing_its_original_gets_the_same_broadcast(client: TestClient) -> None:
    """A double click: both requests in flight at once. One starts the broadcast (201), the
    other waits for it and gets the same answer (200); one broadcast on air."""
    op_a = await account(client.app, "op-a", "operator", "c0")
    body = bc("c0", "live", idempotency_key="double-click")
    answers = await asyncio.gather(
        *(client.post("/api/v1/broadcasts", json=body, headers=op_a) for _ in range(4))
    )
    statuses = sorted(r.status for r in answers)
    ids = {(await r.json())["id"] for r in answers}
    assert statuses == [200, 200, 200, 201] and len(ids) == 1
    assert list(client.app[NODE].broadcasts) == list(ids)


async def test_an_upload_may_name_its_owner_zone_within_the_callers_scope(
    client: TestClient,
) -> None:
    op_a = await account(client.app, "op-a", "operator", "c0")
    for_c0 = await client.post("/api/v1/media?filename=a.wav&zone=c0", data=wav(), headers=AUTH)
    assert for_c0.status == 201
    made = await for_c0.json()
    assert made["zone"] == "c0"
    await call(client, "DELETE", f"/media/{made['id']}", op_a)  # c0's: theirs to delete
    for zone in ("p", "c1", "nowhere"):  # above, beside, absent: all look absent
        resp = await client.post(
            f"/api/v1/media?filename=a.wav&zone={zone}", data=wav(), headers=op_a
        )
        assert resp.status == 404, zone
        assert (await resp.json())["error"]["zone"] == zone
    assert (await call(client, "GET", "/media", AUTH))["media"] == []
