"""Login limiting per (account, client) and per client with backoff: the sans-IO limiter with
a fake clock, then a real server on loopback with clients on different addresses
(127.0.0.1 and 127.0.0.2 are both loopback on Linux)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loa.store import Store
from loa.web import auth, middlewares
from loa.web.login_limits import Backoff, LoginLimiter, client_key

PASSWORD = "mật-khẩu-admin"

# -- the limiter ----------------------------------------------------------------------------


def test_backoff_is_free_then_doubles_up_to_its_ceiling() -> None:
    rule = Backoff(free=3, base_s=5.0, max_s=60.0)
    assert [rule.wait_s(n) for n in range(9)] == [0, 0, 0, 5, 10, 20, 40, 60, 60]
    assert Backoff(1, 1.0, 900.0).wait_s(10_000) == 900.0  # no overflow on huge counts


def test_the_right_password_from_another_client_is_never_refused() -> None:
    lim = LoginLimiter()
    for t in range(200):  # an attacker hammering admin, waiting out every backoff
        now = float(t * 1000)
        assert lim.check("admin", "10.0.0.66", now) is None
        lim.failed("admin", "10.0.0.66", now)
    assert lim.check("admin", "10.0.0.66", 199_000.5) is not None
    assert lim.check("admin", "10.0.0.7", 199_000.5) is None  # the real admin, elsewhere


def test_an_attackers_attempts_on_one_account_back_off() -> None:
    lim = LoginLimiter()
    now, waits = 0.0, []
    for _ in range(12):
        wait = lim.check("admin", "203.0.113.9", now)
        if wait is not None:
            waits.append(wait)
            now += wait  # the attacker waits exactly as long as told
        assert lim.check("admin", "203.0.113.9", now) is None
        lim.failed("admin", "203.0.113.9", now)
    assert waits == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0]  # after 5 free failures
    assert lim.check("admin", "203.0.113.9", now + 639.0) == pytest.approx(1.0)
    assert lim.check("op", "203.0.113.9", now) is None  # another account: its own pair


def test_per_address_limit_spans_accounts_and_outlives_a_success() -> None:
    lim = LoginLimiter()
    for i in range(20):  # one guess at each of 20 accounts: a password spray
        lim.failed(f"user{i}", "198.51.100.4", 100.0)
    assert lim.check("fresh", "198.51.100.4", 100.0) == 5.0
    assert lim.check("fresh", "198.51.100.5", 100.0) is None
    lim.succeeded("user0", "198.51.100.4")  # the sprayer's own account does not reset it
    assert lim.check("fresh", "198.51.100.4", 101.0) == 4.0


def test_success_clears_the_pair_and_quiet_forgets_everything() -> None:
    lim = LoginLimiter(forget_s=3600.0)
    for t in range(5):
        lim.failed("op", "192.0.2.1", float(t))
    assert lim.check("op", "192.0.2.1", 4.5) == 4.5
    lim.succeeded("op", "192.0.2.1")
    assert lim.check("op", "192.0.2.1", 4.5) is None
    for t in range(6):
        lim.failed("op", "192.0.2.1", 10.0 + t)
    assert lim.check("op", "192.0.2.1", 16.0) is not None
    assert lim.check("op", "192.0.2.1", 15.0 + 3600.0) is None  # an hour after the last
    assert len(lim) == 0


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("unknown") == "unknown"
    lim = LoginLimiter()
    for i in range(5):  # a new address from the same /64 for every guess
        lim.failed("admin", f"2001:db8:1:2::{i + 1:x}", 0.0)
    assert lim.check("admin", "2001:db8:1:2::ffff", 1.0) == 4.0
    assert lim.check("admin", "2001:db8:1:3::1", 1.0) is None


def test_limiter_memory_is_bounded() -> None:
    lim = LoginLimiter(max_keys=10)
    for i in range(100):
        lim.failed(f"u{i}", f"10.0.{i}.1", float(i))
    assert len(lim) <= 10
    assert lim.check("u99", "10.0.99.1", 99.0) is None  # kept: one failure is free
    assert lim._records.get(("pair", "u99", "10.0.99.1")) is not None  # the newest survive


# -- a real server on loopback ----------------------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    store = await Store.open(tmp_path / "loa.db")
    await auth.add_user(store, "admin", PASSWORD, "admin", actor="test")
    app = web.Application(middlewares=[middlewares.errors, auth.auth_middleware(store, None)])
    api = web.Application(middlewares=[middlewares.errors])
    auth.setup(app, store, api)
    app.add_subapp("/api/v1", api)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()
    await store.close()


async def post_login(http: aiohttp.ClientSession, url: str, password: str) -> Any:
    body = {"username": "admin", "password": password}
    async with http.post(url + "/login", json=body, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Retry-After"), resp.headers.get("Set-Cookie")


def client_from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_another_clients_right_password_is_accepted_while_an_attacker_backs_off(
    server: TestServer,
) -> None:
    url = str(server.make_url("")).rstrip("/")
    async with client_from("127.0.0.2") as attacker, client_from("127.0.0.1") as admin:
        statuses = [(await post_login(attacker, url, "wrong-guess"))[0] for _ in range(8)]
        assert statuses == [401] * 5 + [429] * 3  # the 6th waits; refused tries cost nothing
        status, retry_after, _ = await post_login(attacker, url, PASSWORD)
        assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 5
        status, _, cookie = await post_login(admin, url, PASSWORD)
        assert status == 303 and cookie is not None and cookie.startswith(auth.COOKIE + "=")
    store: Store = server.app[auth.STORE]
    rows = await store.audit.query(user="admin")
    assert [(r.action, r.ip) for r in rows[:2]] == [
        ("login.ok", "127.0.0.1"),
        ("login.limited", "127.0.0.2"),
    ]
