"""The OpenAPI 3.1 document of the /api/v1 sub-app, served at ``GET /api/v1/openapi.json``,
generated from the declarations the handlers are validated by (loa/web/contract.py): the
route table gives the paths and methods, each route's ``Operation`` its body, query string
and answers, and msgspec turns their Structs into JSON Schema. A route without a declaration
stops the server at start (``Undeclared``): the document cannot drift from the code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from loa import __version__
from loa.web import contract
from loa.web.api import answers
from loa.web.api.types import Declared, time_zones
from loa.web.auth import COOKIE, CSRF_HEADER
from loa.web.contract import Operation
from loa.web.keys import DOCUMENT

Schema = dict[str, Any]
PREFIX = contract.PREFIX
REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{([^}/:]+)(?::[^}]*)?\}")
DESCRIPTIONS = {
    101: "switching to WebSocket",
    200: "OK",
    201: "created",
    202: "accepted",
    204: "no content",
}
ERRORS = {
    400: "refused by the declaration: the error's field names what (unknown_field, "
    "missing_field, wrong_type, invalid_value, bad_json, too_deep)",
    401: "no valid bearer token or session cookie",
    403: "not allowed: role, zone scope, emergency right, or a cookie session without CSRF",
    404: "no such resource, or one outside the caller's zones",
    405: "method not allowed; the Allow header lists the methods the path has",
    409: "conflicts with the current state; the error names what is in the way",
    413: "body larger than its limit (1 MiB of JSON; web.max_upload_mb; 256 KiB of CAP)",
    415: "wrong Content-Type",
    422: "well formed but unusable: a URL that does not parse, an RRULE that never occurs, "
    "a window too long, undecodable media, an offer without Opus, a refused CAP document",
    503: "too many sessions; retry later",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
    "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
        "description": "with a session cookie, required on every non-GET request",
    },
}
SAFE = frozenset({"get", "head", "options"})


class Undeclared(LookupError):
    """A route with no declared contract."""


def operations(api: web.Application) -> list[tuple[str, str, Operation]]:
    """(path under /api/v1, method, declaration) of every route of the sub-app."""
    out = []
    for route in api.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical.removeprefix(PREFIX)
        found = contract.operation_of(route.method, path, route.handler)
        if found is None:
            raise Undeclared(f"{route.method} {PREFIX}{path} has no declared contract")
        out.append((path, route.method.lower(), found))
    return sorted(out, key=lambda item: (item[0], item[1]))


def _declared_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    todo: list[type] = [Declared]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _types(ops: Iterable[tuple[str, str, Operation]]) -> list[Any]:
    kinds: list[Any] = [answers.Error, *answers.REFERRED]
    for _, _, op in ops:
        for kind in (op.body, op.query, op.returns):
            if kind is not None:
                kinds.append(kind)
        for mapping in (op.content or {}, op.request_content or {}):
            kinds.extend(mapping.values())
        kinds.extend(kind for _, kind in op.also.values())
    types = [k for k in kinds if not isinstance(k, dict)]  # a dict is a schema already
    return list(dict.fromkeys(types))  # in order, once


def _schema(kind: Any, schemas: dict[Any, Schema]) -> Schema:
    return kind if isinstance(kind, dict) else schemas[kind]


def _taken(path: str, paths: Iterable[str]) -> dict[str, list[str]]:
    """Literal segments of sibling paths that a parameter of ``path`` cannot be: the router
    sends ``/schedules/conflicts`` to its own route, never to ``/schedules/{id}``."""
    parts = path.split("/")
    out: dict[str, list[str]] = {}
    for i, part in enumerate(parts):
        name = _PARAM.fullmatch(part)
        if name is None:
            continue
        literals = sorted(
            other.split("/")[i]
            for other in paths
            if len(other.split("/")) == len(parts)
            and other.split("/")[:i] == parts[:i]
            and not _PARAM.fullmatch(other.split("/")[i])
        )
        if literals:
            out[name[1]] = literals
    return out


def _parameters(path: str, query: Schema | None, taken: dict[str, list[str]]) -> list[Schema]:
    params: list[Schema] = []
    for name in _PARAM.findall(path):
        schema: Schema = {"type": "string", "minLength": 1}
        if name in taken:
            schema["not"] = {"enum": taken[name]}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if query is not None:
        required = set(query.get("required", ()))
        for name, schema in query.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    return params


def _responses(op: Operation, method: str, schemas: dict[Any, Schema]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": DESCRIPTIONS.get(op.ok, "OK")}
    content = {"application/json": op.returns} if op.returns is not None else {}
    content.update(op.content or {})
    if content:
        answer["content"] = {t: {"schema": _schema(k, schemas)} for t, k in content.items()}
    out: dict[str, Any] = {str(op.ok): answer}
    for status, (why, kind) in op.also.items():
        out[str(status)] = {
            "description": why,
            "content": {"application/json": {"schema": _schema(kind, schemas)}},
        }
    codes = {400, 405, *op.errors}
    if op.body is not None:
        codes |= {413, 415}
    if not op.public:
        codes.add(401)
        if method not in SAFE:
            codes.add(403)
    for code in sorted(codes):
        out[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    return out


def _operation(
    path: str,
    method: str,
    op: Operation,
    schemas: dict[Any, Schema],
    components: Schema,
    taken: dict[str, list[str]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": method + re.sub(r"\W+", "_", path).rstrip("_"),
        "summary": op.summary,
        "tags": [op.tag],
    }
    query = None
    if op.query is not None:
        query = components[schemas[op.query]["$ref"].rpartition("/")[2]]
    params = _parameters(path, query, taken)
    if params:
        out["parameters"] = params
    bodies = {"application/json": op.body} if op.body is not None else {}
    bodies.update(op.request_content or {})
    if bodies:
        out["requestBody"] = {
            "required": True,
            "content": {t: {"schema": _schema(k, schemas)} for t, k in bodies.items()},
        }
    out["responses"] = _responses(op, method, schemas)
    if op.public:
        out["security"] = []
    return out


def build(api: web.Application) -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    ops = operations(api)
    kinds = _types(ops)
    generated, components = msgspec.json.schema_components(kinds, ref_template=REF)
    schemas = dict(zip(kinds, generated, strict=True))
    declared = _declared_classes()
    for name, component in components.items():
        extra = getattr(declared.get(name), "json_schema_extra", None)
        if extra:
            component.update(extra)
    components["TimeZone"] = {"type": "string", "enum": list(time_zones())}
    paths: dict[str, dict[str, Any]] = {}
    every = {path for path, _, _ in ops}
    for path, method, op in ops:
        taken = _taken(path, every)
        paths.setdefault(path, {})[method] = _operation(
            path, method, op, schemas, components, taken
        )
    for _, _, op in ops:  # a query string's Struct is parameters, not a schema
        if op.query is not None:
            components.pop(schemas[op.query]["$ref"].rpartition("/")[2], None)
    error = {"application/json": {"schema": schemas[answers.Error]}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "loa — commune IP radio relay",
            "version": __version__,
            "description": 'Errors are {"error": {"code", "message", …}} with a stable code; '
            "a field nobody declared is refused, never ignored.",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}, {"session": [], "csrf": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": SECURITY_SCHEMES,
            "responses": {
                f"E{code}": {"description": text, "content": error} for code, text in ERRORS.items()
            },
        },
    }


class Document:
    """The document of one API app, built when it is first asked for (building it takes
    tens of milliseconds of msgspec and json work; most apps, and every test app, never
    serve it), then kept."""

    def __init__(self, api: web.Application) -> None:
        self._api = api
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = json.dumps(build(self._api), ensure_ascii=False, indent=1).encode()
        return self._body


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.config_dict[DOCUMENT].body(), content_type="application/json")


def setup(api: web.Application) -> None:
    """Add ``GET /openapi.json`` (public) to the /api/v1 sub-app; its document covers every
    route of the app, and is built at the first request."""
    api.router.add_get("/openapi.json", openapi_json)
    api[DOCUMENT] = Document(api)
