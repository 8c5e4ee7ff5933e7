"""API handlers for the inventory and the accounts: zones, endpoints (and their device tokens),
users (and their API tokens). Every change goes to the store first, then to the running node,
so routing follows at once and a restart finds the same inventory.

Scope: admins change anything. An operator changes what lies inside their zone's subtree, but
not their own root zone, and cannot move anything out of it. A viewer only reads. What a user
may not see answers 404 exactly as if it did not exist; a forbidden change to something they
see answers 403. Users are admin business, except that everyone manages their own API tokens
and password."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loa.access import User
from loa.errors import Conflict, Forbidden, NotFound
from loa.inventory import spec_of
from loa.relay.node import Endpoint as LiveEndpoint
from loa.relay.node import Node
from loa.store import Account, Store
from loa.store.passwords import hash_password_async, verify_password_async
from loa.web import auth
from loa.web.api import answers
from loa.web.api.bodies import (
    EndpointChange,
    NewEndpoint,
    NewToken,
    NewUser,
    NewZone,
    UserChange,
    ZoneChange,
)
from loa.web.api.relay import node_of, user_of
from loa.web.api.types import builtins
from loa.web.contract import Routes
from loa.web.keys import CLUSTER, STORE
from loa.web.views import endpoint_json

routes = Routes()
# What POST and PATCH /zones give the store besides id, name and parent.
ZONE_FIELDS = ("timezone", "languages", "voice", "frame_ms", "redundancy", "playout_delay_ms")


def store_of(request: web.Request) -> Store:
    return request.config_dict[STORE]


def may_change(user: User) -> None:
    if user.role == "viewer":
        raise Forbidden(f"{user.username} is a viewer and may not change anything")


# -- zones -------------------------------------------------------------------------------------


def see_zone(user: User, node: Node, zone_id: str, what: str = "zone") -> str:
    """The zone id if this user sees it; an unseen zone is reported exactly like a missing one."""
    if not auth.can_see_zone(user, node.zones, zone_id):
        raise NotFound(f"{what} {zone_id!r} does not exist", zone=zone_id)
    return zone_id


def may_edit_zone(user: User, node: Node, zone_id: str) -> None:
    see_zone(user, node, zone_id)
    may_change(user)
    if user.role == "operator" and zone_id == user.zone:
        raise Forbidden(
            f"{user.username} may not change their own zone {zone_id}, only zones inside it",
            zone=zone_id,
        )


def may_parent(user: User, node: Node, parent: str | None) -> str | None:
    """A zone may be added or moved under ``parent`` by this user (None: a root zone)."""
    if parent is None:
        if user.role != "admin":
            raise Forbidden(f"only an admin may make a root zone; {user.username} is {user.role}")
        return None
    return see_zone(user, node, parent, "parent zone")


async def zone_json(store: Store, node: Node, zone_id: str) -> dict[str, Any]:
    zone = await store.zones.get(zone_id)
    here = [e for e in node.poles() if e.spec.zone == zone_id]
    below = node.zones.subtree(zone_id)
    total = [e for e in node.poles() if e.spec.zone in below]
    return {
        **zone.as_json(),
        "effective_voice": await store.zones.voice(zone_id),
        "effective_audio": node.zones.audio(zone_id).as_json(),
        "level": node.zones.level(zone_id),
        "children": sorted(node.zones.children(zone_id)),
        "endpoints": {
            "here": len(here),
            "total": len(total),
            "online": sum(1 for e in total if e.online),
        },
    }


@routes.post(
    "/zones",
    summary="Add a zone (operators: under a zone inside their own)",
    tag="zones",
    ok=201,
    returns=answers.ZoneDetail,
    errors=(403, 404, 409),
)
async def add_zone(request: web.Request, body: NewZone) -> web.Response:
    node, user, store = node_of(request), user_of(request), store_of(request)
    may_change(user)
    parent = may_parent(user, node, body.parent)
    extra = {k: v for k, v in builtins(body).items() if k in ZONE_FIELDS}
    zone = await store.zones.add(body.id, body.name, parent, **extra)
    node.add_zone(zone.id, zone.parent)
    node.set_zone_audio(zone.id, zone.audio)
    return web.json_response(await zone_json(store, node, zone.id), status=201)


@routes.get(
    "/zones/{id}",
    summary="A zone, its children and endpoint counts",
    tag="zones",
    returns=answers.ZoneDetail,
    errors=(404,),
)
async def get_zone(request: web.Request) -> web.Response:
    node = node_of(request)
    zone_id = see_zone(user_of(request), node, request.match_info["id"])
    return web.json_response(await zone_json(store_of(request), node, zone_id))


@routes.patch(
    "/zones/{id}",
    summary="Rename, change time zone, languages, TTS voice or packet settings, or move a zone",
    tag="zones",
    returns=answers.ZoneDetail,
    errors=(403, 404, 409),
)
async def update_zone(request: web.Request, body: ZoneChange) -> web.Response:
    """Rename, re-time-zone, re-language, or move (``parent``): the node re-judges at once
    every endpoint in a moved subtree."""
    node, user, store = node_of(request), user_of(request), store_of(request)
    zone_id = request.match_info["id"]
    may_edit_zone(user, node, zone_id)
    data = builtins(body)
    move = "parent" in data and data["parent"] != node.zones.parent(zone_id)
    if move:
        parent = may_parent(user, node, data["parent"])
        if parent is not None and node.zones.contains(zone_id, parent):
            raise Conflict(
                f"cannot move zone {zone_id!r} under {parent!r}: "
                f"{parent!r} is inside {zone_id!r}'s subtree",
                zone=zone_id,
                parent=parent,
            )
    changes = {k: data[k] for k in ("name", *ZONE_FIELDS) if k in data}
    if changes:
        zone = await store.zones.update(zone_id, **changes)
        node.set_zone_audio(zone_id, zone.audio)
    if move:
        await store.zones.move(zone_id, parent)
        node.move_zone(zone_id, parent)
    return web.json_response(await zone_json(store, node, zone_id))


@routes.delete(
    "/zones/{id}",
    summary="Remove an empty zone",
    tag="zones",
    returns=answers.Zone,
    errors=(403, 404, 409),
)
async def delete_zone(request: web.Request) -> web.Response:
    """409 naming what is still in the zone (child zones, endpoints, users, schedules, or
    listeners tuned in right now)."""
    node, store = node_of(request), store_of(request)
    zone_id = request.match_info["id"]
    may_edit_zone(user_of(request), node, zone_id)
    listening = sorted(e for e in node.zones.endpoints_in(zone_id) if node.endpoints[e].listener)
    if listening and not node.zones.children(zone_id):
        raise Conflict(
            f"zone {zone_id!r} has {len(listening)} listener(s) tuned in (WHEP or Ogg); "
            "try again when they have left",
            zone=zone_id,
            listeners=len(listening),
        )
    zone = await store.zones.get(zone_id)
    await store.zones.remove(zone_id)
    node.remove_zone(zone_id)
    return web.json_response(zone.as_json())


# -- endpoints ---------------------------------------------------------------------------------


def see_endpoint(request: web.Request, endpoint_id: str) -> LiveEndpoint:
    """The live endpoint if this user sees it; out of scope looks like absent (404)."""
    node = node_of(request)
    ep = node.endpoint(endpoint_id)
    if not auth.can_see_zone(user_of(request), node.zones, ep.spec.zone):
        raise NotFound(f"endpoint {endpoint_id} not found")
    return ep


@routes.post(
    "/endpoints",
    summary="Add an endpoint (a managed one answers with its device token, once)",
    tag="endpoints",
    ok=201,
    returns=answers.Endpoint,
    errors=(403, 404, 409),
)
async def add_endpoint(request: web.Request, body: NewEndpoint) -> web.Response:
    """201 with the endpoint and, for a managed one, its device ``token`` (shown only here)."""
    node, user, store = node_of(request), user_of(request), store_of(request)
    may_change(user)
    see_zone(user, node, body.zone)
    extra = {k: v for k, v in builtins(body).items() if k not in ("id", "name", "zone")}
    row, token = await store.endpoints.add(body.id, body.name, body.zone, **extra)
    ep = node.add_endpoint(spec_of(row), token_hash=row.token_hash)
    answer = endpoint_json(node, ep)
    if token is not None:
        answer["token"] = token
    return web.json_response(answer, status=201)


@routes.patch(
    "/endpoints/{id}",
    summary="Change name, zone, place, address, levels (kept) or mute (live)",
    tag="endpoints",
    returns=answers.Endpoint,
    errors=(403, 404),
)
async def update_endpoint(request: web.Request, body: EndpointChange) -> web.Response:
    """Name, zone, place, address and levels (kept in the store); ``muted`` (live only). A
    connected speaker obeys new levels at once; one whose zone or address changed reconnects."""
    node, user, store = node_of(request), user_of(request), store_of(request)
    ep = see_endpoint(request, request.match_info["id"])
    may_change(user)
    changes = builtins(body)
    muted: bool | None = changes.pop("muted", None)
    if "zone" in changes:
        see_zone(user, node, changes["zone"])
    if changes:
        was_muted = ep.muted
        row = await store.endpoints.update(ep.id, **changes)
        node.update_endpoint(spec_of(row), token_hash=row.token_hash)
        ep = node.endpoint(ep.id)  # a new zone or address makes a new live endpoint
        muted = was_muted if muted is None else muted
    if muted is not None and muted != ep.muted:
        node.set_levels(ep, muted=muted)
        if CLUSTER in request.config_dict:  # the speaker may be connected to another node
            await request.config_dict[CLUSTER].command(ep.id, "mute", muted)
    return web.json_response(endpoint_json(node, ep))


@routes.post(
    "/endpoints/{id}/token",
    summary="A new device token (shown once); the speaker using the old one is disconnected",
    tag="endpoints",
    returns=answers.Endpoint,
    errors=(403, 404, 409),
)
async def rotate_token(request: web.Request) -> web.Response:
    """A new device token, shown once; the speaker connected with the old one is dropped."""
    node, store = node_of(request), store_of(request)
    ep = see_endpoint(request, request.match_info["id"])
    may_change(user_of(request))
    if ep.spec.kind != "managed":
        raise Conflict(
            f"endpoint {ep.id} is an {ep.spec.kind} endpoint: only a managed one has a token",
            endpoint=ep.id,
        )
    token = await store.endpoints.rotate_token(ep.id)
    row = await store.endpoints.get(ep.id)
    node.update_endpoint(spec_of(row), token_hash=row.token_hash)
    return web.json_response({**endpoint_json(node, node.endpoint(ep.id)), "token": token})


@routes.delete(
    "/endpoints/{id}",
    summary="Remove an endpoint (its speaker is disconnected)",
    tag="endpoints",
    returns=answers.StoredEndpoint,
    errors=(403, 404),
)
async def delete_endpoint(request: web.Request) -> web.Response:
    node, store = node_of(request), store_of(request)
    ep = see_endpoint(request, request.match_info["id"])
    may_change(user_of(request))
    row = await store.endpoints.get(ep.id)
    await store.endpoints.remove(ep.id)
    node.remove_endpoint(ep.id)
    return web.json_response(row.as_json())


# -- users and their API tokens ------------------------------------------------------------------


def self_or_admin(user: User, username: str) -> None:
    if user.username != username:
        auth.require_admin(user)


async def keep_an_admin(store: Store, target: Account, changes: dict[str, Any]) -> None:
    """409 rather than leave the system with no enabled admin to manage it."""
    if target.role != "admin" or target.disabled:
        return
    if changes.get("role", "admin") == "admin" and not changes.get("disabled"):
        return
    others = [
        a
        for a in await store.users.list()
        if a.role == "admin" and not a.disabled and a.username != target.username
    ]
    if not others:
        raise Conflict(
            f"{target.username} is the last enabled admin; make another admin first",
            user=target.username,
        )


@routes.get(
    "/users", summary="Every user (admins)", tag="accounts", returns=answers.Users, errors=(403,)
)
async def list_users(request: web.Request) -> web.Response:
    auth.require_admin(user_of(request))
    accounts = await store_of(request).users.list()
    return web.json_response({"users": [a.as_json() for a in accounts]})


@routes.post(
    "/users",
    summary="Add a user (admins)",
    tag="accounts",
    ok=201,
    returns=answers.User,
    errors=(403, 404, 409),
)
async def add_user(request: web.Request, body: NewUser) -> web.Response:
    user, store = user_of(request), store_of(request)
    auth.require_admin(user)
    account = await auth.add_user(
        store,
        body.username,
        body.password,
        body.role,
        zone=body.zone,
        emergency_right=body.emergency_right,
        actor=user.username,
        ip=request.remote,
    )
    return web.json_response(account.as_json(), status=201)


async def user_changes(body: UserChange, user: User, target: Account) -> dict[str, Any]:
    """The store columns a PATCH changes; a new password of one's own needs the current one."""
    changes: dict[str, Any] = builtins(body)
    password, current = changes.pop("password", None), changes.pop("current_password", None)
    if changes and user.role != "admin":
        raise Forbidden(
            f"{user.username} may change only their own password, not {sorted(changes)}"
        )
    if password is not None:
        if user.username == target.username:
            if current is None:
                raise Forbidden(
                    "to change your own password, send current_password too",
                    field="current_password",
                )
            if not await verify_password_async(current, target.password_hash):
                raise Forbidden("current_password is wrong", field="current_password")
        changes["password_hash"] = await hash_password_async(password)
    return changes


