"""API handlers for the bulletin inbox: bulletins from the source system (JSON or CAP 1.2),
scheduling a normal one, cancelling any.

Scopes: a bulletin is seen by whoever sees one of its zones (others get 404); creating,
scheduling and cancelling need the right to broadcast to every one of its zones (403 naming
what is out of scope), and the emergency right for an emergency bulletin.

CAP geocodes → zones (``POST /bulletins/cap``): a geocode whose ``valueName`` is ``loa``
names a zone id directly; other geocodes are looked up in ``<data_dir>/geocodes.json`` if
that file exists, an object ``{"<valueName>": {"<value>": "<zone id>"}}`` (for example the
national administrative unit codes of the communes). The file is read at each alert, so an
edit needs no restart; mappings to unknown zones are skipped with a warning."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from loa.bulletins import cap
from loa.bulletins.mapping import BulletinPlan, Cancel, Ignored, Level, plan
from loa.bulletins.service import BulletinService
from loa.bulletins.service import NewBulletin as NewBulletin_
from loa.errors import InPast, NotFound, TooLarge, UnsupportedMediaType
from loa.relay.node import Node
from loa.store.bulletins import BulletinRow
from loa.web import auth
from loa.web.api import answers
from loa.web.api.bodies import NewBulletin
from loa.web.api.media_scope import check_usable
from loa.web.api.plays import plays_json
from loa.web.api.queries import BulletinsQuery
from loa.web.api.relay import node_of, user_of
from loa.web.api.types import builtins
from loa.web.contract import Routes
from loa.web.keys import BULLETINS

log = logging.getLogger(__name__)
routes = Routes()
CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
GEOCODES_FILE = "geocodes.json"
DIRECT_GEOCODE = "loa"


def service_of(request: web.Request) -> BulletinService:
    return request.config_dict[BULLETINS]


def _visible(request: web.Request, row: BulletinRow) -> bool:
    node, user = node_of(request), user_of(request)
    return any(auth.can_see_zone(user, node.zones, z) for z in row.zones)


async def _seen(request: web.Request, bulletin_id: str) -> BulletinRow:
    """The bulletin if the caller sees it; out of scope looks like absent (404)."""
    try:
        row = await service_of(request).store.bulletins.get(bulletin_id)
    except NotFound:
        row = None
    if row is None or not _visible(request, row):
        raise NotFound(f"bulletin {bulletin_id} not found", bulletin=bulletin_id)
    return row


def _may_send(request: web.Request, zones: frozenset[str] | tuple[str, ...], level: str) -> None:
    node = node_of(request)
    live = frozenset(z for z in zones if z in node.zones)
    auth.can_target(user_of(request), node.zones, live, {}, emergency=level == Level.EMERGENCY)


# -- the JSON form (declared in loa/web/api/bodies.py) ---------------------------------------
def _zones(zones: list[str], node: Node) -> frozenset[str]:
    for z in zones:
        if z not in node.zones:
            raise NotFound(f"zone {z} not found", zone=z)
    return frozenset(zones)


async def _new_bulletin(request: web.Request, body: NewBulletin) -> NewBulletin_:
    zones = _zones(body.zones, node_of(request))
    variants = tuple(builtins(v) for v in body.variants)
    media = service_of(request).store.media
    for v in variants:
        if "media" in v:
            await media.get(v["media"])  # 404 naming it
    await check_usable(request, (v["media"] for v in variants if "media" in v))
    now = time.time()
    if body.expires_at is not None and body.expires_at <= now:
        raise InPast(
            "expires_at is in the past: an expired bulletin never plays", field="expires_at"
        )
    return NewBulletin_(
        level=Level(body.level),
        zones=zones,
        title=body.title.strip(),
        variants=variants,
        issued_at=now if body.issued_at is None else body.issued_at,
        expires_at=body.expires_at,
        repeat_every_s=body.repeat_every_s,
    )


# -- routes ------------------------------------------------------------------------------
@routes.post(
    "/bulletins",
    summary="A bulletin: normal waits in the inbox, priority and emergency go on air "
    "('plays' says when their poles hear them)",
    tag="bulletins",
    ok=201,
    returns=answers.ScheduledBulletin,
    errors=(403, 404, 409, 422),
)
async def create_bulletin(request: web.Request, body: NewBulletin) -> web.Response:
    new = await _new_bulletin(request, body)
    _may_send(request, new.zones, new.level)
    on_air = new.level is not Level.NORMAL  # reckoned before it takes any pole
    plays = plays_json(node_of(request), new.zones, new.level) if on_air else None
    row = await service_of(request).submit(new, user_of(request).username)
    return web.json_response({**row.as_json(), "plays": plays}, status=201, headers=_location(row))


def _location(row: BulletinRow) -> dict[str, str]:
    return {"Location": f"/api/v1/bulletins/{row.id}"}


@routes.get(
    "/bulletins",
    summary="Bulletins the caller sees (any of their zones), newest first",
    tag="bulletins",
    returns=answers.Bulletins,
)
async def list_bulletins(request: web.Request, query: BulletinsQuery) -> web.Response:
    state = query.state
    rows = await service_of(request).store.bulletins.list(None if state is None else (state,))
    return web.json_response({"bulletins": [r.as_json() for r in rows if _visible(request, r)]})


@routes.get(
    "/bulletins/{id:(?!cap$)[^/]+}",  # /bulletins/cap is the CAP ingest, POST only
    summary="One bulletin",
    tag="bulletins",
    returns=answers.Bulletin,
    errors=(404,),
)
async def get_bulletin(request: web.Request) -> web.Response:
    row = await _seen(request, request.match_info["id"])
    return web.json_response(row.as_json())


@routes.post(
    "/bulletins/{id}/cancel",
    summary="Withdraw a bulletin: its broadcast stops and no repeat follows",
    tag="bulletins",
    returns=answers.Bulletin,
    errors=(403, 404, 409),
)
async def cancel_bulletin(request: web.Request) -> web.Response:
    row = await _seen(request, request.match_info["id"])
    _may_send(request, row.zones, row.level)
    row = await service_of(request).cancel(row.id)
    return web.json_response(row.as_json())


# -- CAP 1.2 ---------------------------------------------------------------------------------
async def _cap_body(request: web.Request) -> bytes:
    if request.content_type not in CAP_TYPES:
        raise UnsupportedMediaType(f"send a CAP document as {CAP_TYPES[0]}")
    limit = cap.MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"a CAP document is at most {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"a CAP document is at most {limit} bytes")
    return bytes(body)


def read_geocodes(path: Path, zones: Any) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The geocode table of the module docstring and warnings about it (blocking: file I/O)."""
    warnings: list[str] = []
    table = {(DIRECT_GEOCODE, z): z for z in zones}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return table, warnings
    except (OSError, ValueError) as exc:
        return table, [f"{path.name} cannot be read ({exc}); only '{DIRECT_GEOCODE}' codes map"]
    if not isinstance(data, dict):
        return table, [f"{path.name} must be an object {{valueName: {{value: zone}}}}"]
    for name, codes in data.items():
        for value, zone in codes.items() if isinstance(codes, dict) else ():
            if zone in zones:
                table[(str(name), str(value))] = zone
            else:
                warnings.append(f"{path.name}: {name}={value} maps to unknown zone {zone!r}")
    return table, warnings


