"""API handlers for what the system keeps: the media library, the broadcast log (JSON and
CSV) and the audit log; and the audit middleware that records every change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from loa.errors import BadRequest, Forbidden, LoaError, NotFound, TooLarge
from loa.media import CHUNK
from loa.store import LogRow, to_csv
from loa.web import auth
from loa.web.api.relay import node_of, user_of
from loa.web.errors import http_status
from loa.web.keys import CONFIG, MEDIA, STORE, USER

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSV_MAX_ROWS = 100_000


def _float(request: web.Request, key: str) -> float | None:
    value = request.query.get(key)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"{key} must be a Unix time in seconds, got {value!r}") from None


def _int(request: web.Request, key: str, default: int, hi: int) -> int:
    value = request.query.get(key)
    if value in (None, ""):
        return default
    if not value.isdigit() or not 0 <= int(value) <= hi:
        raise BadRequest(f"{key} must be an integer 0..{hi}, got {value!r}")
    return int(value)


async def _log_filters(request: web.Request) -> dict[str, Any]:
    """zone (a subtree), since/until (Unix s), class; always narrowed to the user's scope."""
    node, user = node_of(request), user_of(request)
    visible = auth.visible_zones(user, node.zones)
    zones = visible
    zone = request.query.get("zone")
    if zone:
        if not auth.can_see_zone(user, node.zones, zone):
            raise NotFound(f"zone {zone} not found")
        zones = node.zones.subtree(zone)
    klass = request.query.get("class") or None
    return {
        "zones": zones,
        "since": _float(request, "since"),
        "until": _float(request, "until"),
        "klass": klass,
    }


@routes.get("/log")
async def broadcast_log(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    filters = await _log_filters(request)
    rows = await store.log.query(
        **filters,
        limit=_int(request, "limit", 100, 1000),
        offset=_int(request, "offset", 0, 10**9),
    )
    total = await store.log.count(**filters)
    return web.json_response({"entries": [r.as_json() for r in rows], "total": total})


@routes.get("/log.csv")
async def broadcast_log_csv(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    filters = await _log_filters(request)
    rows: list[LogRow] = []
    while len(rows) < CSV_MAX_ROWS:  # the store pages at most 1000 rows per query
        page = await store.log.query(**filters, limit=1000, offset=len(rows))
        rows += page
        if len(page) < 1000:
            break
    tz_name = request.query.get("tz", "Asia/Ho_Chi_Minh")
    try:
        tz = ZoneInfo(tz_name)
    except (KeyError, ValueError):
        raise BadRequest(f"tz must be an IANA time zone, got {tz_name!r}") from None
    body = await asyncio.get_running_loop().run_in_executor(None, to_csv, rows, tz)
    stamp = datetime.now(tz).strftime("%Y%m%d-%H%M")
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="loa-log-{stamp}.csv"'},
    )


@routes.get("/audit")
async def audit_log(request: web.Request) -> web.Response:
    auth.require_admin(user_of(request))
    store = request.config_dict[STORE]
    rows = await store.audit.query(
        user=request.query.get("user") or None,
        action=request.query.get("action") or None,
        since=_float(request, "since"),
        until=_float(request, "until"),
        limit=_int(request, "limit", 100, 1000),
        offset=_int(request, "offset", 0, 10**9),
    )
    return web.json_response({"entries": [r.as_json() for r in rows]})


# -- media ----------------------------------------------------------------------------------


def _may_change(request: web.Request) -> None:
    user = user_of(request)
    if user.role == "viewer":
        raise Forbidden(f"{user.username} is a viewer and may not change the library")


@routes.post("/media")
async def upload_media(request: web.Request) -> web.Response:
    """Raw body upload (any audio av decodes), ``?filename=``; size-limited, checked, kept."""
    _may_change(request)
    config = request.config_dict[CONFIG]
    limit = config.web.max_upload_mb * 1024**2
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"upload exceeds the {config.web.max_upload_mb} MiB limit")
    filename = request.query.get("filename", "upload.bin")
    chunks = request.content.iter_chunked(CHUNK)
    info = await request.config_dict[MEDIA].add(chunks, filename, limit)
    row = await request.config_dict[STORE].media.add(info, user_of(request).username)
    return web.json_response({**info, **row.as_json()}, status=201)


@routes.get("/media")
async def list_media(request: web.Request) -> web.Response:
    rows = await request.config_dict[STORE].media.list()
    return web.json_response({"media": [r.as_json() for r in rows]})


@routes.delete("/media/{id}")
async def delete_media(request: web.Request) -> web.Response:
    _may_change(request)
    row = await request.config_dict[STORE].media.remove(request.match_info["id"])
    await request.config_dict[MEDIA].remove(row.file)
    return web.json_response(row.as_json())


# -- audit ----------------------------------------------------------------------------------

QUIET = {"/api/v1/speaker"}


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every change made through the API (any non-GET), who made it, and how it ended."""
    if request.method in auth.SAFE_METHODS or request.path in QUIET:
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except LoaError as exc:
        status = http_status(exc)
        raise
    finally:
        user = request.get(USER)
        route = request.match_info.route.resource
        action = f"{request.method} {route.canonical if route is not None else request.path}"
        detail = {"status": status, "query": dict(request.query)}
        try:
            await request.config_dict[STORE].audit.record(
                user.username if user else None,
                action,
                "/".join(request.match_info.values()) or None,
                detail,
                request.remote,
            )
        except Exception:
            log.exception("could not write the audit record for %s", action)
