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
from loa.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from loa.relay.node import Node
from loa.schedule import DEFAULT_TZ, Recurrence, Schedule, conflicts
from loa.schedule.conflicts import MAX_WINDOW_S, ConflictReport, RunReport
from loa.store import Store
from loa.store.schedules import ScheduleRow
from loa.streamer.targets import TargetPolicy, check_description
from loa.web import auth
from loa.web.api import answers
from loa.web.api.admin import may_change, store_of
from loa.web.api.bodies import NewSchedule, ScheduleChange
from loa.web.api.media_scope import check_usable
from loa.web.api.queries import PreviewQuery, WindowQuery
from loa.web.api.relay import node_of, user_of
from loa.web.api.types import builtins
from loa.web.contract import Routes
from loa.web.keys import SCHEDULES
from loa.web.reasons import why_json

routes = Routes()
RESERVED_IDS = frozenset({"conflicts"})  # a path segment of its own
SCHEDULE = "/schedules/{id:(?!conflicts$)[^/]+}"


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


def _schedule(data: dict[str, Any]) -> Schedule:
    """The schedule of a declared body. ``dtstart`` is a Unix time, or local ISO time
    ("2025-03-03T05:00") in the timezone. The declaration has held by now: what the domain
    still refuses is the meaning (an RRULE that never occurs, a date that does not exist),
    a 422 naming the field."""
    try:
        value = data.get("dtstart")
        if isinstance(value, str):
            recurrence = Recurrence.from_local(
                value, str(data.get("rrule", "FREQ=DAILY")), data.get("timezone") or DEFAULT_TZ
            )
            data = {**data, "dtstart": recurrence.dtstart}
        return Schedule.from_json(data)
    except BadRequest as exc:
        raise Unprocessable(exc.message, **exc.fields) from None


async def _check_urls(node: Node, schedule: Schedule) -> None:
    """422 if a relay item's URL reaches loopback, link-local … (loa.streamer.targets)."""
    policy = TargetPolicy(node.config.relay.url_allow_networks)
    await check_description(schedule.programme.to_source_description(), policy)


async def _default_timezone(store: Store, zone: str | None) -> str:
    if zone is None:
        return DEFAULT_TZ
    try:
        return (await store.zones.get(zone)).timezone or DEFAULT_TZ
    except NotFound:
        return DEFAULT_TZ


def _reload(request: web.Request) -> None:
    service = request.config_dict.get(SCHEDULES)
    if service is not None:
        service.reload()


@routes.get(
    "/schedules",
    summary="Schedules the caller sees (origin or a target in their zones)",
    tag="schedules",
    returns=answers.Schedules,
)
async def list_schedules(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    rows = await store_of(request).schedules.list()
    return web.json_response(
        {"schedules": [r.as_json() for r in rows if _sees(user, node, r.schedule)]}
    )


@routes.post(
    "/schedules",
    summary="A schedule: a programme of items played at each start of an RRULE",
    tag="schedules",
    ok=201,
    returns=answers.Schedule,
    errors=(403, 404, 409, 422),
)
async def add_schedule(request: web.Request, body: NewSchedule) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    may_change(user)
    data = builtins(body)
    enabled = data.pop("enabled")
    data.setdefault("id", secrets.token_hex(6))
    if data["id"] in RESERVED_IDS:
        raise Conflict(f"schedule id {data['id']!r} is reserved", field="id")
    data.setdefault("zone", user.zone if user.role != "admin" else None)
    data.setdefault("timezone", await _default_timezone(store, data["zone"]))
    schedule = _schedule(data)
    _may_own(user, node, schedule)
    await _check_media(store, schedule)
    await check_usable(request, schedule.programme.media_ids())  # another zone's: 404
    await _check_urls(node, schedule)
    row = await store.schedules.add(schedule, user.username, enabled=enabled)
    _reload(request)
    return web.json_response(row.as_json(), status=201)


@routes.get(
    "/schedules/conflicts",
    summary="Runs starting in [since, until) (at most 31 days) and who wins each endpoint",
    tag="schedules",
    returns=answers.Conflicts,
    errors=(404, 422),
)
async def schedule_conflicts(request: web.Request, query: WindowQuery) -> web.Response:
    """Runs starting in [since, until) (at most 31 days) of the schedules the user sees."""
    node, user, store = node_of(request), user_of(request), store_of(request)
    since, until = query.since, query.until
    if not since < until or until - since > MAX_WINDOW_S:
        raise Unprocessable(
            f"the window is since < until, at most {MAX_WINDOW_S / 86400:g} days; "
            f"got since={since:g} until={until:g}",
            field="until",
        )
    rows = [r for r in await store.schedules.list() if r.enabled and _sees(user, node, r.schedule)]
    endpoints = {e.id: e.spec.zone for e in node.poles()}
    media_s = {m.id: m.duration_s for m in await store.media.list()}
    report = conflicts(
        [r.schedule for r in rows], node.zones, endpoints, (since, until), media_s=media_s
    )
    return web.json_response(_report_json(report, user, node))


@routes.get(
    SCHEDULE,
    summary="One schedule",
    tag="schedules",
    returns=answers.Schedule,
    errors=(404,),
)
async def get_schedule(request: web.Request) -> web.Response:
    return web.json_response((await _visible(request, request.match_info["id"])).as_json())


@routes.patch(
    SCHEDULE,
    summary="Change a schedule (any of its fields but id)",
    tag="schedules",
    returns=answers.Schedule,
    errors=(403, 404, 422),
)
async def edit_schedule(request: web.Request, body: ScheduleChange) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    data = builtins(body)
    enabled = data.pop("enabled", None)
    row = await _visible(request, request.match_info["id"])
    _may_own(user, node, row.schedule)
    schedule = _schedule({**row.schedule.to_json(), **data})
    _may_own(user, node, schedule)
    await _check_media(store, schedule)
    await check_usable(request, schedule.programme.media_ids())  # another zone's: 404
    await _check_urls(node, schedule)
    row = await store.schedules.replace(
        schedule, enabled=row.enabled if enabled is None else enabled
    )
    _reload(request)
    return web.json_response(row.as_json())


@routes.delete(
    SCHEDULE,
    summary="Remove a schedule",
    tag="schedules",
    returns=answers.Schedule,
    errors=(403, 404),
)
async def delete_schedule(request: web.Request) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    row = await _visible(request, request.match_info["id"])
    _may_own(user, node, row.schedule)
    row = await store.schedules.remove(row.id)
    _reload(request)
    return web.json_response(row.as_json())


@routes.get(
    "/schedules/{id}/preview",
    summary="The next n starts (default 10, at most 100) after 'after' (default now)",
    tag="schedules",
    returns=answers.Preview,
    errors=(404,),
)
async def preview_schedule(request: web.Request, query: PreviewQuery) -> web.Response:
    """The next ``n`` starts (default 10, at most 100) after ``after`` (default now)."""
    row = await _visible(request, request.match_info["id"])
    after = float(int(time.time())) if query.after is None else query.after
    starts = row.schedule.recurrence.after(after, query.n)
    return web.json_response(
        {
            "id": row.id,
            "timezone": row.schedule.recurrence.timezone,
            "starts": [{"at": o.at, "local": o.local.isoformat()} for o in starts],
        }
    )


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