CAP_XML = {"type": "string", "description": "one CAP 1.2 (or 1.1) <alert>"}


@routes.post(
    "/bulletins/cap",
    summary="A CAP 1.2 alert from the source system (201 bulletin, 200 cancel or ignored)",
    tag="bulletins",
    ok=201,
    returns=answers.CapBulletin,
    request_content={t: CAP_XML for t in CAP_TYPES},
    also={
        200: (
            "a Cancel applied, or an alert that plays nothing (the reason is given)",
            {
                "anyOf": [
                    {"$ref": "#/components/schemas/CapCancelled"},
                    {"$ref": "#/components/schemas/CapIgnored"},
                ]
            },
        )
    },
    errors=(403, 409, 413, 415, 422),
)
async def ingest_cap(request: web.Request) -> web.Response:
    body = await _cap_body(request)
    alert = cap.parse_alert(body)  # CapError → 422 naming what and where
    node, service = node_of(request), service_of(request)
    path = node.config.data_dir / GEOCODES_FILE
    table, table_warnings = await asyncio.to_thread(read_geocodes, path, frozenset(node.zones))
    result = plan(
        alert,
        geocode_zones=table,
        now=time.time(),
        repeat_every_s=node.config.relay.cap_repeat_every_s,
    )
    match result:
        case Ignored(reason=reason, warnings=warnings):
            log.info("CAP %s from %s ignored: %s", alert.identifier, alert.sender, reason)
            return web.json_response(
                {"ignored": reason, "warnings": [*table_warnings, *warnings]}, status=200
            )
        case Cancel(references=refs):
            cancelled, unknown = await _cancel_refs(request, refs, "cancelled")
            return web.json_response({"cancelled": cancelled, "unknown": unknown})
        case BulletinPlan():
            return await _accept_plan(request, service, alert, result, table_warnings)
    raise AssertionError(f"unexpected plan {result!r}")  # pragma: no cover


