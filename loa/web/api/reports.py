"""API handlers for reports upward (per endpoint and per zone, JSON or CSV, narrowed to the
caller's zones) and webhook management (admins); and the cleanup context that runs the
``Webhooks`` service around the relay node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from loa import reports
from loa.errors import BadRequest, NotFound
from loa.reports import Period
from loa.web import auth
from loa.web.api.relay import json_body, node_of, user_of
from loa.web.keys import NODE, STORE, WEBHOOKS

routes = web.RouteTableDef()
NEW_HOOK_FIELDS = frozenset({"url", "events", "secret", "enabled"})


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the store opens and around the node: presence and log events raised while the
    node shuts down are still written, then delivery stops."""
    hooks = app[WEBHOOKS]
    await hooks.start()
    app[NODE].on_presence = hooks.presence
    yield
    await hooks.close()


# -- reports ---------------------------------------------------------------------------------


def _unix(request: web.Request, key: str) -> float:
    value = request.query.get(key, "")
    if not value:
        raise BadRequest(f"{key} is required (Unix time in seconds)")
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"{key} must be a Unix time in seconds, got {value!r}") from None


def _scope(request: web.Request) -> frozenset[str] | None:
    """The zones the report covers: ``?zone=``'s subtree, else all the caller sees (None: all)."""
    node, user = node_of(request), user_of(request)
    zone = request.query.get("zone")
    if zone:
        if not auth.can_see_zone(user, node.zones, zone):
            raise NotFound(f"zone {zone} not found")
        return node.zones.subtree(zone)
    return auth.visible_zones(user, node.zones)


async def _report(request: web.Request, kind: str) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest(f"format must be json or csv, got {fmt!r}")
    tz_name = request.query.get("tz", "Asia/Ho_Chi_Minh")
    try:
        tz = ZoneInfo(tz_name)
    except (KeyError, ValueError):
        raise BadRequest(f"tz must be an IANA time zone, got {tz_name!r}") from None
    store = request.config_dict[STORE]
    period = Period(_unix(request, "since"), _unix(request, "until"), store.db.clock())
    scope = _scope(request)
    data = await reports.load(store, period)
    endpoints = [e for e in data.endpoints if scope is None or e.zone in scope]
    zones = [z for z in data.zones if scope is None or z.id in scope] if kind == "zones" else []
    loop = asyncio.get_running_loop()
    by_endpoint, by_zone = await loop.run_in_executor(
        None, reports.compute, period, endpoints, zones, data.tree, data.rows, data.intervals
    )
    if fmt == "csv":
        if kind == "zones":
            body = await loop.run_in_executor(None, reports.zones_csv, by_zone, period, tz)
        else:
            body = await loop.run_in_executor(None, reports.endpoints_csv, by_endpoint, period, tz)
        stamp = datetime.fromtimestamp(period.since, tz).strftime("%Y%m%d-%H%M")
        return web.Response(
            body=body,
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="loa-{kind}-{stamp}.csv"'},
        )
    rows = by_zone if kind == "zones" else by_endpoint
    return web.json_response(
        {"since": period.since, "until": period.until, kind: [r.as_json() for r in rows]}
    )


@routes.get("/reports/endpoints")
async def endpoints_report(request: web.Request) -> web.Response:
    return await _report(request, "endpoints")


@routes.get("/reports/zones")
async def zones_report(request: web.Request) -> web.Response:
    return await _report(request, "zones")


# -- webhooks (admins) -------------------------------------------------------------------------


def _int(request: web.Request, key: str, default: int) -> int:
    value = request.query.get(key, "")
    if not value:
        return default
    if not value.isdigit() or len(value) > 10:
        raise BadRequest(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


def _hook_id(request: web.Request) -> int:
    auth.require_admin(user_of(request))
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"webhook {raw} not found")
    return int(raw)


@routes.get("/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    auth.require_admin(user_of(request))
    hooks = await request.config_dict[STORE].webhooks.list()
    return web.json_response({"webhooks": [h.as_json() for h in hooks]})


@routes.post("/webhooks")
async def add_webhook(request: web.Request) -> web.Response:
    """The secret is answered once: receivers need it to check signatures."""
    auth.require_admin(user_of(request))
    body = await json_body(request)
    unknown = sorted(set(body) - NEW_HOOK_FIELDS)
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; a webhook has {sorted(NEW_HOOK_FIELDS)}")
    if "url" not in body or "events" not in body:
        raise BadRequest("a webhook needs url and events")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BadRequest(f"enabled must be true or false, got {enabled!r}", field="enabled")
    store = request.config_dict[STORE]
    hook = await store.webhooks.add(
        body["url"], body["events"], body.get("secret"), enabled=enabled
    )
    return web.json_response(
        {**hook.as_json(), "secret": hook.secret},
        status=201,
        headers={"Location": f"/api/v1/webhooks/{hook.id}"},
    )


@routes.delete("/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    hook = await request.config_dict[STORE].webhooks.remove(_hook_id(request))
    return web.json_response(hook.as_json())


@routes.get("/webhooks/{id}/deliveries")
async def webhook_deliveries(request: web.Request) -> web.Response:
    """Newest first, dead letters included (``?state=pending|delivered|dead``)."""
    hook_id = _hook_id(request)
    rows = await request.config_dict[STORE].webhooks.deliveries(
        hook_id,
        state=request.query.get("state") or None,
        limit=_int(request, "limit", 100),
        offset=_int(request, "offset", 0),
    )
    return web.json_response({"deliveries": [r.as_json() for r in rows]})


@routes.post("/webhooks/{id}/test")
async def test_webhook(request: web.Request) -> web.Response:
    """Queue a ``webhook.test`` event for this hook alone; watch its deliveries for the result."""
    hook_id = _hook_id(request)
    payload: dict[str, Any] = {"hook": hook_id, "message": "test delivery from loa"}
    row = await request.config_dict[STORE].webhooks.enqueue_test(hook_id, payload)
    request.config_dict[WEBHOOKS].wake()
    return web.json_response(row.as_json(), status=202)
