"""API handlers for zones, endpoints, media and broadcasts: validate, call the node, answer JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import secrets
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from loa.access import User
from loa.codecs import FRAME_MS, RED_PAYLOAD_TYPE
from loa.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.repeats import new_repeat_id, plan_of
from loa.store.zones import effective_voices
from loa.streamer.factory import build_source
from loa.streamer.playlist import Playlist
from loa.streamer.targets import TargetPolicy, check_description
from loa.streamer.tone import ChimeSource
from loa.web import auth
from loa.web.api import answers
from loa.web.api.bodies import NewBroadcast
from loa.web.api.media_scope import check_usable, media_in
from loa.web.api.repeats import repeat_json
from loa.web.api.types import builtins
from loa.web.contract import Routes
from loa.web.keys import MEDIA, NODE, PUBLISHER, REPEATS, STORE, USER
from loa.web.live import endpoint_view
from loa.web.views import broadcast_json, scoped, sees_broadcast

__all__ = ["USER", "routes"]

routes = Routes()
# A lock per (store, account, key) while a keyed start runs: a retry racing its original
# waits for its answer. Weak: a lock lives only as long as someone holds or awaits it.
_KEYED: weakref.WeakValueDictionary[tuple[int, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def new_broadcast_id() -> str:
    """A broadcast id is the server's: random and unguessable, so no client can name (and
    so overwrite or pre-empt) another broadcast's row in the log."""
    return "bc-" + secrets.token_urlsafe(12)


def node_of(request: web.Request) -> Node:
    return request.config_dict[NODE]


def user_of(request: web.Request) -> User:
    return request[USER]


def _see_endpoint(request: web.Request, endpoint_id: str) -> Any:
    """The endpoint if this user may see it; out of scope looks like absent (404)."""
    node = node_of(request)
    ep = node.endpoint(endpoint_id)
    if not auth.can_see_zone(user_of(request), node.zones, ep.spec.zone):
        raise NotFound(f"endpoint {endpoint_id} not found")
    return ep


