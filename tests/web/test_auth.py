"""Accounts and access: password hashing, scope rules, the login limiter, and the middleware
with login, logout, CSRF and bearer tokens through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from loa.access import User, can_see_zone, can_target, visible_zones
from loa.errors import Forbidden, NotFound
from loa.relay.core.zones import ZoneTree
from loa.store import Store
from loa.web import auth, middlewares
from loa.web.errors import http_status

ADMIN_TOKEN = "config-admin-token"

# -- passwords ---------------------------------------------------------------------------


def test_hash_format_and_verify() -> None:
    encoded = auth.hash_password("đúng mật khẩu")
    algo, n, r, p, salt, key = encoded.split("$")
    assert (algo, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(salt) == 22  # 16 bytes, base64 without padding
    assert len(key) == 43  # 32 bytes, base64 without padding
    assert auth.verify_password("đúng mật khẩu", encoded) is True
    assert auth.verify_password("sai mật khẩu", encoded) is False
    assert auth.hash_password("đúng mật khẩu") != encoded  # a fresh salt each time


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("bcrypt$x", "password hash is not of the form scrypt$n$r$p$salt$hash"),
        ("scrypt$a$8$1$c2FsdA$a2V5", "password hash has a non-numeric parameter or bad base64"),
        (
            "scrypt$1000$8$1$c2FsdA$a2V5",
            "password hash has out-of-range scrypt parameters n=1000 r=8 p=1",
        ),
    ],
)
def test_malformed_hash_is_a_precise_error(encoded: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        auth.verify_password("whatever", encoded)
    assert str(info.value) == message


def test_short_password_refused() -> None:
    with pytest.raises(auth.BadRequest, match=r"^a password needs at least 8 characters$"):
        auth.hash_password("short")


# -- scopes --------------------------------------------------------------------------------

TREE = ZoneTree.build([("p", None), ("c0", "p"), ("c1", "p"), ("v0", "c0")])
PARENTS = {"p": None, "c0": "p", "c1": "p", "v0": "c0"}
ADMIN = User("root", "admin", None, False)
OP = User("op", "operator", "c0", False)
OP_EMERG = User("ope", "operator", "c0", True)
VIEWER_C0 = User("vc", "viewer", "c0", False)
VIEWER_ALL = User("va", "viewer", None, False)


@pytest.mark.parametrize("zones", [TREE, PARENTS], ids=["tree", "parent-map"])
def test_can_see_zone(zones: Any) -> None:
    for user, seen in [
        (ADMIN, {"p", "c0", "c1", "v0"}),
        (VIEWER_ALL, {"p", "c0", "c1", "v0"}),
        (OP, {"c0", "v0"}),
        (VIEWER_C0, {"c0", "v0"}),
    ]:
        assert {z for z in PARENTS if can_see_zone(user, zones, z)} == seen, user
        assert can_see_zone(user, zones, "nowhere") is False
    assert visible_zones(OP, zones) == {"c0", "v0"}
    assert visible_zones(VIEWER_ALL, zones) is None and visible_zones(ADMIN, zones) is None


@pytest.mark.parametrize("zones", [TREE, PARENTS], ids=["tree", "parent-map"])
def test_can_target(zones: Any) -> None:
    can_target(ADMIN, zones, ["p"], {"e9": "c1"}, emergency=True)  # admin: anything
    can_target(OP, zones, ["c0", "v0"], {"e1": "v0"}, emergency=False)  # own subtree
    can_target(OP_EMERG, zones, ["v0"], {}, emergency=True)
    cases = [
        (OP, ["p"], {}, False, "zone p outside op's zone c0"),
        (
            OP,
            ["c1", "v0"],
            {"e7": "c1", "e1": "v0"},
            False,
            "zone c1, endpoint e7 outside op's zone c0",
        ),
        (OP, ["v0"], {}, True, "op has no emergency right"),
        (VIEWER_C0, ["v0"], {}, False, "vc is a viewer and may not broadcast"),
        (VIEWER_ALL, ["p"], {}, False, "va is a viewer and may not broadcast"),
    ]
    for user, targets, eps, emergency, message in cases:
        with pytest.raises(Forbidden) as info:
            can_target(user, zones, targets, eps, emergency=emergency)
        assert info.value.message == message and http_status(info.value) == 403
    with pytest.raises(NotFound, match=r"^zone 'mars' does not exist$"):
        can_target(OP, zones, ["mars"], {}, emergency=False)


def test_require_admin() -> None:
    auth.require_admin(ADMIN)
    with pytest.raises(Forbidden, match=r"^only an admin may do this; op is operator$"):
        auth.require_admin(OP)


# -- the limiter: tests/web/test_login_limits.py -------------------------------------------


# -- HTTP ----------------------------------------------------------------------------------


async def page(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request[auth.USER].username}")


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def api_post(request: web.Request) -> web.Response:
    return web.json_response({"by": request[auth.USER].username})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "loa.db")
    await s.zones.add("p", "Tỉnh P")
    await s.zones.add("c0", "Xã 0", "p")
    await auth.add_user(s, "op", "mật-khẩu-op", "operator", zone="c0", actor="test")
    yield s
    await s.close()


@pytest.fixture
async def client(aiohttp_client: Any, store: Store) -> TestClient:
    app = web.Application(
        middlewares=[middlewares.errors, auth.auth_middleware(store, ADMIN_TOKEN)]
    )
    api = web.Application(middlewares=[middlewares.errors])
    api.router.add_post("/things", api_post)
    api.router.add_get("/openapi.json", ok)
    app.router.add_get("/", page)
    app.router.add_get("/healthz", ok)
    auth.setup(app, store, api)
    app.add_subapp("/api/v1", api)
    return await aiohttp_client(app)


async def login(client: TestClient, password: str = "mật-khẩu-op", **extra: str) -> Any:
    form = {"username": "op", "password": password, **extra}
    return await client.post("/login", data=form, allow_redirects=False)


async def test_public_paths_need_nothing(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200


async def test_pages_redirect_to_login_and_api_says_401(client: TestClient) -> None:
    resp = await client.get("/?tab=log", allow_redirects=False)
    location = URL(resp.headers["Location"])
    assert resp.status == 303 and location.path == "/login"
    assert location.query["next"] == "/?tab=log"
    resp = await client.get("/api/v1/me")
    assert resp.status == 401
    assert (await resp.json())["error"] == {
        "code": "unauthorized",
        "message": "missing Authorization: Bearer <token> or session cookie",
    }


async def test_login_sets_a_strict_httponly_cookie_and_me_works(client: TestClient) -> None:
    resp = await login(client, next="/studio?x=1")
    assert resp.status == 303 and resp.headers["Location"] == "/studio?x=1"
    cookie = resp.cookies[auth.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http in the test; https sets Secure
    body = await resp.json()
    me = await (await client.get("/api/v1/me")).json()
    assert me == {
        "username": "op",
        "role": "operator",
        "zone": "c0",
        "emergency_right": False,
        "csrf": body["csrf"],
    }
    assert (await client.get("/")).status == 200


async def test_csrf_is_required_on_non_get_with_a_session(client: TestClient) -> None:
    csrf = (await (await login(client)).json())["csrf"]
    resp = await client.post("/api/v1/things", json={})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf"
    resp = await client.post("/api/v1/things", json={}, headers={"X-CSRF-Token": "forged"})
    assert (await resp.json())["error"] == {
        "code": "csrf",
        "message": "wrong CSRF token; reload the page",
    }
    resp = await client.post("/api/v1/things", json={}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json()) == {"by": "op"}
    resp = await client.post("/api/v1/things", data={"csrf": csrf})  # a plain HTML form
    assert resp.status == 200


async def test_logout_needs_csrf_and_ends_the_session(client: TestClient, store: Store) -> None:
    csrf = (await (await login(client)).json())["csrf"]
    assert (await client.post("/logout", allow_redirects=False)).status == 403
    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await client.get("/api/v1/me")).status == 401
    actions = [r.action for r in await store.audit.query()]
    assert actions[:2] == ["logout", "login.ok"]


async def test_bearer_tokens(client: TestClient, store: Store) -> None:
    row, token = await store.users.add_token("op", "script", actor="test")
    resp = await client.post(
        "/api/v1/things", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200 and (await resp.json()) == {"by": "op"}  # no CSRF for bearer
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (await resp.json())["role"] == "admin" and (await resp.json())["csrf"] is None
    for header, message in [
        ("Bearer wrong", "invalid or revoked API token"),
        ("Basic abc", "missing Authorization: Bearer <token>"),
        ("Bearer ", "missing Authorization: Bearer <token>"),
    ]:
        resp = await client.get("/api/v1/me", headers={"Authorization": header})
        assert resp.status == 401 and (await resp.json())["error"]["message"] == message
    await store.users.revoke_token(row.id, actor="test")
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil", "javascript:x", "studio"]
)
async def test_open_redirects_are_refused(client: TestClient, target: str) -> None:
    resp = await login(client, next=target)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == (
        f"next must be a local path starting with a single '/', got {target!r}"
    )
    assert auth.COOKIE not in resp.cookies


async def test_wrong_password_then_rate_limit(client: TestClient, store: Store) -> None:
    for _ in range(5):
        resp = await login(client, password="wrong-password")
        assert resp.status == 401
        assert (await resp.json())["error"]["message"] == "wrong username or password"
    resp = await login(client)  # right password, but this client must back off first
    assert resp.status == 429
    assert 4 <= int(resp.headers["Retry-After"]) <= 5  # PER_PAIR: 5 free, then 5 s doubling
    error = (await resp.json())["error"]
    assert error["code"] == "rate_limited" and error["retry_after_s"] == int(
        resp.headers["Retry-After"]
    )
    audit = [r.action for r in await store.audit.query(user="op")]
    assert audit.count("login.failed") == 5 and audit[0] == "login.limited"


async def test_unknown_user_fails_like_a_wrong_password(client: TestClient) -> None:
    resp = await client.post("/login", data={"username": "ghost", "password": "whatever1"})
    assert resp.status == 401
    assert (await resp.json())["error"]["message"] == "wrong username or password"


async def test_ensure_admin_first_run_only(tmp_path: Path) -> None:
    async with Store(tmp_path / "loa.db") as store:
        password = await auth.ensure_admin(store, "prov-token")
        assert password is not None and len(password) >= 16
        admin = await store.users.get("admin")
        assert auth.verify_password(password, admin.password_hash)
        assert (await store.users.by_token("prov-token")).username == "admin"  # type: ignore[union-attr]
        assert await auth.ensure_admin(store, "prov-token") is None
        assert await auth.ensure_admin(store, None) is None
        assert [r.action for r in await store.audit.query()] == ["token.add", "user.add"]
