"""X-Forwarded-For / -Proto believed only from web.trusted_proxies: the pure resolver, then
the whole app on loopback (the test client plays the proxy, or an untrusted client)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loa.config import Config, with_changes
from loa.web import auth
from loa.web.keys import STORE
from loa.web.proxies import TrustedProxies, parse_address
from tests.conftest import AUTH, tree_config
from tests.web.test_api_relay import write_wav

PASSWORD = "mật-khẩu-op-1"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1:5678 ", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ('"192.0.2.1"', "192.0.2.1"),
        ("unknown", None),
        ("", None),
        ("999.1.1.1", None),
    ],
)
def test_parse_address(text: str, parsed: str | None) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == parsed


PROXIES = TrustedProxies(["10.0.0.0/8", "192.0.2.7"])


@pytest.mark.parametrize(
    ("peer", "xff", "proto", "found"),
    [
        # An untrusted peer: both headers ignored, whatever they say.
        ("203.0.113.5", ["1.2.3.4"], ["https"], None),
        # One trusted proxy, the usual nginx set-up.
        ("10.1.1.1", ["198.51.100.20"], ["https"], ("198.51.100.20", "https")),
        # A client that forges its own X-Forwarded-For: the proxy appended the real one.
        ("10.1.1.1", ["6.6.6.6, 198.51.100.20"], ["https"], ("198.51.100.20", "https")),
        # Two trusted hops; appended protos line up with the addresses.
        ("10.1.1.1", ["198.51.100.20, 192.0.2.7"], ["https, http"], ("198.51.100.20", "https")),
        # Headers split over two lines are one list.
        ("10.1.1.1", ["198.51.100.20", "10.2.2.2"], ["http"], ("198.51.100.20", "http")),
        # Only trusted hops: the leftmost is the client.
        ("10.1.1.1", ["10.3.3.3, 10.2.2.2"], [], ("10.3.3.3", None)),
        # Junk where an address belongs stops at the last address we can vouch for.
        ("10.1.1.1", ["198.51.100.20, junk"], [], ("10.1.1.1", None)),
        ("10.1.1.1", ["junk, 198.51.100.20"], [], ("198.51.100.20", None)),
        # No X-Forwarded-For: the proxy itself, with its scheme; a bogus scheme is ignored.
        ("10.1.1.1", [], ["HTTPS"], ("10.1.1.1", "https")),
        ("10.1.1.1", ["198.51.100.20"], ["gopher"], ("198.51.100.20", None)),
        ("::ffff:10.1.1.1", ["[2001:db8::5]:1234"], [], ("2001:db8::5", None)),
    ],
)
def test_resolve(peer: str, xff: list[str], proto: list[str], found: Any) -> None:
    assert PROXIES.resolve(peer, xff, proto) == found


def test_no_trusted_proxies_trusts_nobody() -> None:
    assert TrustedProxies([]).resolve("127.0.0.1", ["1.2.3.4"], ["https"]) is None


def proxied_config(tmp_path: Path, trusted: tuple[str, ...]) -> Config:
    config = tree_config(tmp_path)
    return with_changes(config, web=with_changes(config.web, trusted_proxies=trusted))


async def login(
    http: aiohttp.ClientSession, url: str, password: str, headers: dict[str, str]
) -> tuple[int, aiohttp.cookies.SimpleCookie]:
    body = {"username": "op", "password": password}
    async with http.post(url + "/login", json=body, headers=headers, allow_redirects=False) as resp:
        return resp.status, resp.cookies


async def test_behind_a_trusted_proxy_cookies_are_secure_and_limits_per_client(
    relay_factory: Any, tmp_path: Path
) -> None:
    relay = await relay_factory(proxied_config(tmp_path, ("127.0.0.1",)))
    store = relay.server.app[STORE]
    await auth.add_user(store, "op", PASSWORD, "operator", zone="c0", actor="test")
    attacker = {"X-Forwarded-For": "198.51.100.66", "X-Forwarded-Proto": "https"}
    for _ in range(5):
        assert (await login(relay.http, relay.url, "wrong-guess", attacker))[0] == 401
    assert (await login(relay.http, relay.url, PASSWORD, attacker))[0] == 429
    user = {"X-Forwarded-For": "198.51.100.10", "X-Forwarded-Proto": "https"}
    status, cookies = await login(relay.http, relay.url, PASSWORD, user)
    assert status == 303
    assert cookies[auth.COOKIE]["secure"] and cookies[auth.COOKIE]["httponly"]
    rows = await store.audit.query(user="op")
    assert (rows[0].action, rows[0].ip) == ("login.ok", "198.51.100.10")
    assert (rows[1].action, rows[1].ip) == ("login.limited", "198.51.100.66")
    # Plain http through the proxy: no Secure flag (the browser would drop the cookie).
    status, cookies = await login(relay.http, relay.url, PASSWORD, {"X-Forwarded-For": "1.1.1.1"})
    assert status == 303 and not cookies[auth.COOKIE]["secure"]


async def test_from_anyone_else_the_headers_are_ignored(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(proxied_config(tmp_path, ("10.0.0.0/8",)))
    store = relay.server.app[STORE]
    await auth.add_user(store, "op", PASSWORD, "operator", zone="c0", actor="test")
    status, cookies = await login(relay.http, relay.url, PASSWORD, {"X-Forwarded-Proto": "https"})
    assert status == 303 and not cookies[auth.COOKIE]["secure"]
    # Rotating a forged X-Forwarded-For does not escape the limit: the peer is what counts.
    statuses = [
        (await login(relay.http, relay.url, "wrong", {"X-Forwarded-For": f"203.0.113.{i}"}))[0]
        for i in range(7)
    ]
    assert statuses == [401] * 5 + [429] * 2
    rows = await store.audit.query(user="op")
    assert {r.ip for r in rows} == {"127.0.0.1"}


async def test_websockets_and_uploads_work_through_a_trusted_proxy(
    relay_factory: Any, tmp_path: Path
) -> None:
    """The proxied request is a clone: a WebSocket upgrade and a streamed body still work."""
    relay = await relay_factory(proxied_config(tmp_path, ("127.0.0.1",)))
    forwarded = {"X-Forwarded-For": "198.51.100.10", "X-Forwarded-Proto": "https"}
    async with relay.http.ws_connect(relay.url + "/api/v1/speaker", headers=forwarded) as ws:
        await ws.send_json({"type": "hello", "token": "tok-c0-e0", "version": 1, "client": "t"})
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome" and welcome["endpoint"] == "c0-e0"
    wav = tmp_path / "a.wav"
    write_wav(wav, 0.5)
    data = await asyncio.to_thread(wav.read_bytes)
    async with relay.http.post(
        relay.url + "/api/v1/media?filename=a.wav", data=data, headers={**AUTH, **forwarded}
    ) as resp:
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["duration_s"] == 0.5
    rows = await relay.server.app[STORE].audit.query(action="POST /api/v1/media")
    assert [r.ip for r in rows] == ["198.51.100.10"]
