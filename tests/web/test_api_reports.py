"""Reports and webhooks through the API on the real create_app: figures narrowed to the
caller's zones, CSV, webhook management, and events raised by a real speaker connection and
a real broadcast reaching a local receiver, signed."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from loa.relay.broadcast import LogEntry
from loa.store import Store
from loa.store.presence import Interval
from loa.web import auth
from loa.web.app import create_app
from loa.webhooks import verify_signature
from tests.conftest import AUTH, tree_config
from tests.web.test_api_admin import account, hello

DAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC
H = 3600.0
PERIOD = f"since={DAY:.0f}&until={DAY + 24 * H:.0f}"
SECRET = "0123456789abcdef0123"


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


def store_of(client: TestClient) -> Store:
    return client.app[auth.STORE]


async def get(client: TestClient, path: str, headers: dict[str, str], status: int = 200) -> Any:
    resp = await client.get("/api/v1" + path, headers=headers)
    body = await (resp.json() if resp.content_type == "application/json" else resp.read())
    assert resp.status == status, body
    return body


async def installed(client: TestClient, at: float) -> None:
    """Every pole installed at ``at`` (the app made them now, long after the day reported)."""

    def update(conn: Any) -> None:
        conn.execute("UPDATE endpoints SET created_at = ?", (at,))

    await store_of(client).db.write(update)


async def a_day(client: TestClient) -> None:
    """The poles installed a week before; c0-e0 online 06:00–18:00 and heard 10 of a
    15-minute programme to c0 at 05:55; c1-e0 online all day and heard a 2-minute emergency
    to p at 12:00."""
    store = store_of(client)
    await installed(client, DAY - 7 * 86400)
    await store.presence.record("c0-e0", True, DAY + 6 * H)
    await store.presence.record("c0-e0", False, DAY + 18 * H)
    await store.presence.record("c1-e0", True, DAY - H)
    await store.presence.record("c1-e0", False, DAY + 25 * H)
    for log_id, klass, zone, start, minutes, heard in [
        ("prog", "scheduled", "c0", DAY + 5 * H + 3300, 15, {"c0-e0": 600.0}),
        ("alert", "emergency", "p", DAY + 12 * H, 2, {"c1-e0": 120.0}),
    ]:
        entry = LogEntry(
            log_id, log_id, "tone", klass, None, [zone], [], "admin", start, start,
            start + minutes * 60, "finished", None, heard,
        )  # fmt: skip
        await store.log.put(entry.as_json())


async def test_endpoint_report(client: TestClient) -> None:
    await a_day(client)
    data = await get(client, f"/reports/endpoints?{PERIOD}", AUTH)
    assert (data["since"], data["until"]) == (DAY, DAY + 24 * H)
    by_id = {r["endpoint"]: r for r in data["endpoints"]}
    assert sorted(by_id) == ["c0-e0", "c0-e1", "c1-e0", "c1-e1"]
    assert by_id["c0-e0"] == {
        "endpoint": "c0-e0",
        "name": "Loa c0-e0",
        "zone": "c0",
        "broadcasts": 1,
        "emergencies": 0,
        "played_s": 600.0,
        "requested_s": 900.0 + 120.0,
        "availability_pct": 50.0,
    }
    assert by_id["c1-e0"]["emergencies"] == 1 and by_id["c1-e0"]["availability_pct"] == 100.0
    assert by_id["c0-e1"]["availability_pct"] == 0.0


async def test_reports_are_narrowed_to_the_callers_zones(client: TestClient) -> None:
    await a_day(client)
    op = await account(client.app, "op", "operator", "c0")
    viewer = await account(client.app, "viewer", "viewer")
    mine = await get(client, f"/reports/endpoints?{PERIOD}", op)
    assert [r["endpoint"] for r in mine["endpoints"]] == ["c0-e0", "c0-e1"]
    zones = await get(client, f"/reports/zones?{PERIOD}", op)
    assert zones["zones"] == [
        {
            "zone": "c0",
            "name": "Xã 0",
            "endpoints": 2,
            "broadcasts": 1,
            "emergencies": 0,
            "played_s": 600.0,
            "requested_s": 2 * 1020.0,
            "availability_pct": 25.0,
        }
    ]
    # out of scope looks like absent
    missing = await get(client, f"/reports/zones?{PERIOD}&zone=c1", op, 404)
    assert missing["error"]["message"] == "zone c1 not found"
    theirs = await get(client, f"/reports/zones?{PERIOD}&zone=c1", viewer)
    assert [z["zone"] for z in theirs["zones"]] == ["c1"]
    everything = await get(client, f"/reports/zones?{PERIOD}", AUTH)
    p = {z["zone"]: z for z in everything["zones"]}["p"]
    assert (p["endpoints"], p["broadcasts"], p["emergencies"]) == (4, 2, 1)
    assert p["availability_pct"] == pytest.approx((50 + 100) / 4, abs=1e-3)


async def test_csv(client: TestClient) -> None:
    await a_day(client)
    resp = await client.get(f"/api/v1/reports/zones?{PERIOD}&format=csv&tz=UTC", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert (
        resp.headers["Content-Disposition"] == 'attachment; filename="loa-zones-20240101-0000.csv"'
    )
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Từ", "Đến", "Mã khu vực", "Tên"]
    assert {r[2]: r for r in rows[1:]}["c0"][3:] == [
        "Xã 0", "2", "1", "0", "600.0", "2040.0", "25.0",
    ]  # fmt: skip
    resp = await client.get(f"/api/v1/reports/endpoints?{PERIOD}&format=csv", headers=AUTH)
    text = (await resp.read()).decode("utf-8-sig")
    assert text.splitlines()[1].startswith("2024-01-01T07:00:00+07:00,")  # Vietnam by default


async def test_availability_counts_from_installation_up_to_now(client: TestClient) -> None:
    """A week ending tomorrow, asked now: poles installed an hour ago count from then, not from
    the week's start, and up to now, not to tomorrow. c0-e0 online since its installation:
    100 %; c0-e1 never: 0 %; the zone c0: 50 % (equal times)."""
    store = store_of(client)
    now = time.time()
    await installed(client, now - H)
    await store.presence.record("c0-e0", True, now - H)
    query = f"since={now - 6 * 86400:.0f}&until={now + 86400:.0f}"
    poles = await get(client, f"/reports/endpoints?{query}", AUTH)
    by_id = {r["endpoint"]: r["availability_pct"] for r in poles["endpoints"]}
    assert by_id["c0-e0"] == 100.0 and by_id["c0-e1"] == 0.0
    zones = await get(client, f"/reports/zones?{query}&zone=c0", AUTH)
    assert zones["zones"][0]["availability_pct"] == 50.0


ENDPOINT_HEADER = {
    "vi": "Từ,Đến,Mã cụm loa,Tên,Mã khu vực,Số lượt phát,Khẩn cấp,Đã phát (giây),"
    "Yêu cầu phát (giây),Sẵn sàng (%)",
    "en": "From,To,Loudspeaker id,Name,Zone id,Broadcasts,Emergencies,Played (s),"
    "Requested (s),Availability (%)",
}


@pytest.mark.parametrize(
    ("query", "accept", "lang"),
    [
        ("", None, "vi"),  # Vietnamese by default
        ("&lang=en", None, "en"),
        ("&lang=vi", "en", "vi"),  # the page's choice wins over the browser's
        ("", "en-GB,en;q=0.9", "en"),
        ("", "fr-FR, vi;q=0.5, en;q=0.4", "vi"),
        ("", "fr, en;q=0", "vi"),  # q=0: not wanted
    ],
)
async def test_csv_headers_in_the_readers_language(
    client: TestClient, query: str, accept: str | None, lang: str
) -> None:
    headers = dict(AUTH) | ({"Accept-Language": accept} if accept else {})
    body = await get(client, f"/reports/endpoints?{PERIOD}&format=csv{query}", headers)
    assert body.decode("utf-8-sig").splitlines()[0] == ENDPOINT_HEADER[lang]
    zones = await get(client, f"/reports/zones?{PERIOD}&format=csv{query}", headers)
    assert zones.decode("utf-8-sig").splitlines()[0].split(",")[2:5] == (
        ["Mã khu vực", "Tên", "Số cụm loa"] if lang == "vi" else ["Zone id", "Name", "Loudspeakers"]
    )


@pytest.mark.parametrize(
    ("query", "status", "code", "message"),
    [
        ("until=1", 400, "missing_field", 'missing query parameter "since"'),
        ("since=1", 400, "missing_field", 'missing query parameter "until"'),
        ("since=today&until=1", 400, "wrong_type", 'query parameter "since" must be float'),
        ("since=10&until=10", 422, "unprocessable", "a report covers since < until"),
        (f"{PERIOD}&format=xml", 400, "invalid_value", "'xml'; one of json, csv"),
        (f"{PERIOD}&format=csv&lang=fr", 400, "invalid_value", "'fr'; one of vi, en"),
        (f"{PERIOD}&tz=Mars/Base", 400, "invalid_value", "tz must be an IANA time zone"),
        (f"{PERIOD}&zone=c0&zone=c1", 400, "invalid_value", '"zone" is given more than once'),
        (f"{PERIOD}&zoen=c0", 400, "unknown_field", 'unknown query parameter "zoen"'),
    ],
)
async def test_bad_report_queries(
    client: TestClient, query: str, status: int, code: str, message: str
) -> None:
    data = await get(client, f"/reports/endpoints?{query}", AUTH, status)
    assert data["error"]["code"] == code and message in data["error"]["message"], data


# -- webhooks ---------------------------------------------------------------------------------


async def test_webhook_management(client: TestClient) -> None:
    made = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://soc.example.vn/loa", "events": ["broadcast.logged"]},
        headers=AUTH,
    )
    hook = await made.json()
    assert made.status == 201 and made.headers["Location"] == f"/api/v1/webhooks/{hook['id']}"
    assert len(hook.pop("secret")) == 64
    assert hook["events"] == ["broadcast.logged"] and hook["enabled"] is True
    listed = await get(client, "/webhooks", AUTH)
    assert listed == {"webhooks": [hook]}  # the secret is not shown again
    for body, message in [
        ({"url": "ftp://x/", "events": ["broadcast.logged"]}, 'field "url": expected str'),
        ({"url": "http:///x", "events": ["broadcast.logged"]}, 'field "url": expected str'),
        ({"url": "http://x/", "events": ["endpoint.up"]}, "'endpoint.up'; one of broadcast."),
        ({"url": "http://x/"}, 'missing field "events"'),
        ({"url": "http://x/", "events": ["endpoint.online"], "to": 1}, 'unknown field "to"'),
        (
            {"url": "http://x/", "events": ["endpoint.online"], "enabled": "yes"},
            'field "enabled" must be bool',
        ),
        ({"url": "http://a:b@x/", "events": ["endpoint.online"]}, 'field "url": expected str'),
    ]:
        resp = await client.post("/api/v1/webhooks", json=body, headers=AUTH)
        assert resp.status == 400
        assert message in (await resp.json())["error"]["message"]
    assert (await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=AUTH)).status == 200
    assert await get(client, "/webhooks", AUTH) == {"webhooks": []}
    gone = await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=AUTH)
    assert gone.status == 404
    assert (await gone.json())["error"]["message"] == f"webhook {hook['id']} not found"


async def test_speaker_and_broadcast_events_reach_a_receiver(
    client: TestClient, aiohttp_server: Any
) -> None:
    """The wiring in create_app: a speaker connecting and leaving, and a broadcast ending,
    arrive at the receiver signed; the presence interval is recorded."""
    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        verify_signature(SECRET, h["X-Loa-Timestamp"], body, h["X-Loa-Signature"], time.time())
        got.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/in", receive)
    server = await aiohttp_server(app)
    body = {
        "url": str(server.make_url("/in")),
        "events": ["endpoint.online", "endpoint.offline", "broadcast.logged"],
        "secret": SECRET,
    }
    made = await client.post("/api/v1/webhooks", json=body, headers=AUTH)
    hook_id = (await made.json())["id"]
    assert (await made.json())["secret"] == SECRET

    ws, welcome = await hello(client, "tok-c0-e0")
    assert welcome["type"] == "welcome"
    await ws.close()
    tone = {"type": "tone", "freq_hz": 440, "duration_s": 0.1}
    resp = await client.post(
        "/api/v1/broadcasts",
        json={"source": tone, "targets": {"zones": ["c1"]}, "chime": False},
        headers=AUTH,
    )
    assert resp.status == 201
    bc_id = (await resp.json())["id"]
    deadline = time.monotonic() + 10
    while len(got) < 3:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.02)
    by_event = {g["event"]: g["data"] for g in got}
    assert by_event["endpoint.online"]["endpoint"] == "c0-e0"
    assert by_event["endpoint.offline"]["zone"] == "c0"
    assert by_event["broadcast.logged"]["id"] == bc_id
    assert by_event["broadcast.logged"]["state"] == "finished"
    (interval,) = await store_of(client).presence.intervals(0, time.time() + 60)
    assert isinstance(interval, Interval) and interval.endpoint == "c0-e0"
    assert interval.offline_at is not None

    test = await client.post(f"/api/v1/webhooks/{hook_id}/test", headers=AUTH)
    assert test.status == 202 and (await test.json())["event"] == "webhook.test"
    while len(got) < 4:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.02)
    assert got[3]["data"] == {"hook": hook_id, "message": "test delivery from loa"}
    deliveries = await get(client, f"/webhooks/{hook_id}/deliveries?state=delivered", AUTH)
    assert {d["event"] for d in deliveries["deliveries"]} == {
        "endpoint.online",
        "endpoint.offline",
        "broadcast.logged",
        "webhook.test",
    }
    assert all(d["attempts"] == 1 for d in deliveries["deliveries"])


async def test_dead_letters_are_listed(client: TestClient) -> None:
    store = store_of(client)
    hook = await store.webhooks.add("http://127.0.0.1:9/", ["endpoint.online"], SECRET)
    row = await store.webhooks.enqueue_test(hook.id, {})
    await store.webhooks.failed(row.id, "HTTP 500: nope", time.time(), None)
    dead = await get(client, f"/webhooks/{hook.id}/deliveries?state=dead", AUTH)
    (only,) = dead["deliveries"]
    assert (only["id"], only["state"], only["last_error"]) == (row.id, "dead", "HTTP 500: nope")
    assert await get(client, f"/webhooks/{hook.id}/deliveries?state=pending", AUTH) == {
        "deliveries": []
    }
    bad = await get(client, f"/webhooks/{hook.id}/deliveries?limit=x", AUTH, 400)
    assert bad["error"]["message"] == 'query parameter "limit" must be int, got str'
