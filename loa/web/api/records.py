"""API handlers for what the system keeps: the media library, the broadcast log (JSON and
CSV) and the audit log; and the audit middleware that records every change."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from loa.errors import Conflict, Forbidden, LoaError, NotFound, TooLarge
from loa.media import CHUNK
from loa.store import LogRow, to_csv
from loa.web import auth, words
from loa.web.api import answers
from loa.web.api.media_scope import media_in
from loa.web.api.queries import AuditQuery, LogCsvQuery, LogQuery, UploadQuery
from loa.web.api.relay import node_of, user_of
from loa.web.contract import Routes
from loa.web.errors import http_status
from loa.web.keys import CONFIG, MEDIA, STORE, USER
from loa.web.server import REDACTED
from loa.web.views import scoped

log = logging.getLogger(__name__)
routes = Routes()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSV_MAX_ROWS = 100_000


def _log_filters(request: web.Request, query: LogQuery | LogCsvQuery) -> dict[str, Any] | None:
    """zone (a subtree), since/until (Unix s), class; always narrowed to the user's scope.
    None when the window is empty (since after until): no row can be in it."""
    node, user = node_of(request), user_of(request)
    zones = auth.visible_zones(user, node.zones)
    if query.zone is not None:
        if not auth.can_see_zone(user, node.zones, query.zone):
            raise NotFound(f"zone {query.zone} not found", zone=query.zone)
        zones = node.zones.subtree(query.zone)
    if query.since is not None and query.until is not None and query.since > query.until:
        return None
    return {"zones": zones, "since": query.since, "until": query.until, "klass": query.klass}


@routes.get(
    "/log",
    summary="The broadcast log, narrowed to the caller's zones",
    tag="records",
    returns=answers.Log,
    errors=(404,),
)
async def broadcast_log(request: web.Request, query: LogQuery) -> web.Response:
    store = request.config_dict[STORE]
    filters = _log_filters(request, query)
    if filters is None:
        return web.json_response({"entries": [], "total": 0})
    rows = await store.log.query(**filters, limit=query.limit, offset=query.offset)
    total = await store.log.count(**filters)
    node, user = node_of(request), user_of(request)
    entries = [scoped(user, node, r.as_json()) for r in rows]  # heard_s: the caller's poles
    return web.json_response({"entries": entries, "total": total})


@routes.get(
    "/log.csv",
    summary="The broadcast log as CSV, times in tz",
    tag="records",
    content={"text/csv": str},
    errors=(404,),
)
async def broadcast_log_csv(request: web.Request, query: LogCsvQuery) -> web.Response:
    store = request.config_dict[STORE]
    filters = _log_filters(request, query)
    rows: list[LogRow] = []
    while filters is not None and len(rows) < CSV_MAX_ROWS:  # pages of at most 1000 rows
        page = await store.log.query(**filters, limit=1000, offset=len(rows))
        rows += page
        if len(page) < 1000:
            break
    node, user = node_of(request), user_of(request)
    rows = [LogRow.from_json(scoped(user, node, r.as_json())) for r in rows]  # their poles
    tz = ZoneInfo(query.tz)
    lang = words.reader_lang(request, query.lang)
    make = functools.partial(
        to_csv,
        rows,
        tz,
        columns=words.texts(lang, "logcsv.col."),
        classes=words.texts(lang, "class."),
        states=words.texts(lang, "bcstate."),
    )
    body = await asyncio.get_running_loop().run_in_executor(None, make)
    stamp = datetime.now(tz).strftime("%Y%m%d-%H%M")
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="loa-log-{stamp}.csv"'},
    )


@routes.get(
    "/audit",
    summary="The audit log (admins)",
    tag="records",
    returns=answers.Audit,
    errors=(403,),
)
async def audit_log(request: web.Request, query: AuditQuery) -> web.Response:
    auth.require_admin(user_of(request))
    if query.since is not None and query.until is not None and query.since > query.until:
        return web.json_response({"entries": []})  # an empty window
    store = request.config_dict[STORE]
    rows = await store.audit.query(
        user=query.user,
        action=query.action,
        since=query.since,
        until=query.until,
        limit=query.limit,
        offset=query.offset,
    )
    return web.json_response({"entries": [r.as_json() for r in rows]})


# -- media ----------------------------------------------------------------------------------


def _may_change(request: web.Request) -> None:
    user = user_of(request)
    if user.role == "viewer":
        raise Forbidden(f"{user.username} is a viewer and may not change the library")


def _owner(request: web.Request, zone: str | None) -> str | None:
    """The zone new media belong to: ``zone`` if the caller sees it (404 if not: absent and
    out of scope look alike), else the uploader's zone (an admin's: the top level)."""
    node, user = node_of(request), user_of(request)
    if zone is None:
        return None if user.role == "admin" else user.zone
    if not auth.can_see_zone(user, node.zones, zone):
        raise NotFound(f"zone {zone} not found", zone=zone)
    return zone


@routes.post(
    "/media",
    summary="Upload audio (raw body, any format av decodes), size-limited",
    tag="media",
    ok=201,
    returns=answers.Media,
    request_content={
        "application/octet-stream": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
        }
    },
    errors=(403, 404, 413, 422),
)
async def upload_media(request: web.Request, query: UploadQuery) -> web.Response:
    """Raw body upload (any audio av decodes), ``?filename=``; size-limited, checked, kept."""
    _may_change(request)
    owner = _owner(request, query.zone)
    config = request.config_dict[CONFIG]
    limit = config.web.max_upload_mb * 1024**2
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"upload exceeds the {config.web.max_upload_mb} MiB limit")
    filename = query.filename
    chunks = request.content.iter_chunked(CHUNK)
    media = request.config_dict[MEDIA]
    info = await media.add(chunks, filename, limit, config.web.max_media_duration_s)
    row = await request.config_dict[STORE].media.add(info, user_of(request).username, owner)
    return web.json_response({**info, **row.as_json()}, status=201)


@routes.get(
    "/media",
    summary="The media library the caller may use (their zone's and those from above)",
    tag="media",
    returns=answers.MediaList,
)
async def list_media(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    rows = await request.config_dict[STORE].media.list()
    usable = [r for r in rows if auth.can_use_media(user, node.zones, r.zone)]
    return web.json_response({"media": [r.as_json() for r in usable]})


@routes.delete(
    "/media/{id}",
    summary="Remove a media file",
    tag="media",
    returns=answers.Media,
    errors=(403, 404, 409),
)
async def delete_media(request: web.Request) -> web.Response:
    """Only the owner zone's operators (and admins) delete; media a schedule plays stay."""
    _may_change(request)
    node, user, store = node_of(request), user_of(request), request.config_dict[STORE]
    media_id = request.match_info["id"]
    row = await store.media.get(media_id)
    if not auth.can_use_media(user, node.zones, row.zone):
        raise NotFound(f"media {media_id!r} not found", media=media_id)
    auth.can_delete_media(user, node.zones, media_id, row.zone)
    users = sorted(
        s.schedule.id
        for s in await store.schedules.list()
        if media_id in s.schedule.programme.media_ids()
    )
    if users:
        raise Conflict(
            f"media {media_id} is played by schedule(s) {', '.join(users)}: change or delete "
            "them first",
            media=media_id,
            schedules=", ".join(users),
        )
    await _not_for_emergencies(store, media_id)
    row = await store.media.remove(media_id)
    await request.config_dict[MEDIA].remove(row.file)
    return web.json_response(row.as_json())


async def _not_for_emergencies(store: Any, media_id: str) -> None:
    """409 naming them when a repeating emergency plays the media or a prepared emergency
    message is that recording: deleting it would silence the next play or the button."""
    repeats = sorted(
        r.id
        for r in await store.repeats.list(("active",))
        if media_id in media_in(r.plan["source"])
    )
    prepared = sorted(p.id for p in await store.prepared.list() if p.media == media_id)
    if repeats or prepared:
        used = [f"repeating emergency {r}" for r in repeats]
        used += [f"prepared message {p}" for p in prepared]
        raise Conflict(
            f"media {media_id} is used by {', '.join(used)}: cancel or change them first",
            media=media_id,
            repeats=", ".join(repeats),
            prepared=", ".join(prepared),
        )


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
        query = {k: REDACTED if "token" in k.lower() else v for k, v in request.query.items()}
        detail = {"status": status, "query": query}
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
