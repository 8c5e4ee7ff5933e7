"""API handlers for schedules ("lịch phát"): CRUD, the next runs of one, and the conflicts report.

Scope, as for broadcasts: a schedule is seen by whoever sees its origin zone or one of the
zones it plays in (a commune operator sees the province's programme that plays there); it is
changed only by an admin, or an operator who could start its broadcast — every target inside
their subtree and the origin their zone or one inside it. Viewers read. An operator's schedule
ranks from their zone unless they name one inside it; only an admin schedules nationally
(``zone: null``). Every change reloads the running scheduler."""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from loa.access import User
from loa.errors import BadRequest, Forbidden, NotFound
from loa.relay.node import Node
from loa.schedule import DEFAULT_TZ, Recurrence, Schedule, conflicts
from loa.schedule.conflicts import ConflictReport, RunReport
from loa.store import Store
from loa.store.schedules import ScheduleRow
from loa.web import auth
from loa.web.api.admin import may_change, store_of
from loa.web.api.relay import json_body, node_of, user_of
from loa.web.keys import SCHEDULES
from loa.web.reasons import why_json

routes = web.RouteTableDef()

FIELDS = ("id", "name", "zone", "dtstart", "rrule", "timezone", "grace_s")
PROGRAMME = ("items", "targets", "class")
SETTABLE = (*FIELDS, *PROGRAMME, "enabled")
MAX_PREVIEW = 100
RESERVED_IDS = frozenset({"conflicts"})  # a path segment of its own


def _target_zones(node: Node, schedule: Schedule) -> set[str]:
    p = schedule.programme
    zones = set(p.target_zones)
    zones.update(node.endpoints[e].spec.zone for e in p.target_endpoints if e in node.endpoints)
    return zones


def _sees(user: User, node: Node, schedule: Schedule) -> bool:
    zones = _target_zones(node, schedule)
    if schedule.origin_zone is not None:
        zones.add(schedule.origin_zone)
    return any(auth.can_see_zone(user, node.zones, z) for z in zones) or (
        user.role == "admin" or user.zone is None
    )


async def _visible(request: web.Request, schedule_id: str) -> ScheduleRow:
    """The row if the user sees it; out of scope reads exactly like absent (404)."""
    node, user = node_of(request), user_of(request)
    try:
        row = await store_of(request).schedules.get(schedule_id)
    except NotFound:
        row = None
    if row is None or not _sees(user, node, row.schedule):
        raise NotFound(f"schedule {schedule_id!r} not found", schedule=schedule_id)
    return row


def _may_own(user: User, node: Node, schedule: Schedule) -> None:
    """403 unless this user may run this schedule's broadcasts; 404 for unknown targets."""
    may_change(user)
    p = schedule.programme
    for zone in sorted(p.target_zones):
        if zone not in node.zones:
            raise NotFound(f"zone {zone!r} does not exist", zone=zone)
    endpoints = {e: node.endpoint(e).spec.zone for e in sorted(p.target_endpoints)}
    auth.can_target(user, node.zones, p.target_zones, endpoints, emergency=False)
    origin = schedule.origin_zone
    if origin is not None and origin not in node.zones:
        raise NotFound(f"zone {origin!r} does not exist", zone=origin)
    if user.role == "admin":
        return
    if origin is None:
        raise Forbidden(f"{user.username} may not schedule as the national level", field="zone")
    if not auth.can_see_zone(user, node.zones, origin):
        raise Forbidden(
            f"origin zone {origin} is outside {user.username}'s zone {user.zone}", field="zone"
        )


async def _check_media(store: Store, schedule: Schedule) -> None:
    """404 naming the first media id the library does not hold."""
    for media_id in sorted(schedule.programme.media_ids()):
        try:
            await store.media.get(media_id)
        except NotFound:
            raise NotFound(f"media {media_id!r} is not in the library", media=media_id) from None


def _dtstart(data: dict[str, Any]) -> dict[str, Any]:
    """``dtstart`` as a Unix time, or as local ISO time ("2025-03-03T05:00") in the timezone."""
    value = data.get("dtstart")
    if isinstance(value, str):
        recurrence = Recurrence.from_local(
            value, str(data.get("rrule", "FREQ=DAILY")), data.get("timezone") or DEFAULT_TZ
        )
        return {**data, "dtstart": recurrence.dtstart}
    return data


async def _default_timezone(store: Store, zone: str | None) -> str:
    if zone is None:
        return DEFAULT_TZ
    try:
        return (await store.zones.get(zone)).timezone or DEFAULT_TZ
    except NotFound:
        return DEFAULT_TZ


def _enabled(data: dict[str, Any], default: bool) -> bool:
    value = data.get("enabled", default)
    if not isinstance(value, bool):
        raise BadRequest(f"enabled must be true or false, got {value!r}", field="enabled")
    return value


