"""The inventory and accounts API (zones, endpoints, users, tokens) through aiohttp's test
client, on the real create_app: every change lands in the store and in the running node.

``api_of`` and ``account`` are shared with test_openapi.py and test_scopes.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from loa.relay.node import Node
from loa.store import Store
from loa.web import auth
from loa.web.app import NODE, create_app
from tests.conftest import AUTH, tree_config

TONE = {"type": "tone", "freq_hz": 1000}


def api_of(app: web.Application) -> web.Application:
    """The /api/v1 sub-app of a create_app() application."""
    for resource in app.router.resources():
        info = resource.get_info()
        if info.get("prefix") == "/api/v1":
            sub: web.Application = info["app"]
            return sub
    raise AssertionError("create_app() mounted no /api/v1 sub-app")


async def account(
    app: web.Application,
    username: str,
    role: str,
    zone: str | None = None,
    *,
    emergency_right: bool = False,
    password: str = "mật-khẩu-dài",
) -> dict[str, str]:
    """A user made through the store (password hashed by auth.add_user) and the headers that
    carry a fresh bearer token of theirs."""
    store = app[auth.STORE]
    await auth.add_user(
        store, username, password, role, zone=zone, emergency_right=emergency_right, actor="test"
    )
    _, token = await store.users.add_token(username, "test", actor="test")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


def node_of(client: TestClient) -> Node:
    return client.app[NODE]


def store_of(client: TestClient) -> Store:
    return client.app[auth.STORE]


async def call(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Any:
    resp = await client.request(method, "/api/v1" + path, json=body, headers=headers or AUTH)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def error(client: TestClient, method: str, path: str, body: Any, status: int) -> str:
    data = await call(client, method, path, body, status)
    return str(data["error"]["message"])


# -- zones -----------------------------------------------------------------------------------


async def test_zone_lifecycle(client: TestClient) -> None:
    made = await call(
        client, "POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, status=201
    )
    assert made == {
        "id": "v0",
        "name": "Thôn 0",
        "parent": "c0",
        "timezone": "Asia/Ho_Chi_Minh",
        "languages": ["vi"],
        "voice": None,
        "frame_ms": None,
        "redundancy": None,
        "playout_delay_ms": None,
        "effective_voice": "vi",
        "effective_audio": {"frame_ms": 20, "redundancy": False, "playout_delay_ms": 300},
        "level": 2,
        "children": [],
        "endpoints": {"here": 0, "total": 0, "online": 0},
    }
    c0 = await call(client, "GET", "/zones/c0")
    assert c0["children"] == ["v0"] and c0["endpoints"] == {"here": 2, "total": 2, "online": 0}
    assert (await call(client, "GET", "/zones/p"))["endpoints"]["total"] == 4
    changed = await call(
        client, "PATCH", "/zones/v0", {"name": "Thôn Một", "languages": ["vi", "km"]}
    )
    assert (changed["name"], changed["languages"]) == ("Thôn Một", ["vi", "km"])
    assert (await store_of(client).zones.get("v0")).name == "Thôn Một"
    message = await error(client, "DELETE", "/zones/c0", None, 409)
    assert message == "zone 'c0' still has child zones (v0); move or remove them first"
    assert (await call(client, "DELETE", "/zones/v0"))["id"] == "v0"
    assert "v0" not in node_of(client).zones
    message = await error(client, "DELETE", "/zones/c0", None, 409)
    assert message == "zone 'c0' still has endpoints (c0-e0, c0-e1); move or remove them first"
    assert "zone 'v0' does not exist" in await error(client, "GET", "/zones/v0", None, 404)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "v0", "name": "x"}, 400, 'missing field "parent"'),
        (
            {"id": "v0", "name": "x", "parent": "c0", "colour": 1},
            400,
            'unknown field "colour"',
        ),
        ({"id": "v 0", "name": "x", "parent": "c0"}, 400, 'field "id": expected str matching'),
        ({"id": "v0", "name": " ", "parent": "c0"}, 400, 'field "name": expected non-blank text'),
        ({"id": "v0", "name": "x", "parent": 7}, 400, 'field "parent" must be str | null, got int'),
        (
            {"id": "v0", "name": "x", "parent": "c0", "timezone": "Mars/Base"},
            400,
            "timezone must be an IANA time zone like Asia/Ho_Chi_Minh, got 'Mars/Base'",
        ),
        ({"id": "v0", "name": "x", "parent": "c0", "languages": "vi"}, 400, '"languages" must be'),
        ({"id": "v0", "name": "x", "parent": "nowhere"}, 404, "parent zone 'nowhere' does not"),
        ({"id": "c1", "name": "x", "parent": "c0"}, 409, "zone 'c1' already exists"),
    ],
)
async def test_bad_zone_requests(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in await error(client, "POST", "/zones", body, status)
    assert "v0" not in node_of(client).zones


async def test_cannot_move_a_zone_into_its_own_subtree(client: TestClient) -> None:
    await call(client, "POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, 201)
    message = await error(client, "PATCH", "/zones/c0", {"parent": "v0", "name": "new"}, 409)
    assert message == "cannot move zone 'c0' under 'v0': 'v0' is inside 'c0''s subtree"
    assert (await store_of(client).zones.get("c0")).name == "Xã 0"  # nothing half-done
    assert node_of(client).zones.parent("c0") == "p"


async def test_moving_a_village_reroutes_running_broadcasts(client: TestClient) -> None:
    """A village's speaker follows its village from one commune's broadcast to the other's."""
    await call(client, "POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, 201)
    await call(client, "PATCH", "/endpoints/c0-e1", {"zone": "v0"})
    ids = []
    for commune in ("c0", "c1"):
        body = {"source": TONE, "targets": {"zones": [commune]}, "class": "live"}
        ids.append((await call(client, "POST", "/broadcasts", body, status=201))["id"])
    b0, b1 = ids
    assert (await call(client, "GET", f"/broadcasts/{b0}"))["listeners"] == ["c0-e0", "c0-e1"]
    moved = await call(client, "PATCH", "/zones/v0", {"parent": "c1"})
    assert moved["parent"] == "c1" and moved["level"] == 2
    assert (await call(client, "GET", f"/broadcasts/{b0}"))["listeners"] == ["c0-e0"]
    assert (await call(client, "GET", f"/broadcasts/{b1}"))["listeners"] == [
        "c0-e1",
        "c1-e0",
        "c1-e1",
    ]
    assert (await store_of(client).zones.get("v0")).parent == "c1"


# -- endpoints -------------------------------------------------------------------------------


async def hello(client: TestClient, token: str) -> Any:
    ws = await client.ws_connect("/api/v1/speaker")
    await ws.send_json({"type": "hello", "token": token, "version": 1, "client": "test"})
    return ws, await ws.receive_json(timeout=5)


async def test_added_endpoint_gets_its_token_once_and_is_routed(client: TestClient) -> None:
    body = {"id": "c0-e9", "name": "Loa chợ", "zone": "c0", "lat": 21.0, "lon": 105.8}
    made = await call(client, "POST", "/endpoints", body, status=201)
    token = made.pop("token")
    assert made["zone"] == "c0" and made["location"] == {"lat": 21.0, "lon": 105.8}
    assert (made["volume"], made["emergency_volume"]) == (80, 100)
    assert "token" not in await call(client, "GET", "/endpoints/c0-e9")
    row = await store_of(client).endpoints.get("c0-e9")
    assert row.token_hash is not None and token not in row.token_hash
    ws, welcome = await hello(client, token)
    assert welcome["type"] == "welcome" and welcome["endpoint"] == "c0-e9"
    await ws.close()
    bc = {"source": TONE, "targets": {"zones": ["c0"]}}
    assert (await call(client, "POST", "/broadcasts", bc, status=201))["listeners"] == [
        "c0-e0",
        "c0-e1",
        "c0-e9",
    ]
    rtp = {"id": "r1", "name": "VLC", "zone": "c1", "kind": "rtp", "address": "127.0.0.1:9"}
    made = await call(client, "POST", "/endpoints", rtp, status=201)
    assert "token" not in made and made["online"] is True  # a static RTP receiver


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "e", "name": "x"}, 400, 'missing field "zone"'),
        ({"id": "e", "name": "x", "zone": "c0", "token": "t"}, 400, 'unknown field "token"'),
        ({"id": "e", "name": "x", "zone": "c0", "kind": "horn"}, 400, "one of managed, rtp"),
        ({"id": "e", "name": "x", "zone": "c0", "kind": "rtp"}, 400, "needs address"),
        ({"id": "e", "name": "x", "zone": "c0", "address": "nohost"}, 400, '"address": expected'),
        ({"id": "e", "name": "x", "zone": "c0", "lat": 91}, 400, '"lat": expected float <= 90'),
        (
            {"id": "e", "name": "x", "zone": "c0", "volume": 101},
            400,
            '"volume": expected int <= 100',
        ),
        ({"id": "e", "name": "x", "zone": ["c0"]}, 400, 'field "zone" must be str, got array'),
        ({"id": "e", "name": "x", "zone": "nowhere"}, 404, "zone 'nowhere' does not exist"),
        ({"id": "c1-e0", "name": "x", "zone": "c0"}, 409, "endpoint 'c1-e0' already exists"),
    ],
)
async def test_bad_endpoint_requests(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in await error(client, "POST", "/endpoints", body, status)
    assert "e" not in node_of(client).endpoints


async def test_patch_endpoint_keeps_levels_and_moves_zones(client: TestClient) -> None:
    data = await call(
        client, "PATCH", "/endpoints/c0-e0", {"volume": 35, "emergency_volume": 90, "muted": True}
    )
    assert (data["volume"], data["emergency_volume"], data["muted"]) == (35, 90, True)
    row = await store_of(client).endpoints.get("c0-e0")
    assert (row.volume, row.emergency_volume) == (35, 90)
    data = await call(client, "PATCH", "/endpoints/c0-e0", {"zone": "c1", "name": "Loa đình"})
    assert (data["zone"], data["name"], data["volume"], data["muted"]) == (
        "c1",
        "Loa đình",
        35,
        True,
    )
    assert node_of(client).zones.zone_of("c0-e0") == "c1"
    assert (await store_of(client).endpoints.get("c0-e0")).zone == "c1"
    message = await error(client, "PATCH", "/endpoints/c0-e0", {"zone": "mars"}, 404)
    assert message == "zone 'mars' does not exist"
    message = await error(client, "PATCH", "/endpoints/c0-e0", {"lon": "east"}, 400)
    assert message == 'field "lon" must be float | null, got str'


async def test_rotating_a_token_drops_the_speaker_using_the_old_one(client: TestClient) -> None:
    ws, welcome = await hello(client, "tok-c0-e0")
    assert welcome["type"] == "welcome"
    rotated = await call(client, "POST", "/endpoints/c0-e0/token")
    msg = await ws.receive(timeout=5)
    while msg.type is WSMsgType.TEXT:  # e.g. a "playing" message already on its way
        msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 4401
    old, refused = await hello(client, "tok-c0-e0")
    assert refused["code"] == "bad_token"
    await old.close()
    new, welcome = await hello(client, rotated["token"])
    assert welcome["endpoint"] == "c0-e0"
    await new.close()
    await call(
        client,
        "POST",
        "/endpoints",
        {"id": "r", "name": "r", "zone": "c0", "kind": "rtp", "address": "127.0.0.1:9"},
        201,
    )
    message = await error(client, "POST", "/endpoints/r/token", None, 409)
    assert message == "endpoint r is an rtp endpoint: only a managed one has a token"


async def test_delete_endpoint(client: TestClient) -> None:
    ws, _ = await hello(client, "tok-c1-e1")
    removed = await call(client, "DELETE", "/endpoints/c1-e1")
    assert removed["id"] == "c1-e1" and removed["has_token"] is True
    msg = await ws.receive(timeout=5)
    while msg.type is WSMsgType.TEXT:
        msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 4404
    assert "c1-e1" not in node_of(client).endpoints
    assert [e.id for e in await store_of(client).endpoints.list()] == ["c0-e0", "c0-e1", "c1-e0"]
    assert (
        await error(client, "DELETE", "/endpoints/c1-e1", None, 404) == "endpoint c1-e1 not found"
    )


# -- operators inside their commune -----------------------------------------------------------


async def test_operator_edits_villages_but_not_their_commune(client: TestClient) -> None:
    op = await account(client.app, "op", "operator", "c0")

    async def as_op(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        return await call(client, method, path, body, status, headers=op)

    await as_op("POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, 201)
    await as_op("POST", "/zones", {"id": "v1", "name": "Thôn 1", "parent": "c0"}, 201)
    assert (await as_op("PATCH", "/zones/v1", {"parent": "v0"}))["parent"] == "v0"
    await as_op("PATCH", "/zones/v1", {"parent": "c0", "name": "Thôn Mới"})
    err = await as_op("PATCH", "/zones/c0", {"name": "mine"}, 403)
    assert err["error"]["message"] == "op may not change their own zone c0, only zones inside it"
    err = await as_op("PATCH", "/zones/v1", {"parent": "c1"}, 404)
    assert err["error"]["message"] == "parent zone 'c1' does not exist"
    err = await as_op("PATCH", "/zones/v1", {"parent": None}, 403)
    assert err["error"]["message"] == "only an admin may make a root zone; op is operator"
    await as_op("POST", "/zones", {"id": "v2", "name": "x", "parent": "p"}, 404)
    await as_op("DELETE", "/zones/c0", None, 403)
    await as_op("DELETE", "/zones/v1")
    made = await as_op("POST", "/endpoints", {"id": "v0-e0", "name": "x", "zone": "v0"}, 201)
    assert made["token"]
    await as_op("PATCH", "/endpoints/v0-e0", {"zone": "c1"}, 404)
    assert node_of(client).zones.parent("v0") == "c0"


# -- users and tokens ------------------------------------------------------------------------


async def test_user_lifecycle(client: TestClient) -> None:
    body = {"username": "op", "password": "mật-khẩu-op", "role": "operator", "zone": "c0"}
    made = await call(client, "POST", "/users", body, status=201)
    assert made["role"] == "operator" and made["zone"] == "c0" and made["emergency_right"] is False
    users = await call(client, "GET", "/users")
    assert [u["username"] for u in users["users"]] == ["admin", "op"]
    assert "password_hash" not in users["users"][1]
    changed = await call(client, "PATCH", "/users/op", {"emergency_right": True, "zone": "c1"})
    assert (changed["zone"], changed["emergency_right"]) == ("c1", True)
    created = await call(client, "POST", "/users/op/tokens", {"label": "OBS"}, status=201)
    op = {"Authorization": f"Bearer {created['token']}"}
    assert (await call(client, "GET", "/me", headers=op))["zone"] == "c1"
    await call(client, "PATCH", "/users/op", {"disabled": True})
    await call(client, "GET", "/me", status=401, headers=op)
    assert (await call(client, "DELETE", "/users/op"))["username"] == "op"
    assert "user 'op' does not exist" in await error(client, "DELETE", "/users/op", None, 404)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"username": "x", "role": "viewer"}, 400, 'missing field "password"'),
        ({"username": "x", "password": "p" * 8, "role": "god"}, 400, "one of admin, operator"),
        ({"username": "X Y", "password": "p" * 8, "role": "viewer"}, 400, '"username": expected'),
        ({"username": "x", "password": "short", "role": "viewer"}, 400, "length >= 8"),
        (
            {"username": "x", "password": "p" * 8, "role": "operator"},
            400,
            "an operator needs a zone",
        ),
        (
            {"username": "x", "password": 12345678, "role": "viewer"},
            400,
            'field "password" must be str, got int',
        ),
        (
            {"username": "x", "password": "p" * 8, "role": "viewer", "emergency_right": "yes"},
            400,
            'field "emergency_right" must be bool, got str',
        ),
        ({"username": "x", "password": "p" * 8, "role": "viewer", "zone": "z"}, 404, "zone 'z'"),
        ({"username": "admin", "password": "p" * 8, "role": "viewer"}, 409, "already exists"),
    ],
)
async def test_bad_user_requests(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in await error(client, "POST", "/users", body, status)


async def test_the_last_admin_stays(client: TestClient) -> None:
    message = await error(client, "PATCH", "/users/admin", {"role": "viewer"}, 409)
    assert message == "admin is the last enabled admin; make another admin first"
    await error(client, "PATCH", "/users/admin", {"disabled": True}, 409)
    await error(client, "DELETE", "/users/admin", None, 409)
    await account(client.app, "second", "admin")
    await call(client, "PATCH", "/users/admin", {"disabled": True})


async def test_own_password_and_tokens(client: TestClient) -> None:
    op = await account(client.app, "op", "operator", "c0", password="mật-khẩu-cũ")
    await account(client.app, "other", "viewer")

    async def as_op(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        return await call(client, method, path, body, status, headers=op)

    err = await as_op("PATCH", "/users/op", {"password": "mật-khẩu-mới"}, 403)
    assert err["error"]["message"] == "to change your own password, send current_password too"
    body = {"password": "mật-khẩu-mới", "current_password": "sai-rồi-nhé"}
    err = await as_op("PATCH", "/users/op", body, 403)
    assert err["error"]["message"] == "current_password is wrong"
    err = await as_op("PATCH", "/users/op", {"role": "admin"}, 403)
    assert err["error"]["message"] == "op may change only their own password, not ['role']"
    await as_op(
        "PATCH", "/users/op", {"password": "mật-khẩu-mới", "current_password": "mật-khẩu-cũ"}
    )
    resp = await client.post(
        "/login", json={"username": "op", "password": "mật-khẩu-mới"}, allow_redirects=False
    )
    assert resp.status == 303
    await as_op("PATCH", "/users/other", {"password": "x" * 8}, 403)
    tokens = (await as_op("GET", "/users/op/tokens"))["tokens"]
    assert [t["label"] for t in tokens] == ["test"]
    made = await as_op("POST", "/users/op/tokens", {"label": " script "}, 201)
    assert made["label"] == "script" and made["username"] == "op"
    await as_op("GET", "/users/other/tokens", None, 403)
    await as_op("POST", "/users/other/tokens", {"label": "x"}, 403)
    others = await store_of(client).users.tokens("other")
    err = await as_op("DELETE", f"/users/op/tokens/{others[0].id}", None, 404)
    assert err["error"]["message"] == f"API token {others[0].id} of op does not exist"
    await as_op("DELETE", f"/users/op/tokens/{tokens[0]['id']}")
    await call(client, "GET", "/me", status=401, headers=op)  # that was the token in use
    left = await store_of(client).users.tokens("op")
    assert [t.label for t in left] == ["script"]
    message = await error(client, "POST", "/users/op/tokens", {"label": ""}, 400)
    assert message == 'field "label": expected str of length >= 1'


async def test_changes_are_audited(client: TestClient) -> None:
    await call(client, "POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, 201)
    await call(client, "PATCH", "/zones/v0", {"name": "x"})
    await asyncio.sleep(0)
    rows = await store_of(client).audit.query(action=None)
    actions = [r.action for r in rows]
    assert "PATCH /api/v1/zones/{id}" in actions and "POST /api/v1/zones" in actions


# -- a restart ---------------------------------------------------------------------------------


async def test_a_restart_keeps_everything_made_through_the_api(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.web.test_scopes import WAV

    config = tree_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    await call(client, "POST", "/zones", {"id": "v0", "name": "Thôn 0", "parent": "c0"}, 201)
    made = await call(
        client, "POST", "/endpoints", {"id": "v0-e0", "name": "Loa", "zone": "v0"}, 201
    )
    rtp = {"id": "r1", "name": "VLC", "zone": "c1", "kind": "rtp", "address": "127.0.0.1:9"}
    await call(client, "POST", "/endpoints", rtp, 201)
    await call(client, "PATCH", "/endpoints/c0-e1", {"volume": 33, "zone": "v0"})
    await call(client, "DELETE", "/endpoints/c1-e1")
    body = {"username": "op", "password": "mật-khẩu-op", "role": "operator", "zone": "c0"}
    await call(client, "POST", "/users", body, 201)
    op_token = (await call(client, "POST", "/users/op/tokens", {"label": "OBS"}, 201))["token"]
    resp = await client.post("/api/v1/media?filename=a.wav", data=WAV, headers=AUTH)
    media = (await resp.json())["id"]
    assert resp.status == 201
    await client.close()

    client = await aiohttp_client(create_app(config))
    v0 = await call(client, "GET", "/zones/v0")
    assert (v0["parent"], v0["endpoints"]["here"]) == ("c0", 2)
    endpoints = {e["id"]: e for e in (await call(client, "GET", "/endpoints"))["endpoints"]}
    assert sorted(endpoints) == ["c0-e0", "c0-e1", "c1-e0", "r1", "v0-e0"]  # c1-e1 stays gone
    assert (endpoints["c0-e1"]["volume"], endpoints["c0-e1"]["zone"]) == (33, "v0")
    assert endpoints["r1"]["online"] is True  # the static RTP receiver is configured again
    me = await call(client, "GET", "/me", headers={"Authorization": f"Bearer {op_token}"})
    assert (me["username"], me["zone"]) == ("op", "c0")
    resp = await client.post(
        "/login", json={"username": "op", "password": "mật-khẩu-op"}, allow_redirects=False
    )
    assert resp.status == 303
    ws, welcome = await hello(client, made["token"])
    assert (welcome["type"], welcome["endpoint"]) == ("welcome", "v0-e0")
    bc = {"source": {"type": "media", "id": media}, "targets": {"zones": ["c0"]}}
    started = await call(client, "POST", "/broadcasts", bc, status=201)
    assert started["listeners"] == ["c0-e0", "c0-e1", "v0-e0"]
    await ws.close()
