"""The declared contract, against a real server on loopback: nothing a client sends is
silently dropped or reinterpreted, and a client's mistake is a 4xx that names it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loa.web.app import NODE, create_app
from loa.web.contract import MAX_JSON_BYTES
from tests.conftest import ADMIN, tree_config
from tests.web.test_openapi import document

AUTH = {"Authorization": f"Bearer {ADMIN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
TONE = {"type": "tone", "freq_hz": 440}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path, rtp=("127.0.0.1:9",))))


async def send(
    client: TestClient, method: str, path: str, body: Any = None, status: int = 200, **kw: Any
) -> Any:
    resp = await client.request(method, path, json=body, headers=kw.pop("headers", AUTH), **kw)
    data = await resp.json()
    assert resp.status == status, data
    return data


def error(data: Any) -> tuple[str, str]:
    return data["error"]["code"], data["error"]["message"]


async def test_a_typo_in_an_emergency_is_refused_and_nothing_plays(client: TestClient) -> None:
    body = {"source": TONE, "targets": {"zones": ["p"]}, "clas": "emergency"}
    data = await send(client, "POST", "/api/v1/broadcasts", body, 400)
    assert error(data) == ("unknown_field", 'unknown field "clas"')
    assert data["error"]["field"] == "clas"
    assert client.app[NODE].broadcasts == {}  # not played as class live
    body = {"source": {**TONE, "frequency": 1}, "targets": {"zones": ["p"]}}
    data = await send(client, "POST", "/api/v1/broadcasts", body, 400)
    assert error(data) == ("unknown_field", 'unknown field "source.frequency"')


async def test_a_typo_in_a_bulletin_level_is_refused(client: TestClient) -> None:
    body = {
        "levle": "emergency",
        "level": "normal",
        "zones": ["c0"],
        "title": "Bão số 3",
        "variants": [{"language": "vi", "text": "Bão đang đến"}],
    }
    data = await send(client, "POST", "/api/v1/bulletins", body, 400)
    assert error(data) == ("unknown_field", 'unknown field "levle"')
    assert (await send(client, "GET", "/api/v1/bulletins"))["bulletins"] == []


def json_routes() -> list[tuple[str, str]]:
    doc = document()
    return sorted(
        (m, p)
        for p, item in doc["paths"].items()
        for m, op in item.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    )


def concrete(path: str) -> str:
    return path.replace("{username}", "admin").replace("{id}", "c0-e0")


@pytest.mark.parametrize("route", json_routes(), ids=lambda r: f"{r[0].upper()} {r[1]}")
async def test_hostile_json_is_a_4xx_on_every_json_route(
    client: TestClient, route: tuple[str, str]
) -> None:
    method, path = route
    url = "/api/v1" + concrete(path)
    cases = [
        (b"[" * 100_000 + b"]" * 100_000, 400, "wrong_type"),  # a RecursionError, once a 500
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, 400, "unknown_field"),
        (b"{", 400, "bad_json"),
        (b"{'name': 'x'}", 400, "bad_json"),
        (b"\xff\xfe", 400, "bad_json"),
        (b"", 400, "bad_json"),
        (b" " * (MAX_JSON_BYTES + 1), 413, "too_large"),
    ]
    for raw, status, code in cases:
        resp = await client.request(method.upper(), url, data=io.BytesIO(raw), headers=JSON)
        data = await resp.json()
        assert (resp.status, data["error"]["code"]) == (status, code), (raw[:20], data)
    resp = await client.request(method.upper(), url, data=b"{}", headers=AUTH)
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"


async def test_nesting_past_the_decoder_is_too_deep(client: TestClient) -> None:
    """A whole-number float sends the body through the untyped decoder: nesting there is
    still a 400, not a RecursionError."""
    raw = b'{"volume": 1.0, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    url = "/api/v1/endpoints/c0-e0"
    resp = await client.patch(url, data=io.BytesIO(raw), headers=JSON)
    assert resp.status == 400
    assert error(await resp.json()) == ("too_deep", "the body is nested too deeply")


@pytest.mark.parametrize(
    "body",
    [b"{", b"[" * 100_000, b'{"username": 1}', b'{"username": "a", "pasword": "b"}', b"[]"],
)
async def test_hostile_json_on_login_is_400(client: TestClient, body: bytes) -> None:
    resp = await client.post("/login", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] in {"bad_json", "too_deep", "wrong_type"} | {
        "unknown_field"
    }


async def test_login_with_declared_json_still_works(client: TestClient) -> None:
    from tests.web.test_api_admin import account

    await account(client.app, "op", "operator", "c0")
    body = {"username": "op", "password": "mật-khẩu-op"}
    resp = await client.post("/login", json=body, allow_redirects=False)
    assert resp.status in (303, 401)  # the account helper's password decides; never 4xx/5xx


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "is not a URL of a stream"),
        ("http://[::1", "is not a URL"),
        ("ftp://radio.example.vn/live", "is not a URL of a stream"),
        ("http://radio.example.vn:99999/live", "is not a URL"),
        ("http:///live", "has no host"),
        ("http://radio.example.vn/a b", "contains whitespace"),
    ],
)
async def test_bad_stream_urls_are_422(client: TestClient, url: str, why: str) -> None:
    body = {"source": {"type": "url", "url": url}, "targets": {"zones": ["c0"]}}
    data = await send(client, "POST", "/api/v1/broadcasts", body, 422)
    assert data["error"]["code"] == "bad_url" and why in data["error"]["message"], data
    item = {"type": "url", "url": url, "duration_s": 60}
    schedule = {
        "name": "Tiếp sóng",
        "dtstart": "2025-03-03T05:00",
        "rrule": "FREQ=DAILY",
        "items": [item],
        "targets": {"zones": ["c0"]},
    }
    data = await send(client, "POST", "/api/v1/schedules", schedule, 422)
    assert data["error"]["code"] == "bad_url", data
    assert client.app[NODE].broadcasts == {}


async def test_a_relay_fallback_is_declared_and_used(client: TestClient) -> None:
    source = {"type": "url", "url": "http://10.255.255.1:9/down", "fallback": TONE}
    body = {"source": source, "targets": {"zones": ["c0"]}, "class": "background"}
    made = await send(client, "POST", "/api/v1/broadcasts", body, 201)
    assert "fallback: tone 440 Hz" in made["what"]
    bad = {**source, "fallback": {"type": "playlist", "items": [TONE]}}
    data = await send(client, "POST", "/api/v1/broadcasts", {**body, "source": bad}, 400)
    assert data["error"]["field"] == "source.fallback.type"
    assert "one of media, tone, silence, tts" in data["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "message"),
    [
        ("POST", "/api/v1/schedules", {"zone": {}}, "zone", "must be str | null, got object"),
        (
            "POST",
            "/api/v1/zones",
            {"id": "v", "name": "V", "parent": "c0", "timezone": ""},
            "timezone",
            "length >= 1",
        ),
        (
            "POST",
            "/api/v1/endpoints",
            {"id": "e", "name": "E", "zone": "c0", "volume": "loud"},
            "volume",
            "must be int, got str",
        ),
        (
            "PATCH",
            "/api/v1/zones/c0",
            {"languages": ["vi", 7]},
            "languages[1]",
            "must be str, got int",
        ),
        (
            "POST",
            "/api/v1/webhooks",
            {"url": "http://127.0.0.1:9/", "events": []},
            "events",
            "length >= 1",
        ),
    ],
)
async def test_wrong_types_name_the_field_and_the_type(
    client: TestClient, method: str, path: str, body: Any, field: str, message: str
) -> None:
    data = await send(client, method, path, body, 400)
    assert data["error"]["field"] == field and message in data["error"]["message"], data


async def test_schedule_with_an_object_for_zone_is_400_not_500(client: TestClient) -> None:
    body = {
        "name": "Sáng",
        "dtstart": "2025-03-03T05:00",
        "rrule": "FREQ=DAILY",
        "items": [{"type": "silence", "duration_s": 5}],
        "targets": {"zones": ["c0"]},
        "zone": {},
    }
    data = await send(client, "POST", "/api/v1/schedules", body, 400)
    assert error(data) == ("wrong_type", 'field "zone" must be str | null, got object')


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", 'query parameter "limit": expected int >= 1'),
        ("limit=1001", 'query parameter "limit": expected int <= 1000'),
        ("limit=ten", 'query parameter "limit" must be int, got str'),
        ("offset=-1", 'query parameter "offset": expected int >= 0'),
        ("limit=5&limit=6", 'query parameter "limit" is given more than once'),
        ("limt=5", 'unknown query parameter "limt"'),
        ("class=loud", "one of background, scheduled, priority, live, emergency"),
    ],
)
async def test_query_strings_are_declared_too(client: TestClient, query: str, message: str) -> None:
    data = await send(client, "GET", f"/api/v1/log?{query}", status=400)
    assert message in data["error"]["message"], data


async def test_time_zones_must_exist_and_not_be_empty(client: TestClient) -> None:
    for tz in ("", "Mars/Base", "asia/ho_chi_minh"):
        data = await send(client, "GET", f"/api/v1/log.csv?tz={tz}", status=400)
        assert data["error"]["field"] == "tz", data
    resp = await client.get("/api/v1/log.csv?tz=Asia/Bangkok", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "text/csv"


async def test_a_webhook_secret_of_null_means_make_one(client: TestClient) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["broadcast.logged"], "secret": None}
    made = await send(client, "POST", "/api/v1/webhooks", body, 201)
    assert len(made["secret"]) == 64
    data = await send(client, "POST", "/api/v1/webhooks", {**body, "secret": "short"}, 400)
    assert data["error"]["field"] == "secret"


async def test_a_whole_number_written_with_a_point_is_an_integer(client: TestClient) -> None:
    data = await send(client, "PATCH", "/api/v1/endpoints/c0-e0", {"volume": 35.0})
    assert data["volume"] == 35
    data = await send(client, "PATCH", "/api/v1/endpoints/c0-e0", {"volume": 35.5}, 400)
    assert error(data) == ("wrong_type", 'field "volume" must be int, got float')


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/broadcasts/x", {"DELETE", "GET", "HEAD"}),
        ("POST", "/api/v1/zones/c0", {"DELETE", "GET", "HEAD", "PATCH"}),
        ("GET", "/api/v1/bulletins/cap", {"POST"}),  # not swallowed by /bulletins/{id}
        ("DELETE", "/api/v1/schedules/conflicts", {"GET", "HEAD"}),
        ("DELETE", "/static/css/app.css", {"GET", "HEAD"}),  # the root app too
        ("POST", "/listen/c0.ogg", {"GET"}),
    ],
)
async def test_405_carries_allow(
    client: TestClient, method: str, path: str, allow: set[str]
) -> None:
    resp = await client.request(method, path, headers=AUTH)
    data = await resp.json()
    assert resp.status == 405, data
    assert set(resp.headers["Allow"].split(",")) == allow
    assert data["error"]["code"] == "method_not_allowed"
    assert set(data["error"]["allowed"]) == allow


async def test_ids_that_only_look_like_numbers_are_404(client: TestClient) -> None:
    data = await send(client, "DELETE", "/api/v1/webhooks/%C2%B2", status=404)  # "²"
    assert data["error"]["code"] == "not_found"


async def test_state_conflicts_are_409_not_400(client: TestClient) -> None:
    data = await send(client, "POST", "/api/v1/endpoints/rtp0/token", status=409)
    assert data["error"]["endpoint"] == "rtp0"
    data = await send(client, "PATCH", "/api/v1/users/admin", {"zone": "c0"}, 409)
    assert "admin scoped to zone c0" in data["error"]["message"]
