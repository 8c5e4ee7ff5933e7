"""The error middleware: LoaError → JSON error with a stable code (auth lives in auth.py).

Every error answer is ``{"error": {"code", "message", …fields}}``. aiohttp's own refusals
(404, 405, 413, …) get the same shape and keep their headers: a 405 carries ``Allow``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from loa.errors import LoaError
from loa.web.errors import http_status

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location")


def error_json(status: int, code: str, message: str, **fields: object) -> web.Response:
    body = {"error": {"code": code, "message": message, **fields}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _http_error(exc: web.HTTPException) -> web.Response:
    fields: dict[str, object] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        fields = {"method": exc.method, "allowed": sorted(exc.allowed_methods)}
    message = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
    response = error_json(exc.status, HTTP_CODES.get(exc.status, "http_error"), message, **fields)
    for name in KEPT_HEADERS:
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoaError as exc:
        return error_json(http_status(exc), exc.code, exc.message, **exc.fields)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return _http_error(exc)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_json(500, "internal", "internal error; the server log has the details")
