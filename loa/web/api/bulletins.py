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
import math
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from loa.bulletins import cap
from loa.bulletins.mapping import BulletinPlan, Cancel, Ignored, Level, plan
from loa.bulletins.service import BulletinService, NewBulletin
from loa.errors import BadRequest, NotFound
from loa.relay.node import Node
from loa.store.bulletins import STATES, BulletinRow
from loa.streamer.tts import MAX_TEXT_CHARS
from loa.web import auth
from loa.web.api.relay import json_body, node_of, user_of
from loa.web.keys import BULLETINS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
GEOCODES_FILE = "geocodes.json"
DIRECT_GEOCODE = "loa"
MAX_VARIANTS = 10
MIN_REPEAT_S = 1.0


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


# -- validation of the JSON form ------------------------------------------------------------
def _unix(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a Unix time in seconds, got {value!r}")
    return float(value)


def _level(data: dict[str, Any]) -> Level:
    try:
        return Level(str(data.get("level")))
    except ValueError:
        allowed = ", ".join(lv.value for lv in Level)
        raise BadRequest(f"level must be one of {allowed}, got {data.get('level')!r}") from None


def _zones(data: dict[str, Any], node: Node) -> frozenset[str]:
    zones = data.get("zones")
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
        raise BadRequest("zones must be a non-empty list of zone ids")
    for z in zones:
        if z not in node.zones:
            raise NotFound(f"zone {z} not found", zone=z)
    return frozenset(zones)


def _language(value: object, n: int) -> str:
    ok = isinstance(value, str) and 2 <= len(value) <= 35
    if not ok or not all(part.isalnum() and part.isascii() for part in str(value).split("-")):
        raise BadRequest(f"variants[{n}].language must be a language tag like vi or vi-VN")
    return str(value)


def _variant(item: object, n: int) -> dict[str, str]:
    if not isinstance(item, dict) or set(item) - {"language", "text", "media"}:
        raise BadRequest(f"variants[{n}] must be {{language, text}} or {{language, media}}")
    language = _language(item.get("language"), n)
    text, media = item.get("text"), item.get("media")
    if (text is None) == (media is None):
        raise BadRequest(f"variants[{n}] needs exactly one of text or media")
    if media is not None:
        if not isinstance(media, str) or not media:
            raise BadRequest(f"variants[{n}].media must be a media id")
        return {"language": language, "media": media}
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"variants[{n}].text must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest(f"variants[{n}].text is longer than {MAX_TEXT_CHARS} characters")
    return {"language": language, "text": text}


async def _variants(request: web.Request, value: object) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_VARIANTS:
        raise BadRequest(f"variants must be a list of 1..{MAX_VARIANTS} variants")
    variants = tuple(_variant(item, n) for n, item in enumerate(value, 1))
    media = service_of(request).store.media
    for v in variants:
        if "media" in v:
            await media.get(v["media"])  # 404 naming it
    return variants


async def _new_bulletin(request: web.Request, data: dict[str, Any]) -> NewBulletin:
    level, zones = _level(data), _zones(data, node_of(request))
    title = data.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise BadRequest("title must be a non-empty string of at most 200 characters")
    variants = await _variants(request, data.get("variants"))
    now = time.time()
    issued_at, expires_at = _unix(data, "issued_at"), _unix(data, "expires_at")
    if expires_at is not None and expires_at <= now:
        raise BadRequest("expires_at is in the past: an expired bulletin never plays")
    repeat = data.get("repeat_every_s")
    if repeat is not None:
        if isinstance(repeat, bool) or not isinstance(repeat, int | float) or repeat < MIN_REPEAT_S:
            raise BadRequest(f"repeat_every_s must be a number >= {MIN_REPEAT_S:g}")
        if level is not Level.EMERGENCY:
            raise BadRequest("repeat_every_s is for emergency bulletins only")
    return NewBulletin(
        level=level,
        zones=zones,
        title=title.strip(),
        variants=variants,
        issued_at=now if issued_at is None else issued_at,
        expires_at=expires_at,
        repeat_every_s=None if repeat is None else float(repeat),
    )


# -- routes ------------------------------------------------------------------------------
@routes.post("/bulletins")
async def create_bulletin(request: web.Request) -> web.Response:
    data = await json_body(request)
    new = await _new_bulletin(request, data)
    _may_send(request, new.zones, new.level)
    row = await service_of(request).submit(new, user_of(request).username)
    return web.json_response(row.as_json(), status=201, headers=_location(row))


def _location(row: BulletinRow) -> dict[str, str]:
    return {"Location": f"/api/v1/bulletins/{row.id}"}


@routes.get("/bulletins")
async def list_bulletins(request: web.Request) -> web.Response:
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}, got {state!r}")
    rows = await service_of(request).store.bulletins.list(None if state is None else (state,))
    return web.json_response({"bulletins": [r.as_json() for r in rows if _visible(request, r)]})


@routes.get("/bulletins/{id}")
async def get_bulletin(request: web.Request) -> web.Response:
    row = await _seen(request, request.match_info["id"])
    return web.json_response(row.as_json())


@routes.post("/bulletins/{id}/schedule")
async def schedule_bulletin(request: web.Request) -> web.Response:
    data = await json_body(request)
    at = _unix(data, "at")
    if at is not None and at < time.time() - 60:
        raise BadRequest("at is in the past; leave it out to play now")
    row = await _seen(request, request.match_info["id"])
    _may_send(request, row.zones, row.level)
    row = await service_of(request).schedule(row.id, at)
    return web.json_response(row.as_json())


@routes.post("/bulletins/{id}/cancel")
async def cancel_bulletin(request: web.Request) -> web.Response:
    row = await _seen(request, request.match_info["id"])
    _may_send(request, row.zones, row.level)
    row = await service_of(request).cancel(row.id)
    return web.json_response(row.as_json())


# -- CAP 1.2 ---------------------------------------------------------------------------------
async def _cap_body(request: web.Request) -> bytes:
    if request.content_type not in CAP_TYPES:
        raise web.HTTPUnsupportedMediaType(reason=f"send a CAP document as {CAP_TYPES[0]}")
    limit = cap.MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
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


@routes.post("/bulletins/cap")
async def ingest_cap(request: web.Request) -> web.Response:
    body = await _cap_body(request)
    alert = cap.parse_alert(body)  # CapError → 422 naming what and where
    node, service = node_of(request), service_of(request)
    path = node.config.data_dir / GEOCODES_FILE
    table, table_warnings = await asyncio.to_thread(read_geocodes, path, frozenset(node.zones))
    result = plan(alert, geocode_zones=table, now=time.time())
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
        if row.state not in ("done", "cancelled", "expired"):
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
    if not variants:
        return web.json_response(
            {"ignored": "no info block has text to speak", "warnings": warnings}
        )
    new = NewBulletin(
        level=p.level,
        zones=p.zones,
        title=(p.event or alert.identifier)[:200],
        variants=variants,
        issued_at=alert.sent.timestamp(),
        expires_at=p.expires_at,
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