@routes.get("/zones", summary="Zones the caller sees", tag="zones", returns=answers.Zones)
async def list_zones(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    every = await request.config_dict[STORE].zones.list()
    voices = effective_voices(every)
    zones = [
        {
            **z.as_json(),
            "effective_voice": voices[z.id],
            "effective_audio": node.zones.audio(z.id).as_json(),
            "level": node.zones.level(z.id),
        }
        for z in every
        if auth.can_see_zone(user, node.zones, z.id)
    ]
    return web.json_response({"zones": zones})


@routes.get(
    "/endpoints", summary="Endpoints the caller sees", tag="endpoints", returns=answers.Endpoints
)
async def list_endpoints(request: web.Request) -> web.Response:
    """Live state from every node in a cluster: a pole offline here shows as the live node
    it is online on reports it (its status message, at most 3 s old)."""
    node, user = node_of(request), user_of(request)
    remote = request.config_dict[PUBLISHER].remote_views()
    visible = [e for e in node.poles() if auth.can_see_zone(user, node.zones, e.spec.zone)]
    return web.json_response({"endpoints": [endpoint_view(node, e, remote) for e in visible]})


@routes.get(
    "/endpoints/{id}",
    summary="An endpoint and its live state",
    tag="endpoints",
    returns=answers.Endpoint,
    errors=(404,),
)
async def get_endpoint(request: web.Request) -> web.Response:
    node, ep = node_of(request), _see_endpoint(request, request.match_info["id"])
    remote = request.config_dict[PUBLISHER].remote_views()
    return web.json_response(endpoint_view(node, ep, remote))


@routes.get(
    "/endpoints/{id}/sdp",
    summary="SDP that plays an rtp endpoint's stream (ffmpeg, GStreamer, VLC)",
    tag="endpoints",
    content={"application/sdp": str},
    errors=(404, 409),
)
async def endpoint_sdp(request: web.Request) -> web.Response:
    """The SDP an RTP receiver (ffmpeg, GStreamer, VLC) opens to play a static endpoint."""
    ep = _see_endpoint(request, request.match_info["id"])
    if ep.spec.kind != "rtp" or ep.address is None:
        raise Conflict(f"endpoint {ep.id} is not an rtp endpoint", endpoint=ep.id)
    host, port = ep.address
    family = "IP6" if ":" in host else "IP4"
    # A zone with redundancy sends RFC 2198 RED around the Opus (RFC 2198 §5 SDP): listed
    # first, as the one that comes.
    red = RED_PAYLOAD_TYPE
    formats, red_lines = (
        (f"{red} 111", f"a=rtpmap:{red} red/48000/2\r\na=fmtp:{red} 111/111\r\n")
        if ep.redundancy
        else ("111", "")
    )
    sdp = (
        "v=0\r\n"
        f"o=- 0 0 IN {family} {host}\r\n"
        f"s=loa {ep.spec.name}\r\n"
        f"c=IN {family} {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n"
        f"{red_lines}"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 sprop-stereo=0;stereo=0;useinbandfec=1\r\n"
        f"a=ptime:{FRAME_MS}\r\n"  # every packet is one frame of this many ms
        f"a=maxptime:{FRAME_MS}\r\n"
        # RTCP (sender reports) comes from the relay to port + 1, as RFC 3550 §11 has it
        f"a=rtcp:{port + 1}\r\n"
        "a=recvonly\r\n"
    )
    return web.Response(text=sdp, content_type="application/sdp")


# -- broadcasts ---------------------------------------------------------------------------
def _targets(data: dict[str, Any], node: Node) -> tuple[frozenset[str], frozenset[str]]:
    targets = data.get("targets")
    if not isinstance(targets, dict):
        raise BadRequest("targets must be an object {zones: [...], endpoints: [...]}")
    zones, endpoints = targets.get("zones", []), targets.get("endpoints", [])
    for name, value in (("zones", zones), ("endpoints", endpoints)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"targets.{name} must be a list of ids")
    for z in zones:
        if z not in node.zones:
            raise NotFound(f"zone {z} not found", zone=z)
    for e in endpoints:
        node.endpoint(e)
    if not zones and not endpoints:
        raise BadRequest("a broadcast needs at least one target zone or endpoint")
    return frozenset(zones), frozenset(endpoints)


def _priority(data: dict[str, Any]) -> Priority:
    name = data.get("class", "live")
    try:
        return Priority[str(name).upper()]
    except KeyError:
        allowed = ", ".join(p.name.lower() for p in Priority)
        raise BadRequest(f"class must be one of {allowed}, got {name!r}") from None


def _optional_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false")
    return value


def broadcast_spec(
    data: dict[str, Any], node: Node, user: User, resumable: bool, live: bool
) -> BroadcastSpec:
    zones, endpoints = _targets(data, node)
    priority = _priority(data)
    auth.can_target(
        user,
        node.zones,
        zones,
        {e: node.endpoint(e).spec.zone for e in endpoints},
        emergency=priority is Priority.EMERGENCY,
    )
    # An operator's broadcast ranks as coming from their zone; they may name a zone inside it.
    origin = data.get("origin_zone", user.zone if user.role != "admin" else None)
    if origin is not None and origin not in node.zones:
        raise NotFound(f"origin zone {origin} not found")
    if origin is not None and not auth.can_see_zone(user, node.zones, origin):
        raise Forbidden(f"origin zone {origin} is outside {user.username}'s zone {user.zone}")
    if origin is None and user.role != "admin":
        raise Forbidden(f"{user.username} may not broadcast as the national level")
    expires_at = data.get("expires_at")
    if expires_at is not None and (
        isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
    ):
        raise BadRequest("expires_at must be a Unix time in seconds")
    return BroadcastSpec(
        id=new_broadcast_id(),
        priority=priority,
        origin_zone=origin,
        target_zones=zones,
        target_endpoints=endpoints,
        interrupt=_optional_bool(data, "interrupt"),
        exclusive=bool(_optional_bool(data, "exclusive")),
        expires_at=node.wall_to_loop(expires_at) if expires_at is not None else None,
        resumable=resumable,
        live=live,
    )


@routes.post(
    "/broadcasts",
    summary="Start a broadcast",
    tag="broadcasts",
    ok=201,
    returns=answers.Broadcast,
    errors=(403, 404, 409, 422),
    also={
        200: ("the answer to an earlier request with the same idempotency_key", answers.Broadcast)
    },
)
async def start_broadcast(request: web.Request, body: NewBroadcast) -> web.Response:
    data = builtins(body)
    key = data.pop("idempotency_key", None)
    if key is None:
        return web.json_response(await _start(request, data), status=201)
    user, keys = user_of(request), request.config_dict[STORE].idempotency
    fingerprint = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    lock = _KEYED.setdefault((id(keys), user.username, key), asyncio.Lock())
    async with lock:
        seen = await keys.get(user.username, key)
        if seen is None:
            answer = await _start(request, data)
            await keys.put(user.username, key, fingerprint, answer["id"], json.dumps(answer))
            return web.json_response(answer, status=201)
    if seen.fingerprint != fingerprint:
        raise Conflict(
            f"idempotency key {key!r} was used for another request (broadcast {seen.broadcast})",
            idempotency_key=key,
            broadcast=seen.broadcast,
        )
    return web.Response(text=seen.answer, content_type="application/json")


async def _start(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    node = node_of(request)
    # URL sources may not reach loopback, link-local … (relay.url_allow_networks)
    targets = TargetPolicy(node.config.relay.url_allow_networks)
    await check_description(data["source"], targets)
    await check_usable(request, media_in(data["source"]))  # another commune's media: 404
    zones, endpoints = _targets(data, node)
    # a TTS source naming no voice speaks in its first target zone's
    voice = await request.config_dict[STORE].zones.targets_voice(zones, endpoints)
    source, what = build_source(
        data["source"],
        media_path=request.config_dict[MEDIA].path,
        url_targets=targets,
        voice=voice,
    )
    try:
        spec = broadcast_spec(data, node, user_of(request), source.resumable, source.live)
        chime = _optional_bool(data, "chime")
        if chime is None:
            chime = spec.priority is Priority.EMERGENCY and node.config.relay.chime
        if chime:
            source = Playlist([ChimeSource(), source], name=source.name)
        repeat_id = _repeatable(data) if "repeat" in data else None
        if repeat_id is not None:
            spec = dataclasses.replace(spec, id=f"{repeat_id}.1")
    except BaseException:
        await source.aclose()
        raise
    bc = await node.start_broadcast(
        spec,
        source,
        what=str(data.get("name") or what),
        source_kind=data["source"]["type"],
        created_by=user_of(request).username,
        description=None if spec.live else {"source": data["source"], "chime": chime},
    )
    answer = broadcast_json(node, bc)
    if repeat_id is not None:
        answer["repeat"] = await _begin_repeat(request, data, spec, bc, repeat_id, chime)
    return answer


def _repeatable(data: dict[str, Any]) -> str:
    """A new repeat id, after the check a repeat needs beyond the body's declaration (every
    source POST /broadcasts takes can play again; WHIP and Icecast sessions have no repeat)."""
    until = data["repeat"].get("until")
    if until is not None and until <= time.time():
        raise Unprocessable("repeat.until is in the past", field="repeat.until")
    return new_repeat_id()


async def _begin_repeat(
    request: web.Request,
    data: dict[str, Any],
    spec: BroadcastSpec,
    bc: Any,
    repeat_id: str,
    chime: bool,
) -> dict[str, Any]:
    repeat = data["repeat"]
    until = repeat.get("until")
    if "for_s" in repeat:
        until = time.time() + repeat["for_s"]
    service = request.config_dict[REPEATS]
    row = await service.begin(
        repeat_id,
        plan_of(spec, data["source"], what=bc.log.what, chime=chime),
        bc,
        every_s=repeat["every_s"],
        until_at=until,
        expires_at=data.get("expires_at"),
        created_by=user_of(request).username,
    )
    return repeat_json(row, service)


@routes.get(
    "/broadcasts",
    summary="Running broadcasts the caller sees",
    tag="broadcasts",
    returns=answers.Broadcasts,
)
async def list_broadcasts(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    visible = [b for b in node.broadcasts.values() if sees_broadcast(user, node, b.spec)]
    answer = [scoped(user, node, broadcast_json(node, b)) for b in visible]
    return web.json_response({"broadcasts": answer})


@routes.get(
    "/broadcasts/{id}",
    summary="A running or logged broadcast",
    tag="broadcasts",
    returns={
        "anyOf": [
            {"$ref": "#/components/schemas/Broadcast"},
            {"$ref": "#/components/schemas/LogEntry"},
        ]
    },
    errors=(404,),
)
async def get_broadcast(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    bc_id = request.match_info["id"]
    bc = node.broadcasts.get(bc_id)
    if bc is not None and sees_broadcast(user, node, bc.spec):
        return web.json_response(scoped(user, node, broadcast_json(node, bc)))
    if bc is None:
        row = await request.config_dict[STORE].log.get(bc_id)
        if row is not None and _sees_row(user, node, row.target_zones, row.heard_s):
            return web.json_response(scoped(user, node, row.as_json()))
    raise NotFound(f"broadcast {bc_id} not found")


def _sees_row(user: User, node: Node, targets: Iterable[str], heard: Mapping[str, float]) -> bool:
    """A logged broadcast the user may read: it targeted their area (or above it), or one of
    their poles heard it (as ``GET /log`` finds it). Admins read every row."""
    if auth.visible_zones(user, node.zones) is None:
        return True
    if any(z in node.zones and auth.covers_zone(user, node.zones, z) for z in targets):
        return True
    eps = node.endpoints
    return any(e in eps and auth.can_see_zone(user, node.zones, eps[e].spec.zone) for e in heard)


def may_stop(user: User, node: Node, spec: BroadcastSpec, missing: str) -> None:
    """404 (``missing``) unless the user sees the broadcast; 403 unless they may stop it:
    it comes from their level or below (a provincial emergency is the province's to stop,
    the 403 names its origin) and targets only their area."""
    if not sees_broadcast(user, node, spec):
        raise NotFound(missing)
    auth.can_stop_from(user, node.zones, spec.id, spec.origin_zone)
    auth.can_target(
        user,
        node.zones,
        spec.target_zones,
        {e: node.endpoints[e].spec.zone for e in spec.target_endpoints if e in node.endpoints},
        emergency=spec.priority is Priority.EMERGENCY,
    )


@routes.delete(
    "/broadcasts/{id}",
    summary="Stop a broadcast",
    tag="broadcasts",
    returns=answers.LogEntry,
    errors=(403, 404),
)
async def stop_broadcast(request: web.Request) -> web.Response:
    node, user = node_of(request), user_of(request)
    bc = node.broadcasts.get(request.match_info["id"])
    missing = f"broadcast {request.match_info['id']} is not active"
    if bc is None:
        raise NotFound(missing)
    may_stop(user, node, bc.spec, missing)
    bc = await node.stop_broadcast(bc.id)
    return web.json_response(bc.log.as_json())