async def _cancel_refs(
    request: web.Request, refs: tuple[cap.Reference, ...], reason: str
) -> tuple[list[str], list[str]]:
    service = service_of(request)
    rows, unknown = [], []
    for ref in refs:
        row = await service.store.bulletins.by_cap(ref.sender, ref.identifier)
        if row is None or not _visible(request, row):
            unknown.append(f"{ref.sender},{ref.identifier}")
        else:
            rows.append(row)
    for row in rows:  # check every one before touching any
        _may_send(request, row.zones, row.level)
    cancelled = []
    for row in rows:
        if row.state not in ("done", "cancelled", "expired", "failed"):
            await service.cancel(row.id, reason=reason)
            cancelled.append(row.id)
    return cancelled, unknown


async def _accept_plan(
    request: web.Request,
    service: BulletinService,
    alert: cap.Alert,
    p: BulletinPlan,
    table_warnings: list[str],
) -> web.Response:
    _may_send(request, p.zones, p.level)
    variants = tuple({"language": v.language, "text": v.text} for v in p.variants if v.text)
    warnings = [*table_warnings, *p.warnings]
    if any(v.audio is not None for v in p.variants):
        warnings.append("CAP audio resources are not fetched; their info text is spoken")
    mute = await service.unspeakable(variants)
    if mute:
        warnings.append(f"no text-to-speech voice for {', '.join(mute)}: not spoken")
        variants = tuple(v for v in variants if v["language"] not in mute)
    if not variants:
        return web.json_response(
            {"ignored": "no info block has text to speak", "warnings": warnings}
        )
    new = NewBulletin_(
        level=p.level,
        zones=p.zones,
        title=(p.event or alert.identifier)[:200],
        variants=variants,
        issued_at=alert.sent.timestamp(),
        expires_at=p.expires_at,
        repeat_every_s=p.repeat_every_s,
        effective_at=p.effective_at,
        source="cap",
        cap_sender=alert.sender,
        cap_identifier=alert.identifier,
    )
    superseded: list[str] = []
    if p.replaces:
        superseded, unknown = await _cancel_refs(request, p.replaces, "superseded")
        warnings += [f"Update references unknown alert {u}" for u in unknown]
    row = await service.submit(new, user_of(request).username)
    return web.json_response(
        {**row.as_json(), "superseded": superseded, "warnings": warnings},
        status=201,
        headers=_location(row),
    )
