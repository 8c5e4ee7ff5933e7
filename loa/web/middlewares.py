"""Middlewares: LoaError → JSON error with a stable code; bearer-token auth for the API."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from loa.errors import LoaError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USER = web.RequestKey("user", str)


def error_json(status: int, code: str, message: str, **fields: object) -> web.Response:
    body = {"error": {"code": code, "message": message, **fields}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoaError as exc:
        return error_json(exc.status, exc.code, exc.message, **exc.fields)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        return error_json(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_json(500, "internal", "internal error; the server log has the details")


# Routes under /api/v1 that authenticate themselves (the speaker sends its device token in its
# hello) or are public (the API description).
PUBLIC = {"/api/v1/speaker", "/api/v1/openapi.json"}


def bearer_auth(admin_token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error_json(401, "unauthorized", "missing Authorization: Bearer <token>")
        if admin_token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            return error_json(401, "unauthorized", "invalid API token")
        request[USER] = "admin"
        return await handler(request)

    return auth
