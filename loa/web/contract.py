"""The declared API contract: each handler names its JSON body and query string as msgspec
Structs (in its signature) and its answers (in its route), the request is validated by those
declarations before the handler runs, and the OpenAPI document (loa/web/openapi.py) is
generated from the same declarations. Nothing is checked twice by hand.

Refusals are 4xx with a stable code and the field's path: an unknown field is
``unknown_field`` (``unknown field "clas"``), a missing one ``missing_field``, a wrong type
``wrong_type`` (naming the expected type), a value out of bounds ``invalid_value``; a body
that is not JSON is ``bad_json``, one nested too deep ``too_deep``, one over
``MAX_JSON_BYTES`` is 413 ``too_large``, one that is not ``application/json`` 415."""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from loa.errors import BadRequest, TooLarge, Unprocessable, UnsupportedMediaType

PREFIX = "/api/v1"  # where the API sub-app is mounted
MAX_JSON_BYTES = 1024 * 1024
T = TypeVar("T")
OPERATION_ATTR = "__loa_operation__"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- refusals ----------------------------------------------------------------------------------
class UnknownField(BadRequest):
    code = "unknown_field"


class MissingField(BadRequest):
    code = "missing_field"


class WrongType(BadRequest):
    code = "wrong_type"


class InvalidValue(BadRequest):
    code = "invalid_value"


class BadJson(BadRequest):
    code = "bad_json"


class TooDeep(BadRequest):
    code = "too_deep"


class BadUrl(Unprocessable):
    code = "bad_url"


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_MARKED = re.compile(r"^\[field=(?P<field>[^\]]+)\] (?P<message>.*)$", re.S)
_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")


def _join(path: str, key: str | None) -> str:
    path = path.removeprefix(".")
    if key is None:
        return path
    return f"{path}.{key}" if path else key


def _choices(kind: Any, path: str) -> tuple[str, ...]:
    """The values a Literal at ``path`` of ``kind`` allows (none if it is not one)."""
    node: Any = kind
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        node = _unwrap(node)
        if index:
            args = typing.get_args(node)
            node = args[0] if args else None
        elif isinstance(node, type) and issubclass(node, msgspec.Struct):
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(node)}
            node = fields.get(name)
        elif tags := _tags(node, name):
            return tags
        elif member := _member_with(node, name):
            node = {f.encode_name: f.type for f in msgspec.structs.fields(member)}[name]
        else:
            return ()
    node = _unwrap(node)
    if typing.get_origin(node) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(node))
    return ()


def _tags(union: Any, name: str) -> tuple[str, ...]:
    """The tags of a union of tagged Structs whose tag field is ``name``."""
    out = []
    for member in typing.get_args(union):
        if isinstance(member, type) and issubclass(member, msgspec.Struct):
            config = member.__struct_config__
            if config.tag_field == name and config.tag is not None:
                out.append(str(config.tag))
    return tuple(out)


def _member_with(union: Any, name: str) -> Any:
    """The first Struct of a union that has a field ``name``."""
    for member in typing.get_args(union):
        struct = isinstance(member, type) and issubclass(member, msgspec.Struct)
        if struct and any(f.encode_name == name for f in msgspec.structs.fields(member)):
            return member
    return None


def _unwrap(node: Any) -> Any:
    """The one meaningful type inside Annotated[...] and ``X | None | Unset``."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(node) if a not in (type(None), msgspec.UnsetType)]
            if len(rest) != 1:
                return node
            node = rest[0]
        else:
            return node


def refusal(error: msgspec.ValidationError, what: str = "field", kind: Any = None) -> BadRequest:
    """The 400 for a declaration's refusal, naming the field (``what``: field or query
    parameter) by its path, e.g. ``source.items[2].text``, and the values an enum allows."""
    found = _AT.match(str(error))
    assert found is not None  # the pattern matches any text
    message, path = found["message"], found["path"] or ""
    if unknown := _UNKNOWN.match(message):
        name = _join(path, unknown["key"])
        return UnknownField(f'unknown {what} "{name}"', field=name)
    if missing := _MISSING.match(message):
        name = _join(path, missing["key"])
        return MissingField(f'missing {what} "{name}"', field=name)
    if marked := _MARKED.match(message):  # types.invalid(field, message)
        name = _join(path, marked["field"])
        return InvalidValue(marked["message"], field=name)
    name = _join(path, None)
    subject = f'{what} "{name}"' if name else "the body"
    if wrong := _TYPE.match(message):
        expected = wrong["expected"]
        return WrongType(
            f"{subject} must be {expected}, got {wrong['got']}", field=name, expected=expected
        )
    detail = message.replace("`", "")
    if "matching regex '[^\\\\t" in detail:  # types.NON_BLANK
        detail = re.sub(r"str matching regex '\[\^[^']*\]'", "non-blank text", detail)
    detail = detail[:1].lower() + detail[1:]
    invalid = message.startswith(("Invalid enum value", "Invalid value"))
    choices = _choices(kind, path) if invalid else ()
    if choices:
        detail += f"; one of {', '.join(choices)}"
        return InvalidValue(f"{subject}: {detail}", field=name, allowed=list(choices))
    return InvalidValue(f"{subject}: {detail}", field=name)


# -- reading requests --------------------------------------------------------------------------
async def read_json_bytes(request: web.Request) -> bytes:
    """The body of a JSON request, refused (415/413) before it is parsed."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json, not {request.content_type or 'nothing'}"
        )
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise TooLarge(f"a JSON body is at most {MAX_JSON_BYTES} bytes")
    body = bytearray()
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise TooLarge(f"a JSON body is at most {MAX_JSON_BYTES} bytes")
    return bytes(body)