@routes.patch(
    "/users/{username}",
    summary="Change a user (admins), or one's own password (with current_password)",
    tag="accounts",
    returns=answers.User,
    errors=(403, 404, 409),
)
async def update_user(request: web.Request, body: UserChange) -> web.Response:
    """Admins change role, zone, rights, disabled and passwords; anyone changes their own
    password with ``current_password``. A new password or disabling ends open sessions."""
    user, store = user_of(request), store_of(request)
    username = request.match_info["username"]
    self_or_admin(user, username)
    target = await store.users.get(username)
    changes = await user_changes(body, user, target)
    role, zone = changes.get("role", target.role), changes.get("zone", target.zone)
    if role == "operator" and zone is None:
        raise Conflict(f"{username} would be an operator without a zone to act in", user=username)
    if role == "admin" and zone is not None:
        raise Conflict(f"{username} would be an admin scoped to zone {zone}", user=username)
    await keep_an_admin(store, target, changes)
    account = await store.users.update(username, actor=user.username, ip=request.remote, **changes)
    return web.json_response(account.as_json())


@routes.delete(
    "/users/{username}",
    summary="Remove a user (admins)",
    tag="accounts",
    returns=answers.User,
    errors=(403, 404, 409),
)
async def delete_user(request: web.Request) -> web.Response:
    user, store = user_of(request), store_of(request)
    auth.require_admin(user)
    target = await store.users.get(request.match_info["username"])
    await keep_an_admin(store, target, {"disabled": True})
    await store.users.remove(target.username, actor=user.username, ip=request.remote)
    return web.json_response(target.as_json())


