"""The error middleware: LoaError → JSON error with a stable code (auth lives in auth.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from loa.errors import LoaError
from loa.web.errors import http_status

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_json(status: int, code: str, message: str, **fields: object) -> web.Response:
    body = {"error": {"code": code, "message": message, **fields}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoaError as exc:
        return error_json(http_status(exc), exc.code, exc.message, **exc.fields)
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
