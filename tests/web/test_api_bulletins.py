"""The bulletin routes: JSON and CAP ingest, listing by state and scope, schedule, cancel,
and every refusal with its status and message (400/403/404/409/413/415/422)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from loa.bulletins.cap import MAX_BYTES
from loa.web.app import NODE, create_app
from loa.web.keys import BULLETINS
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import wait_for
from tests.web.test_api_admin import account

CAP_DIR = Path(__file__).parent.parent / "data" / "cap"
FUTURE = "2099-09-13T08:00:00+07:00"
GEOCODES = {"VN-DVHC": {"19183": "c0", "19186": "c1", "99999": "nowhere"}}


def cap_sample(name: str, *, expires: str | None = FUTURE) -> bytes:
    text = (CAP_DIR / name).read_text(encoding="utf-8")
    if expires is not None:
        text = text.replace("2025-09-13T08:00:00+07:00</expires>", f"{expires}</expires>")
    return text.encode()


def normal(**extra: Any) -> dict[str, Any]:
    return {
        "level": "normal",
        "zones": ["c0"],
        "title": "Lịch tiêm chủng",
        "variants": [{"language": "vi", "text": "Tiêm chủng tại trạm y tế xã."}],
        **extra,
    }


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    config = tree_config(tmp_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "geocodes.json").write_text(json.dumps(GEOCODES), encoding="utf-8")
    return await aiohttp_client(create_app(config))


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


def error(data: Any) -> tuple[str, str]:
    return data["error"]["code"], data["error"]["message"]


async def test_a_normal_bulletin_waits_in_the_inbox(client: TestClient) -> None:
    made = await call(client, "POST", "/bulletins", 201, normal())
    assert made["state"] == "inbox" and made["level"] == "normal" and made["source"] == "api"
    assert made["broadcasts"] == [] and made["created_by"] == "admin"
    assert client.app[NODE].broadcasts == {}
    listed = await call(client, "GET", "/bulletins?state=inbox", 200)
    assert [b["id"] for b in listed["bulletins"]] == [made["id"]]
    assert (await call(client, "GET", "/bulletins?state=done", 200))["bulletins"] == []
    assert made.pop("plays") is None  # only the answer to filing it says when it plays
    assert (await call(client, "GET", f"/bulletins/{made['id']}", 200)) == made


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            normal(level="urgent"),
            "invalid_value",
            """field "level": invalid enum value 'urgent'; one of normal, priority, emergency""",
        ),
        (normal(zones=[]), "invalid_value", 'field "zones": expected array of length >= 1'),
        (normal(title=" "), "invalid_value", 'field "title": expected non-blank text'),
        (normal(variants=[]), "invalid_value", 'field "variants": expected array of length >= 1'),
        (
            normal(variants=[{"language": "vi"}]),
            "invalid_value",
            'field "variants[0]": a variant has exactly one of text or media',
        ),
        (
            normal(variants=[{"language": "vi", "text": "a", "media": "m"}]),
            "invalid_value",
            'field "variants[0]": a variant has exactly one of text or media',
        ),
        (
            normal(variants=[{"language": "v i", "text": "a"}]),
            "invalid_value",
            'field "variants[0].language": expected str matching regex',
        ),
        (
            normal(variants=[{"language": "vi", "text": "a", "voice": "x"}]),
            "unknown_field",
            'unknown field "variants[0].voice"',
        ),
        (
            normal(issued_at="today"),
            "wrong_type",
            'field "issued_at" must be float | null, got str',
        ),
        (
            normal(repeat_every_s=60),
            "invalid_value",
            "repeat_every_s is for emergency bulletins only",
        ),
        (
            normal(level="emergency", repeat_every_s=0.5),
            "invalid_value",
            'field "repeat_every_s": expected float >= 1.0',
        ),
        (normal(levle="emergency"), "unknown_field", 'unknown field "levle"'),
    ],
)
async def test_bad_bulletins_are_400(
    client: TestClient, body: Any, code: str, message: str
) -> None:
    data = await call(client, "POST", "/bulletins", 400, body)
    assert error(data)[0] == code and message in error(data)[1], data
    assert (await call(client, "GET", "/bulletins", 200))["bulletins"] == []


async def test_expired_bulletin_is_a_conflict(client: TestClient) -> None:
    data = await call(client, "POST", "/bulletins", 409, normal(expires_at=1.0))
    assert error(data) == ("in_past", "expires_at is in the past: an expired bulletin never plays")
    assert data["error"]["field"] == "expires_at"


async def test_unknown_zone_or_media_is_404(client: TestClient) -> None:
    data = await call(client, "POST", "/bulletins", 404, normal(zones=["c0", "nowhere"]))
    assert error(data) == ("not_found", "zone nowhere not found")
    data = await call(
        client, "POST", "/bulletins", 404, normal(variants=[{"language": "vi", "media": "m0"}])
    )
    assert error(data)[0] == "not_found" and "m0" in error(data)[1]
    await call(client, "GET", "/bulletins/nope", 404)
    await call(client, "POST", "/bulletins/nope/cancel", 404)
    await call(client, "POST", "/bulletins/nope/schedule", 404, {})


async def test_json_is_required(client: TestClient) -> None:
    async with client.post(
        "/api/v1/bulletins", data=b"level=normal", headers={**AUTH, "Content-Type": "text/plain"}
    ) as resp:
        assert resp.status == 415
    async with client.post(
        "/api/v1/bulletins", data=b"[1]", headers={**AUTH, "Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400
        assert error(await resp.json()) == ("wrong_type", "the body must be object, got array")


async def test_scopes(client: TestClient) -> None:
    op = await account(client.app, "op", "operator", "c0")
    ope = await account(client.app, "ope", "operator", "c0", emergency_right=True)
    viewer = await account(client.app, "viewer", "viewer")
    data = await call(client, "POST", "/bulletins", 403, normal(zones=["c1"]), headers=op)
    assert error(data) == ("forbidden", "zone c1 outside op's zone c0")
    data = await call(client, "POST", "/bulletins", 403, normal(), headers=viewer)
    assert error(data) == ("forbidden", "viewer is a viewer and may not broadcast")
    data = await call(client, "POST", "/bulletins", 403, normal(level="emergency"), headers=op)
    assert error(data) == ("forbidden", "op has no emergency right")

    mine = await call(client, "POST", "/bulletins", 201, normal(), headers=op)
    theirs = await call(client, "POST", "/bulletins", 201, normal(zones=["c1"]))
    both = await call(client, "POST", "/bulletins", 201, normal(zones=["c0", "c1"]))
    listed = await call(client, "GET", "/bulletins", 200, headers=op)
    assert sorted(b["id"] for b in listed["bulletins"]) == sorted([mine["id"], both["id"]])
    assert len((await call(client, "GET", "/bulletins", 200, headers=viewer))["bulletins"]) == 3
    await call(client, "GET", f"/bulletins/{theirs['id']}", 404, headers=op)
    await call(client, "POST", f"/bulletins/{theirs['id']}/cancel", 404, headers=op)
    # seen (one of its zones is c0) but not entirely theirs to send
    data = await call(client, "POST", f"/bulletins/{both['id']}/schedule", 403, {}, headers=op)
    assert error(data) == ("forbidden", "zone c1 outside op's zone c0")
    await call(client, "POST", f"/bulletins/{mine['id']}/cancel", 403, headers=viewer)
    emergency = await call(
        client, "POST", "/bulletins", 201, normal(level="emergency"), headers=ope
    )
    data = await call(client, "POST", f"/bulletins/{emergency['id']}/cancel", 403, headers=op)
    assert error(data) == ("forbidden", "op has no emergency right")
    done = await call(client, "POST", f"/bulletins/{emergency['id']}/cancel", 200, headers=ope)
    assert done["state"] == "cancelled"


async def test_schedule_and_cancel_conflicts(client: TestClient) -> None:
    bulletin = await call(client, "POST", "/bulletins", 201, normal())
    path = f"/bulletins/{bulletin['id']}"
    data = await call(client, "POST", path + "/schedule", 409, {"at": 1000.0})
    assert error(data) == ("in_past", "at is in the past; leave it out to play now")
    data = await call(client, "POST", path + "/schedule", 400, {"at": "noon"})
    assert error(data) == ("wrong_type", 'field "at" must be float | null, got str')
    at = 4_000_000_000.0
    scheduled = await call(client, "POST", path + "/schedule", 200, {"at": at})
    assert scheduled["state"] == "scheduled"
    data = await call(client, "POST", path + "/schedule", 409, {})
    assert error(data) == (
        "bulletin_refused",
        f"bulletin {bulletin['id']} is scheduled; it cannot become scheduled (only from inbox)",
    )
    assert (data["error"]["reason"], data["error"]["state"]) == ("scheduled", "scheduled")
    assert (await call(client, "POST", path + "/cancel", 200))["state"] == "cancelled"
    data = await call(client, "POST", path + "/cancel", 409)
    assert error(data)[0] == "bulletin_refused" and "is cancelled" in error(data)[1]
    assert data["error"]["reason"] == "cancelled"

    priority = await call(client, "POST", "/bulletins", 201, normal(level="priority"))
    assert priority["state"] == "on_air"
    data = await call(client, "POST", f"/bulletins/{priority['id']}/schedule", 409, {})
    assert error(data) == (
        "bulletin_refused",
        f"bulletin {priority['id']} is priority: it went on air when it arrived; only normal "
        "bulletins wait in the inbox to be scheduled",
    )
    assert data["error"]["reason"] == "not_normal"
    await call(client, "POST", f"/bulletins/{priority['id']}/cancel", 200)


async def test_state_filter_is_checked(client: TestClient) -> None:
    data = await call(client, "GET", "/bulletins?state=lost", 400)
    assert error(data) == (
        "invalid_value",
        "query parameter \"state\": invalid enum value 'lost'; one of inbox, scheduled, on_air, "
        "done, cancelled, expired, failed",
    )


# -- CAP ---------------------------------------------------------------------------------------
async def post_cap(
    client: TestClient, body: bytes, status: int, content_type: str = "application/cap+xml"
) -> Any:
    headers = {**AUTH, "Content-Type": content_type}
    async with client.post("/api/v1/bulletins/cap", data=body, headers=headers) as resp:
        data = await resp.json()
        assert resp.status == status, data
        return data


async def test_cap_typhoon_becomes_an_emergency_and_a_cancel_withdraws_it(
    client: TestClient,
) -> None:
    made = await post_cap(client, cap_sample("typhoon.xml"), 201)
    assert made["level"] == "emergency" and made["zones"] == ["c0", "c1"]
    assert made["state"] == "on_air" and made["source"] == "cap"
    assert made["title"] == "Bão số 5" and made["cap_identifier"] == "QT-PCTT-2025-0912-001"
    assert made["variants"][0]["language"] == "vi-VN"
    assert made["variants"][0]["text"].startswith("Cảnh báo bão số 5 đổ bộ")
    assert "geocodes.json: VN-DVHC=99999 maps to unknown zone 'nowhere'" in made["warnings"]
    node = client.app[NODE]
    await wait_for(lambda: node.broadcasts, 5, "the emergency broadcast")
    assert [bc.spec.priority.name for bc in node.broadcasts.values()] == ["EMERGENCY"]
    assert sorted(next(iter(node.broadcasts.values())).spec.target_zones) == ["c0", "c1"]
    again = await post_cap(client, cap_sample("typhoon.xml"), 409)
    assert error(again) == (
        "conflict",
        "CAP alert QT-PCTT-2025-0912-001 from bchpctt@quangtri.gov.vn was already received "
        f"as bulletin {made['id']}",
    )
    cancelled = await post_cap(client, cap_sample("cancel.xml"), 200, "application/xml")
    assert cancelled == {
        "cancelled": [made["id"]],
        "unknown": ["bchpctt@quangtri.gov.vn,QT-PCTT-2025-0913-002"],
    }
    assert (await call(client, "GET", f"/bulletins/{made['id']}", 200))["state"] == "cancelled"
    assert client.app[NODE].broadcasts == {}


async def test_cap_that_has_expired_or_maps_nowhere_is_ignored(client: TestClient) -> None:
    expired = await post_cap(client, cap_sample("typhoon.xml", expires=None), 200)
    assert expired["ignored"] == "every info block has expired"
    nowhere = cap_sample("typhoon.xml").replace(b"19183", b"1").replace(b"19186", b"2")
    data = await post_cap(client, nowhere, 200)
    assert data["ignored"] == "no area maps to a zone"
    assert (await call(client, "GET", "/bulletins", 200))["bulletins"] == []


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("xxe.xml", "DTDs and entities are forbidden"),
        ("billion_laughs.xml", "DTDs and entities are forbidden"),
        ("", "malformed XML at line 1, column 20: mismatched tag"),
    ],
)
async def test_bad_cap_is_422_and_nothing_plays(client: TestClient, name: str, needle: str) -> None:
    body = (CAP_DIR / name).read_bytes() if name else b"<alert><unclosed></alert>"
    data = await post_cap(client, body, 422)
    assert data["error"]["code"] == "bad_cap"
    assert needle in data["error"]["message"]
    assert (await call(client, "GET", "/bulletins", 200))["bulletins"] == []
    assert client.app[NODE].broadcasts == {}


async def test_cap_content_type_and_size(client: TestClient) -> None:
    data = await post_cap(client, cap_sample("typhoon.xml"), 415, "text/plain")
    assert data["error"]["code"] == "unsupported_media_type"
    data = await post_cap(client, b" " * (MAX_BYTES + 1), 413)
    assert data["error"]["code"] == "too_large"


async def test_cap_needs_the_emergency_right(client: TestClient) -> None:
    op = await account(client.app, "op", "operator", "c0")
    headers = {**op, "Content-Type": "application/cap+xml"}
    async with client.post(
        "/api/v1/bulletins/cap", data=cap_sample("typhoon.xml"), headers=headers
    ) as resp:
        assert resp.status == 403
        assert error(await resp.json()) == ("forbidden", "op has no emergency right")


async def test_the_inbox_page(client: TestClient) -> None:
    async with client.get("/bulletins", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/login?next=/bulletins"
    await account(client.app, "op", "operator", "c0", password="mật-khẩu-op")
    form = {"username": "op", "password": "mật-khẩu-op"}
    async with client.post("/login", data=form, allow_redirects=False) as resp:
        assert resp.status == 303
    async with client.get("/bulletins") as resp:
        text = await resp.text()
        assert resp.status == 200
        assert '<title data-i18n="bulletins.title">Bản tin từ hệ thống nguồn</title>' in text
        assert '<script type="module" src="/static/js/bulletins.js"></script>' in text
    async with client.get("/static/js/bulletins.js") as resp:
        assert resp.status == 200


def short_typhoon(parameters: str = "") -> bytes:
    """The typhoon alert with one short sentence to speak (each play lasts ~1 s)."""
    text = cap_sample("typhoon.xml").decode()
    start, end = text.index("<headline>"), text.index("<area>")
    return (text[:start] + "<headline>Bão</headline>" + parameters + text[end:]).encode()


async def cap_client(aiohttp_client: Any, tmp_path: Path, every_s: float) -> TestClient:
    config = tree_config(tmp_path)
    config = msgspec.structs.replace(
        config, relay=msgspec.structs.replace(config.relay, cap_repeat_every_s=every_s)
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "geocodes.json").write_text(json.dumps(GEOCODES), encoding="utf-8")
    client = await aiohttp_client(create_app(config))
    client.app[BULLETINS].chime = client.app[BULLETINS].announce = False
    return client


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_cap_emergency_repeats_at_the_configured_interval_until_cancelled(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await cap_client(aiohttp_client, tmp_path, every_s=1.5)
    made = await post_cap(client, short_typhoon(), 201)
    assert made["repeat_every_s"] == 1.5 and made["state"] == "on_air"
    path = f"/bulletins/{made['id']}"

    async def plays() -> list[str]:
        # play ids are <bulletin>.<n>-<random>: keep <bulletin>.<n>
        ids = (await call(client, "GET", path, 200))["broadcasts"]
        return [b[: b.index("-", len(made["id"]))] for b in ids]

    for _ in range(60):  # 1.5 s apart, each ~1 s long: three plays well inside 6 s
        if len(await plays()) >= 3:
            break
        await asyncio.sleep(0.1)
    assert await plays() == [f"{made['id']}.{n}" for n in (1, 2, 3)]
    cancelled = await post_cap(client, cap_sample("cancel.xml"), 200)
    assert cancelled["cancelled"] == [made["id"]]
    played = await plays()
    await asyncio.sleep(3.5)  # two intervals: nothing more starts
    assert await plays() == played
    assert (await call(client, "GET", path, 200))["state"] == "cancelled"
    assert client.app[NODE].broadcasts == {}


async def test_cap_parameter_overrides_the_interval_and_zero_plays_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await cap_client(aiohttp_client, tmp_path, every_s=600)
    param = "<parameter><valueName>{}</valueName><value>{}</value></parameter>"
    made = await post_cap(client, short_typhoon(param.format("repeatIntervalMinutes", 2)), 201)
    assert made["repeat_every_s"] == 120
    await post_cap(client, cap_sample("cancel.xml"), 200)
    once = short_typhoon(param.format("repeatIntervalMinutes", 0)).replace(b"0912-001", b"0912-9")
    made = await post_cap(client, once, 201)
    assert made["repeat_every_s"] is None
    path = f"/bulletins/{made['id']}"
    deadline = time.monotonic() + 8
    while (await call(client, "GET", path, 200))["state"] != "done":
        assert time.monotonic() < deadline, "the single play did not end"
        await asyncio.sleep(0.1)
    (only,) = (await call(client, "GET", path, 200))["broadcasts"]
    assert only.startswith(f"{made['id']}.1-")
    bad = short_typhoon(param.format("repeatIntervalMinutes", "soon")).replace(b"001", b"777")
    data = await post_cap(client, bad, 422)
    assert error(data) == (
        "bad_cap",
        "alert/info[1]/parameter[1]/value: repeatIntervalMinutes must be a whole number of "
        "minutes from 0 to 1440, got 'soon'",
    )
    assert (await call(client, "GET", "/bulletins?state=on_air", 200))["bulletins"] == []


async def test_a_repeating_cap_emergency_shows_in_repeats_with_its_next_play(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await cap_client(aiohttp_client, tmp_path, every_s=2.5)
    made = await post_cap(client, short_typhoon(), 201)

    async def between() -> Any:
        listed = (await call(client, "GET", "/repeats", 200))["repeats"]
        return listed if listed and listed[0]["next_at"] is not None else None

    listed = None
    for _ in range(100):  # the first play (~1 s) ends, then it waits for the next
        if listed := await between():
            break
        await asyncio.sleep(0.05)
    assert listed is not None, "no next play shown between plays"
    (entry,) = listed
    assert entry["id"] == made["id"] and entry["kind"] == "bulletin"
    assert entry["every_s"] == 2.5 and entry["playing"] is None
    assert entry["next_at"] == pytest.approx(made["created_at"] + 2.5, abs=0.5)
    assert entry["until_at"] == made["expires_at"] and entry["what"] == "Bão số 5"
    other = await account(client.app, "far", "operator", "c1")
    assert (await call(client, "GET", "/repeats", 200, headers=other))["repeats"] == [entry]
    await call(client, "POST", f"/bulletins/{made['id']}/cancel", 200)
    assert (await call(client, "GET", "/repeats", 200))["repeats"] == []


# -- times kept across restarts (durable) -------------------------------------------------
def cap_effective_in(seconds: float) -> bytes:
    when = datetime.fromtimestamp(time.time() + seconds, UTC).isoformat(timespec="seconds")
    text = cap_sample("typhoon.xml").decode()
    return text.replace("2025-09-12T14:00:00+07:00</effective>", f"{when}</effective>").encode()


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_cap_effective_in_the_future_is_held_until_then(client: TestClient) -> None:
    made = await post_cap(client, cap_effective_in(2.0), 201)
    assert made["state"] == "scheduled" and made["level"] == "emergency"
    assert made["scheduled_at"] == pytest.approx(time.time() + 2.0, abs=1.5)
    listed = await call(client, "GET", "/bulletins?state=scheduled", 200)
    assert [b["id"] for b in listed["bulletins"]] == [made["id"]]
    node = client.app[NODE]
    await asyncio.sleep(0.8)
    assert node.broadcasts == {}, "held until its effective time"
    await wait_for(lambda: node.broadcasts, 4, "the emergency at its effective time")
    assert time.time() >= made["scheduled_at"] - 0.05
    assert (await call(client, "GET", f"/bulletins/{made['id']}", 200))["state"] == "on_air"


@pytest.mark.slow  # real time: seconds of waiting for plays
async def test_times_survive_a_restart(tmp_path: Path) -> None:
    config = tree_config(tmp_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "geocodes.json").write_text(json.dumps(GEOCODES), encoding="utf-8")

    async def server() -> TestClient:
        c = TestClient(TestServer(create_app(config), host="127.0.0.1"))
        await c.start_server()
        return c

    first = await server()
    later = time.time() + 3600
    held = await post_cap(first, cap_effective_in(3600), 201)
    inbox = await call(first, "POST", "/bulletins", 201, normal())
    await call(first, "POST", f"/bulletins/{inbox['id']}/schedule", 200, {"at": later})
    soon = await call(first, "POST", "/bulletins", 201, normal(title="sắp phát"))
    soon_at = time.time() + 2.5
    await call(first, "POST", f"/bulletins/{soon['id']}/schedule", 200, {"at": soon_at})
    await first.close()

    second = await server()
    try:
        for made, at in ((held, held["scheduled_at"]), (inbox, later)):
            row = await call(second, "GET", f"/bulletins/{made['id']}", 200)
            assert (row["state"], row["scheduled_at"]) == ("scheduled", at)
        node = second.app[NODE]
        assert node.broadcasts == {}
        await wait_for(lambda: node.broadcasts, 5, "the bulletin at its time after the restart")
        assert time.time() >= soon_at - 0.05
        assert all(b.startswith(soon["id"]) for b in node.broadcasts)
    finally:
        await second.close()
