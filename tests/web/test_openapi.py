"""The OpenAPI document is generated from the declarations the handlers are held to: it
covers the real /api/v1 sub-app in both directions, holds together as OpenAPI 3.1, and its
request schemas are the declarations (closed, with the required fields the handlers need)."""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from loa.web import openapi
from loa.web.app import create_app
from tests.conftest import tree_config
from tests.web.test_api_admin import api_of

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@functools.cache
def document() -> dict[str, Any]:
    """The document of an app built from the test config (no server started)."""
    app = create_app(tree_config(Path(tempfile.gettempdir()) / "loa-openapi-test"))
    return openapi.build(api_of(app))


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path under /api/v1) of every route on the sub-app; HEAD goes with its GET."""
    out = set()
    for route in api_of(app).router.routes():
        assert route.resource is not None
        path = route.resource.canonical.removeprefix(openapi.PREFIX)
        if route.method != "HEAD":
            out.add((route.method.lower(), path))
    return out


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, item in doc["paths"].items() for m in item}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> web.Application:
    return create_app(tree_config(tmp_path))


def test_every_route_is_documented_and_every_operation_exists(app: web.Application) -> None:
    routes, documented = routes_of(app), operations(openapi.build(api_of(app)))
    assert routes == documented
    for expected in [
        ("get", "/speaker"),
        ("post", "/whip"),
        ("post", "/whep"),
        ("get", "/status/ws"),
        ("post", "/media"),
        ("get", "/log.csv"),
        ("get", "/audit"),
        ("delete", "/broadcasts/{id}"),
        ("get", "/me"),
        ("patch", "/zones/{id}"),
    ]:
        assert expected in routes


def test_a_route_without_a_declaration_stops_the_server(app: web.Application) -> None:
    api = api_of(app)

    async def undeclared(request: web.Request) -> web.Response:
        return web.Response()

    fresh = web.Application()
    for route in api.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            path = route.resource.canonical.removeprefix(openapi.PREFIX)
            fresh.router.add_route(route.method, openapi.PREFIX + path, route.handler)
    fresh.router.add_get(openapi.PREFIX + "/nobody-declared-me", undeclared)
    with pytest.raises(openapi.Undeclared, match="GET /api/v1/nobody-declared-me"):
        openapi.build(fresh)


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        assert part in node, f"dangling $ref {pointer}"
        node = node[part]
    return node


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if "$ref" in value else []
        return found + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def test_document_structure() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": "/api/v1"}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "an API token"}
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == "loa_session"
    assert schemes["csrf"]["in"] == "header" and schemes["csrf"]["name"] == "X-CSRF-Token"
    for requirement in doc["security"]:
        assert set(requirement) <= set(schemes)
    for ref in refs(doc):
        resolve(doc, ref)
    ids = set()
    for path, item in doc["paths"].items():
        assert path.startswith("/"), path
        declared_in_path = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            assert method in METHODS
            assert operation["responses"], (method, path)
            assert all(re.fullmatch(r"[1-5]\d\d", code) for code in operation["responses"])
            params = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
            assert set(params) == declared_in_path, (method, path)
            assert all(p["required"] is True for p in params.values())
            assert operation["operationId"] not in ids
            ids.add(operation["operationId"])
            if "requestBody" in operation:
                assert operation["requestBody"]["content"], (method, path)
            public = operation.get("security") == []
            assert public or "401" in operation["responses"], (method, path)
            assert {"400", "405"} <= set(operation["responses"]), (method, path)
            for code, response in operation["responses"].items():
                response = resolve(doc, response["$ref"]) if "$ref" in response else response
                assert response["description"], (method, path, code)
                if code >= "400":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def body_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = doc["paths"][path][method]["requestBody"]["content"]
    return dict(resolve(doc, content["application/json"]["schema"]["$ref"]))


def test_json_bodies_are_closed_schemas() -> None:
    """A typo in a field is a 400 in the API, so the document says additionalProperties:
    false on every JSON request body, and names the required fields the handlers demand."""
    doc = document()
    required = {
        ("post", "/zones"): ["id", "name", "parent"],
        ("post", "/endpoints"): ["id", "name", "zone"],
        ("post", "/users"): ["password", "role", "username"],
        ("post", "/users/{username}/tokens"): ["label"],
        ("post", "/broadcasts"): ["source", "targets"],
        ("put", "/prepared/{id}"): ["title"],
        ("post", "/webhooks"): ["events", "url"],
        ("post", "/schedules"): ["dtstart", "items", "name", "rrule", "targets"],
        ("post", "/bulletins"): ["level", "title", "variants", "zones"],
    }
    seen = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = body_schema(doc, method, path)
                assert schema["additionalProperties"] is False, (method, path)
                assert sorted(schema.get("required", [])) == required.get((method, path), [])
                seen += 1
    assert seen >= 13


def test_the_document_says_what_the_declarations_check() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    broadcast = body_schema(doc, "post", "/broadcasts")
    assert set(broadcast["properties"]["class"]["enum"]) == {
        "background",
        "scheduled",
        "priority",
        "live",
        "emergency",
    }
    source = broadcast["properties"]["source"]["anyOf"]
    kinds = {resolve(doc, s["$ref"])["properties"]["type"]["enum"][0] for s in source}
    assert kinds == {"tone", "silence", "tts", "media", "url", "playlist"}
    url = schemas["UrlSource"]["properties"]
    assert url["url"]["format"] == "uri"  # a URL that does not parse: 422
    assert "fallback" in url  # declared: it was undocumented
    assert "Asia/Ho_Chi_Minh" in schemas["TimeZone"]["enum"]
    assert "" not in schemas["TimeZone"]["enum"]
    log = {p["name"]: p for p in doc["paths"]["/log"]["get"]["parameters"]}
    assert log["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert set(log) == {"zone", "since", "until", "class", "limit", "offset"}
    webhook = body_schema(doc, "post", "/webhooks")
    assert webhook["properties"]["secret"]["anyOf"][1] == {"type": "null"}
    whip = {p["name"] for p in doc["paths"]["/whip"]["post"]["parameters"]}
    assert {"zones", "class", "chime", "expires_at"} <= whip
    assert doc["paths"]["/whep"]["post"]["parameters"][0]["name"] == "zone"
    assert "Broadcast" in schemas and schemas["Broadcast"]["additionalProperties"] is False


async def test_served_without_credentials(aiohttp_client: Any, app: web.Application) -> None:
    client: TestClient = await aiohttp_client(app)
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    served = await resp.json()
    assert served == openapi.build(api_of(app))
    assert served["paths"]["/openapi.json"]["get"]["security"] == []
    assert served["paths"]["/zones/{id}"]["delete"]["responses"]["409"] == {
        "$ref": "#/components/responses/E409"
    }