def _integral(value: Any) -> Any:
    """JSON has one number type: 22.0 is an integer to JSON Schema, so it is one here too."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def decode_json(raw: bytes, kind: type[T]) -> T:
    """``raw`` as ``kind``, or the 4xx that says what is wrong with it."""
    try:
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # a whole number written 22.0: decode again with whole floats as ints
            return msgspec.convert(_integral(msgspec.json.decode(raw)), kind)
    except msgspec.ValidationError as exc:
        raise refusal(exc, kind=kind) from None
    except msgspec.DecodeError as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise TooDeep("the body is nested too deeply") from None


async def parse_body(request: web.Request, kind: type[T]) -> T:
    return decode_json(await read_json_bytes(request), kind)


def parse_query(request: web.Request, kind: type[T] | None) -> T | None:
    """The query string as ``kind`` (strings converted to the declared types); with no
    declaration, any parameter is an unknown one."""
    data: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise InvalidValue(f'query parameter "{key}" is given more than once', field=key)
        data[key] = values[0]
    if kind is None:
        if data:
            name = next(iter(data))
            raise UnknownField(f'unknown query parameter "{name}"', field=name)
        return None
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise refusal(exc, "query parameter", kind) from None


# -- declarations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, for validation and for the OpenAPI document."""

    summary: str
    tag: str
    ok: int = 200
    body: Any = None  # a Struct type: the JSON request body
    query: Any = None  # a Struct type: the query string
    returns: Any = None  # the JSON answer's type
    content: Mapping[str, Any] | None = None  # other answers: media type → type
    request_content: Mapping[str, Any] | None = None  # other bodies: media type → type
    errors: tuple[int, ...] = ()
    public: bool = False
    also: Mapping[int, tuple[str, Any]] = field(default_factory=dict)  # status → (why, type)


class Routes:
    """A route table whose handlers declare their contract. A handler's ``body`` and
    ``query`` parameters are decoded from the request by their annotated types::

        @routes.post("/zones", summary="Add a zone", tag="zones", ok=201, returns=ZoneDetail)
        async def add_zone(request: web.Request, body: NewZone) -> web.Response: ...
    """

    def __init__(self) -> None:
        self._table = web.RouteTableDef()

    def __iter__(self) -> Iterator[web.AbstractRouteDef]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def route(self, method: str, path: str, **declared: Any) -> Callable[[Any], Any]:
        def decorate(fn: Callable[..., Awaitable[web.StreamResponse]]) -> Handler:
            hints = typing.get_type_hints(fn)
            body, query = hints.get("body"), hints.get("query")
            operation = Operation(body=body, query=query, **declared)

            @functools.wraps(fn)
            async def handler(request: web.Request) -> web.StreamResponse:
                kwargs: dict[str, Any] = {}
                parsed = parse_query(request, query)
                if query is not None:
                    kwargs["query"] = parsed
                if body is not None:
                    kwargs["body"] = await parse_body(request, body)
                return await fn(request, **kwargs)

            setattr(handler, OPERATION_ATTR, operation)
            self._table.route(method, path)(handler)
            return handler

        return decorate

    def get(self, path: str, **declared: Any) -> Callable[[Any], Any]:
        return self.route("GET", path, **declared)

    def post(self, path: str, **declared: Any) -> Callable[[Any], Any]:
        return self.route("POST", path, **declared)

    def patch(self, path: str, **declared: Any) -> Callable[[Any], Any]:
        return self.route("PATCH", path, **declared)

    def delete(self, path: str, **declared: Any) -> Callable[[Any], Any]:
        return self.route("DELETE", path, **declared)


# Routes whose handlers live outside loa/web/api (the speaker socket, WHIP, WHEP, the live
# status socket, /me, this document): declared here by (method, path under /api/v1); the
# ``declared_queries`` middleware holds their query strings to the declaration.
ELSEWHERE: dict[tuple[str, str], Operation] = {}


def declare(method: str, path: str, operation: Operation) -> None:
    ELSEWHERE[(method.upper(), path)] = operation


def operation_of(method: str, path: str, handler: Any) -> Operation | None:
    found: Operation | None = getattr(handler, OPERATION_ATTR, None)
    return found or ELSEWHERE.get((method.upper(), path))


QUERY = web.RequestKey("declared_query", object)


@web.middleware
async def declared_queries(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hold the query strings of the routes declared in ``ELSEWHERE`` to their declaration
    (the parsed value goes in ``request[QUERY]``)."""
    resource = request.match_info.route.resource
    if resource is not None and getattr(handler, OPERATION_ATTR, None) is None:
        path = resource.canonical.removeprefix(PREFIX)
        operation = ELSEWHERE.get((request.method, path))
        if operation is None and request.method == "HEAD":
            operation = ELSEWHERE.get(("GET", path))
        if operation is not None:
            request[QUERY] = parse_query(request, operation.query)
    return await handler(request)