def _only(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; settable: {', '.join(allowed)}")


def _reload(request: web.Request) -> None:
    service = request.config_dict.get(SCHEDULES)
    if service is not None:
        service.reload()


@routes.get("/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    rows = await store_of(request).schedules.list()
    return web.json_response(
        {"schedules": [r.as_json() for r in rows if _sees(user, node, r.schedule)]}
    )


@routes.post("/schedules")
async def add_schedule(request: web.Request) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    may_change(user)
    data = await json_body(request)
    _only(data, SETTABLE)
    data.setdefault("id", secrets.token_hex(6))
    if data["id"] in RESERVED_IDS:
        raise BadRequest(f"schedule id {data['id']!r} is reserved", field="id")
    data.setdefault("zone", user.zone if user.role != "admin" else None)
    data.setdefault("timezone", await _default_timezone(store, data["zone"]))
    schedule = Schedule.from_json(_dtstart(data))
    _may_own(user, node, schedule)
    await _check_media(store, schedule)
    row = await store.schedules.add(schedule, user.username, enabled=_enabled(data, True))
    _reload(request)
    return web.json_response(row.as_json(), status=201)


@routes.get("/schedules/conflicts")
async def schedule_conflicts(request: web.Request) -> web.Response:
    """Runs starting in [since, until) (at most 31 days) of the schedules the user sees."""
    node, user, store = node_of(request), user_of(request), store_of(request)
    since, until = _time(request, "since"), _time(request, "until")
    rows = [r for r in await store.schedules.list() if r.enabled and _sees(user, node, r.schedule)]
    endpoints = {e.id: e.spec.zone for e in node.poles()}
    media_s = {m.id: m.duration_s for m in await store.media.list()}
    report = conflicts(
        [r.schedule for r in rows], node.zones, endpoints, (since, until), media_s=media_s
    )
    return web.json_response(_report_json(report, user, node))


@routes.get("/schedules/{id}")
async def get_schedule(request: web.Request) -> web.Response:
    return web.json_response((await _visible(request, request.match_info["id"])).as_json())


@routes.patch("/schedules/{id}")
async def edit_schedule(request: web.Request) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    data = await json_body(request)
    row = await _visible(request, request.match_info["id"])
    _may_own(user, node, row.schedule)
    _only(data, tuple(k for k in SETTABLE if k != "id"))
    merged = {**row.schedule.to_json(), **data}
    schedule = Schedule.from_json(_dtstart(merged))
    _may_own(user, node, schedule)
    await _check_media(store, schedule)
    row = await store.schedules.replace(schedule, enabled=_enabled(data, row.enabled))
    _reload(request)
    return web.json_response(row.as_json())


@routes.delete("/schedules/{id}")
async def delete_schedule(request: web.Request) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    row = await _visible(request, request.match_info["id"])
    _may_own(user, node, row.schedule)
    row = await store.schedules.remove(row.id)
    _reload(request)
    return web.json_response(row.as_json())


@routes.get("/schedules/{id}/preview")
async def preview_schedule(request: web.Request) -> web.Response:
    """The next ``n`` starts (default 10, at most 100) after ``after`` (default now)."""
    row = await _visible(request, request.match_info["id"])
    raw = request.query.get("n", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PREVIEW:
        raise BadRequest(f"n must be a whole number in [1, {MAX_PREVIEW}], got {raw!r}", field="n")
    after = _time(request, "after") if "after" in request.query else float(int(time.time()))
    starts = row.schedule.recurrence.after(after, int(raw))
    return web.json_response(
        {
            "id": row.id,
            "timezone": row.schedule.recurrence.timezone,
            "starts": [{"at": o.at, "local": o.local.isoformat()} for o in starts],
        }
    )


def _time(request: web.Request, key: str) -> float:
    value = request.query.get(key)
    if value is None or value == "":
        raise BadRequest(f"{key} is required: a Unix time in seconds", field=key)
    try:
        out = float(value)
    except ValueError:
        raise BadRequest(
            f"{key} must be a Unix time in seconds, got {value!r}", field=key
        ) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise BadRequest(f"{key} must be a finite Unix time, got {value!r}", field=key)
    return out


def _run_json(report: RunReport, user: User, node: Node) -> dict[str, Any]:
    def visible(endpoint: str) -> bool:
        ep = node.endpoints.get(endpoint)
        return ep is not None and auth.can_see_zone(user, node.zones, ep.spec.zone)

    outcomes = []
    for o in report.outcomes:
        if not visible(o.endpoint_id):
            continue
        why = o.explanation
        outcomes.append(
            {
                "endpoint": o.endpoint_id,
                "holder": o.holder,
                "wins": o.wins,
                "heard_s": round(o.heard_s, 3),
                "others": [
                    {
                        "broadcast": s.broadcast_id,
                        "class": s.priority.name.lower(),
                        **why_json(s.reason),
                    }
                    for s in why.others
                ],
            }
        )
    run = report.run
    return {
        "schedule": run.schedule_id,
        "broadcast": run.broadcast_id,
        "start": run.start,
        "planned_s": round(run.planned_s, 3),
        "end": report.end,
        "outcomes": outcomes,
        "contested": any(not o["wins"] for o in outcomes),
    }


def _report_json(report: ConflictReport, user: User, node: Node) -> dict[str, Any]:
    return {
        "since": report.start,
        "until": report.end,
        "runs": [_run_json(r, user, node) for r in report.runs],
    }
