"""API handlers for reports upward (per endpoint and per zone, JSON or CSV, narrowed to the
caller's zones) and webhook management (admins); and the cleanup context that runs the
``Webhooks`` service around the relay node."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from loa import reports
from loa.errors import NotFound, Unprocessable
from loa.reports import MAX_PERIOD_S, Period
from loa.web import auth, words
from loa.web.api import answers
from loa.web.api.bodies import NewWebhook
from loa.web.api.queries import DeliveriesQuery, ReportQuery
from loa.web.api.relay import node_of, user_of
from loa.web.contract import Routes
from loa.web.keys import NODE, STORE, WEBHOOKS

routes = Routes()


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the store opens and around the node: presence and log events raised while the
    node shuts down are still written, then delivery stops."""
    hooks = app[WEBHOOKS]
    await hooks.start()
    app[NODE].on_presence = hooks.presence
    yield
    await hooks.close()


# -- reports ---------------------------------------------------------------------------------


def _scope(request: web.Request, zone: str | None) -> frozenset[str] | None:
    """The zones the report covers: ``?zone=``'s subtree, else all the caller sees (None: all)."""
    node, user = node_of(request), user_of(request)
    if zone is not None:
        if not auth.can_see_zone(user, node.zones, zone):
            raise NotFound(f"zone {zone} not found")
        return node.zones.subtree(zone)
    return auth.visible_zones(user, node.zones)


async def _report(request: web.Request, kind: str, query: ReportQuery) -> web.Response:
    fmt, tz = query.format, ZoneInfo(query.tz)
    if not query.since < query.until or query.until - query.since > MAX_PERIOD_S:
        raise Unprocessable(
            f"a report covers since < until, at most {MAX_PERIOD_S / 86400:g} days; "
            f"got since={query.since:g} until={query.until:g}",
            field="until",
        )
    store = request.config_dict[STORE]
    scope = _scope(request, query.zone)
    period = Period(query.since, query.until, store.db.clock())
    data = await reports.load(store, period)
    endpoints = [e for e in data.endpoints if scope is None or e.zone in scope]
    zones = [z for z in data.zones if scope is None or z.id in scope] if kind == "zones" else []
    loop = asyncio.get_running_loop()
    by_endpoint, by_zone = await loop.run_in_executor(
        None, reports.compute, period, endpoints, zones, data.tree, data.rows, data.intervals
    )
    if fmt == "csv":
        labels = words.texts(words.reader_lang(request, query.lang), "reports.col.")
        if kind == "zones":
            make = functools.partial(reports.zones_csv, by_zone, period, tz, labels)
        else:
            make = functools.partial(reports.endpoints_csv, by_endpoint, period, tz, labels)
        body = await loop.run_in_executor(None, make)
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


REPORT = (
    "over [since, until): broadcasts and emergencies heard, air time played vs requested, "
    "availability; narrowed to the caller's zones (format=csv for CSV, its header line in "
    "?lang= or the Accept-Language, Vietnamese by default)"
)


@routes.get(
    "/reports/endpoints",
    summary="Per endpoint " + REPORT,
    tag="reports",
    returns=answers.EndpointReports,
    content={"text/csv": str},
    errors=(404, 422),
)
async def endpoints_report(request: web.Request, query: ReportQuery) -> web.Response:
    return await _report(request, "endpoints", query)


@routes.get(
    "/reports/zones",
    summary="Per zone " + REPORT,
    tag="reports",
    returns=answers.ZoneReports,
    content={"text/csv": str},
    errors=(404, 422),
)
async def zones_report(request: web.Request, query: ReportQuery) -> web.Response:
    return await _report(request, "zones", query)


# -- webhooks (admins) -------------------------------------------------------------------------


def _hook_id(request: web.Request) -> int:
    auth.require_admin(user_of(request))
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() too
        raise NotFound(f"webhook {raw} not found")
    return int(raw)


@routes.get(
    "/webhooks",
    summary="Webhook subscriptions (admins)",
    tag="webhooks",
    returns=answers.Webhooks,
    errors=(403,),
)
async def list_webhooks(request: web.Request) -> web.Response:
    auth.require_admin(user_of(request))
    hooks = await request.config_dict[STORE].webhooks.list()
    return web.json_response({"webhooks": [h.as_json() for h in hooks]})


@routes.post(
    "/webhooks",
    summary="Subscribe a URL to events (admins); the answer carries the signing secret, once",
    tag="webhooks",
    ok=201,
    returns=answers.Webhook,
    errors=(403,),
)
async def add_webhook(request: web.Request, body: NewWebhook) -> web.Response:
    """The secret is answered once: receivers need it to check signatures."""
    auth.require_admin(user_of(request))
    store = request.config_dict[STORE]
    hook = await store.webhooks.add(body.url, list(body.events), body.secret, enabled=body.enabled)
    return web.json_response(
        {**hook.as_json(), "secret": hook.secret},
        status=201,
        headers={"Location": f"/api/v1/webhooks/{hook.id}"},
    )


@routes.delete(
    "/webhooks/{id}",
    summary="Remove a webhook and its outbox (admins)",
    tag="webhooks",
    returns=answers.Webhook,
    errors=(403, 404),
)
async def delete_webhook(request: web.Request) -> web.Response:
    hook = await request.config_dict[STORE].webhooks.remove(_hook_id(request))
    return web.json_response(hook.as_json())


@routes.get(
    "/webhooks/{id}/deliveries",
    summary="A webhook's deliveries, newest first, dead letters included (admins)",
    tag="webhooks",
    returns=answers.Deliveries,
    errors=(403, 404),
)
async def webhook_deliveries(request: web.Request, query: DeliveriesQuery) -> web.Response:
    """Newest first, dead letters included (``?state=pending|delivered|dead``)."""
    hook_id = _hook_id(request)
    rows = await request.config_dict[STORE].webhooks.deliveries(
        hook_id, state=query.state, limit=query.limit, offset=query.offset
    )
    return web.json_response({"deliveries": [r.as_json() for r in rows]})


@routes.post(
    "/webhooks/{id}/test",
    summary="Queue a webhook.test event for this webhook (admins)",
    tag="webhooks",
    ok=202,
    returns=answers.Delivery,
    errors=(403, 404),
)
async def test_webhook(request: web.Request) -> web.Response:
    """Queue a ``webhook.test`` event for this hook alone; watch its deliveries for the result."""
    hook_id = _hook_id(request)
    payload: dict[str, Any] = {"hook": hook_id, "message": "test delivery from loa"}
    row = await request.config_dict[STORE].webhooks.enqueue_test(hook_id, payload)
    request.config_dict[WEBHOOKS].wake()
    return web.json_response(row.as_json(), status=202)
