"""Prepared emergency messages on a real server: the five seeded Vietnamese texts, per-zone
messages seen only in scope, admin-only edits, and refusals that name what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loa.web.app import create_app
from tests.conftest import AUTH, tree_config
from tests.web.test_api_admin import account
from tests.web.test_api_repeats import call
from tests.web.test_scopes import WAV


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


async def test_five_vietnamese_messages_are_seeded(client: TestClient) -> None:
    seeded = (await call(client, "GET", "/prepared", 200))["prepared"]
    assert [p["id"] for p in seeded] == ["bao", "lu", "sat-lo", "chay", "so-tan"]
    assert [p["title"] for p in seeded] == ["Bão", "Lũ lụt", "Sạt lở đất", "Cháy", "Sơ tán"]
    for p in seeded:
        assert p["zone"] is None and p["media"] is None
        assert p["text"].startswith(("Thông báo khẩn cấp.", "Lệnh sơ tán khẩn cấp.")), p
    assert "Gọi 114" in seeded[3]["text"]


async def test_admin_edits_and_zones_scope_what_operators_see(client: TestClient) -> None:
    body = {"title": "Lũ quét Xã 0", "zone": "c0", "text": "Lũ quét ở suối Xã 0.", "position": 5}
    made = await call(client, "PUT", "/prepared/lu-quet-c0", 200, body)
    assert made["updated_by"] == "admin" and made["zone"] == "c0" and made["media"] is None
    changed = await call(client, "PUT", "/prepared/bao", 200, {"title": "Bão lớn", "text": "Bão."})
    assert changed["text"] == "Bão." and changed["position"] == 100
    mine = await account(client.app, "a", "operator", "c0", emergency_right=True)
    other = await account(client.app, "b", "operator", "c1", emergency_right=True)
    seen = (await call(client, "GET", "/prepared", 200, headers=mine))["prepared"]
    assert [p["id"] for p in seen] == ["lu-quet-c0", "lu", "sat-lo", "chay", "so-tan", "bao"]
    seen = (await call(client, "GET", "/prepared", 200, headers=other))["prepared"]
    assert "lu-quet-c0" not in [p["id"] for p in seen] and len(seen) == 5
    data = await call(client, "PUT", "/prepared/x", 403, {"title": "X", "text": "x"}, headers=mine)
    assert data["error"]["message"] == "only an admin may edit prepared messages; a is operator"
    await call(client, "DELETE", "/prepared/chay", 403, headers=mine)
    gone = await call(client, "DELETE", "/prepared/chay", 200)
    assert gone["id"] == "chay"
    await call(client, "DELETE", "/prepared/chay", 404)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/prepared/x", {"title": "X"}, 400, "exactly one of text or media"),
        ("/prepared/x", {"title": "X", "text": "a", "media": "m"}, 400, "exactly one"),
        ("/prepared/x", {"title": "X", "text": "a", "zone": "nowhere"}, 404, "zone nowhere"),
        ("/prepared/x", {"title": "X", "media": "nope"}, 404, "nope"),
        ("/prepared/Bad_Id", {"title": "X", "text": "a"}, 404, ""),  # ids: a-z, 0-9, -
        ("/prepared/x", {"title": "X", "txt": "a"}, 400, 'unknown field "txt"'),
    ],
)
async def test_bad_prepared_messages_are_refused(
    client: TestClient, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    data = await call(client, "PUT", path, status, body)
    assert message in data["error"]["message"]
    assert len((await call(client, "GET", "/prepared", 200))["prepared"]) == 5


async def test_media_an_emergency_needs_cannot_be_deleted(client: TestClient) -> None:
    async with client.post(
        "/api/v1/media?filename=bao.wav", data=WAV, headers={**AUTH, "Content-Type": "audio/wav"}
    ) as resp:
        media = (await resp.json())["id"]
        assert resp.status == 201
    await call(
        client, "PUT", "/prepared/bao-ghi-am", 200, {"title": "Bão (ghi âm)", "media": media}
    )
    body = {
        "source": {"type": "media", "id": media},
        "targets": {"zones": ["c0"]},
        "class": "emergency",
        "chime": False,
        "repeat": {"every_s": 3600},
    }
    rep_id = (await call(client, "POST", "/broadcasts", 201, body))["repeat"]["id"]
    data = await call(client, "DELETE", f"/media/{media}", 409)
    assert data["error"]["message"] == (
        f"media {media} is used by repeating emergency {rep_id}, prepared message bao-ghi-am: "
        "cancel or change them first"
    )
    await call(client, "DELETE", f"/repeats/{rep_id}", 200)
    data = await call(client, "DELETE", f"/media/{media}", 409)
    assert "prepared message bao-ghi-am" in data["error"]["message"]
    await call(client, "DELETE", "/prepared/bao-ghi-am", 200)
    await call(client, "DELETE", f"/media/{media}", 200)