@routes.get(
    "/users/{username}/tokens",
    summary="A user's API tokens (their own, or anyone's for admins)",
    tag="accounts",
    returns=answers.ApiTokens,
    errors=(403, 404),
)
async def list_tokens(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    self_or_admin(user_of(request), username)
    store = store_of(request)
    await store.users.get(username)
    return web.json_response({"tokens": [t.as_json() for t in await store.users.tokens(username)]})


@routes.post(
    "/users/{username}/tokens",
    summary="A new API token, shown once",
    tag="accounts",
    ok=201,
    returns=answers.ApiToken,
    errors=(403, 404),
)
async def add_token(request: web.Request, body: NewToken) -> web.Response:
    """201 with the new API ``token`` (shown only here) and its id for revoking it."""
    user, store = user_of(request), store_of(request)
    username = request.match_info["username"]
    self_or_admin(user, username)
    row, token = await store.users.add_token(
        username, body.label.strip(), actor=user.username, ip=request.remote
    )
    return web.json_response({**row.as_json(), "token": token}, status=201)


@routes.delete(
    "/users/{username}/tokens/{id}",
    summary="Revoke an API token",
    tag="accounts",
    returns=answers.ApiToken,
    errors=(403, 404),
)
async def revoke_token(request: web.Request) -> web.Response:
    user, store = user_of(request), store_of(request)
    username, raw = request.match_info["username"], request.match_info["id"]
    self_or_admin(user, username)
    owned = {str(t.id): t for t in await store.users.tokens(username)}
    token = owned.get(raw)
    if token is None:  # also a token of someone else: its id tells nothing
        raise NotFound(f"API token {raw} of {username} does not exist", token=raw)
    await store.users.revoke_token(token.id, actor=user.username, ip=request.remote)
    return web.json_response(token.as_json())
