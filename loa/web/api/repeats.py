"""API handlers for repeating emergencies: list them with their next play, cancel them.

``GET /repeats`` also lists emergency bulletins (CAP or API) that repeat, as ``kind``
``bulletin`` (their next play time is the bulletin service's; they are cancelled as
bulletins, ``POST /bulletins/{id}/cancel``), so the dashboard shows every repeating
emergency in one place.

Starting one is ``POST /broadcasts`` with ``repeat`` (loa/web/api/relay.py). Scopes as for
broadcasts: a repeat is seen by whoever sees one of its targets (others get 404) and
cancelled by whoever may send an emergency to every one of them (403 naming what is out of
scope)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loa.access import User
from loa.bulletins.service import BulletinService
from loa.errors import NotFound
from loa.relay.node import Node
from loa.repeats import RepeatService
from loa.store.bulletins import BulletinRow
from loa.store.repeats import RepeatRow
from loa.web import auth
from loa.web.api import answers
from loa.web.contract import Routes
from loa.web.keys import BULLETINS, NODE, REPEATS, STORE, USER

routes = Routes()


def repeat_json(row: RepeatRow, service: RepeatService) -> dict[str, Any]:
    plan = row.plan
    return {
        "id": row.id,
        "kind": "broadcast",
        "state": row.state,
        "reason": row.reason,
        "every_s": row.every_s,
        "until_at": row.until_at,
        "next_at": row.next_at,
        "playing": service.playing().get(row.id),
        "plays": list(row.plays),
        "what": plan["what"],
        "class": plan["class"],
        "origin_zone": plan["origin_zone"],
        "targets": {"zones": list(row.zones), "endpoints": list(row.endpoints)},
        "issued_at": row.issued_at,
        "created_by": row.created_by,
    }


def _zones_of(node: Node, row: RepeatRow) -> set[str]:
    zones = set(row.zones)
    zones.update(node.endpoints[e].spec.zone for e in row.endpoints if e in node.endpoints)
    return zones


def _sees(user: User, node: Node, row: RepeatRow) -> bool:
    return any(auth.can_see_zone(user, node.zones, z) for z in _zones_of(node, row))


def bulletin_json(row: BulletinRow, service: BulletinService) -> dict[str, Any]:
    """A repeating emergency bulletin in the shape of a repeat (``kind`` ``bulletin``)."""
    return {
        "id": row.id,
        "kind": "bulletin",
        "state": "active",
        "reason": None,
        "every_s": row.repeat_every_s,
        "until_at": row.expires_at,
        "next_at": service.next_plays().get(row.id),
        "playing": service.active().get(row.id),
        "plays": list(row.broadcasts),
        "what": row.title,
        "class": "emergency",
        "origin_zone": None,
        "targets": {"zones": list(row.zones), "endpoints": []},
        "issued_at": row.issued_at,
        "created_by": row.created_by,
    }


@routes.get(
    "/repeats",
    summary="Repeating emergencies the caller sees (broadcasts and bulletins), with their "
    "next play",
    tag="broadcasts",
    returns=answers.Repeats,
)
async def list_repeats(request: web.Request) -> web.Response:
    node, user = request.config_dict[NODE], request[USER]
    service, store = request.config_dict[REPEATS], request.config_dict[STORE]
    rows = await store.repeats.list(("active",))
    seen = [repeat_json(r, service) for r in rows if _sees(user, node, r)]
    bulletins = request.config_dict[BULLETINS]
    for b in await store.bulletins.list(("on_air",)):
        if b.level == "emergency" and b.repeat_every_s and _sees_zones(user, node, b.zones):
            seen.append(bulletin_json(b, bulletins))
    return web.json_response({"repeats": seen})


def _sees_zones(user: User, node: Node, zones: tuple[str, ...]) -> bool:
    return any(z in node.zones and auth.can_see_zone(user, node.zones, z) for z in zones)


async def _seen(request: web.Request) -> RepeatRow:
    node, user = request.config_dict[NODE], request[USER]
    repeat_id = request.match_info["id"]
    row = await request.config_dict[STORE].repeats.get(repeat_id)  # 404 when unknown
    if not _sees(user, node, row):
        raise NotFound(f"repeat {repeat_id} not found", repeat=repeat_id)  # as if unknown
    return row


@routes.get(
    "/repeats/{id}",
    summary="A repeating emergency (active or ended)",
    tag="broadcasts",
    returns=answers.RepeatOut,
    errors=(404,),
)
async def get_repeat(request: web.Request) -> web.Response:
    row = await _seen(request)
    return web.json_response(repeat_json(row, request.config_dict[REPEATS]))


@routes.delete(
    "/repeats/{id}",
    summary="Cancel a repeating emergency: no further play, and the play on air stops",
    tag="broadcasts",
    returns=answers.RepeatOut,
    errors=(403, 404, 409),
)
async def cancel_repeat(request: web.Request) -> web.Response:
    node, user = request.config_dict[NODE], request[USER]
    row = await _seen(request)
    auth.can_stop_from(user, node.zones, row.id, row.plan["origin_zone"])  # 403 from above
    auth.can_target(
        user,
        node.zones,
        frozenset(z for z in row.zones if z in node.zones),
        {e: node.endpoints[e].spec.zone for e in row.endpoints if e in node.endpoints},
        emergency=True,
    )
    service = request.config_dict[REPEATS]
    row = await service.cancel(row.id, reason=f"cancelled by {user.username}")
    return web.json_response(repeat_json(row, service))
