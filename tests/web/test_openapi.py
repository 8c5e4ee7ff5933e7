"""The OpenAPI document matches the real /api/v1 sub-app in both directions, and holds
together as OpenAPI 3.1 (checked by hand: its structure is small, no validator dependency)."""

from __future__ import annotations

import re
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
    routes, documented = routes_of(app), operations(openapi.build())
    assert routes - documented == set(), "routes missing from loa/web/openapi.py"
    assert documented - routes == set(), "operations in the document with no route"
    # the modules other than admin.py that add routes are covered too
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
    doc = openapi.build()
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
            for code, response in operation["responses"].items():
                response = resolve(doc, response["$ref"]) if "$ref" in response else response
                assert response["description"], (method, path, code)
                if code >= "400":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_json_bodies_are_closed_schemas() -> None:
    """A typo in a field is a 400 in the API, so the document says additionalProperties:
    false on every JSON request body, and names the required fields the handlers demand."""
    doc = openapi.build()
    required = {
        ("post", "/zones"): ["id", "name", "parent"],
        ("post", "/endpoints"): ["id", "name", "zone"],
        ("post", "/users"): ["username", "password", "role"],
        ("post", "/users/{username}/tokens"): ["label"],
        ("post", "/broadcasts"): ["source", "targets"],
        ("post", "/webhooks"): ["url", "events"],
        ("post", "/schedules"): ["name", "dtstart", "rrule", "items", "targets"],
        ("post", "/bulletins"): ["level", "zones", "title", "variants"],
    }
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                assert schema["additionalProperties"] is False, (method, path)
                assert schema.get("required", []) == required.get((method, path), [])


async def test_served_without_credentials(aiohttp_client: Any, app: web.Application) -> None:
    client: TestClient = await aiohttp_client(app)
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    served = await resp.json()
    assert served == openapi.build()
    assert served["paths"]["/openapi.json"]["get"]["security"] == []
    assert served["paths"]["/zones/{id}"]["delete"]["responses"]["409"] == {
        "$ref": "#/components/responses/E409"
    }
