"""/api/v1/schedules through the whole app: create from local time and presets, next runs,
precise errors, the conflicts report, and the running scheduler following every change.
(Who may call what is in test_scopes.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loa.web.app import NODE, create_app
from loa.web.keys import SCHEDULES
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import wait_for
from tests.web.test_api_admin import account
from tests.web.test_pages import add_user, sign_in

TWICE_MON_SAT = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"
MONDAY_5AM = 1_740_952_800  # 2025-03-03 05:00 in Hà Nội


def body(schedule_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": "Bản tin sáng",
        "dtstart": "2025-03-03T05:00",
        "rrule": TWICE_MON_SAT,
        "items": [{"type": "silence", "duration_s": 60}],
        "targets": {"zones": ["c0"]},
        **extra,
    }


async def client_for(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


async def call(
    client: TestClient, method: str, path: str, data: Any = None, status: int = 200, **kw: Any
) -> Any:
    resp = await client.request(method, "/api/v1" + path, json=data, headers=kw.get("h", AUTH))
    got = await resp.json()
    assert resp.status == status, got
    return got


async def test_create_from_local_time_then_preview_edit_and_delete(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await client_for(aiohttp_client, tmp_path)
    op = await account(client.app, "op", "operator", "c0")
    made = await call(client, "POST", "/schedules", body("morning"), 201, h=op)
    assert {k: made[k] for k in ("zone", "timezone", "dtstart", "grace_s", "class")} == {
        "zone": "c0",  # an operator's schedule ranks from their zone
        "timezone": "Asia/Ho_Chi_Minh",
        "dtstart": MONDAY_5AM,
        "grace_s": 600.0,
        "class": "scheduled",
    }
    assert (made["enabled"], made["created_by"]) == (True, "op")
    assert (await call(client, "GET", "/schedules/morning")) == made
    assert [s["id"] for s in (await call(client, "GET", "/schedules"))["schedules"]] == ["morning"]

    # Saturday 2025-03-08 12:00 local: 17:00, then Monday (Sunday is skipped) 05:00 and 17:00
    after = MONDAY_5AM + 5 * 86400 + 7 * 3600
    got = await call(client, "GET", f"/schedules/morning/preview?n=3&after={after}")
    assert got["timezone"] == "Asia/Ho_Chi_Minh"
    assert [s["local"] for s in got["starts"]] == [
        "2025-03-08T17:00:00+07:00",
        "2025-03-10T05:00:00+07:00",
        "2025-03-10T17:00:00+07:00",
    ]
    assert got["starts"][0]["at"] == MONDAY_5AM + 5 * 86400 + 12 * 3600

    edited = await call(
        client, "PATCH", "/schedules/morning", {"rrule": "FREQ=DAILY;COUNT=2", "enabled": False}
    )
    assert (edited["rrule"], edited["enabled"], edited["name"]) == (
        "FREQ=DAILY;COUNT=2",
        False,
        "Bản tin sáng",
    )
    got = await call(client, "GET", f"/schedules/morning/preview?n=5&after={MONDAY_5AM - 1}")
    assert len(got["starts"]) == 2  # the rule ends
    assert (await call(client, "DELETE", "/schedules/morning"))["id"] == "morning"
    await call(client, "GET", "/schedules/morning", status=404)


async def test_errors_say_what_is_wrong(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_for(aiohttp_client, tmp_path)
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            body("a", rrule="FREQ=DAILY;INTERVAL=0"),
            422,
            "invalid RRULE 'FREQ=DAILY;INTERVAL=0': ",
        ),
        (body("a", dtstart="5 giờ sáng"), 400, 'field "dtstart": expected str matching'),
        (body("a", dtstart="2025-02-30T05:00"), 422, "dtstart must be a local ISO time like "),
        (body("a", items=[{"type": "video"}]), 400, "one of media, url, tts, silence"),
        (
            body("a", items=[{"type": "url", "url": "http://r.example/"}]),
            400,
            'missing field "items[0].duration_s"',
        ),
        (
            body("a", items=[{"type": "url", "url": "notaurl", "duration_s": 60}]),
            422,
            "url 'notaurl' is not a URL of a stream",
        ),
        (
            body("a", items=[{"type": "media", "id": "0123456789abcdef"}]),
            404,
            "media '0123456789abcdef' is not in the library",
        ),
        (body("a", targets={"zones": ["xx"]}), 404, "zone 'xx' does not exist"),
        (body("a", colour="red"), 400, 'unknown field "colour"'),
        (body("conflicts"), 409, "schedule id 'conflicts' is reserved"),
        (body("a", **{"class": "emergency"}), 400, "'emergency'; one of scheduled, background"),
        (body("a", timezone="Mars/Olympus"), 400, "timezone must be an IANA time zone like"),
        (body("a", timezone=""), 400, 'field "timezone": expected str of length >= 1'),
    ]
    for data, status, message in cases:
        got = await call(client, "POST", "/schedules", data, status)
        assert message in got["error"]["message"], (data, got)
    n = "/schedules/conflicts"
    got = await call(client, "GET", f"{n}?since=0&until={32 * 86400}", status=422)
    assert got["error"]["message"] == (
        "the window is since < until, at most 31 days; got since=0 until=2.7648e+06"
    )
    got = await call(client, "GET", f"{n}?since=zero&until=1", status=400)
    assert got["error"]["message"] == 'query parameter "since" must be float, got str'
    await call(client, "POST", "/schedules", body("a"), 201)
    got = await call(client, "GET", "/schedules/a/preview?n=101", status=400)
    assert got["error"]["message"] == 'query parameter "n": expected int <= 100'


async def test_conflicts_report_who_wins_each_endpoint(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_for(aiohttp_client, tmp_path)
    op = await account(client.app, "op", "operator", "c0")
    # the province's programme and the commune's, both at 05:00 on c0. Equal starts go in id
    # order, so the commune's holds the floor; the province's outranks it but a scheduled
    # programme does not interrupt: it waits for the item boundary, then plays in full
    await call(client, "POST", "/schedules", body("prov", zone="p"), 201)
    await call(client, "POST", "/schedules", body("mine"), 201, h=op)
    since = MONDAY_5AM - 60
    report = await call(client, "GET", f"/schedules/conflicts?since={since}&until={since + 3600}")
    runs = {r["schedule"]: r for r in report["runs"]}
    assert set(runs) == {"prov", "mine"} and report["since"] == since
    mine, prov = runs["mine"], runs["prov"]
    assert mine["broadcast"] == f"sch-mine-{MONDAY_5AM}" and not mine["contested"]
    assert mine["end"] == MONDAY_5AM + 60
    assert prov["contested"] and {o["endpoint"] for o in prov["outcomes"]} == {"c0-e0", "c0-e1"}
    assert all(o["holder"] == mine["broadcast"] and not o["wins"] for o in prov["outcomes"])
    assert prov["end"] == MONDAY_5AM + 120  # paused while it waited, then its 60 s
    waiting = prov["outcomes"][0]["others"]
    assert [w["broadcast"] for w in waiting] == [prov["broadcast"]]
    holder = mine["broadcast"]
    assert waiting[0]["why"] == (
        f"outranks {holder} but does not interrupt: "
        f"takes the floor at {holder}'s next item boundary"
    )
    assert (waiting[0]["why_code"], waiting[0]["why_params"]) == ("at_boundary", {"holder": holder})
    assert all(o["heard_s"] == 60 for o in prov["outcomes"])


@pytest.mark.slow
async def test_the_running_scheduler_follows_the_api(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_for(aiohttp_client, tmp_path)
    service, node = client.app[SCHEDULES], client.app[NODE]
    at = int(time.time()) + 2
    data = body("soon", dtstart=at, rrule="FREQ=MINUTELY;COUNT=1")
    data["items"] = [{"type": "silence", "duration_s": 0.5}]
    await call(client, "POST", "/schedules", data, 201)
    runs = lambda: [b for b in node.broadcasts if b.startswith(f"sch-soon-{at}-")]  # noqa: E731
    await wait_for(runs, 5, "the scheduled broadcast")
    assert node.broadcasts[runs()[0]].log.created_by == "scheduler"
    await call(client, "PATCH", "/schedules/soon", {"enabled": False})
    await wait_for(lambda: not service.scheduler.schedules(), 2, "the disabled schedule to go")
    await call(client, "PATCH", "/schedules/soon", {"enabled": True})
    await wait_for(lambda: len(service.scheduler.schedules()) == 1, 2, "it to come back")
    await call(client, "DELETE", "/schedules/soon")
    await wait_for(lambda: not service.scheduler.schedules(), 2, "the deleted schedule to go")
    await asyncio.sleep(0)


async def test_the_schedules_page_has_the_editor_only_for_those_who_may_edit(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await client_for(aiohttp_client, tmp_path)
    resp = await client.get("/schedules", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/schedules"
    await add_user(client.server.app, "xa0", zone="c0")
    await sign_in(client, "xa0")
    text = await (await client.get("/schedules")).text()
    assert '<h1 data-i18n="sch.title">Lịch phát</h1>' in text
    assert '<section id="editor" class="card" >' in text  # an operator gets the editor
    assert '<script type="module" src="/static/js/schedules.js">' in text
    assert 'href="/schedules" data-nav="schedules"' in text
    await add_user(client.server.app, "watcher", "viewer")
    await sign_in(client, "watcher")
    text = await (await client.get("/schedules")).text()
    assert '<section id="editor" class="card" hidden>' in text
