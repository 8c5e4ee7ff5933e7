"""Cross-origin WHIP and WHEP (CORS, the Fetch standard): which other origins' pages may
publish or listen from a browser, the preflight they send first, and the response headers
they may read.

A page on ``https://studio.example.vn`` that publishes to this server by WHIP sends
``OPTIONS`` first (its POST has an ``application/sdp`` body and an ``Authorization``
header, so it is not a "simple" request); only if the answer names its origin does the
browser send the POST, and only the response headers named in
``Access-Control-Expose-Headers`` (``Location`` above all: the session to DELETE) reach
its script. ``web.cors_origins`` lists the origins allowed (``*`` for any); empty, the
default, means same-origin pages only. No ``Access-Control-Allow-Credentials``: another
origin's page authenticates with a bearer (API or listen) token, never the session
cookie, which stays ``SameSite=Strict``.

Only the WHIP and WHEP resources take part (``/api/v1/whip``, ``/api/v1/whep`` and their
sessions); the rest of the API stays same-origin. A preflight's query string is that of
the request it precedes, judged when that request comes, not here."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import hdrs, web

from loa.config import web_origin
from loa.errors import Forbidden
from loa.web.keys import CORS

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PATHS = re.compile(r"^/api/v1/wh[ie]p(?:/[^/]+)?$")
# What a WHIP/WHEP client reads of a response (RFC 9725 §4: Location, Link for ICE servers,
# ETag and Accept-Patch for ICE restarts; Allow on a 405; Retry-After on a 503).
EXPOSED = (
    "Location",
    "Link",
    "ETag",
    "Accept-Patch",
    "Accept-Post",
    "Allow",
    "Retry-After",
    "X-Loa-Broadcast",
)
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-Match")
MAX_AGE_S = 600  # browsers may cache a preflight this long (Chromium caps it at 2 h)


class OriginRefused(Forbidden):
    """A preflight from an origin that ``web.cors_origins`` does not list."""

    code = "origin_refused"


def is_cross_origin_path(path: str) -> bool:
    return PATHS.match(path) is not None


@dataclass(frozen=True, slots=True)
class Cors:
    """The origins allowed (as browsers write them), or any."""

    origins: frozenset[str]
    anyone: bool = False

    @classmethod
    def of(cls, configured: Iterable[str]) -> Cors:
        items = tuple(configured)
        return cls(frozenset(web_origin(o) for o in items if o != "*"), "*" in items)

    def allows(self, origin: str, own: str) -> bool:
        """Whether a page on ``origin`` may use WHIP/WHEP here (``own`` is this server's
        origin as the request reached it: a same-origin page needs no permission)."""
        try:
            normal = web_origin(origin)
        except ValueError:  # "null" (a sandboxed frame, a file: page) or garbage
            return False
        if self.anyone or normal in self.origins:
            return True
        try:
            return normal == web_origin(own)
        except ValueError:  # a Host header that names no host
            return False


def _own(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or not request.config_dict[CORS].allows(origin, _own(request)):
        return None
    return origin


def _mark(target: web.StreamResponse | web.HTTPException, origin: str | None) -> None:
    """What a response on these paths says: that it depends on ``Origin`` (for caches),
    and, to an allowed origin, its name and the headers its script may read."""
    target.headers.add(hdrs.VARY, hdrs.ORIGIN)
    if origin is not None:
        target.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        target.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers to an allowed origin on the WHIP/WHEP paths name it (errors too, so its
    script can read why). Install on the root app after the proxies middleware (the
    origin this server has is the one the client used) and before the error middleware."""
    if not is_cross_origin_path(request.path):
        return await handler(request)
    origin = _allowed_origin(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect, or an error the error middleware let by
        _mark(exc, origin)
        raise
    _mark(response, origin)
    return response


def preflight(methods: tuple[str, ...], *, accept_post: bool) -> Handler:
    """The ``OPTIONS`` handler of one WHIP/WHEP path whose other methods are ``methods``.

    Without ``Origin`` and ``Access-Control-Request-Method`` it is a plain OPTIONS (RFC
    9110): 204 with ``Allow`` (and ``Accept-Post: application/sdp`` on the endpoint, RFC
    9725 §4.2). A CORS preflight from an allowed origin gets the methods, headers and
    cache lifetime it may use; from another origin, 403 ``origin_refused``."""
    allow = ", ".join((*methods, "OPTIONS"))

    async def options(request: web.Request) -> web.Response:
        headers: dict[str, str] = {hdrs.ALLOW: allow}
        if accept_post:
            headers["Accept-Post"] = "application/sdp"
        origin = request.headers.get(hdrs.ORIGIN)
        asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        if origin is None or asked is None:
            return web.Response(status=204, headers=headers)
        if _allowed_origin(request) is None:
            log.info(
                "CORS preflight to %s from %s refused (web.cors_origins)", request.path, origin
            )
            raise OriginRefused(
                f"pages on {origin} may not use {request.path}: "
                "the server's web.cors_origins does not list that origin",
                origin=origin,
            )
        headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = allow
        headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(ALLOWED_HEADERS)
        headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(MAX_AGE_S)
        return web.Response(status=204, headers=headers)

    return options


def setup(app: web.Application, configured: Iterable[str]) -> None:
    """Install the allowed origins (the middleware is in ``create_app``'s list)."""
    app[CORS] = Cors.of(configured)
